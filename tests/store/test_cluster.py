"""Two gateways on a real Redis Cluster of the tests' own (three primaries,
three replicas): quotas exact across both, risk scoring, clearances
redeemed on one and honoured on the other, runtime overrides, the
operator's account list, and no storage error on the way."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from guardgate import GuardGate
from guardgate.challenge import puzzle
from tests.servers import RedisCluster, own_redis_cluster, principal_of, serve_in_thread

TOKEN = "operator-token-0123456789"
SECRET = "test-challenge-secret-0123456789"
ADMIN = {"authorization": f"Bearer {TOKEN}"}
MINING = {"logprobs": True, "top_logprobs": 20, "max_tokens": 1, "temperature": 0}


def chat(text: str, **params: Any) -> dict[str, Any]:
    return {"model": "toy-1", "messages": [{"role": "user", "content": text}],
            "max_tokens": 5, **params}


def auth(key: str, ip: str = "203.0.113.7") -> dict[str, str]:
    return {"authorization": f"Bearer {key}", "x-forwarded-for": ip,
            "x-account-created": "2026-01-01T00:00:00Z"}


def policy(toy: str, url: str, **extra: Any) -> dict[str, Any]:
    challenged = hashlib.sha256(b"sk-challenged").hexdigest()
    return {
        "upstream": toy,
        "storage": url,
        "on_storage_error": "closed",
        "admin": {"token": TOKEN},
        "identity": {"trusted_proxies": ["127.0.0.1/32"], "org_header": "x-org-id"},
        # Per org, so that only the quota callers (who name one) meet them.
        "quotas": [{"name": "rpm", "per": "org", "limit": "7/minute"},
                   {"name": "moving", "per": "org", "limit": "8/minute",
                    "strategy": "moving-window"}],
        "tiers": {
            "watch": {"score": 0.2},
            "suspicious": {"score": 0.35, "quota_factor": 0.5},
            "blocked": {"score": 0.6, "deny": True},
            # Out of the scores' reach: for the caller the policy sends there.
            "challenged": {"score": 0.999, "challenge": {}},
        },
        "overrides": [{"api_key_sha256": challenged, "tier": "challenged"}],
        "challenge": {"secret": SECRET, "difficulty": 8,
                      "clearance": {"budget": {"requests": 3, "output_tokens": 10**6}}},
        **extra,
    }


def test_two_gateways_share_every_kind_of_state_on_a_redis_cluster(
    toy: str, redis_cluster: RedisCluster
) -> None:
    shared = policy(toy, redis_cluster.url)
    path = "/v1/chat/completions"
    with capture_logs() as logs, serve_in_thread(GuardGate(policy=shared)) as one, \
            serve_in_thread(GuardGate(policy=shared)) as two:
        bases = (one, two)
        # Quotas: 7 a minute for each of 20 keys, spread over both replicas.
        served: dict[str, int] = {}
        for i in range(20 * 9):
            key = f"sk-quota-{i % 20}"
            response = httpx.post(bases[i % 2] + path, json=chat(f"hello {i}"),
                                  headers={**auth(key, f"198.51.{i % 20}.9"),
                                           "x-org-id": f"org-{i % 20}"})
            assert response.status_code in (200, 429), response.text
            served[key] = served.get(key, 0) + (response.status_code == 200)

        # Risk: a miner alternating replicas climbs to blocked on both.
        statuses = []
        for i in range(40):
            response = httpx.post(bases[i % 2] + path, json=chat(f"item {i}", **MINING),
                                  headers=auth("sk-miner", "192.0.2.50"))
            statuses.append(response.status_code)
        time.sleep(0.2)  # records are batched
        explained = httpx.get(f"{two}/_guardgate/accounts/{principal_of('sk-miner')}",
                              headers=ADMIN)
        ranked = httpx.get(f"{one}/_guardgate/accounts", headers=ADMIN).json()["accounts"]

        # Clearances: a challenge redeemed on one, the clearance spent on both.
        challenged = auth("sk-challenged", "203.0.113.80")
        first = httpx.post(one + path, json=chat("hi"), headers=challenged)
        token = first.json()["error"]["challenge"]["token"]
        solution = {**challenged, "guardgate-solution": puzzle.solve(token, 8)}
        redeemed = httpx.post(two + path, json=chat("hi"), headers=solution)
        replayed = httpx.post(one + path, json=chat("hi"), headers=solution)
        clearance = {**challenged, "guardgate-clearance": redeemed.headers["guardgate-clearance"]}
        spent = [httpx.post(base + path, json=chat("hi"), headers=clearance).status_code
                 for base in (one, two, one)]

        # Overrides set at runtime on one replica apply on the other.
        user = principal_of("sk-override")
        before = httpx.post(two + path, json=chat("hi"), headers=auth("sk-override")).status_code
        put = httpx.put(f"{one}/_guardgate/overrides/{user}", json={"deny": True}, headers=ADMIN)
        deadline = time.monotonic() + 3
        after = before
        while after != 403 and time.monotonic() < deadline:
            after = httpx.post(two + path, json=chat("hi"),
                               headers=auth("sk-override")).status_code
            time.sleep(0.1)
        listed = httpx.get(f"{two}/_guardgate/overrides", headers=ADMIN).json()

    assert set(served.values()) == {7}, served
    assert statuses[0] == 200 and statuses[-1] == 403, statuses
    assert explained.status_code == 200 and explained.json()["tier"] == "blocked"
    assert ranked[0]["principal"] == principal_of("sk-miner")
    assert first.status_code == 401
    assert redeemed.status_code == 200 and replayed.status_code == 401
    assert spent == [200, 200, 401]
    assert before == 200 and put.status_code == 200 and after == 403
    assert listed == {"overrides": {user: {"deny": True}}}
    failed = [line for line in logs
              if line.get("event") in ("storage error", "settlement failed")]
    assert failed == []


@pytest.mark.parametrize(("mode", "recovery"), [("open", "returns"), ("closed", "returns"),
                                                 ("closed", "promoted")])
def test_a_primary_killed_mid_traffic_fails_as_configured_and_recovers_without_restart(
        toy: str, mode: str, recovery: str) -> None:
    """A primary of a Redis Cluster of the test's own is killed while
    requests flow (many keys, so that some live on it). ``returns``: its
    replica is killed first, so its slots stay unavailable for 4 s, then the
    node comes back; ``promoted``: its replica takes over. While slots are
    unavailable the policy's on_storage_error decides, never a 500; once
    they are served again every request is, by the same gateway process."""
    with own_redis_cluster() as cluster:
        victim = next(p for p in cluster.primaries() if p != cluster.ports[0])
        shared = {**policy(toy, cluster.url), "on_storage_error": mode,
                  "quotas": [{"name": "rpm", "limit": "1000/minute"}]}
        gate = GuardGate(policy=shared)
        path = "/v1/chat/completions"
        seen: list[tuple[float, int, str]] = []
        with capture_logs() as logs, serve_in_thread(gate) as base:
            def send(i: int) -> None:
                response = httpx.post(base + path, json=chat(f"q {i}"), timeout=30,
                                      headers=auth(f"sk-fail-{i % 50}", f"198.51.{i % 50}.9"))
                code = response.json().get("error", {}).get("code", "") \
                    if response.status_code != 200 else ""
                seen.append((time.monotonic(), response.status_code, code))

            for i in range(100):
                send(i)
            assert {status for _, status, _ in seen} == {200}
            if recovery == "returns":
                cluster.stop(cluster.replica_of(victim))
            killed = time.monotonic()
            cluster.stop(victim)
            i = 100
            if recovery == "returns":
                while time.monotonic() - killed < 4:
                    send(i)
                    i += 1
                cluster.start(victim)
            # Recovered: 50 requests in a row served (every key among them).
            while time.monotonic() - killed < 90:
                send(i)
                i += 1
                if len(seen) - 100 >= 50 and all(s == 200 for _, s, _ in seen[-50:]):
                    break
            tail = seen[-50:]
            recovered = tail[0][0]
            during = [(status, code) for t, status, code in seen if killed <= t < recovered]
        statuses = {status for _, status, _ in seen}
        errors = [line for line in logs if line.get("event") == "storage error"]
        assert 500 not in statuses
        assert {status for _, status, _ in tail} == {200}, "never recovered"
        assert all(line["on_storage_error"] == mode for line in errors)
        if mode == "open":
            assert statuses == {200}
        else:
            assert set(during) <= {(200, ""), (503, "storage_unavailable")}
        if recovery == "returns":  # 4 s without the slots: the outage is met
            assert errors, "the outage was never met"
            if mode == "closed":
                assert (503, "storage_unavailable") in during, during
