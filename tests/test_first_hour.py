"""A new user's first hour, run as they run it: commands in a process of
their own, in a directory of their own, with what the output tells them to
type typed back."""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import pty
import re
import signal
import socket
import struct
import subprocess
import sys
import termios
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import httpx
import orjson
import pytest
import yaml

from guardgate.cli.starter import SECRETS, starter_policy
from tests.servers import free_port, principal_of

ROOT = Path(__file__).resolve().parent.parent
RISK_POLICY = ROOT / "examples" / "policies" / "risk.yaml"


def guardgate(*args: str, cwd: Path | None = None, module: str = "guardgate",
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=60, check=False, cwd=cwd, env=env)


class Running:
    """A command in a process of its own: standard output to a file (a
    chatty server never blocks on a full pipe), standard error piped."""

    def __init__(self, args: tuple[str, ...], cwd: Path, env: dict[str, str] | None) -> None:
        self.out_path = cwd / "stdout.log"
        with self.out_path.open("w") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "guardgate", *args], cwd=cwd,
                                         env=env, text=True, stdout=out, stderr=subprocess.PIPE,
                                         start_new_session=True)

    def stop(self, sig: int = signal.SIGINT) -> tuple[str, str]:
        """Signals the command and waits for its end: (stdout, stderr)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
        _, err = self.proc.communicate(timeout=15)
        return self.out_path.read_text(), err


@contextmanager
def started(*args: str, ready: str, cwd: Path,
            env: dict[str, str] | None = None) -> Iterator[Running]:
    """``guardgate ARGS`` until ``ready`` (a URL) answers; killed on leaving."""
    running = Running(args, cwd, env)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(ready).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if running.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"did not start: {running.stop(signal.SIGKILL)}")
            time.sleep(0.05)
        yield running
    finally:
        if running.proc.poll() is None:
            running.stop(signal.SIGKILL)


def own_tmpdir(tmp_path: Path) -> dict[str, str]:
    """An environment whose temporary files go to a directory of the test's own."""
    (tmp_path / "tmp").mkdir()
    return {**os.environ, "TMPDIR": str(tmp_path / "tmp")}


