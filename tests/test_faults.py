"""Faults injected into a running gateway, on real sockets and a real Redis.

Each fault is injected under a policy that meters requests, tokens and
requests in flight; after each one the gateway must have answered as the
README's fault table says (status, log line, metric), must serve the next
normal request without a restart, and its accounting must hold: no quota
reservation left open, no in-flight slot held by a request that has ended.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from guardgate import GuardGate
from tests.chaos import ChaosUpstream
from tests.servers import free_port, own_redis, serve_in_thread

KEY = "sk-faults"


STREAMS = frozenset({"stream", "reset", "malformed", "slow", "flood"})


def chat(mode: str, *, stream: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"model": mode, "messages": [{"role": "user", "content": "Hi"}],
                            "max_tokens": 50}
    if stream:
        body["stream"] = True
    return body


def gateway_policy(upstream: str, storage: str, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "upstream": {"url": upstream, "read_timeout": "1s", "connect_timeout": "1s"},
        "storage": storage,
        "quotas": [
            {"name": f"{name}-rpm", "limit": "100000/minute"},
            {"name": f"{name}-tpm", "limit": "10000000/minute", "cost": "total_tokens"},
            {"name": f"{name}-inflight", "concurrency": 16},
        ],
        **extra,
    }


@pytest.fixture
def name() -> str:
    return "f" + uuid.uuid4().hex[:10]


def metric(base: str, family: str, **labels: str) -> float:
    text = httpx.get(base + "/_guardgate/metrics").text
    families = {found.name: found for found in text_string_to_metric_families(text)}
    if family not in families:
        raise AssertionError(f"no metric {family}")
    return sum(sample.value for sample in families[family].samples
               if sample.name in (family, family + "_total")
               and all(sample.labels.get(k) == v for k, v in labels.items()))


def slots_held(gate: GuardGate, name: str) -> int:
    store = gate.store
    if store.url.startswith("memory:"):
        held: dict[str, int] = store.slots._held  # type: ignore[attr-defined]
        return sum(count for key, count in held.items() if f"/{name}-" in key)
    client = redis.Redis.from_url(store.url)
    now_ms = time.time() * 1000
    return sum(int(client.zcount(key, now_ms, "+inf"))
               for key in client.scan_iter(match=f"*guardgate/slots/{name}-*"))


def assert_settled(base: str, gate: GuardGate, name: str) -> None:
    """Every reservation settled or released, every in-flight slot given back
    (settlements are batched: they land within a moment of the answer)."""
    deadline = time.monotonic() + 3
    while True:
        open_ = metric(base, "guardgate_reservations_open")
        held = slots_held(gate, name)
        if open_ == 0 and held == 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{open_} reservations open, {held} slots held")
        time.sleep(0.05)


def assert_recovered(base: str, gate: GuardGate, name: str) -> None:
    """The books balance after the fault, the next normal requests (JSON and
    streamed) are answered in full, and the books balance after them too."""
    assert_settled(base, gate, name)
    headers = {"authorization": f"Bearer {KEY}"}
    ok = httpx.post(base + "/v1/chat/completions", json=chat("ok"), headers=headers, timeout=10)
    assert ok.status_code == 200 and ok.json()["usage"]["total_tokens"] == 12
    streamed = httpx.post(base + "/v1/chat/completions", json=chat("stream", stream=True),
                          headers=headers, timeout=10)
    assert streamed.status_code == 200 and streamed.text.endswith("data: [DONE]\n\n")
    assert_settled(base, gate, name)


def rss() -> int:
    """This process's resident memory now, in bytes."""
    pages = int(open("/proc/self/statm").read().split()[1])  # noqa: SIM115
    return pages * os.sysconf("SC_PAGE_SIZE")


@contextlib.contextmanager
def fault_gateway(upstream: str, storage: str, name: str
                  ) -> Iterator[tuple[str, GuardGate, list[dict[str, Any]]]]:
    """A gateway under the metered policy, serving, its log captured: the
    block injects a fault and checks the answer; then the gateway must
    recover (`assert_recovered`)."""
    gate = GuardGate(policy=gateway_policy(upstream, storage, name))
    with serve_in_thread(gate) as base, capture_logs() as logs:
        yield base, gate, logs
        assert_recovered(base, gate, name)


