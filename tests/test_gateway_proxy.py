"""The gateway as nobody notices it: byte-identical relay, no buffering, clean errors.

Every test runs real servers over sockets: the upstream, the gateway, and an
httpx client, so streaming behaves as it does in production.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from guardgate import GuardGate
from guardgate.toy import create_toy_app
from tests.servers import principal_of, serve_in_thread

# Fields a server sets for itself; everything else must match.
SERVER_OWN = {"date", "server", "x-request-id"}

CHAT = {
    "model": "toy-1",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What does a reverse proxy do?"},
    ],
    "max_tokens": 40,
}

REQUESTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/v1/chat/completions", CHAT),
    ("POST", "/v1/chat/completions", {**CHAT, "stream": True}),
    ("POST", "/v1/chat/completions", {**CHAT, "stream": True, "logprobs": True, "top_logprobs": 2,
                                      "stream_options": {"include_usage": True}}),
    ("POST", "/v1/completions", {"model": "toy-1", "prompt": "Once upon", "max_tokens": 12}),
    ("POST", "/v1/completions", {"model": "toy-1", "prompt": "Once upon", "stream": True}),
    ("POST", "/v1/responses", {"model": "toy-1", "input": "Hi", "stream": True}),
    ("POST", "/v1/messages", {"model": "toy-1", "max_tokens": 30, "stream": True,
                              "messages": [{"role": "user", "content": "Hi"}]}),
    ("POST", "/v1/messages", {"model": "toy-1", "max_tokens": 30,
                              "messages": [{"role": "user", "content": "Hi"}]}),
    ("GET", "/v1/models", None),
    ("GET", "/not/a/model/route?x=1&y=%2F", None),
]


def _headers(response: httpx.Response) -> list[tuple[str, str]]:
    return sorted((k, v) for k, v in response.headers.multi_items() if k not in SERVER_OWN)


def _fetch(base: str, method: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
    content = json.dumps(body).encode() if body is not None else None
    headers = {"authorization": "Bearer sk-test", "content-type": "application/json"}
    with httpx.Client(base_url=base, timeout=10) as client:
        return client.request(method, path, content=content, headers=headers)


@pytest.fixture(scope="module")
def proxy(toy: str) -> Iterator[str]:
    with serve_in_thread(GuardGate(policy={"upstream": toy})) as base:
        yield base


@pytest.fixture(scope="module")
def middleware() -> Iterator[tuple[str, str]]:
    app = create_toy_app()
    with serve_in_thread(app) as direct, serve_in_thread(GuardGate(app)) as guarded:
        yield direct, guarded


@pytest.mark.parametrize(("method", "path", "body"), REQUESTS)
def test_proxy_relays_bytes_unchanged(toy: str, proxy: str, method: str, path: str,
                                      body: dict[str, Any] | None) -> None:
    direct = _fetch(toy, method, path, body)
    through = _fetch(proxy, method, path, body)
    assert through.status_code == direct.status_code
    assert through.content == direct.content
    assert _headers(through) == _headers(direct)
    assert through.headers["x-request-id"]


@pytest.mark.parametrize(("method", "path", "body"), REQUESTS)
def test_middleware_relays_bytes_unchanged(middleware: tuple[str, str], method: str, path: str,
                                           body: dict[str, Any] | None) -> None:
    direct_base, guarded_base = middleware
    direct = _fetch(direct_base, method, path, body)
    through = _fetch(guarded_base, method, path, body)
    assert through.status_code == direct.status_code
    assert through.content == direct.content
    assert _headers(through) == _headers(direct)


# --- an upstream built for timing, disconnects and header checks -------------

class Probe:
    """Shared between the test and the upstream server's thread."""

    def __init__(self) -> None:
        self.stream_closed = threading.Event()
        self.seen_headers: dict[str, str] = {}


def probe_app(probe: Probe) -> Starlette:
    async def tick(request: Request) -> Response:
        count = int(request.query_params.get("n", "5"))
        # After the first event, a long silence: only a gateway that listens
        # for the client's disconnect notices it before the next event.
        pause = float(request.query_params.get("pause", "0"))

        async def events() -> AsyncIterator[bytes]:
            try:
                for i in range(count):
                    await asyncio.sleep(pause if i == 1 else 0.1)
                    yield f"data: {json.dumps({'i': i, 'sent': time.time()})}\n\n".encode()
            finally:
                probe.stream_closed.set()

        return StreamingResponse(events(), media_type="text/event-stream")

    async def slow(request: Request) -> Response:
        await asyncio.sleep(2.0)
        return JSONResponse({"late": True})

    async def echo(request: Request) -> Response:
        probe.seen_headers = {k: v for k, v in request.headers.items()}
        body = await request.body()
        return JSONResponse({"headers": request.headers.items(), "size": len(body)})

    return Starlette(routes=[
        Route("/v1/chat/completions", tick, methods=["POST"]),
        Route("/stream-upload", tick, methods=["POST"]),
        Route("/slow", slow),
        Route("/v1/messages", slow, methods=["POST"]),
        Route("/echo", echo, methods=["GET", "POST"]),
    ])


