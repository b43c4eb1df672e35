"""Challenges through the gateway: ChallengeAuth on httpx clients, every way
a solution can fail, replicas on one Redis, clearance budgets and
revocation. Real servers over sockets. The SDKs with ChallengeAuth are in
tests/test_client_sdks.py."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import string
import struct
import time
from typing import Any

import httpx
import pytest
import redis
from structlog.testing import capture_logs

from guardgate import GuardGate
from guardgate.challenge import puzzle
from guardgate.challenge.tokens import Binding, Challenge, Signer, agent_hash, new_id
from guardgate.client import ChallengeAuth, ChallengeTooHard
from tests.servers import principal_of, serve_in_thread

SECRET = "test-challenge-secret-0123456789"
KEY = "sk-challenged"
CHAT = {"model": "toy-1", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}


def policy(toy: str, storage: str = "memory://", **challenge: Any) -> dict[str, Any]:
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    section = {"secret": SECRET, "difficulty": 8, **challenge}
    return {
        "upstream": toy,
        "storage": storage,
        # The test client is a trusted proxy, so a test can speak for other addresses.
        "identity": {"trusted_proxies": ["127.0.0.1/32"]},
        "tiers": {"suspicious": {"score": 0.5, "challenge": {}}},
        "overrides": [{"api_key_sha256": digest, "tier": "suspicious"}],
        "challenge": section,
    }


def auth(key: str = KEY, ip: str = "203.0.113.7") -> dict[str, str]:
    return {"authorization": f"Bearer {key}", "x-forwarded-for": ip}


def challenge_of(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    header = response.headers["www-authenticate"]
    assert header.startswith('GuardGate-PoW challenge="')
    token: str = response.json()["error"]["challenge"]["token"]
    assert f'challenge="{token}"' in header
    return token


@pytest.fixture(params=["memory", "redis"])
def storage(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    url: str = request.getfixturevalue("redis_url")
    redis.Redis.from_url(url).flushdb()
    return url


async def test_the_async_client_solves_too(toy: str) -> None:
    with serve_in_thread(GuardGate(policy=policy(toy))) as base:
        async with httpx.AsyncClient(auth=ChallengeAuth()) as client:
            answers = await asyncio.gather(*[
                client.post(base + "/v1/chat/completions", json=CHAT, headers=auth())
                for _ in range(3)
            ])
    assert [a.status_code for a in answers] == [200, 200, 200]


def test_a_client_refuses_work_above_its_limit(toy: str) -> None:
    with serve_in_thread(GuardGate(policy=policy(toy, difficulty=30))) as base, \
            httpx.Client(auth=ChallengeAuth(max_difficulty=20)) as client, \
            pytest.raises(ChallengeTooHard):
        client.post(base + "/v1/chat/completions", json=CHAT, headers=auth())


def _with_difficulty(token: str, difficulty: float) -> str:
    """The token with another difficulty written in, its signature kept."""
    kind, payload, mac = token.split(".")
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    fields, at = [], 0
    while at < len(raw):
        (size,) = struct.unpack_from(">I", raw, at)
        fields.append(raw[at + 4 : at + 4 + size])
        at += 4 + size
    fields[4] = repr(difficulty).encode()
    encoded = b"".join(struct.pack(">I", len(f)) + f for f in fields)
    return f"{kind}.{base64.urlsafe_b64encode(encoded).rstrip(b'=').decode()}.{mac}"


def _forged() -> str:
    """A well-formed challenge for the test caller, signed with another secret."""
    binding = Binding(principal_of(KEY), "203.0.113.0/24",
                      agent_hash(f"python-httpx/{httpx.__version__}"))
    challenge = Challenge("k1", new_id(), time.time(), time.time() + 60, 1, binding, 100, 1000)
    return Signer("k1", "not-the-secret-at-all-0123").challenge(challenge)


def _without_work(token: str, difficulty: float) -> str:
    for nonce in range(10_000):
        if not puzzle.has_work(f"{token}.{nonce}", difficulty):
            return f"{token}.{nonce}"
    raise AssertionError("every nonce had the work")


def test_every_failed_solution_gets_the_same_answer_and_its_own_reason(
    toy: str, storage: str
) -> None:
    gate = GuardGate(policy=policy(toy, storage, ttl="1s"))
    url_path = "/v1/chat/completions"
    with serve_in_thread(gate) as base, capture_logs() as logs:
        def ask(headers: dict[str, str]) -> httpx.Response:
            return httpx.post(base + url_path, json=CHAT, headers=headers)

        def solved(headers: dict[str, str], solution: str) -> httpx.Response:
            return ask({**headers, "guardgate-solution": solution})

        token = challenge_of(ask(auth()))
        solution = puzzle.solve(token, 8)
        first = solved(auth(), solution)
        replayed = solved(auth(), solution)

        other_key = {**auth(), "authorization": "Bearer sk-someone-else"}
        # The other key is not challenged by its tier: make it so by a second challenge.
        token = challenge_of(ask(auth()))
        from_other_prefix = solved(auth(ip="198.51.100.7"), puzzle.solve(token, 8))
        token = challenge_of(ask(auth()))
        same_prefix = solved(auth(ip="203.0.113.99"), puzzle.solve(token, 8))

        token = challenge_of(ask(auth()))
        tampered = solved(auth(), puzzle.solve(_with_difficulty(token, 1), 1))
        token = challenge_of(ask(auth()))
        lazy = solved(auth(), _without_work(token, 8))
        garbage = solved(auth(), puzzle.solve("ggc1.AAAA.BBBB", 4))
        forged = solved(auth(), puzzle.solve(_forged(), 1))
        token = challenge_of(ask(auth()))
        time.sleep(1.1)
        expired = solved(auth(), puzzle.solve(token, 8))
        untouched = httpx.post(base + url_path, json=CHAT, headers=other_key)
        metrics = httpx.get(base + "/_guardgate/metrics").text

    assert first.status_code == 200 and first.headers["guardgate-clearance"].startswith("ggk1.")
    assert same_prefix.status_code == 200  # a NATed or dual-stack client keeps its pass
    assert untouched.status_code == 200    # a caller in no challenging tier passes
    failed = [replayed, from_other_prefix, tampered, lazy, garbage, forged, expired]
    assert {r.status_code for r in failed} == {401}
    assert len({r.json()["error"]["message"] for r in failed}) == 1
    for response in failed:
        assert "challenge" in response.json()["error"]  # and a fresh one to solve
    for reason, count in (("replay", 1), ("wrong_binding", 1), ("bad_signature", 2),
                          ("insufficient_work", 1), ("expired", 1), ("malformed", 1)):
        assert f'guardgate_challenges_failed_total{{reason="{reason}"}} {count}.0' in metrics
    assert "guardgate_challenges_solved_total 2.0" in metrics
    assert "guardgate_challenge_solve_seconds_count 2.0" in metrics
    reasons = [e["error"] for e in logs if e["event"] == "request" and e["status"] == 401
               and "failed" in (e["error"] or "")]
    assert reasons == [
        "challenge failed: replay",
        "challenge failed: wrong_binding",
        "challenge failed: bad_signature",
        "challenge failed: insufficient_work",
        "challenge failed: malformed",
        "challenge failed: bad_signature",
        "challenge failed: expired",
    ]


def test_a_solution_for_another_principal_is_refused(toy: str, storage: str) -> None:
    both = policy(toy, storage)
    other = "sk-also-challenged"
    both["overrides"].append(
        {"api_key_sha256": hashlib.sha256(other.encode()).hexdigest(), "tier": "suspicious"})
    with serve_in_thread(GuardGate(policy=both)) as base, capture_logs() as logs:
        token = challenge_of(httpx.post(base + "/v1/chat/completions", json=CHAT, headers=auth()))
        stolen = httpx.post(base + "/v1/chat/completions", json=CHAT,
                            headers={**auth(other), "guardgate-solution": puzzle.solve(token, 8)})
    assert stolen.status_code == 401
    assert [e["error"] for e in logs if e["event"] == "request"][-1] == \
        "challenge failed: wrong_binding"


def test_a_clearance_is_spent_then_challenged_again(toy: str, storage: str) -> None:
    budgeted = policy(toy, storage, clearance={"budget": {"requests": 3, "output_tokens": 10**6}})
    with serve_in_thread(GuardGate(policy=budgeted)) as base, \
            httpx.Client(auth=ChallengeAuth()) as client:
        statuses = []
        clearances = []
        for _ in range(7):
            response = client.post(base + "/v1/chat/completions", json=CHAT, headers=auth())
            statuses.append(response.status_code)
            clearances.append(response.headers.get("guardgate-clearance"))
    assert statuses == [200] * 7
    # Three requests a clearance: a new one was issued on the 1st, 4th and 7th.
    assert [c is not None for c in clearances] == [True, False, False, True, False, False, True]


def test_output_tokens_spend_a_clearance_too(toy: str) -> None:
    budgeted = policy(toy, clearance={"budget": {"requests": 100, "output_tokens": 8}})
    with serve_in_thread(GuardGate(policy=budgeted)) as base, \
            httpx.Client(auth=ChallengeAuth()) as client:
        issued = 0
        for _ in range(4):
            response = client.post(base + "/v1/chat/completions", json=CHAT, headers=auth())
            assert response.status_code == 200
            issued += "guardgate-clearance" in response.headers
            time.sleep(0.05)  # the answer's tokens are charged after it ends
    assert issued >= 2  # each answer (5 tokens) leaves the next one at most 3


def test_challenges_are_issued_at_a_bounded_rate(toy: str) -> None:
    with serve_in_thread(GuardGate(policy=policy(toy, issue_limit="3/minute"))) as base:
        statuses = [httpx.post(base + "/v1/chat/completions", json=CHAT,
                               headers=auth()).status_code for _ in range(5)]
    assert statuses == [401, 401, 401, 429, 429]


def test_revoking_a_principal_ends_its_clearances(toy: str, storage: str) -> None:
    token = "operator-token-for-revoking"
    gate = GuardGate(policy={**policy(toy, storage), "admin": {"token": token}})
    principal = principal_of(KEY)
    revoke = f"/_guardgate/accounts/{principal}/revoke"
    with serve_in_thread(gate) as base:
        challenge_auth = ChallengeAuth()
        with httpx.Client(auth=challenge_auth) as client:
            client.post(base + "/v1/chat/completions", json=CHAT, headers=auth())
        held = {**auth(), "guardgate-clearance": challenge_auth.clearance or ""}
        before = httpx.post(base + "/v1/chat/completions", json=CHAT, headers=held)
        anonymous = httpx.post(base + revoke)
        revoked = httpx.post(base + revoke, headers={"authorization": f"Bearer {token}"})
        after = httpx.post(base + "/v1/chat/completions", json=CHAT, headers=held)
    assert before.status_code == 200
    assert anonymous.status_code == 401
    assert revoked.status_code == 200 and revoked.json()["epoch"] == 1
    assert after.status_code == 401


def test_replicas_redeem_a_challenge_once_and_share_a_budget(toy: str, redis_url: str) -> None:
    redis.Redis.from_url(redis_url).flushdb()
    shared = policy(toy, redis_url, clearance={"budget": {"requests": 3, "output_tokens": 10**6}})
    with serve_in_thread(GuardGate(policy=shared)) as one, \
            serve_in_thread(GuardGate(policy=shared)) as two:
        path = "/v1/chat/completions"
        token = challenge_of(httpx.post(one + path, json=CHAT, headers=auth()))
        solution = {**auth(), "guardgate-solution": puzzle.solve(token, 8)}
        redeemed = httpx.post(two + path, json=CHAT, headers=solution)
        again = [httpx.post(base + path, json=CHAT, headers=solution).status_code
                 for base in (one, two)]
        clearance = {**auth(), "guardgate-clearance": redeemed.headers["guardgate-clearance"]}
        spent = [httpx.post(base + path, json=CHAT, headers=clearance).status_code
                 for base in (one, two, one)]
    assert redeemed.status_code == 200
    assert again == [401, 401]
    # The budget (3 requests, the redeeming one included) holds across replicas.
    assert spent == [200, 200, 401]


def test_the_challenge_headers_never_reach_the_upstream(toy: str) -> None:
    seen: list[dict[str, str]] = []

    async def upstream(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen.append({k.decode(): v.decode() for k, v in scope["headers"]})
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"{}"})

    with serve_in_thread(GuardGate(upstream, policy=policy(toy))) as base, \
            httpx.Client(auth=ChallengeAuth()) as client:
        client.post(base + "/v1/chat/completions", json=CHAT, headers=auth())
        client.post(base + "/v1/chat/completions", json=CHAT, headers=auth())
    assert len(seen) == 2
    for headers in seen:
        assert "guardgate-solution" not in headers and "guardgate-clearance" not in headers


def test_guardgate_solve_prints_a_solution(toy: str) -> None:
    import subprocess
    import sys

    with serve_in_thread(GuardGate(policy=policy(toy))) as base:
        token = challenge_of(httpx.post(base + "/v1/chat/completions", json=CHAT, headers=auth()))
        solved = subprocess.run([sys.executable, "-m", "guardgate.cli", "solve", token],
                                capture_output=True, text=True, timeout=60, check=True)
        solution = solved.stdout.strip()
        answer = httpx.post(base + "/v1/chat/completions", json=CHAT,
                            headers={**auth(), "guardgate-solution": solution})
    assert solution.startswith(token + ".") and puzzle.has_work(solution, 8)
    assert answer.status_code == 200


def test_an_anthropic_route_is_challenged_in_anthropic_shape(toy: str) -> None:
    message = {"model": "toy-1", "max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}]}
    with serve_in_thread(GuardGate(policy=policy(toy))) as base:
        refused = httpx.post(base + "/v1/messages", json=message, headers=auth())
        with httpx.Client(auth=ChallengeAuth()) as client:
            answered = client.post(base + "/v1/messages", json=message, headers=auth())
    body = refused.json()
    assert refused.status_code == 401 and body["type"] == "error"
    assert body["error"]["type"] == "authentication_error"
    assert body["error"]["challenge"]["token"].startswith("ggc1.")
    assert answered.status_code == 200 and answered.json()["type"] == "message"


def test_a_solution_refused_by_a_quota_still_hands_back_its_clearance(toy: str) -> None:
    limited = {**policy(toy), "quotas": [{"name": "rpm", "limit": "1/minute"}]}
    with serve_in_thread(GuardGate(policy=limited)) as base:
        path = base + "/v1/chat/completions"
        with httpx.Client(auth=ChallengeAuth()) as client:
            assert client.post(path, json=CHAT, headers=auth()).status_code == 200
        token = challenge_of(httpx.post(path, json=CHAT, headers=auth()))
        refused = httpx.post(path, json=CHAT, headers={
            **auth(), "guardgate-solution": puzzle.solve(token, 8)})
    assert refused.status_code == 429
    assert refused.headers["guardgate-clearance"].startswith("ggk1.")


def test_the_browser_redemption_spends_nothing_and_the_cookie_pays(toy: str) -> None:
    one = policy(toy, clearance={"budget": {"requests": 1, "output_tokens": 10**6}})
    with serve_in_thread(GuardGate(policy=one)) as base:
        path = base + "/v1/chat/completions"
        token = challenge_of(httpx.post(path, json=CHAT, headers=auth()))
        redeemed = httpx.post(base + "/_guardgate/challenge", headers=auth(),
                              json={"solution": puzzle.solve(token, 8)})
        cookie = redeemed.headers["set-cookie"].split(";")[0]
        first = httpx.post(path, json=CHAT, headers={**auth(), "cookie": cookie})
        second = httpx.post(path, json=CHAT, headers={**auth(), "cookie": cookie})
        garbage = httpx.post(base + "/_guardgate/challenge", headers=auth(),
                             json={"solution": token + ".12"})
        not_json = httpx.post(base + "/_guardgate/challenge", headers=auth(), content=b"[1")
    assert redeemed.status_code == 200
    assert "HttpOnly" in redeemed.headers["set-cookie"]
    assert first.status_code == 200
    assert second.status_code == 401  # the one request the clearance bought is spent
    assert garbage.status_code == 401 and not_json.status_code == 400


def test_the_browser_redemption_with_storage_down_is_a_503(toy: str) -> None:
    dead = policy(toy, "redis://127.0.0.1:1/0")
    agent = f"python-httpx/{httpx.__version__}"
    binding = Binding(principal_of(KEY), "203.0.113.0/24",
                      agent_hash(agent))
    challenge = Challenge("k1", new_id(), time.time(), time.time() + 60, 4, binding, 10, 1000)
    token = Signer("k1", SECRET).challenge(challenge)
    with serve_in_thread(GuardGate(policy=dead)) as base:
        response = httpx.post(base + "/_guardgate/challenge", headers=auth(),
                              json={"solution": puzzle.solve(token, 4)})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "storage_unavailable"


async def test_a_meter_that_is_gone_is_spent_not_refilled() -> None:
    from guardgate.store.clearances import MemoryClearances

    clearances = MemoryClearances()
    assert await clearances.spend("p", "never-opened", 0, 10, 100, 60) == "spent"
    assert await clearances.spend("p", "opened", 0, 10, 100, 60, opening=True) == "ok"
    assert await clearances.spend("p", "opened", 0, 10, 100, 60) == "ok"


def test_tokens_decode_only_in_their_one_encoding() -> None:
    from guardgate.challenge.tokens import TokenError

    signer = Signer("k1", SECRET)
    binding = Binding("key:x", "10.0.0.0/24", agent_hash("ua"))
    token = signer.challenge(Challenge("k1", new_id(), 1.0, 2.0, 8, binding, 1, 1))
    assert signer.open_challenge(token).binding == binding
    kind, payload, mac = token.split(".")
    # The MAC's last character carries two unused bits: flipping one spells
    # the same bytes another way, which a lenient decoder would accept.
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    respelled = mac[:-1] + alphabet[alphabet.index(mac[-1]) ^ 1]
    assert base64.urlsafe_b64decode(respelled + "=") == base64.urlsafe_b64decode(mac + "=")
    for bad in (token + "!!", token + "====", f"{kind}.{payload}.{respelled}",
                f"{kind}.{payload}=.{mac}"):
        with pytest.raises(TokenError):
            signer.open_challenge(bad)


def test_a_pass_bought_in_an_easier_tier_does_not_hold_in_a_harder_one(
    toy: str, redis_url: str
) -> None:
    redis.Redis.from_url(redis_url).flushdb()
    easy = policy(toy, redis_url)
    hard = policy(toy, redis_url)
    hard["tiers"] = {"suspicious": {"score": 0.5, "challenge": {"difficulty": 10}}}
    with serve_in_thread(GuardGate(policy=easy)) as one, \
            serve_in_thread(GuardGate(policy=hard)) as two, capture_logs() as logs:
        path = "/v1/chat/completions"
        with httpx.Client(auth=ChallengeAuth()) as client:
            client.post(one + path, json=CHAT, headers=auth())
            held = client.auth.clearance  # type: ignore[union-attr]
        token = challenge_of(httpx.post(one + path, json=CHAT, headers=auth()))
        cleared = httpx.post(two + path, json=CHAT,
                             headers={**auth(), "guardgate-clearance": held or ""})
        solved = httpx.post(two + path, json=CHAT,
                            headers={**auth(), "guardgate-solution": puzzle.solve(token, 8)})
    assert cleared.status_code == solved.status_code == 401
    assert cleared.json()["error"]["challenge"]["difficulty"] == 10
    reasons = [e["error"] for e in logs if e["event"] == "request" and e["status"] == 401]
    assert reasons[-2:] == ["challenge failed: clearance too_easy", "challenge failed: too_easy"]
