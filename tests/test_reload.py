"""Live policy reload under load: the policy file changes five times (one
version invalid) while requests stream; none fails, each valid change
applies within a second, the invalid one is refused and the last good
policy stays. Real servers over sockets."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from guardgate import GuardGate
from tests.servers import principal_of, serve_in_thread

CHAT = {"model": "toy-1", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 40,
        "stream": True}


def write(path: Path, toy: str, limit: int) -> None:
    text = f"upstream: {toy}\nquotas:\n  - {{name: rpm, limit: {limit}/minute}}\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # as editors and config managers do: never half a file


def test_reload_under_load(toy: str, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    write(policy, toy, 100000)
    gate = GuardGate(policy=policy)
    results: list[tuple[float, int, str | None, bool]] = []
    failures: list[Exception] = []  # a cut stream raises on reading
    stop = threading.Event()

    def load(base: str) -> None:
        with httpx.Client() as client:
            while not stop.is_set():
                try:
                    with client.stream("POST", base + "/v1/chat/completions", json=CHAT,
                                       headers={"authorization": "Bearer sk-load"}) as response:
                        body = response.read()
                        whole = body.rstrip().endswith(b"data: [DONE]")
                        results.append((time.monotonic(), response.status_code,
                                        response.headers.get("x-ratelimit-limit-requests"),
                                        whole))
                except Exception as exc:  # noqa: BLE001 (reported below, not lost in a thread)
                    failures.append(exc)
                    return

    with serve_in_thread(gate) as base, capture_logs() as logs:
        workers = [threading.Thread(target=load, args=(base,)) for _ in range(4)]
        for worker in workers:
            worker.start()
        try:
            time.sleep(0.5)
            applied = []
            for limit in (100001, 100002, None, 100003, 100004):
                changed = time.monotonic()
                if limit is None:
                    policy.write_text("upstream: [not, a, url]\nquotas: 7\n")
                    time.sleep(1.0)
                    continue
                write(policy, toy, limit)
                while time.monotonic() - changed < 5:
                    seen = [r for r in results if r[0] > changed and r[2] == str(limit)]
                    if seen:
                        applied.append(seen[0][0] - changed)
                        break
                    time.sleep(0.02)
                else:
                    pytest.fail(f"limit {limit} not applied within 5 s")
            ready = httpx.get(base + "/_guardgate/readyz").json()
            metrics = httpx.get(base + "/_guardgate/metrics").text
        finally:
            stop.set()
            for worker in workers:
                worker.join()
    assert not failures
    assert len(results) > 50
    assert {status for _, status, _, _ in results} == {200}  # no request failed
    assert all(whole for *_, whole in results)             # no stream was cut
    assert len(applied) == 4 and max(applied) < 1.0
    refused = [e for e in logs if e["event"].startswith("policy reload refused")]
    assert len(refused) == 1 and refused[0]["problems"]
    assert 'guardgate_policy_reloads_total{outcome="ok"} 4.0' in metrics
    assert 'guardgate_policy_reloads_total{outcome="invalid"} 1.0' in metrics
    assert ready["policy"] == gate.policy.digest[:12]
    assert f'guardgate_policy_info{{version="{ready["policy"]}"}} 1.0' in metrics


def test_state_survives_a_reload(toy: str, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    text = ("upstream: {toy}\ntiers: {{watch: {{score: 0.3}}}}\nadmin: {{token: {token}}}\n"
            "quotas:\n  - {{name: rpm, limit: {n}/minute}}\n")
    token = "reload-operator-token-01"
    policy.write_text(text.format(toy=toy, token=token, n=5))
    gate = GuardGate(policy=policy)
    with serve_in_thread(gate) as base:
        for _ in range(3):
            httpx.post(base + "/v1/chat/completions", json={**CHAT, "stream": False},
                       headers={"authorization": "Bearer sk-kept"})
        policy.write_text(text.format(toy=toy, token=token, n=6))
        time.sleep(0.8)
        after = httpx.post(base + "/v1/chat/completions", json={**CHAT, "stream": False},
                           headers={"authorization": "Bearer sk-kept"})
        limit = gate.policy.quotas[0].windows[0].amount
        explained = httpx.get(
            base + "/_guardgate/accounts/" + principal_of("sk-kept"),
            headers={"authorization": f"Bearer {token}"}).json()
    assert limit == 6
    # The quota counter and the risk state carried over: 4 of 6 used.
    assert after.headers["x-ratelimit-remaining-requests"] == "2"
    assert explained["recent_requests"] > 3.5


def test_sighup_reloads(toy: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import guardgate.reload

    monkeypatch.setattr(guardgate.reload, "POLL_SECONDS", 60.0)  # only the signal can do it
    policy = tmp_path / "policy.yaml"
    write(policy, toy, 7)
    gate = GuardGate(policy=policy)

    async def run() -> None:
        assert gate._watcher is not None
        gate._watcher.start()  # in this (main) thread, so SIGHUP can be handled
        policy.write_text(policy.read_text().replace("7/minute", "8/minute"))
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(50):
            await asyncio.sleep(0.01)
            if gate.policy.quotas[0].windows[0].amount == 8:
                break
        await gate.aclose()

    asyncio.run(run())
    assert gate.policy.quotas[0].windows[0].amount == 8