def request_lines(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in logs if line["event"] == "request"]


@pytest.fixture
def chaos() -> Iterator[ChaosUpstream]:
    with ChaosUpstream() as upstream:
        yield upstream


# --- upstream faults ---------------------------------------------------------------

def test_upstream_refusing_connections_is_a_502_then_recovers(storage: str, name: str) -> None:
    port = free_port()
    gate = GuardGate(policy=gateway_policy(f"http://127.0.0.1:{port}", storage, name))
    with serve_in_thread(gate) as base, capture_logs() as logs:
        refused = httpx.post(base + "/v1/chat/completions", json=chat("ok"),
                             headers={"authorization": f"Bearer {KEY}"})
        assert refused.status_code == 502
        assert refused.json()["error"]["code"] == "upstream_unavailable"
        assert metric(base, "guardgate_requests", api="openai.chat", status="5xx") == 1
        assert metric(base, "guardgate_upstream_failures", kind="unavailable") == 1
        assert_settled(base, gate, name)
        # The upstream comes up on the same port: no restart of the gateway.
        with ChaosUpstream(port=port):
            assert_recovered(base, gate, name)
    first = request_lines(logs)[0]
    assert first["status"] == 502 and "upstream" in first["error"]


def test_upstream_5xx_is_relayed_as_sent(storage: str, name: str,
                                         chaos: ChaosUpstream) -> None:
    with fault_gateway(chaos.url, storage, name) as (base, _, logs):
        answer = httpx.post(base + "/v1/chat/completions", json=chat("error"))
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "overloaded"  # the upstream's own body
        assert metric(base, "guardgate_requests", api="openai.chat", status="5xx") == 1
    assert request_lines(logs)[0]["status"] == 503


def test_upstream_hanging_past_the_read_timeout_is_a_504(storage: str, name: str,
                                                         chaos: ChaosUpstream) -> None:
    with fault_gateway(chaos.url, storage, name) as (base, _, logs):
        began = time.monotonic()
        answer = httpx.post(base + "/v1/chat/completions", json=chat("hang"), timeout=10)
        took = time.monotonic() - began
        assert answer.status_code == 504
        assert answer.json()["error"]["code"] == "upstream_timeout"
        assert 0.9 < took < 5  # read_timeout: 1s
        assert metric(base, "guardgate_upstream_failures", kind="timeout") == 1
        assert chaos.left_early.wait(2)  # the gateway closed the hung connection
    line = request_lines(logs)[0]
    assert line["status"] == 504 and "timeout" in line["error"].lower()


def test_upstream_reset_mid_stream_cuts_the_client_stream(storage: str, name: str,
                                                          chaos: ChaosUpstream) -> None:
    with fault_gateway(chaos.url, storage, name) as (base, _, logs):
        received = b""
        with pytest.raises(httpx.RemoteProtocolError), httpx.stream(
            "POST", base + "/v1/chat/completions", json=chat("reset", stream=True), timeout=10
        ) as response:
            assert response.status_code == 200
            for piece in response.iter_raw():
                received += piece
        # What came before the reset was relayed; the cut stream never looks whole.
        assert b"Cut " in received and b"[DONE]" not in received
        assert metric(base, "guardgate_upstream_failures", kind="cut") == 1
    line = request_lines(logs)[0]
    assert line["status"] == 200 and "mid-response" in line["error"]


def test_malformed_sse_is_relayed_byte_for_byte(storage: str, name: str,
                                                chaos: ChaosUpstream) -> None:
    with fault_gateway(chaos.url, storage, name) as (base, _, logs):
        answer = httpx.post(base + "/v1/chat/completions", json=chat("malformed", stream=True))
        assert answer.status_code == 200
        assert b"data: {not json\n\n" in answer.content
        assert b"data: \xff\xfe\x00\n\n" in answer.content
    line = request_lines(logs)[0]
    assert line["status"] == 200 and line["error"] is None


def test_truncated_json_ends_the_response_unclean(storage: str, name: str,
                                                  chaos: ChaosUpstream) -> None:
    with fault_gateway(chaos.url, storage, name) as (base, _, logs):
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.post(base + "/v1/chat/completions", json=chat("truncated"), timeout=10)
        assert metric(base, "guardgate_upstream_failures", kind="cut") == 1
    line = request_lines(logs)[0]
    assert line["status"] == 200 and "mid-response" in line["error"]