def on_a_terminal(args: list[str], cwd: Path) -> tuple[int, str]:
    """Runs ``guardgate ARGS`` with standard error on a terminal (80 x 24);
    what it wrote there."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "guardgate", *args], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the terminal's other end is closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(30), b"".join(chunks).decode(errors="replace")


# ------------------------------------------------------------------ version


def test_version_comes_from_the_package_metadata() -> None:
    expected = f"guardgate {metadata.version('guardgate')}"
    assert guardgate("--version").stdout.strip() == expected
    assert guardgate("--version", module="guardgate.cli").stdout.strip() == expected
    # The installed command is the same function.
    (script,) = metadata.entry_points(group="console_scripts", name="guardgate")
    from guardgate.cli import main

    assert script.load() is main


def test_python_dash_m_guardgate_is_the_command() -> None:
    as_module = guardgate("--help")
    assert as_module.returncode == 0
    assert as_module.stdout.startswith("usage: guardgate ")
    for command in ("serve", "demo", "init", "toy", "check", "replay", "detect"):
        assert re.search(rf"^\s+{command}\s", as_module.stdout, re.MULTILINE), command
    assert guardgate("check", "/nonexistent.yaml").returncode == 1


# --------------------------------------------------------------------- init


def test_init_writes_a_starter_that_passes_check_once_its_next_steps_are_followed(
    tmp_path: Path,
) -> None:
    written = guardgate("init", cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    policy = tmp_path / "policy.yaml"
    text = policy.read_text()
    assert text == starter_policy()
    # The steps it prints, typed in a shell: the exports, then the check.
    steps = written.stdout
    exports = [line.strip() for line in steps.splitlines() if line.strip().startswith("export ")]
    assert [line.split("=")[0].split()[1] for line in exports] == list(SECRETS)
    check = next(line.split(". ", 1)[1] for line in steps.splitlines()
                 if "guardgate check" in line)
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    shell = subprocess.run(["bash", "-c", "\n".join([*exports, check])], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60, check=False)
    assert shell.returncode == 0, shell.stdout + shell.stderr
    assert "policy.yaml: ok" in shell.stdout
    # Without the secrets, check says which are missing, with their lines.
    unset = guardgate("check", "policy.yaml", cwd=tmp_path, env=env)
    assert unset.returncode == 1
    for name in SECRETS:
        assert f"environment variable {name} is not set" in unset.stdout
    assert "guardgate serve --policy policy.yaml" in steps


def test_the_starter_policy_says_what_a_first_policy_needs() -> None:
    from guardgate.policy import load_policy_text

    text = starter_policy("http://10.0.0.5:9000/v1")
    data = yaml.safe_load(text)
    assert data["upstream"] == "http://10.0.0.5:9000/v1"
    assert data["storage"] == "memory://" and data["mode"] in ("shadow", "enforce")
    assert {"principal", "trusted_proxies"} <= set(data["identity"])
    # Secrets are taken from the environment, never written in.
    assert data["challenge"]["secret"] == "${GUARDGATE_SECRET}"
    assert data["watermark"]["key"] == "${GUARDGATE_WATERMARK_KEY}"
    assert data["admin"]["token"] == "${GUARDGATE_ADMIN_TOKEN}"
    assert text.count("\n#") >= 5  # commented
    policy = load_policy_text(text, env=dict.fromkeys(SECRETS, "s" * 32))
    costs = {q.cost for q in policy.quotas if q.windows}
    assert {"requests", "total_tokens"} <= costs
    assert any(q.concurrency for q in policy.quotas)
    assert any(t.challenge for t in policy.tiers)
    assert any(t.degrade and t.mark for t in policy.tiers)
    assert any(t.deny for t in policy.tiers)


def test_the_example_starter_is_what_init_writes() -> None:
    assert (ROOT / "examples" / "policies" / "starter.yaml").read_text() == starter_policy()


def test_init_never_overwrites_unless_forced(tmp_path: Path) -> None:
    policy = tmp_path / "mine.yaml"
    policy.write_text("upstream: http://127.0.0.1:1234\n")
    refused = guardgate("init", "--output", str(policy))
    assert refused.returncode == 1
    assert "exists" in refused.stderr and "--force" in refused.stderr
    assert policy.read_text() == "upstream: http://127.0.0.1:1234\n"
    forced = guardgate("init", "--output", str(policy), "--upstream", "http://10.1.2.3:8000",
                       "--force")
    assert forced.returncode == 0, forced.stderr
    assert yaml.safe_load(policy.read_text())["upstream"] == "http://10.1.2.3:8000"


def test_init_refuses_a_bad_upstream_and_writes_nothing(tmp_path: Path) -> None:
    result = guardgate("init", "--upstream", "ftp://nowhere", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("guardgate init: --upstream")
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_init_to_standard_output(tmp_path: Path) -> None:
    result = guardgate("init", "--output", "-", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout == starter_policy()
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------- toy


def test_toy_serves_both_api_families_alone(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with started("toy", "--port", str(port), ready=base + "/", cwd=tmp_path) as toy:
        chat = httpx.post(base + "/v1/chat/completions", json={
            "model": "toy-1", "messages": [{"role": "user", "content": "Hello"}]})
        messages = httpx.post(base + "/v1/messages", headers={"anthropic-version": "2023-06-01"},
                              json={"model": "toy-1", "max_tokens": 5,
                                    "messages": [{"role": "user", "content": "Hello"}]})
        _, err = toy.stop()
    assert chat.status_code == 200 and chat.json()["choices"][0]["message"]["content"]
    assert messages.status_code == 200 and messages.json()["content"][0]["text"]
    assert toy.proc.returncode == 0
    assert base in err and "guardgate serve --upstream " + base in err
    assert "Traceback" not in err


# -------------------------------------------------------------- bind errors


@pytest.mark.parametrize("command", [
    ["serve", "--upstream", "http://127.0.0.1:9"],
    ["serve", "--upstream", "http://127.0.0.1:9", "--workers", "2"],
    ["toy"],
    ["demo"],
])
def test_a_port_in_use_is_one_clear_line_before_anything_starts(
    command: list[str], tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = own_tmpdir(tmp_path)
        result = guardgate(*command, "--port", str(port), cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"guardgate {command[0]}: cannot listen on 127.0.0.1:{port}: the port is in use by "
        "another process (stop it, or choose another --port)"
    )
    assert "listening" not in result.stderr + result.stdout
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.parametrize(("host", "says"), [
    ("203.0.113.7", "this machine has no such address"),
    ("no-such-host.invalid", "no such address"),
])
def test_an_address_this_machine_lacks_is_one_clear_line(host: str, says: str) -> None:
    result = guardgate("serve", "--upstream", "http://127.0.0.1:9", "--host", host,
                       "--port", str(free_port()))
    assert result.returncode == 1
    assert result.stderr.startswith(f"guardgate serve: cannot listen on {host}:")
    assert says in result.stderr and "Traceback" not in result.stderr
    assert "listening" not in result.stderr


def test_serve_says_listening_once_it_is(tmp_path: Path) -> None:
    port = free_port()
    with started("serve", "--upstream", "http://127.0.0.1:9", "--port", str(port),
                 ready=f"http://127.0.0.1:{port}/_guardgate/healthz", cwd=tmp_path) as serve:
        _, err = serve.stop(signal.SIGTERM)
    assert err.strip() == f"guardgate listening on http://127.0.0.1:{port}"
    assert serve.proc.returncode == 0


# --------------------------------------------------------------- middleware


_MOUNTED = """\
import asyncio, httpx
from guardgate import GuardGate
from guardgate.toy import create_toy_app
{before}
app = GuardGate(create_toy_app(), policy={{"quotas": [{{"name": "rpm", "limit": "1/minute"}}]}})
{after}
async def main():
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        for _ in range(2):
            await client.post("/v1/chat/completions", headers={{"authorization": "Bearer sk-1"}},
                              json={{"model": "m", "messages": [{{"role": "user", "content": "Hi"}}]}})
