"""Who is calling: forwarding headers are believed only from trusted proxies."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from guardgate import GuardGate, load_policy
from guardgate.identity import Identifier
from guardgate.toy import create_toy_app
from tests.servers import serve_in_thread


def identify(headers: dict[str, str], peer: str = "203.0.113.9", **identity: Any) -> Any:
    policy = load_policy({"identity": identity} if identity else {})
    raw = {k.lower().encode(): v.encode() for k, v in headers.items()}
    return Identifier(policy.identity).identify({"client": (peer, 5000)}, raw)


def test_spoofed_forwarded_for_from_untrusted_peer_is_ignored() -> None:
    who = identify({"x-forwarded-for": "198.51.100.1"}, trusted_proxies=["10.0.0.0/8"])
    assert who.client_ip == "203.0.113.9"
    assert who.principal == "ip:203.0.113.9"
    assert who.ip_prefix == "203.0.113.0/24"


def test_forwarded_for_from_trusted_proxy_is_believed() -> None:
    who = identify({"x-forwarded-for": "198.51.100.1, 10.0.0.7"}, peer="10.0.0.2",
                   trusted_proxies=["10.0.0.0/8"])
    # Right to left, skipping our own proxies: the first outsider is the client.
    assert who.client_ip == "198.51.100.1"
    assert who.principal == "ip:198.51.100.1"


def test_client_cannot_prepend_its_way_past_a_trusted_proxy() -> None:
    who = identify({"x-forwarded-for": "1.1.1.1, 198.51.100.1"}, peer="10.0.0.2",
                   trusted_proxies=["10.0.0.0/8"])
    assert who.client_ip == "198.51.100.1"


def test_garbage_in_forwarded_for_stops_the_walk() -> None:
    who = identify({"x-forwarded-for": "not-an-ip, 10.0.0.5"}, peer="10.0.0.2",
                   trusted_proxies=["10.0.0.0/8"])
    assert who.client_ip == "10.0.0.5"


def test_account_and_org_headers_only_from_trusted_proxies() -> None:
    headers = {"x-account-id": "alice", "x-org-id": "acme", "x-account-created": "1700000000"}
    config = {"principal": [{"header": "x-account-id"}, "ip"], "trusted_proxies": ["10.0.0.0/8"]}
    outsider = identify(headers, **config)
    insider = identify(headers, peer="10.1.2.3", **config)
    assert outsider.principal == "ip:203.0.113.9" and outsider.org is None
    assert outsider.created is None
    assert insider.principal == "acct:alice" and insider.org == "acme"
    assert insider.created == 1700000000.0


def test_api_keys_are_hashed_never_kept() -> None:
    who = identify({"authorization": "Bearer sk-secret-123"})
    digest = hashlib.sha256(b"sk-secret-123").hexdigest()
    assert who.principal == "key:" + digest[:16]
    assert who.key_sha256 == digest
    assert "sk-secret-123" not in repr(who)
    via_header = identify({"x-api-key": "sk-secret-123"})
    assert via_header.principal == who.principal


def test_ipv6_prefix() -> None:
    who = identify({}, peer="2001:db8:1:2:3::9")
    assert who.ip_prefix == "2001:db8:1::/56"


@pytest.mark.parametrize("trusted", [True, False])
def test_gateway_believes_forwarding_only_from_trusted_peers(trusted: bool) -> None:
    proxies = ["127.0.0.1/32"] if trusted else ["10.0.0.0/8"]
    with serve_in_thread(create_toy_app()) as toy:
        gate = GuardGate(policy={"upstream": toy, "identity": {"trusted_proxies": proxies}})
        with serve_in_thread(gate) as base, capture_logs() as logs:
            httpx.get(base + "/v1/models", headers={"x-forwarded-for": "198.51.100.77"})
    line = next(e for e in logs if e["event"] == "request")
    expected = "198.51.100.77" if trusted else "127.0.0.1"
    assert line["client_ip"] == expected
    assert line["principal"] == "ip:" + expected


def test_identity_headers_from_untrusted_peers_are_not_forwarded() -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def echo(request: Request) -> JSONResponse:
        return JSONResponse(dict(request.headers))

    upstream_app = Starlette(routes=[Route("/echo", echo)])
    spoof = {"x-org-id": "acme", "x-account-created": "0", "x-account-id": "admin"}
    identity = {"principal": [{"header": "x-account-id"}, "ip"]}
    with serve_in_thread(upstream_app) as upstream:
        outsider = GuardGate(policy={"upstream": upstream, "identity": identity})
        insider = GuardGate(policy={"upstream": upstream,
                                    "identity": {**identity, "trusted_proxies": ["127.0.0.1"]}})
        with serve_in_thread(outsider) as a, serve_in_thread(insider) as b:
            seen_from_outsider = httpx.get(a + "/echo", headers=spoof).json()
            seen_from_insider = httpx.get(b + "/echo", headers=spoof).json()
    assert not set(spoof) & set(seen_from_outsider)
    assert {k: seen_from_insider[k] for k in spoof} == spoof


def test_middleware_mode_closes_its_store_at_shutdown() -> None:
    closed = []
    app = create_toy_app()
    gate = GuardGate(app)

    async def fake_close() -> None:
        closed.append(True)

    gate.aclose = fake_close  # type: ignore[method-assign]
    with serve_in_thread(gate, lifespan="on") as base:
        assert httpx.get(base + "/v1/models").status_code == 200
    assert closed == [True]