def test_the_books_show_a_request_while_it_runs(storage: str, name: str,
                                               chaos: ChaosUpstream) -> None:
    """What `assert_settled` reads does count: one open reservation and one
    slot while a stream runs, none once it has ended."""
    gate = GuardGate(policy=gateway_policy(chaos.url, storage, name))
    with serve_in_thread(gate) as base:
        with httpx.stream("POST", base + "/v1/chat/completions", json=chat("slow", stream=True),
                          timeout=10) as response:
            next(response.iter_lines())
            assert metric(base, "guardgate_reservations_open") == 1
            assert slots_held(gate, name) == 1
        assert_settled(base, gate, name)


# --- client faults -----------------------------------------------------------------

def test_client_leaving_mid_request_reaches_nothing(storage: str, name: str,
                                                    chaos: ChaosUpstream) -> None:
    with fault_gateway(chaos.url, storage, name) as (base, _, logs):
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                        b"content-type: application/json\r\ncontent-length: 5000\r\n\r\n"
                        b'{"model": "ok", "messages": [')
            time.sleep(0.2)
        deadline = time.monotonic() + 3
        while not request_lines(logs) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert metric(base, "guardgate_clients_gone", stage="request") == 1
    assert chaos.seen["ok"] == 1  # only the recovery request reached the upstream
    line = request_lines(logs)[0]
    assert line["status"] == 499 and line["error"] == "client disconnected"


def test_client_leaving_mid_stream_cancels_the_upstream(storage: str, name: str,
                                                        chaos: ChaosUpstream) -> None:
    with fault_gateway(chaos.url, storage, name) as (base, gate, logs):
        with httpx.stream("POST", base + "/v1/chat/completions", json=chat("slow", stream=True),
                          timeout=10) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    break
        # 200 chunks would take 10 s: the upstream sees the gateway leave.
        assert chaos.left_early.wait(3)
        assert_settled(base, gate, name)
        assert metric(base, "guardgate_clients_gone", stage="response") == 1
    line = request_lines(logs)[0]
    assert line["status"] == 200 and line["error"] == "client disconnected"


def test_a_slow_reader_holds_the_upstream_back(storage: str, name: str,
                                               chaos: ChaosUpstream) -> None:
    """Back-pressure: a client reading a 256 MiB stream slowly makes the
    upstream wait. Between them sit the kernel's socket buffers (on loopback
    a receive buffer may grow to 32 MiB) and the gateway's own small reads,
    never the stream: the process does not grow with it."""
    gate = GuardGate(policy=gateway_policy(chaos.url, storage, name))
    before = rss()
    with serve_in_thread(gate) as base:
        port = int(base.rsplit(":", 1)[1])
        body = json.dumps(chat("flood", stream=True)).encode()
        with socket.socket() as raw:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            raw.connect(("127.0.0.1", port))
            raw.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                        % (len(body), body))
            read = 0
            for _ in range(40):  # 2 s of a reader taking 64 KiB every 50 ms
                read += len(raw.recv(64 * 1024))
                time.sleep(0.05)
            sent, grew = chaos.sent, rss() - before
        time.sleep(0.2)
        assert_recovered(base, gate, name)
    # Without back-pressure the upstream would have sent its 256 MiB already.
    assert read > 0
    assert sent < 64 * 1024 * 1024, f"upstream sent {sent} bytes to a reader of {read}"
    assert grew < 32 * 1024 * 1024, f"the process grew by {grew} bytes"


# --- storage faults ----------------------------------------------------------------