asyncio.run(main())
{end}
"""
_HOST_LOGGING = """\
import structlog
seen = []
def keep(logger, method, event):
    seen.append(event)
    raise structlog.DropEvent
structlog.configure(processors=[keep])
"""


def _mounted(before: str = "", after: str = "", end: str = "") -> subprocess.CompletedProcess[str]:
    script = _MOUNTED.format(before=before, after=after, end=end)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False, cwd=ROOT)


def test_middleware_logs_json_lines_without_any_logging_setup() -> None:
    result = _mounted()
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["event"] for line in lines] == ["request", "request"]
    assert [line["status"] for line in lines] == [200, 429]
    assert lines[0]["level"] == "info" and lines[0]["principal"] == principal_of("sk-1")


@pytest.mark.parametrize("when", ["before", "after"])
def test_middleware_follows_the_host_applications_structlog_setup(when: str) -> None:
    report = "print('host saw', [e['event'] for e in seen])"
    result = _mounted(**{when: _HOST_LOGGING}, end=report)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "host saw ['request', 'request']"


# --------------------------------------------------------------------- demo


def _commands(banner: str) -> list[str]:
    """The commands a banner gives to paste: its indented blocks."""
    commands: list[str] = []
    block: list[str] = []
    for line in banner.splitlines():
        if line.startswith("  ") or (block and block[-1].endswith("\\")):
            block.append(line)
        elif block:
            commands.append(textwrap.dedent("\n".join(block)))
            block = []
    return [c for command in commands for c in command.split("\n\n")]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_demo_banner_pastes_and_tells_the_truth_then_leaves_nothing(
    sig: int, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = own_tmpdir(tmp_path)
    with started("demo", "--port", str(port), ready=base + "/_guardgate/readyz",
                 cwd=tmp_path, env=env) as demo:
        assert demo.proc.stderr is not None
        banner = ""
        while "Ctrl-C stops" not in banner:
            banner += demo.proc.stderr.readline()
        workdir = Path(re.search(r"The policy is (\S+)/policy\.yaml", banner)[1])  # type: ignore[index]
        assert workdir.is_dir() and workdir.parent == tmp_path / "tmp"
        commands = _commands(banner)
        assert len(commands) >= 6
        # Only what the quick start installs, and the one extra it names.
        assert "python3 -m pip install openai" in banner
        for command in commands:
            assert command.split()[0] in ("curl", "for", "python3"), command
        ran = {command: subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                                       timeout=60, check=False) for command in commands}
        # The first command, repeated as a loop would: its key ends in a smaller
        # tier, and what it is told matches what the banner and the log say.
        first = commands[0].replace("curl -s ", "curl -si ", 1)
        answers = [subprocess.run(["bash", "-c", first], capture_output=True, text=True,
                                  timeout=60, check=False).stdout for _ in range(70)]
        out, _ = demo.stop(sig)
    for command, result in ran.items():
        assert result.returncode == 0, (command, result.stderr)
        assert result.stdout.strip(), command
    mining = next(ran[c] for c in commands if c.startswith("for "))
    assert mining.stdout.split()[0] == "200" and mining.stdout.split()[-1] == "403"
    explained = next(ran[c] for c in commands if "/_guardgate/accounts/" in c)
    assert json.loads(explained.stdout)["signals"][0]["name"] == "logprob_harvest"
    assert demo.proc.returncode == 0
    assert list((tmp_path / "tmp").iterdir()) == []

    assert "Quotas per key: 60 requests per minute, 20,000 tokens per minute, 4 at once" in \
        " ".join(banner.split())
    assert "watch (score 0.3 and up) answers watermarked" in " ".join(banner.split())
    refused = [a for a in answers if a.startswith("HTTP/1.1 429")]
    assert refused, "70 requests in a minute are refused past 60 or less"
    limit = int(re.search(r"x-ratelimit-limit-requests: (\d+)", refused[0])[1])  # type: ignore[index]
    body = json.loads(refused[0].split("\n\n", 1)[1])  # read as text: \r\n is \n
    assert f"limit {limit} per 1m0s" in body["error"]["message"]
    assert f'"rpm";q={limit};w=60' in refused[0]
    log = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    refusals = [line for line in log if line["status"] == 429]
    assert refusals and refusals[0]["principal"] == principal_of("sk-demo")
    applied = f"{limit}/minute" if limit == 60 else f"{limit}/minute, scaled from 60/minute"
    assert refusals[0]["error"] == f"quota rpm ({applied}) refused cost 1"


def test_a_refusal_names_the_limit_its_tier_applied() -> None:
    import asyncio

    from structlog.testing import capture_logs

    from guardgate import GuardGate
    from guardgate.identity import key_digest
    from guardgate.toy import create_toy_app

    policy = {
        "quotas": [{"name": "rpm", "limit": "6/minute"},
                   {"name": "tpm", "limit": "400/minute", "cost": "total_tokens"}],
        "tiers": {"watch": {"score": 0.3, "quota_factor": 0.5}},
        "overrides": [{"api_key_sha256": key_digest(b"sk-watched"), "tier": "watch"}],
    }
    gate = GuardGate(create_toy_app(), policy=policy)
    small = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}
    large = {**small, "max_tokens": 300}

    async def calls() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=gate)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            headers = {"authorization": "Bearer sk-watched"}
            return [await client.post("/v1/chat/completions", json=body, headers=headers)
                    for body in (small, small, large, small, small)]

    with capture_logs() as logs:
        answers = asyncio.run(calls())
    assert [a.status_code for a in answers] == [200, 200, 429, 200, 429]
    assert answers[0].headers["x-ratelimit-limit-requests"] == "3"
    assert answers[0].headers["x-ratelimit-limit-tokens"] == "200"
    assert "limit 200 per 1m0s, requested 307" in answers[2].json()["error"]["message"]
    assert answers[2].headers["x-ratelimit-limit-tokens"] == "200"
    assert "limit 3 per 1m0s" in answers[4].json()["error"]["message"]
    assert answers[4].headers["x-ratelimit-limit-requests"] == "3"
    errors = [e["error"] for e in logs if e["event"] == "request" and e["status"] == 429]
    assert errors == ["quota tpm (200/minute, scaled from 400/minute) can never fit cost 307",
                      "quota rpm (3/minute, scaled from 6/minute) refused cost 1"]


# ----------------------------------------------------------------- progress


def _traffic(count: int) -> bytes:
    return b"".join(orjson.dumps({
        "ts": 1_767_225_600 + i, "method": "POST", "path": "/v1/chat/completions",
        "client_ip": "203.0.113.7", "headers": {"authorization": f"Bearer sk-{i % 7}"},
        "body": {"model": "m", "messages": [{"role": "user", "content": f"question {i}"}]},
    }) + b"\n" for i in range(count))


def test_replay_reads_gzip_by_its_bytes_and_stays_quiet_when_piped(tmp_path: Path) -> None:
    raw = _traffic(3000)
    (tmp_path / "t.jsonl").write_bytes(raw)
    (tmp_path / "t.jsonl.gz").write_bytes(gzip.compress(raw))
    (tmp_path / "t.log").write_bytes(gzip.compress(raw))  # compressed, whatever its name
    decisions = {}
    for name in ("t.jsonl", "t.jsonl.gz", "t.log"):
        result = guardgate("replay", "--policy", str(RISK_POLICY), name, "--out", name + ".out",
                           cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""  # piped: no progress bar
        assert "3000 requests: 3000 decided" in result.stdout
        decisions[name] = (tmp_path / (name + ".out")).read_bytes()
    assert decisions["t.jsonl"] == decisions["t.jsonl.gz"] == decisions["t.log"]
    assert decisions["t.jsonl"].count(b"\n") == 3000
    piped = subprocess.run([sys.executable, "-m", "guardgate", "replay", "--policy",
                            str(RISK_POLICY), "-", "--json"], input=gzip.compress(raw),
                           capture_output=True, timeout=60, check=False)
    assert piped.returncode == 0 and piped.stdout == decisions["t.jsonl"]
    assert json.loads(piped.stderr)["decided"] == 3000
    (tmp_path / "broken.gz").write_bytes(gzip.compress(raw)[:500])
    broken = guardgate("replay", "--policy", str(RISK_POLICY), "broken.gz", "--out", "b.out",
                       cwd=tmp_path)
    assert broken.returncode == 1
    assert broken.stderr.startswith("guardgate replay: cannot read broken.gz:")
    assert "Traceback" not in broken.stderr


def test_replay_shows_progress_on_a_terminal(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl.gz").write_bytes(gzip.compress(_traffic(20000)))
    code, terminal = on_a_terminal(["replay", "--policy", str(RISK_POLICY), "t.jsonl.gz",
                                    "--out", "d.jsonl"], tmp_path)
    assert code == 0
    assert re.search(r"replay t\.jsonl\.gz:\s+\d+%\|", terminal), terminal
    assert "100%" in terminal or "\r" in terminal


def test_detect_reads_gzip_and_shows_progress_on_a_terminal(tmp_path: Path) -> None:
    from guardgate.perturb.watermark import mark

    prose = ("It is important to verify the main results carefully. For example, a large "
             "project often needs several reviewers, and an unusual mistake can remove an "
             "entire day of work. The primary goal is to improve quality and reduce errors. ")
    key = "first-hour-key-0123456789"
    lines = b"".join(orjson.dumps({"choices": [{"message": {
        "role": "assistant", "content": mark(prose, key.encode())}}]}) + b"\n" for _ in range(5))
    (tmp_path / "a.jsonl").write_bytes(lines)
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(lines))
    (tmp_path / "c.txt.gz").write_bytes(gzip.compress(mark(prose, key.encode()).encode()))
    plain = json.loads(guardgate("detect", "--key", key, "a.jsonl", "--json", cwd=tmp_path).stdout)
    packed = guardgate("detect", "--key", key, "b.jsonl.gz", "--json", cwd=tmp_path)
    assert packed.returncode == 0 and packed.stderr == ""
    assert json.loads(packed.stdout) == plain and plain["hits"] == plain["slots"] > 10
    text = json.loads(guardgate("detect", "--key", key, "c.txt.gz", "--json",
                                cwd=tmp_path).stdout)
    assert text["hits"] == text["slots"] == plain["slots"]  # repeats are scored once
    code, terminal = on_a_terminal(["detect", "--key", key, "a.jsonl", "b.jsonl.gz",
                                    "c.txt.gz"], tmp_path)
    assert code == 0 and re.search(r"detect:\s+\d+%\|", terminal), terminal
    missing = guardgate("detect", "--key", key, "a.jsonl", "nope.jsonl", cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stderr.startswith("guardgate detect: cannot read nope.jsonl:")
