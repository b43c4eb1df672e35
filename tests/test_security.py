"""Security checks that no client can pass a control it has not earned, and
that no secret leaves the gateway. Each test fails when its protection is
taken away (the README's security table names the protection each guards).

Checks already written next to their feature are listed there too: forged,
tampered, replayed and lazy challenge solutions (tests/test_challenge.py),
replays across replicas, spoofed forwarding headers (tests/test_identity.py)
and operator endpoints without or with a wrong token (tests/test_operator.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import signal
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from guardgate import GuardGate
from guardgate.challenge import puzzle
from guardgate.challenge.tokens import Signer
from guardgate.client import ChallengeAuth
from tests.servers import free_port, own_redis, running, serve_in_thread

SECRET = "security-suite-challenge-secret-42"
ADMIN = "security-suite-admin-token-7f3a9c"
CHAT = {"model": "toy-1", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}
KEY_A, KEY_B = "sk-live-suspicious-aaaa1111", "sk-live-suspicious-bbbb2222"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def challenging(toy: str) -> dict[str, Any]:
    return {
        "upstream": toy,
        "identity": {"trusted_proxies": ["127.0.0.1/32"]},
        "tiers": {"suspicious": {"score": 0.5, "challenge": {}}},
        "overrides": [{"api_key_sha256": digest(KEY_A), "tier": "suspicious"},
                      {"api_key_sha256": digest(KEY_B), "tier": "suspicious"}],
        "challenge": {"secret": SECRET, "difficulty": 8},
        "admin": {"token": ADMIN},
    }


def caller(key: str = KEY_A, ip: str = "203.0.113.7", agent: str = "client/1") -> dict[str, str]:
    return {"authorization": f"Bearer {key}", "x-forwarded-for": ip, "user-agent": agent}


def clearance_for(base: str, headers: dict[str, str]) -> str:
    first = httpx.post(base + "/v1/chat/completions", json=CHAT, headers=headers)
    assert first.status_code == 401
    token = first.json()["error"]["challenge"]["token"]
    solved = httpx.post(base + "/v1/chat/completions", json=CHAT,
                        headers={**headers, "guardgate-solution": puzzle.solve(token, 8)})
    assert solved.status_code == 200
    return solved.headers["guardgate-clearance"]


def reasons(logs: list[dict[str, Any]]) -> list[str | None]:
    return [line["error"] for line in logs if line["event"] == "request"]


# --- clearances ------------------------------------------------------------------

def test_a_tampered_or_forged_clearance_is_refused(toy: str) -> None:
    from structlog.testing import capture_logs

    with serve_in_thread(GuardGate(policy=challenging(toy))) as base, capture_logs() as logs:
        good = clearance_for(base, caller())
        kind, payload, mac = good.split(".")
        raw = bytearray(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        raw[-1] ^= 1  # one bit of the payload (its budget) changed, signature kept
        flipped = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
        # The same fields, signed with a secret that is not the gateway's.
        fields = Signer("k1", SECRET).open(good, "ggk1")
        forged = Signer("k1", "a-secret-the-gateway-never-had").sign("ggk1", fields)

        def with_clearance(token: str) -> int:
            return httpx.post(base + "/v1/chat/completions", json=CHAT,
                              headers={**caller(), "guardgate-clearance": token}).status_code

        codes = [with_clearance(t) for t in (f"{kind}.{flipped}.{mac}", forged, good)]
    assert codes == [401, 401, 200]
    assert reasons(logs)[-3:-1] == ["challenge failed: clearance bad_signature"] * 2


def test_a_clearance_does_not_travel_to_another_caller(toy: str) -> None:
    """Bound to the principal, the /24 (or /64) prefix and the user agent: a
    clearance taken to another key, network or client is refused; another
    address in the same prefix keeps it (NAT, dual stack)."""
    from structlog.testing import capture_logs

    with serve_in_thread(GuardGate(policy=challenging(toy))) as base, capture_logs() as logs:
        token = clearance_for(base, caller())

        def used_by(headers: dict[str, str]) -> int:
            return httpx.post(base + "/v1/chat/completions", json=CHAT,
                              headers={**headers, "guardgate-clearance": token}).status_code

        codes = [used_by(caller(key=KEY_B)), used_by(caller(ip="198.51.100.7")),
                 used_by(caller(agent="other/2")), used_by(caller(ip="203.0.113.200"))]
    assert codes == [401, 401, 401, 200]
    assert reasons(logs)[-4:-1] == ["challenge failed: clearance wrong_binding"] * 3


# --- reflected values ------------------------------------------------------------

def test_reflected_values_cannot_inject_headers_or_markup(toy: str) -> None:
    policy = {**challenging(toy),
              "identity": {"trusted_proxies": ["127.0.0.1/32"],
                           "principal": [{"header": "x-account-id"}, "bearer", "ip"]}}
    with serve_in_thread(GuardGate(policy=policy)) as base:
        port = int(base.rsplit(":", 1)[1])
        # A request id is echoed only when it is plain; anything else is replaced.
        for given in (b"abc%0d%0aset-cookie:%20x=1", b"a\"b<c>", b"x" * 200, b"id\xe9"):
            with socket.create_connection(("127.0.0.1", port)) as raw:
                raw.sendall(b"GET /v1/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
                            b"x-request-id: " + given + b"\r\n\r\n")
                answer = b""
                while chunk := raw.recv(65536):
                    answer += chunk
            head = answer.split(b"\r\n\r\n", 1)[0].lower()
            assert b"set-cookie" not in head
            echoed = [line for line in head.split(b"\r\n") if line.startswith(b"x-request-id:")]
            assert len(echoed) == 1 and echoed[0] != b"x-request-id: " + given.lower()
        # A caller names itself with markup; the operator's dashboard shows it inert.
        name = "<script>alert(1)</script>"
        httpx.post(base + "/v1/chat/completions", json=CHAT,
                   headers={"x-account-id": name, "x-forwarded-for": "203.0.113.9"})
        page = httpx.get(base + "/_guardgate/",
                         cookies={"guardgate-admin": _session(ADMIN)}).text
    assert "riskiest" in page
    assert html.escape(name) in page and name not in page  # shown, escaped


def _session(token: str) -> str:
    return hmac.new(token.encode(), b"guardgate dashboard session", "sha256").hexdigest()


# --- comparisons ------------------------------------------------------------------

def test_secrets_are_compared_in_constant_time(toy: str, monkeypatch: pytest.MonkeyPatch
                                               ) -> None:
    """Every comparison of a presented secret (operator token, dashboard
    login and session, token signatures) goes through hmac.compare_digest."""
    compared: list[tuple[bytes | str, bytes | str]] = []
    original = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return original(a, b)

    # The modules call it as hmac.compare_digest: patched once, seen by all.
    monkeypatch.setattr(hmac, "compare_digest", spy)
    with serve_in_thread(GuardGate(policy=challenging(toy))) as base:
        def wrong(value: bytes) -> bool:
            return any(value in pair for pair in compared)

        httpx.get(base + "/_guardgate/accounts", headers={"authorization": "Bearer nope-1"})
        assert wrong(b"nope-1")
        httpx.post(base + "/_guardgate/login", content=b"token=nope-2",
                   headers={"content-type": "application/x-www-form-urlencoded"})
        assert wrong(b"nope-2")
        httpx.get(base + "/_guardgate/", cookies={"guardgate-admin": "nope-3"})
        assert wrong(b"nope-3")
        token = httpx.post(base + "/v1/chat/completions", json=CHAT,
                           headers=caller()).json()["error"]["challenge"]["token"]
        kind, payload, _ = token.split(".")
        httpx.post(base + "/v1/chat/completions", json=CHAT,
                   headers={**caller(), "guardgate-solution": f"{kind}.{payload}.AAAA.1"})
        assert wrong(b"\x00" * 3)  # the signature "AAAA", compared in constant time


# --- secrets ----------------------------------------------------------------------

def test_no_secret_or_raw_key_leaves_in_logs_metrics_or_answers(tmp_path: Path,
                                                                toy: str) -> None:
    """A real `guardgate serve` process, its Redis behind a password, every
    kind of answer (allowed, challenged, failed solutions, quota refusals,
    bad bodies, operator API, dashboard, metrics, readiness) and a Redis
    that dies: its stdout and stderr, and everything it sent, are scanned
    for every secret the policy and the clients hold."""
    password = "redis-pass-c0ffee-1234"
    watermark = "watermark-key-deadbeef-5678"
    raw_keys = [KEY_A, KEY_B, "sk-live-normal-cccc3333", "sk-ant-raw-dddd4444"]
    redis_port, port = free_port(), free_port()
    policy = {**challenging(toy),
              "storage": f"redis://:{password}@127.0.0.1:{redis_port}/0",
              "quotas": [{"name": "rpm", "limit": "4/minute"}],
              "tiers": {"suspicious": {"score": 0.5, "challenge": {}},
                        "marked": {"score": 0.9, "mark": True}},
              "overrides": [*challenging(toy)["overrides"],
                            {"api_key_sha256": digest(raw_keys[2]), "tier": "marked"}],
              "watermark": {"key": watermark}}
    file = tmp_path / "policy.yaml"
    file.write_text(yaml.safe_dump(policy))
    seen: list[str] = []

    def keep(response: httpx.Response) -> httpx.Response:
        seen.append(json.dumps(dict(response.headers)) + response.text)
        return response

    with own_redis(redis_port) as server:
        import redis as redis_sync

        redis_sync.Redis(port=redis_port).config_set("requirepass", password)
        with running("serve", "--policy", str(file), port=port) as proc:
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base) as client:
                for key in raw_keys[2:]:
                    for _ in range(6):  # past the quota: 429s
                        keep(client.post("/v1/chat/completions", json=CHAT,
                                         headers={"authorization": f"Bearer {key}",
                                                  "x-api-key": key}))
                keep(client.post("/v1/messages", headers={"x-api-key": raw_keys[3]},
                                 json={"model": "toy-1", "max_tokens": 5,
                                       "messages": [{"role": "user", "content": "Hi"}]}))
                with httpx.Client(base_url=base, auth=ChallengeAuth()) as solver:
                    keep(solver.post("/v1/chat/completions", json=CHAT, headers=caller()))
                keep(client.post("/v1/chat/completions", json=CHAT,
                                 headers={**caller(KEY_B), "guardgate-solution": "ggc1.x.y.1",
                                          "guardgate-clearance": "ggk1.a.b"}))
                keep(client.post("/v1/chat/completions", content=b"{not json",
                                 headers={"authorization": f"Bearer {KEY_B}"}))
                keep(client.get("/_guardgate/accounts",
                                headers={"authorization": f"Bearer {ADMIN}x"}))
                keep(client.get("/_guardgate/accounts",
                                headers={"authorization": f"Bearer {ADMIN}"}))
                principal = "key:" + digest(KEY_A)[:16]
                keep(client.get(f"/_guardgate/accounts/{principal}",
                                headers={"authorization": f"Bearer {ADMIN}"}))
                keep(client.post("/_guardgate/login", content=f"token={ADMIN}".encode(),
                                 headers={"content-type": "application/x-www-form-urlencoded"}))
                keep(client.get("/_guardgate/",
                                headers={"cookie": f"guardgate-admin={_session(ADMIN)}"}))
                keep(client.get("/_guardgate/readyz"))
                server.send_signal(signal.SIGKILL)  # storage errors from here on
                server.wait(5)
                for key in raw_keys:
                    keep(client.post("/v1/chat/completions", json=CHAT,
                                     headers={"authorization": f"Bearer {key}"}))
                keep(client.get("/_guardgate/readyz"))
                keep(client.get("/_guardgate/metrics"))
                time.sleep(0.3)  # the log lines are written in batches
    out, err = proc.communicate(timeout=10)
    everything = "\n".join([out, err, *seen])
    assert '"status": 200' in out or '"status":200' in out  # the log was captured
    assert "storage error" in everything  # and the storage did fail
    for secret in [password, watermark, ADMIN, SECRET, *raw_keys]:
        assert secret not in everything, secret
    assert "Traceback" not in everything


def test_a_storage_url_is_shown_without_its_password() -> None:
    from guardgate.store import redacted

    assert redacted("redis://:s3cret@10.0.0.1:6379/0") == "redis://:***@10.0.0.1:6379/0"
    assert redacted("rediss://app:s3cret@redis/0") == "rediss://app:***@redis/0"
    assert redacted("redis://redis/0?password=s3cret&db=2") == "redis://redis/0?password=***&db=2"
    assert redacted("memory://") == "memory://"
    assert redacted("redis://redis:6379/0") == "redis://redis:6379/0"