@pytest.mark.parametrize("on_error", ["open", "closed"])
def test_redis_killed_and_restarted_mid_traffic(on_error: str, name: str,
                                                chaos: ChaosUpstream) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    gate = GuardGate(policy=gateway_policy(chaos.url, url, name, on_storage_error=on_error))
    statuses: list[int] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def traffic(base: str) -> None:
        with httpx.Client(base_url=base, timeout=10) as client:
            while not stop.is_set():
                try:
                    mode = ("ok", "stream")[len(statuses) % 2]
                    answer = client.post("/v1/chat/completions",
                                         json=chat(mode, stream=mode == "stream"),
                                         headers={"authorization": f"Bearer {KEY}"})
                    statuses.append(answer.status_code)
                except Exception as exc:  # noqa: BLE001 (any failure fails the test)
                    failures.append(exc)

    try:
        with serve_in_thread(gate) as base, capture_logs() as logs, \
                own_redis(port) as server:
            workers = [threading.Thread(target=traffic, args=(base,), daemon=True)
                       for _ in range(4)]
            for worker in workers:
                worker.start()
            time.sleep(0.5)
            server.send_signal(signal.SIGKILL)  # killed, not stopped: no goodbye
            server.wait(5)
            time.sleep(1.0)
            during = len(statuses)
            with own_redis(port):
                time.sleep(1.0)
                stop.set()
                for worker in workers:
                    worker.join(10)
                after_restart = statuses[during:]
                assert metric(base, "guardgate_storage_errors") > 0
                assert_recovered(base, gate, name)
                # Storage is back in use: the quotas count again.
                usage = redis.Redis.from_url(url).keys(f"*{name}-rpm*")
                assert usage
    finally:
        stop.set()  # whatever failed above, the traffic threads end
    assert not failures
    assert 500 not in statuses
    allowed = {200} if on_error == "open" else {200, 503}
    assert set(statuses) <= allowed, set(statuses)
    assert after_restart[-5:] == [200] * 5  # back to normal without a restart
    if on_error == "closed":
        assert 503 in statuses
    warnings = [line for line in logs if line["event"] == "storage error"]
    assert warnings and all(line["on_storage_error"] == on_error for line in warnings)


# --- the fault table ---------------------------------------------------------------

def test_no_fault_leaves_a_traceback_in_the_log(storage: str, name: str, chaos: ChaosUpstream,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """Every fault above, one after the other, on one gateway: each request
    gets one log line, none an exception trace (neither guardgate's nor the
    server's "Exception in ASGI application"), and the books balance."""
    gate = GuardGate(policy=gateway_policy(chaos.url, storage, name))
    modes = ["error", "hang", "reset", "malformed", "truncated", "ok", "stream"]
    server_log = logging.getLogger("uvicorn.error")  # it does not propagate to the root
    with serve_in_thread(gate) as base, capture_logs() as logs:
        server_log.addHandler(caplog.handler)  # after the server configured its logging
        try:
            for mode in modes:
                try:
                    httpx.post(base + "/v1/chat/completions", json=chat(mode, stream=True),
                               timeout=10)
                except httpx.HTTPError:
                    pass
            assert_settled(base, gate, name)
        finally:
            server_log.removeHandler(caplog.handler)
    lines = request_lines(logs)
    assert len(lines) == len(modes)
    assert not [line for line in logs if "exc_info" in line or "exception" in line]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_faults_spend_a_clearance_once_per_request(storage: str, name: str,
                                                   chaos: ChaosUpstream) -> None:
    """A challenged caller's clearance is metered once per request and once
    per answer's tokens, whatever the upstream does: a fault neither refunds
    a request nor counts one twice."""
    import hashlib

    from guardgate.client import ChallengeAuth

    if storage != "memory://":
        redis.Redis.from_url(storage).flushdb()
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    policy = gateway_policy(
        chaos.url, storage, name,
        tiers={"suspicious": {"score": 0.5, "challenge": {}}},
        overrides=[{"api_key_sha256": digest, "tier": "suspicious"}],
        challenge={"secret": "fault-suite-challenge-secret-0123", "difficulty": 8,
                   "clearance": {"budget": {"requests": 1000, "output_tokens": 100000}}},
    )
    gate = GuardGate(policy=policy)
    modes = ["ok", "error", "hang", "reset", "malformed", "truncated", "stream", "ok"]
    with serve_in_thread(gate) as base, capture_logs() as logs:
        with httpx.Client(base_url=base, auth=ChallengeAuth(), timeout=10,
                          headers={"authorization": f"Bearer {KEY}"}) as client:
            for mode in modes:
                try:
                    client.post("/v1/chat/completions", json=chat(mode, stream=mode in STREAMS))
                except httpx.HTTPError:
                    pass
        assert_settled(base, gate, name)
        meters = clearance_meters(gate)
    assert len(meters) == 1  # one solution bought one clearance, which paid for the rest
    requests, tokens = meters[0]
    assert requests == len(modes)
    # Tokens, counted once each: the usage the upstream reported for whole
    # answers ("ok" twice, "stream": 7 each); what was reserved (max_tokens,
    # 50) for answers that began but carried no usage ("truncated", "reset",
    # "malformed"); none for the rest, which never began.
    lines = request_lines(logs)
    assert [line["challenge"] for line in lines] == [None, "solved"] + ["cleared"] * 7
    assert tokens == 3 * 7 + 3 * 50


def clearance_meters(gate: GuardGate) -> list[tuple[int, int]]:
    """(requests, output tokens) of every clearance meter in the gateway's storage."""
    store = gate.store
    if store.url.startswith("memory:"):
        meters = store.clearances()._meters  # type: ignore[attr-defined]
        return [(int(m[1]), int(m[2])) for m in meters.values()]
    client = redis.Redis.from_url(store.url)
    found = []
    for key in client.scan_iter(match="{guardgate/clear:*}:k:*"):
        meter = client.hgetall(key)
        found.append((int(meter[b"r"]), int(meter[b"t"])))
    return found


def test_only_the_gateways_own_cuts_are_quiet(caplog: pytest.LogCaptureFixture) -> None:
    """The server's "returned without completing response" is dropped for a
    response guardgate cut on purpose, and kept for any other application."""
    GuardGate(policy={"upstream": "http://127.0.0.1:9"})  # installs the filter

    async def broken(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"half", "more_body": True})

    with serve_in_thread(broken) as base:
        logging.getLogger("uvicorn.error").addHandler(caplog.handler)
        try:
            with pytest.raises(httpx.RemoteProtocolError):
                httpx.get(base)
        finally:
            logging.getLogger("uvicorn.error").removeHandler(caplog.handler)
    assert any("without completing response" in r.getMessage() for r in caplog.records)