@pytest.fixture()
def probe() -> Iterator[tuple[Probe, str]]:
    p = Probe()
    with serve_in_thread(probe_app(p)) as base:
        yield p, base


def _stream_arrivals(base: str, n: int) -> list[float]:
    lags = []
    with (
        httpx.Client(base_url=base, timeout=10) as client,
        client.stream("POST", f"/v1/chat/completions?n={n}",
                      json={"model": "m", "messages": [], "stream": True}) as response,
    ):
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                lags.append(time.time() - json.loads(line[6:])["sent"])
    return lags


@pytest.mark.parametrize("mode", ["proxy", "middleware"])
def test_sse_events_are_not_buffered(mode: str) -> None:
    p = Probe()
    app = probe_app(p)
    with serve_in_thread(app) as upstream:
        gate = GuardGate(policy={"upstream": upstream}) if mode == "proxy" else GuardGate(app)
        with serve_in_thread(gate) as base:
            lags = _stream_arrivals(base, 8)
    assert len(lags) == 8
    # Events are 100 ms apart: a gateway that buffered even two of them
    # would show a lag of 100 ms or more.
    assert max(lags) < 0.05, lags


def test_client_disconnect_cancels_upstream(probe: tuple[Probe, str]) -> None:
    p, upstream = probe
    with (
        serve_in_thread(GuardGate(policy={"upstream": upstream})) as base,
        httpx.Client(base_url=base, timeout=10) as client,
        client.stream("POST", "/v1/chat/completions?n=100&pause=30",
                      json={"model": "m", "messages": [], "stream": True}) as response,
    ):
        for line in response.iter_lines():
            if line.startswith("data: "):
                break
        # 100 events would take 10 s; the upstream must see the client leave.
        assert p.stream_closed.wait(2.0)


# --- errors ------------------------------------------------------------------

def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert {"message", "type", "code"} <= set(body["error"])
    assert "Traceback" not in response.text
    return body["error"]  # type: ignore[no-any-return]


def _dead_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_dead_upstream_is_502() -> None:
    gate = GuardGate(policy={"upstream": f"http://127.0.0.1:{_dead_port()}"})
    with serve_in_thread(gate) as base:
        response = _fetch(base, "POST", "/v1/chat/completions", CHAT)
        ready = httpx.get(base + "/_guardgate/readyz")
    assert response.status_code == 502
    assert _error(response)["code"] == "upstream_unavailable"
    assert ready.status_code == 503


def test_slow_upstream_is_504(probe: tuple[Probe, str]) -> None:
    _, upstream = probe
    policy = {"upstream": {"url": upstream, "read_timeout": "300ms"}}
    with serve_in_thread(GuardGate(policy=policy)) as base:
        started = time.monotonic()
        response = _fetch(base, "GET", "/slow", None)
        elapsed = time.monotonic() - started
        anthropic = _fetch(base, "POST", "/v1/messages", {"model": "m", "messages": []})
    assert response.status_code == 504
    assert _error(response)["code"] == "upstream_timeout"
    assert elapsed < 1.5
    # On an Anthropic route the error takes Anthropic's shape.
    assert anthropic.status_code == 504
    assert anthropic.json()["type"] == "error"
    assert anthropic.json()["error"]["type"]


