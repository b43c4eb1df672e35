"""Risk scoring through the gateway: decisions in the log, the operator's
explanation endpoint, shadow mode, replicas sharing state. Real servers."""

from __future__ import annotations

import itertools
import time
import types
from typing import Any

import httpx
import orjson
import pytest
import redis
from structlog.testing import capture_logs

import guardgate.admit
from guardgate import GuardGate
from tests.servers import principal_of, serve_in_thread

TOKEN = "operator-token-0123456789"
# Low thresholds, so that a dozen requests show every tier.
TIERS = {
    "watch": {"score": 0.2, "quota_factor": 0.5},
    "suspicious": {"score": 0.35, "quota_factor": 0.25},
    "high": {"score": 0.5, "quota_factor": 0.1},
    "blocked": {"score": 0.7, "deny": True},
}
MINING = {"logprobs": True, "top_logprobs": 20, "max_tokens": 1, "temperature": 0}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deterministic clock for assessments: ten seconds a request."""
    ticks = itertools.count()
    fake = types.SimpleNamespace(time=lambda: 1_767_225_600.0 + 10 * next(ticks))
    monkeypatch.setattr(guardgate.admit, "time", fake)


def policy(toy: str, **extra: Any) -> dict[str, Any]:
    # The test client is the trusted auth layer: it tells account ages.
    identity = {"trusted_proxies": ["127.0.0.1/32"]}
    return {"upstream": toy, "tiers": TIERS, "admin": {"token": TOKEN}, "identity": identity,
            **extra}


def chat(text: str, **params: Any) -> dict[str, Any]:
    return {"model": "toy-1", "messages": [{"role": "user", "content": text}], **params}


def traffic() -> list[tuple[str, dict[str, Any]]]:
    """A miner and ordinary callers with old accounts, interleaved."""
    requests = []
    for i in range(24):
        requests.append(("sk-miner-0", chat(f"continue the list: item {i}", **MINING)))
        requests.append((f"sk-user-{i % 3}", chat(f"what is a good name for a cat, take {i}",
                                                   max_tokens=20)))
    return requests


def headers(key: str) -> dict[str, str]:
    sent = {"authorization": f"Bearer {key}"}
    # Old accounts for the users, a fresh one for the miner.
    sent["x-account-created"] = ("2024-01-01T00:00:00Z" if key.startswith("sk-user")
                                 else "2026-01-01T00:00:00Z")
    return sent


def test_miners_climb_the_tiers_and_the_log_says_why(toy: str, clock: None) -> None:
    with serve_in_thread(GuardGate(policy=policy(toy))) as base, capture_logs() as logs:
        statuses = []
        for key, body in traffic():
            response = httpx.post(base + "/v1/chat/completions", json=body,
                                  headers=headers(key))
            statuses.append((key, response.status_code, response.text))
    lines = [e for e in logs if e["event"] == "request"]
    miner = [e for e in lines if e["principal"] == principal_of("sk-miner-0")]
    user = [e for e in lines if e["principal"] == principal_of("sk-user-0")]
    assert miner[0]["tier"] in ("normal", "watch") and miner[-1]["tier"] == "blocked"
    order = ["normal", *TIERS]
    assert [order.index(e["tier"]) for e in miner] == sorted(order.index(e["tier"]) for e in miner)
    assert miner[-1]["action"] == "block" and miner[-1]["status"] == 403
    assert miner[-1]["reasons"][0] == "logprob_harvest"
    assert miner[-1]["score"] >= 0.7
    assert all(e["tier"] == "normal" and e["status"] == 200 for e in user)
    # The caller is never told which signal fired.
    refused = [text for key, status, text in statuses if status == 403]
    assert refused and not any("logprob" in text or "harvest" in text for text in refused)


def test_the_operator_endpoint_explains_a_caller(toy: str, clock: None) -> None:
    with serve_in_thread(GuardGate(policy=policy(toy))) as base:
        for key, body in traffic()[:20]:
            httpx.post(base + "/v1/chat/completions", json=body,
                       headers=headers(key))
        url = f"{base}/_guardgate/accounts/{principal_of('sk-miner-0')}"
        anonymous = httpx.get(url)
        wrong = httpx.get(url, headers={"authorization": "Bearer not-the-token"})
        explained = httpx.get(url, headers={"authorization": f"Bearer {TOKEN}"})
        unknown = httpx.get(f"{base}/_guardgate/accounts/key:0000000000000000",
                            headers={"authorization": f"Bearer {TOKEN}"})
        posted = httpx.post(url, headers={"authorization": f"Bearer {TOKEN}"})
    assert anonymous.status_code == wrong.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert anonymous.json()["error"]["code"] == "invalid_token"
    assert unknown.status_code == 404 and posted.status_code == 405
    assert explained.status_code == 200
    body = explained.json()
    assert body["principal"] == principal_of("sk-miner-0")
    assert body["tier"] in ("suspicious", "high", "blocked")
    signals = {s["name"]: s for s in body["signals"]}
    # Ten mining requests (0.9 each: logprobs, 20 alternatives, temperature 0,
    # one token) and two neutral ones: a mean of 0.75 on the 0.4 -> 0.85 ramp.
    harvest = signals["logprob_harvest"]
    assert harvest["value"] == pytest.approx(0.75, abs=0.01)
    assert harvest["contribution"] == pytest.approx(0.45 * (0.75 - 0.4) / 0.45, abs=0.01)
    assert max(signals.values(), key=lambda s: s["contribution"]) is harvest
    assert sum(s["contribution"] for s in body["signals"]) == pytest.approx(
        min(1.0, body["score"]), abs=1e-3)
    kinds = {c["kind"] for c in body["clusters"]}
    assert {"template", "prefix"} <= kinds
    prefix = next(c for c in body["clusters"] if c["kind"] == "prefix")
    assert prefix["key"] == "127.0.0.0/24" and prefix["accounts"] == 4
    assert body["first_seen"] <= body["last_seen"] == body["assessed_at"]
    assert body["quotas"] == []  # this policy has no quotas


def test_without_an_admin_token_the_operator_api_is_off(toy: str) -> None:
    with serve_in_thread(GuardGate(policy={"upstream": toy, "tiers": TIERS})) as base:
        response = httpx.get(base + "/_guardgate/accounts/key:0000000000000000",
                             headers={"authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 404
    assert "admin.token" in response.json()["error"]["message"]


def _decisions(logs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (e["principal"], e["tier"], e["score"], tuple(e["reasons"] or ()),
         (e["action"] or "").removeprefix("would_"))
        for e in logs if e["event"] == "request"
    ]


def _run(toy: str, mode: str, monkeypatch: pytest.MonkeyPatch) -> tuple[list[Any], list[Any]]:
    ticks = itertools.count()
    fake = types.SimpleNamespace(time=lambda: 1_767_225_600.0 + 10 * next(ticks))
    monkeypatch.setattr(guardgate.admit, "time", fake)
    quotas = [{"name": "rpm", "limit": "8/minute"}]
    gate = GuardGate(policy=policy(toy, mode=mode, quotas=quotas))
    answers = []
    with serve_in_thread(gate) as base, capture_logs() as logs:
        for key, body in traffic():
            response = httpx.post(base + "/v1/chat/completions", json=body,
                                  headers=headers(key))
            answers.append((response.status_code, response.content))
    return _decisions(logs), answers


def test_shadow_mode_decides_the_same_and_touches_nothing(
    toy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    enforced, enforced_answers = _run(toy, "enforce", monkeypatch)
    shadowed, shadow_answers = _run(toy, "shadow", monkeypatch)
    assert shadowed == enforced
    actions = {decision[4] for decision in enforced}
    assert {"allow", "throttle", "block"} <= actions
    assert {status for status, _ in enforced_answers} >= {200, 403, 429}
    # In shadow mode every answer is the upstream's own.
    direct = [httpx.post(toy + "/v1/chat/completions", json=body).content
              for _, body in traffic()]
    assert [status for status, _ in shadow_answers] == [200] * len(direct)
    assert [content for _, content in shadow_answers] == direct


def test_replicas_share_risk_state_through_redis(
    toy: str, clock: None, redis_url: str
) -> None:
    redis.Redis.from_url(redis_url).flushdb()
    shared = policy(toy, storage=redis_url)
    with serve_in_thread(GuardGate(policy=shared)) as one, \
            serve_in_thread(GuardGate(policy=shared)) as two:
        tiers = []
        for i, (key, body) in enumerate(traffic()):
            if key != "sk-miner-0":
                continue
            base = one if i % 4 == 0 else two
            response = httpx.post(base + "/v1/chat/completions", json=body,
                                  headers=headers(key))
            tiers.append(response.status_code)
        explained = httpx.get(f"{one}/_guardgate/accounts/{principal_of('sk-miner-0')}",
                              headers={"authorization": f"Bearer {TOKEN}"})
        time.sleep(0.1)  # records are batched
        ranked = httpx.get(f"{two}/_guardgate/accounts",
                           headers={"authorization": f"Bearer {TOKEN}"}).json()["accounts"]
    assert ranked[0]["principal"] == principal_of("sk-miner-0")
    assert ranked[0]["tier"] == "blocked"
    # Alternating replicas, the miner is still blocked: both see one state.
    assert tiers[0] == 200 and tiers[-1] == 403
    assert explained.status_code == 200
    assert explained.json()["tier"] == "blocked"


@pytest.mark.parametrize("on_error", ["open", "closed"])
def test_storage_down_follows_on_storage_error(toy: str, on_error: str) -> None:
    dead = policy(toy, storage="redis://127.0.0.1:1/0", on_storage_error=on_error)
    gate = GuardGate(policy=dead)
    with serve_in_thread(gate) as base:
        response = httpx.post(base + "/v1/chat/completions", json=chat("hello", max_tokens=5),
                              headers=headers("sk-user-0"))
        explained = httpx.get(f"{base}/_guardgate/accounts/{principal_of('sk-user-0')}",
                              headers={"authorization": f"Bearer {TOKEN}"})
        metrics = httpx.get(base + "/_guardgate/metrics").text
    if on_error == "open":
        assert response.status_code == 200
    else:
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "storage_unavailable"
    assert explained.status_code == 503
    assert 'guardgate_storage_errors_total{operation="assess"} 1.0' in metrics


def test_the_operator_lists_the_riskiest_callers_and_resets_one(toy: str, clock: None) -> None:
    with serve_in_thread(GuardGate(policy=policy(toy))) as base:
        for key, body in traffic()[:30]:
            httpx.post(base + "/v1/chat/completions", json=body, headers=headers(key))
        time.sleep(0.05)
        ranked = httpx.get(base + "/_guardgate/accounts",
                           headers={"authorization": f"Bearer {TOKEN}"}).json()["accounts"]
        anonymous = httpx.get(base + "/_guardgate/accounts")
        miner = principal_of("sk-miner-0")
        reset = httpx.delete(f"{base}/_guardgate/accounts/{miner}",
                             headers={"authorization": f"Bearer {TOKEN}"})
        gone = httpx.get(f"{base}/_guardgate/accounts/{miner}",
                         headers={"authorization": f"Bearer {TOKEN}"})
        after = httpx.get(base + "/_guardgate/accounts",
                          headers={"authorization": f"Bearer {TOKEN}"}).json()["accounts"]
    assert anonymous.status_code == 401
    assert ranked[0]["principal"] == miner and ranked[0]["tier"] != "normal"
    assert [a["score"] for a in ranked] == sorted((a["score"] for a in ranked), reverse=True)
    assert {a["principal"] for a in ranked} == {miner} | {principal_of(f"sk-user-{i}")
                                                          for i in range(3)}
    assert reset.status_code == 200 and gone.status_code == 404
    assert miner not in {a["principal"] for a in after}


def test_an_upstream_without_usage_feeds_the_answers_size_not_the_reservation(
        clock: None) -> None:
    """No usage in the answers: the quotas charge what was reserved, but the
    caller's risk state learns the answers' size, so a caller who asks for
    4,096 tokens and gets a word is no heavy consumer of output."""

    async def upstream(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        body = {"id": "c", "object": "chat.completion", "model": "toy-1", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Paris."},
             "finish_reason": "stop"}]}
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": orjson.dumps(body)})

    with serve_in_thread(upstream) as up, \
            serve_in_thread(GuardGate(policy=policy(up, quotas=[
                {"name": "tpm", "limit": "1000000/minute", "cost": "total_tokens"}]))) as base:
        for i in range(8):
            response = httpx.post(base + "/v1/chat/completions",
                                  json=chat(f"capital of country {i}?", max_tokens=4096),
                                  headers=headers("sk-user-0"))
            assert response.status_code == 200
        time.sleep(0.1)
        explained = httpx.get(f"{base}/_guardgate/accounts/{principal_of('sk-user-0')}",
                              headers={"authorization": f"Bearer {TOKEN}"}).json()
    ratio = {s["name"]: s["value"] for s in explained["signals"]}["output_ratio"]
    assert 0 < ratio < 1, ratio