# --- soak --------------------------------------------------------------------------

def test_a_short_soak_accounts_for_every_request(redis_url: str) -> None:
    """bench/soak.py for a few seconds: mixed traffic through a real serve
    process; every request sent is counted and logged once, nothing is left
    open, and no descriptor is left behind."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    # Its own redis-server, unless the tests were given a Redis of their own.
    given = ["--redis", redis_url] if os.environ.get("GUARDGATE_TEST_REDIS") else []
    soak = subprocess.Popen(
        [sys.executable, str(root / "bench" / "soak.py"), "--duration", "6", "--clients", "4",
         *given, "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        out, err = soak.communicate(timeout=120)
    finally:
        if soak.poll() is None:  # SIGTERM: soak.py stops its gateway and upstream first
            soak.terminate()
            try:
                soak.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(soak.pid, signal.SIGKILL)
    report = json.loads(out.strip().splitlines()[-1])
    assert soak.returncode == 0, (report, err[-2000:])
    assert report["requests_sent"] == report["requests_counted"] == report["request_lines_logged"]
    assert report["requests_sent"] > 100
    assert report["reservations_open"] == 0 and report["slots_held"] == 0
    assert not report["client_errors"]
    classes = {status.split()[0] for status in report["statuses"]}
    assert classes == {"normal", "greedy", "challenged", "marked"}
    assert any(s.endswith(" 429") for s in report["statuses"])
    assert report["challenges_solved"] > 0 and report["marked_answers"] > 0
    # Connections closed at the end give their descriptors back.
    assert report["fds_end"] <= report["fds_after_warmup"] + 4


def test_a_wrapped_applications_own_errors_are_not_taken_for_upstream_cuts(
        caplog: pytest.LogCaptureFixture) -> None:
    """In middleware mode the "upstream" is the application: an OSError it
    raises is its own bug, reported by its server, not a quiet upstream cut."""
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            raise OSError("the application's own failure")

    gate = GuardGate(broken, policy={})
    with serve_in_thread(gate) as base:
        server_log = logging.getLogger("uvicorn.error")
        server_log.addHandler(caplog.handler)
        try:
            answer = httpx.post(base + "/v1/chat/completions", json=chat("ok"))
        finally:
            server_log.removeHandler(caplog.handler)
        failures = metric(base, "guardgate_upstream_failures")
    assert answer.status_code == 500
    assert any(r.exc_info for r in caplog.records)
    assert failures == 0