@pytest.mark.parametrize("chunked", [False, True])
def test_oversized_body_is_413(probe: tuple[Probe, str], chunked: bool) -> None:
    _, upstream = probe
    gate = GuardGate(policy={"upstream": upstream, "max_body": "1KiB"})
    payload = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * 4000}]})

    def parts() -> Iterator[bytes]:
        data = payload.encode()
        for i in range(0, len(data), 500):
            yield data[i : i + 500]

    with serve_in_thread(gate) as base, httpx.Client(base_url=base, timeout=10) as client:
        content: Any = parts() if chunked else payload.encode()
        response = client.post("/v1/chat/completions", content=content)
        passthrough = client.post("/echo", content=parts() if chunked else payload.encode())
        small = client.post("/echo", content=b"x" * 1000)
    assert response.status_code == 413
    assert _error(response)["code"] == "request_too_large"
    assert passthrough.status_code == 413
    assert small.status_code == 200 and small.json()["size"] == 1000


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b"\xff\xfe{}", b"[" * 5000 + b"]" * 5000, b""],
)
def test_malformed_json_on_model_route_is_400(body: bytes) -> None:
    # The upstream is dead: a 400 can only come from the gateway itself.
    with serve_in_thread(GuardGate(policy={"upstream": f"http://127.0.0.1:{_dead_port()}"})) as base:
        response = httpx.post(base + "/v1/chat/completions", content=body,
                              headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert _error(response)["type"] == "invalid_request_error"


# --- headers -------------------------------------------------------------------

def test_hop_by_hop_dropped_and_forwarding_appended(probe: tuple[Probe, str]) -> None:
    p, upstream = probe
    with serve_in_thread(GuardGate(policy={"upstream": upstream})) as base:
        response = httpx.get(base + "/echo", headers={
            "connection": "keep-alive, x-hop",
            "x-hop": "secret",
            "te": "trailers",
            "x-forwarded-for": "198.51.100.9",
            "x-custom": "kept",
            "x-request-id": "abc-123",
        })
    assert response.status_code == 200
    seen = p.seen_headers
    assert "x-hop" not in seen and "te" not in seen
    assert seen["x-custom"] == "kept"
    assert seen["x-forwarded-for"] == "198.51.100.9, 127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-request-id"] == "abc-123"
    assert response.headers["x-request-id"] == "abc-123"


def test_request_id_generated_when_missing_or_unsafe(toy: str, proxy: str) -> None:
    plain = httpx.get(proxy + "/v1/models")
    unsafe = httpx.get(proxy + "/v1/models", headers={"x-request-id": "a b<script>"})
    for response in (plain, unsafe):
        rid = response.headers["x-request-id"]
        assert len(rid) == 24 and all(c in "0123456789abcdef" for c in rid)
    assert plain.headers["x-request-id"] != unsafe.headers["x-request-id"]


def test_health_and_ready(proxy: str) -> None:
    assert httpx.get(proxy + "/_guardgate/healthz").json() == {"status": "ok"}
    ready = httpx.get(proxy + "/_guardgate/readyz")
    assert ready.status_code == 200
    assert ready.json()["upstream"] == "ok"
    assert httpx.get(proxy + "/_guardgate/nope").status_code == 404


def test_one_log_line_per_request(toy: str) -> None:
    from structlog.testing import capture_logs

    with serve_in_thread(GuardGate(policy={"upstream": toy})) as base, capture_logs() as logs:
        _fetch(base, "POST", "/v1/chat/completions", CHAT)
        httpx.post(base + "/v1/chat/completions", content=b"{oops")
    lines = [e for e in logs if e["event"] == "request"]
    assert len(lines) == 2
    ok, bad = lines
    assert ok["status"] == 200 and bad["status"] == 400
    assert ok["principal"] == principal_of("sk-test")
    assert bad["principal"] == "ip:127.0.0.1"
    assert ok["method"] == "POST" and ok["path"] == "/v1/chat/completions"
    assert ok["bytes_out"] > 0 and ok["bytes_in"] == len(json.dumps(CHAT))
    assert ok["upstream_ms"] is not None and ok["latency_ms"] >= ok["upstream_ms"]
    assert len(ok["request_id"]) == 24
    assert "sk-test" not in json.dumps(lines)


def test_ready_reports_unreachable_storage(toy: str) -> None:
    policy = {"upstream": toy, "storage": f"redis://127.0.0.1:{_dead_port()}/0"}
    with serve_in_thread(GuardGate(policy=policy)) as base:
        ready = httpx.get(base + "/_guardgate/readyz")
    assert ready.status_code == 503
    assert ready.json()["storage"] == "unreachable"
    assert ready.json()["upstream"] == "ok"


@pytest.mark.redis
def test_ready_with_real_redis(toy: str, redis_url: str) -> None:
    with serve_in_thread(GuardGate(policy={"upstream": toy, "storage": redis_url})) as base:
        ready = httpx.get(base + "/_guardgate/readyz")
    assert ready.status_code == 200
    assert ready.json()["storage"] == "ok"


def test_disconnect_after_a_streamed_upload_cancels_upstream(probe: tuple[Probe, str]) -> None:
    p, upstream = probe

    def upload() -> Iterator[bytes]:
        yield b'{"model": "m", "messages": [], '
        time.sleep(0.1)  # the body arrives in two messages: it streams through
        yield b'"stream": true}'

    with (
        serve_in_thread(GuardGate(policy={"upstream": upstream})) as base,
        httpx.Client(base_url=base, timeout=10) as client,
        # Not a model route here: the body streams through as it arrives.
        client.stream("POST", "/stream-upload?n=100&pause=30", content=upload()) as response,
    ):
        for line in response.iter_lines():
            if line.startswith("data: "):
                break  # leaving the stream closes the connection
        # The upstream is silent for 30 s: only a watcher notices the client left.
        assert p.stream_closed.wait(2.0)
