"""The request path's steps, end to end in process: behaviour that lives
between the steps (which pool a rerouted tier uses, what a refusal logs,
what a request that never reached the upstream costs, what a clearance's
budget counts)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import orjson
from structlog.testing import capture_logs

from guardgate import GuardGate
from guardgate.challenge import puzzle
from guardgate.toy import create_toy_app
from tests.servers import free_port, serve_in_thread

KEY = "sk-high"
SHA = hashlib.sha256(KEY.encode()).hexdigest()
CHAT = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "Hi"}],
                     "max_tokens": 5})


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def _send(app: Any, headers: list[tuple[bytes, bytes]], body: bytes
                ) -> list[dict[str, Any]]:
    """One POST /v1/chat/completions through ``app`` in process; every message sent."""
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/chat/completions",
             "raw_path": b"/v1/chat/completions", "query_string": b"", "headers": headers,
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000)}
    await app(scope, receive, send)
    return sent


async def _post(app: Any, key: str, body: bytes = CHAT) -> list[dict[str, Any]]:
    return await _send(app, [(b"authorization", f"Bearer {key}".encode()),
                             (b"content-type", b"application/json")], body)


def _start(sent: list[dict[str, Any]]) -> dict[str, Any]:
    return next(m for m in sent if m["type"] == "http.response.start")


def _status(sent: list[dict[str, Any]]) -> int:
    return int(_start(sent)["status"])


def _body(sent: list[dict[str, Any]]) -> bytes:
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_tiers_rerouted_to_one_url_share_one_pool_and_all_pools_close() -> None:
    """guardgate/treatment.py:35-45 builds one HttpUpstream per *tier*; runtime.py:45
    keeps only the last one per URL in Runtime.reroutes, which is all that
    GuardGate.aclose() and apply() close or retire. The other tier's pool serves
    traffic and is never closed (before: one pool per URL, shared)."""

    async def scenario(toy: str, honeypot: str) -> None:
        policy = {
            "upstream": toy,
            "tiers": {"watch": {"score": 0.3, "degrade": [{"reroute": honeypot}]},
                      "high": {"score": 0.7, "degrade": [{"reroute": honeypot}, "drop_logprobs"]}},
            "overrides": [{"api_key_sha256": _sha("sk-watch"), "tier": "watch"},
                          {"api_key_sha256": _sha("sk-high"), "tier": "high"}],
        }
        gate = GuardGate(policy=policy)
        used = {name: d.treatment.upstream
                for name, d in gate.runtime.admission.decider._by_tier.items()}
        assert _status(await _post(gate, "sk-watch")) == 200
        assert _status(await _post(gate, "sk-high")) == 200
        await gate.aclose()
        still_open = [name for name, upstream in used.items()
                      if upstream._session is not None and not upstream._session.closed]
        assert still_open == [], f"reroute pools left open after aclose(): {still_open}"
        assert len({id(u) for u in used.values()}) == 1, "one URL, one pool"

    with serve_in_thread(create_toy_app()) as toy, \
            serve_in_thread(create_toy_app(seed=1)) as honeypot:
        asyncio.run(scenario(toy, honeypot))


def test_a_request_refused_because_storage_is_down_is_not_logged_as_allowed() -> None:
    """gateway.py:126 puts the shared `admitted` ticket on the exchange before
    assess (step 3). When assess fails closed (StorageUnavailable, 503) the
    ticket stays the shared normal one, and Exchange.action / summary log the
    503 as tier=normal action=allow (before: tier and action null)."""

    async def upstream(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    policy = {"storage": f"redis://127.0.0.1:{free_port()}/0", "on_storage_error": "closed",
              "tiers": {"high": {"score": 0.9, "deny": True}}}
    gate = GuardGate(upstream, policy=policy)
    with capture_logs() as logs:
        sent = asyncio.run(_post(gate, "sk-any"))
    assert _status(sent) == 503
    [line] = [e for e in logs if e.get("event") == "request"]
    assert line["action"] != "allow", line
    assert line["tier"] is None, line


def test_a_clearance_output_token_budget_holds_without_the_risk_engine() -> None:
    """runtime.py:44: calls are parsed only for token quotas, the risk engine or
    treating tiers, not for challenges; with risk off and no token quota the
    call is None, answer_path builds no meter, ChallengeGate.settle charges
    nothing, and a clearance's output_tokens budget is never spent."""
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "Hi"}],
                         "max_tokens": 50})
    policy = {"risk": {"enabled": False},
              "tiers": {"s": {"score": 0.5, "challenge": {
                  "budget": {"requests": 100, "output_tokens": 60}}}},
              "overrides": [{"api_key_sha256": SHA, "tier": "s"}],
              "challenge": {"secret": "s" * 32, "difficulty": 4}}

    async def scenario() -> list[int]:
        gate = GuardGate(create_toy_app(), policy=policy)
        auth = [(b"authorization", f"Bearer {KEY}".encode())]
        first = await _send(gate, auth, body)
        token = orjson.loads(_body(first))["error"]["challenge"]["token"]
        solved = await _send(gate, auth + [(b"guardgate-solution",
                                            puzzle.solve(token, 4).encode())], body)
        clearance = dict(_start(solved)["headers"])[b"guardgate-clearance"]
        statuses = [_start(solved)["status"]]
        for _ in range(4):
            later = await _send(gate, auth + [(b"guardgate-clearance", clearance)], body)
            statuses.append(_start(later)["status"])
        return statuses

    # 50 output tokens an answer against a budget of 60: the third must be challenged.
    assert asyncio.run(scenario())[2] == 401


def test_a_request_that_never_reached_the_upstream_is_refunded() -> None:
    """admit.py _settle: "A request that never reached the upstream is
    refunded". The gateway's own 502 reply sets ex.started before settle, so
    answered=True and the reservation is settled (charged), never released."""
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "Hi"}],
                         "max_tokens": 5})
    policy = {"upstream": f"http://127.0.0.1:{free_port()}",
              "quotas": [{"name": "r", "per": "principal", "limit": "2/minute"}]}

    async def scenario() -> list[int]:
        gate = GuardGate(policy=policy)
        try:
            return [_start(await _send(gate, [(b"authorization", b"Bearer k")], body))["status"]
                    for _ in range(3)]
        finally:
            await gate.aclose()

    assert asyncio.run(scenario()) == [502, 502, 502]


def test_an_upstream_cut_before_a_treated_answer_started_is_a_502_in_the_apis_shape() -> None:
    """A treated JSON answer's response start waits for its first treated
    bytes; an upstream that fails before them leaves the client nothing yet,
    so it gets the API's own error, not a server's bare 500."""
    port = free_port()

    async def scenario() -> list[dict[str, Any]]:
        async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 5000\r\n\r\n{\"id\": \"x\", \"choices\": [")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(cut, "127.0.0.1", port)
        policy = {"upstream": f"http://127.0.0.1:{port}",
                  "tiers": {"high": {"score": 0.7, "degrade": ["drop_logprobs"]}},
                  "overrides": [{"api_key_sha256": SHA, "tier": "high"}]}
        gate = GuardGate(policy=policy)
        try:
            return await _post(gate, KEY)
        finally:
            await gate.aclose()
            server.close()

    sent = asyncio.run(scenario())
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert [m["status"] for m in starts] == [502]
    assert orjson.loads(_body(sent))["error"]["code"] == "upstream_unavailable"
