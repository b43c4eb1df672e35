"""The command line, run as a user runs it: as a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from guardgate.toy import create_toy_app
from tests.servers import free_port, principal_of, running, serve_in_thread

POLICIES = Path(__file__).parent / "policies"


def guardgate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "guardgate.cli", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_check_reports_every_problem_with_its_place() -> None:
    result = guardgate("check", str(POLICIES / "bad" / "three_mistakes.yaml"))
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3
    for line, where in zip(lines, ["line 6,", "line 10,", "line 11,"], strict=True):
        assert where in line


@pytest.mark.parametrize("name", sorted(p.name for p in (POLICIES / "good").glob("*.yaml")))
def test_check_accepts_good_policies(name: str) -> None:
    result = guardgate("check", str(POLICIES / "good" / name))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok" in result.stdout


def test_check_missing_file() -> None:
    result = guardgate("check", "/nonexistent/policy.yaml")
    assert result.returncode == 1
    assert "policy.yaml" in result.stdout


def test_schema_is_json_schema() -> None:
    result = guardgate("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert {"upstream", "identity", "routes", "max_body"} <= set(schema["properties"])


def test_serve_needs_an_upstream() -> None:
    result = guardgate("serve")
    assert result.returncode == 1
    assert "--upstream" in result.stderr


def test_serve_proxies_and_logs_json_lines() -> None:
    port = free_port()
    with (
        serve_in_thread(create_toy_app()) as toy,
        running("serve", "--upstream", toy, port=port) as proc,
    ):
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-cli")
        answer = client.chat.completions.create(
            model="toy-1", messages=[{"role": "user", "content": "Hi"}]
        )
        assert answer.choices[0].message.content
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("event") == "request"]
    assert len(requests) == 1
    assert requests[0]["status"] == 200
    assert requests[0]["principal"].startswith("key:")
    assert "sk-cli" not in out


def test_demo_runs_in_one_command() -> None:
    port = free_port()
    with running("demo", port=port) as proc:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-demo")
        stream = client.chat.completions.create(
            model="toy-1", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text
        ready = httpx.get(f"http://127.0.0.1:{port}/_guardgate/readyz")
        assert ready.status_code == 200
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                            headers={"authorization": "Bearer sk-demo"},
                            json={"model": "toy-1", "messages": [{"role": "user", "content": "Hi"}]})
        assert answer.status_code == 200
        assert answer.headers["x-ratelimit-limit-requests"] == "60"
        assert answer.headers["x-ratelimit-limit-tokens"] == "20000"
        # The banner's mining loop ends refused, and the operator endpoint says why.
        mining = {"model": "toy-1", "logprobs": True, "top_logprobs": 20, "max_tokens": 1,
                  "temperature": 0}
        statuses = [
            httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                       headers={"authorization": "Bearer sk-miner"},
                       json={**mining, "messages": [{"role": "user", "content": f"go {i}"}]}
                       ).status_code
            for i in range(15)
        ]
        principal = principal_of("sk-miner")
        explained = httpx.get(f"http://127.0.0.1:{port}/_guardgate/accounts/{principal}",
                              headers={"authorization": "Bearer demo-operator-token"})
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    assert "curl" in err and f"127.0.0.1:{port}" in err
    assert statuses[0] == 200 and statuses[-1] == 403
    assert explained.json()["signals"][0]["name"] == "logprob_harvest"
    assert f"accounts/{principal}" in err


def test_replay_backtests_a_policy_on_recorded_traffic(tmp_path: Path) -> None:
    import orjson

    lines = []
    for i in range(30):
        lines.append({
            "ts": 1_767_225_600 + 15 * i, "method": "POST", "path": "/v1/chat/completions",
            "client_ip": "203.0.113.7",
            "headers": {"x-account-id": "miner", "x-account-created": "1767225000"},
            "body": {"model": "m", "messages": [{"role": "user", "content": f"go on {i}"}],
                     "logprobs": True, "top_logprobs": 20, "max_tokens": 1, "temperature": 0},
            "usage": {"input_tokens": 8, "output_tokens": 1},
        })
        lines.append({
            "ts": 1_767_225_601 + 15 * i, "method": "POST", "path": "/v1/chat/completions",
            "client_ip": "198.51.100.9", "headers": {"authorization": "Bearer sk-person"},
            "body": {"model": "m", "messages": [{"role": "user", "content": f"a cat name {i}"}]},
        })
    traffic = tmp_path / "traffic.jsonl"
    raw = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    extra = (b'{"ts": 1, "method": "GET", "path": "/v1/models", "client_ip": "1.2.3.4"}\n'
             b"not json\n"
             b'{"ts": 2, "path": "/v1/chat/completions", "client_ip": "1.2.3.4", "body": []}\n')
    traffic.write_bytes(raw + extra)
    out = tmp_path / "decisions.jsonl"
    policy = Path(__file__).resolve().parent.parent / "examples" / "policies" / "risk.yaml"
    result = guardgate("replay", "--policy", str(policy), str(traffic), "--out", str(out))
    assert result.returncode == 0, result.stderr
    decisions = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(decisions) == 60
    assert set(decisions[0]) == {"ts", "principal", "tier", "score", "action", "reasons"}
    miner = [d for d in decisions if d["principal"] == "acct:miner"]
    person = [d for d in decisions if d["principal"].startswith("key:")]
    assert miner[-1]["tier"] in ("high", "blocked") and miner[-1]["action"] in ("degrade", "block")
    assert miner[-1]["reasons"][0] == "logprob_harvest"
    # A steady scripted caller with one prompt shape is watched, never more.
    assert {d["tier"] for d in person} <= {"normal", "watch"}
    assert person[0]["action"] == "allow" and max(d["score"] for d in person) < 0.5
    assert "63 requests: 60 decided, 1 not model requests, 2 invalid" in result.stdout
    assert "normal" in result.stdout and "allow" in result.stdout

    # From standard input, decisions on standard output, the summary as JSON on stderr.
    piped = subprocess.run(
        [sys.executable, "-m", "guardgate.cli", "replay", "--policy", str(policy), "-", "--json"],
        input=raw, capture_output=True, timeout=60, check=False,
    )
    assert piped.returncode == 0
    assert [orjson.loads(x) for x in piped.stdout.splitlines()] == decisions
    summary = orjson.loads(piped.stderr)
    assert summary["decided"] == 60 and sum(summary["by_tier"].values()) == 60


def test_replay_of_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    policy = Path(__file__).resolve().parent.parent / "examples" / "policies" / "risk.yaml"
    result = guardgate("replay", "--policy", str(policy), str(tmp_path / "nope.jsonl"))
    assert result.returncode == 1
    assert "cannot read" in result.stderr and "Traceback" not in result.stderr


def test_detect_finds_the_mark_in_text_and_in_answers(tmp_path: Path) -> None:
    import orjson

    from guardgate.perturb.watermark import mark

    prose = ("It is important to verify the main results carefully. For example, a large "
             "project often needs several reviewers, and an unusual mistake can remove an "
             "entire day of work. The primary goal is to improve quality and reduce errors. ")
    key = "detect-cli-key-0123456789"
    text = tmp_path / "answer.txt"
    text.write_text(mark(prose * 3, key.encode()))
    answers = tmp_path / "answers.jsonl"
    answers.write_bytes(orjson.dumps(
        {"choices": [{"message": {"role": "assistant", "content": mark(prose, key.encode())}}]}
    ) + b"\n")
    found = guardgate("detect", "--key", key, str(text), str(answers), "--json")
    assert found.returncode == 0, found.stderr
    evidence = json.loads(found.stdout)
    assert evidence["hits"] == evidence["slots"] >= 10 and evidence["p_value"] < 1e-3
    wrong = json.loads(guardgate("detect", "--key", "another-key-0000000", str(text),
                                 "--json").stdout)
    assert wrong["p_value"] > 1e-3
    readable = guardgate("detect", "--key", key, str(text))
    assert "p-value" in readable.stdout and "slots scored" in readable.stdout
    missing = guardgate("detect", "--key", key, str(tmp_path / "nope.txt"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr


def test_serve_reloads_its_policy_file_on_change_and_on_sighup(tmp_path: Path) -> None:
    body = {"model": "toy-1", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}

    def limit(port: int) -> str:
        return httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body,
                          headers={"authorization": "Bearer sk-cli"}
                          ).headers["x-ratelimit-limit-requests"]

    with serve_in_thread(create_toy_app()) as toy:
        policy = tmp_path / "policy.yaml"
        policy.write_text(f"upstream: {toy}\nquotas: [{{name: rpm, limit: 50/minute}}]\n")
        port = free_port()
        with running("serve", "--policy", str(policy), port=port) as proc:
            assert limit(port) == "50"
            policy.write_text(policy.read_text().replace("50/minute", "60/minute"))
            deadline = time.monotonic() + 3
            while limit(port) != "60" and time.monotonic() < deadline:
                time.sleep(0.1)
            assert limit(port) == "60"
            # SIGHUP reloads too (the file is rewritten with its old stamp kept).
            stat = policy.stat()
            policy.write_text(policy.read_text().replace("60/minute", "70/minute"))
            os.utime(policy, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            os.killpg(proc.pid, signal.SIGHUP)
            deadline = time.monotonic() + 3
            while limit(port) != "70" and time.monotonic() < deadline:
                time.sleep(0.1)
            assert limit(port) == "70"


def test_metrics_parse_and_add_up_across_two_workers(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    body = {"model": "toy-1", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}
    with serve_in_thread(create_toy_app()) as toy:
        policy = tmp_path / "policy.yaml"
        policy.write_text(f"upstream: {toy}\nquotas: [{{name: rpm, limit: 1000/minute}}]\n"
                          "tiers: {watch: {score: 0.5}}\n")
        port = free_port()
        with running("serve", "--policy", str(policy), "--workers", "2", port=port):
            # Readiness means one worker is up; wait until both have registered.
            deadline = time.monotonic() + 30
            while len(_policy_pids(port)) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            sent = 40
            with httpx.Client() as client:
                for i in range(sent):
                    # A new connection each time, so both workers take some.
                    client.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body,
                                headers={"authorization": f"Bearer sk-{i % 4}",
                                         "connection": "close"})
            text = httpx.get(f"http://127.0.0.1:{port}/_guardgate/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    served = sum(s.value for s in families["guardgate_requests"].samples
                 if s.name == "guardgate_requests_total" and s.labels.get("api") == "openai.chat")
    assert served == sent
    latency = [s for s in families["guardgate_latency_seconds"].samples
               if s.name == "guardgate_latency_seconds_count" and s.labels["stage"] == "gateway"]
    assert sum(s.value for s in latency) == sent
    decisions = sum(s.value for s in families["guardgate_decisions"].samples
                    if s.name == "guardgate_decisions_total")
    assert decisions == sent
    assert "guardgate_quota_decisions" in families and "guardgate_policy_info" in families
    pids = {s.labels.get("pid") for s in families["guardgate_policy_info"].samples}
    assert len(pids) == 2  # both workers answered: the sums above are over two processes


def _policy_pids(port: int) -> set[str]:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{port}/_guardgate/metrics").text
    return {sample.labels.get("pid", "") for family in text_string_to_metric_families(text)
            if family.name == "guardgate_policy_info" for sample in family.samples}


async def test_replay_measures_an_answer_text_when_a_line_has_no_usage() -> None:
    """As the gateway does with an upstream that reports no usage: the
    answer's text, about four characters a token, is what is fed back."""
    from guardgate import load_policy
    from guardgate.replay import Replay

    def line(i: int, **extra: object) -> dict[str, object]:
        return {"ts": 1_767_225_600 + 60 * i, "path": "/v1/chat/completions",
                "client_ip": "203.0.113.7", "headers": {"x-account-id": "reader"},
                "body": {"model": "m", "messages": [{"role": "user", "content": "Tell me."}]},
                **extra}

    ratios = {}
    for name, extra in (("text", {"answer_text": "x" * 4000}), ("none", {}),
                        ("usage", {"usage": {"input_tokens": 10, "output_tokens": 1000},
                                   "answer_text": "ignored"})):
        replay = Replay(load_policy({"upstream": "http://127.0.0.1:9",
                                     "tiers": {"watch": {"score": 0.3}}}))
        assert replay.engine is not None
        seen = []
        orig = replay.engine.assess

        async def assess(*args: object, _orig: object = orig, _seen: list = seen) -> object:
            a = await _orig(*args)  # type: ignore[operator]
            _seen.append(a)
            return a

        replay.engine.assess = assess  # type: ignore[method-assign]
        for i in range(8):
            await replay.decide(line(i, **extra))
        raw = {n: v for n, v, _ in seen[-1].scored.signals}
        ratios[name] = raw["output_ratio"]
    assert ratios["none"] == 0.0
    assert ratios["text"] > 50 and abs(ratios["usage"] - 100.0) < 1e-6
