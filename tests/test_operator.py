"""The operator API's runtime overrides: set, listed, removed, behind the
token, applied at once, and shared by replicas through Redis."""

from __future__ import annotations

import http.client
import time
from typing import Any

import httpx
import pytest
import redis

from guardgate import GuardGate
from tests.servers import principal_of, serve_in_thread

TOKEN = "operator-token-0123456789"
ADMIN = {"authorization": f"Bearer {TOKEN}"}
CHAT = {"model": "toy-1", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}


def policy(toy: str, storage: str = "memory://") -> dict[str, Any]:
    return {"upstream": toy, "storage": storage, "admin": {"token": TOKEN},
            "quotas": [{"name": "rpm", "limit": "1000/minute"}],
            "tiers": {"watch": {"score": 0.99, "quota_factor": 0.5}}}


def call(base: str, key: str = "sk-someone") -> httpx.Response:
    return httpx.post(base + "/v1/chat/completions", json=CHAT,
                      headers={"authorization": f"Bearer {key}"})


PRINCIPAL = principal_of("sk-someone")


def test_overrides_set_list_apply_and_remove(toy: str) -> None:
    with serve_in_thread(GuardGate(policy=policy(toy))) as base:
        url = f"{base}/_guardgate/overrides/{PRINCIPAL}"
        before = call(base)
        anonymous = httpx.put(url, json={"deny": True})
        bad = httpx.put(url, json={"tier": "no-such-tier"}, headers=ADMIN)
        not_json = httpx.put(url, content=b"{", headers=ADMIN)
        denied = httpx.put(url, json={"deny": True}, headers=ADMIN)
        refused = call(base)
        listed = httpx.get(f"{base}/_guardgate/overrides", headers=ADMIN).json()
        tiered = httpx.put(url, json={"tier": "watch"}, headers=ADMIN)
        watched = call(base)
        removed = httpx.delete(url, headers=ADMIN)
        again = httpx.delete(url, headers=ADMIN)
        after = call(base)
    assert before.status_code == 200
    assert anonymous.status_code == 401
    assert bad.status_code == 400 and not_json.status_code == 400
    assert denied.status_code == 200 and refused.status_code == 403
    assert listed == {"overrides": {PRINCIPAL: {"deny": True}}}
    assert tiered.status_code == 200
    assert watched.status_code == 200 and watched.headers["x-ratelimit-limit-requests"] == "500"
    assert removed.status_code == 200 and again.status_code == 404
    assert after.status_code == 200 and after.headers["x-ratelimit-limit-requests"] == "1000"


def test_an_override_set_on_one_replica_applies_on_another(toy: str, redis_url: str) -> None:
    redis.Redis.from_url(redis_url).flushdb()
    shared = policy(toy, redis_url)
    with serve_in_thread(GuardGate(policy=shared)) as one, \
            serve_in_thread(GuardGate(policy=shared)) as two:
        assert call(two).status_code == 200
        set_on_one = httpx.put(f"{one}/_guardgate/overrides/{PRINCIPAL}", json={"deny": True},
                               headers=ADMIN)
        deadline = time.monotonic() + 3
        while call(two).status_code != 403 and time.monotonic() < deadline:
            time.sleep(0.1)
        took = 3 - (deadline - time.monotonic())
        on_two = call(two)
        httpx.delete(f"{two}/_guardgate/overrides/{PRINCIPAL}", headers=ADMIN)
        deadline = time.monotonic() + 3
        while call(one).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        back = call(one)
    assert set_on_one.status_code == 200
    assert on_two.status_code == 403 and took < 2.0
    assert back.status_code == 200


def test_the_openapi_description_lists_every_operator_endpoint(toy: str) -> None:
    with serve_in_thread(GuardGate(policy=policy(toy))) as base:
        spec = httpx.get(base + "/_guardgate/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert {"/_guardgate/accounts", "/_guardgate/accounts/{principal}",
            "/_guardgate/accounts/{principal}/revoke", "/_guardgate/overrides",
            "/_guardgate/overrides/{principal}", "/_guardgate/challenge"} <= set(spec["paths"])
    assert set(spec["paths"]["/_guardgate/overrides/{principal}"]) >= {"put", "delete"}


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/_guardgate/accounts"),
    ("GET", f"/_guardgate/accounts/{PRINCIPAL}"),
    ("DELETE", f"/_guardgate/accounts/{PRINCIPAL}"),
    ("POST", f"/_guardgate/accounts/{PRINCIPAL}/revoke"),
    ("GET", "/_guardgate/overrides"),
    ("PUT", f"/_guardgate/overrides/{PRINCIPAL}"),
    ("DELETE", f"/_guardgate/overrides/{PRINCIPAL}"),
])
def test_every_operator_endpoint_needs_the_token(toy: str, method: str, path: str) -> None:
    with serve_in_thread(GuardGate(policy=policy(toy))) as base:
        none = httpx.request(method, base + path, json={"deny": True})
        wrong = httpx.request(method, base + path, json={"deny": True},
                              headers={"authorization": "Bearer operator-token-0123456780"})
        right = httpx.request(method, base + path, json={"deny": True}, headers=ADMIN)
    assert none.status_code == wrong.status_code == 401
    assert right.status_code != 401


@pytest.mark.parametrize("path", ["//_guardgate/accounts", "/x/../_guardgate/accounts",
                                  "/%5Fguardgate/accounts", "/_GuardGate/accounts",
                                  "/_guardgat%2565/accounts"])
def test_the_operator_api_spelled_otherwise_is_still_the_operator_api(
        toy: str, path: str) -> None:
    """Never forwarded: the operator's token would reach the upstream, and an
    upstream that normalizes paths might serve it."""
    with serve_in_thread(GuardGate(policy=policy(toy))) as base:
        host, port = base.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.putrequest("GET", path)
        connection.endheaders()
        answer = connection.getresponse()
        connection.close()
    assert answer.status == 401  # the operator API's own refusal


def test_latency_histograms_are_exported(toy: str) -> None:
    with serve_in_thread(GuardGate(policy=policy(toy))) as base:
        call(base)
        text = httpx.get(base + "/_guardgate/metrics").text
    assert 'guardgate_latency_seconds_count{stage="gateway"} 1.0' in text
    assert 'guardgate_latency_seconds_count{stage="upstream"} 1.0' in text


def test_inspecting_a_caller_shows_its_quota_usage(toy: str) -> None:
    with serve_in_thread(GuardGate(policy=policy(toy))) as base:
        for _ in range(3):
            call(base)
        explained = httpx.get(f"{base}/_guardgate/accounts/{PRINCIPAL}", headers=ADMIN).json()
    assert explained["quotas"] == [
        {"quota": "rpm", "window": "1000/minute", "used": 3, "limit": 1000}]


def test_metrics_parse_and_show_every_series(toy: str) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    with serve_in_thread(GuardGate(policy=policy(toy))) as base:
        for _ in range(3):
            call(base)
        text = httpx.get(base + "/_guardgate/metrics").text
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {
        "guardgate_requests", "guardgate_decisions", "guardgate_quota_decisions",
        "guardgate_latency_seconds", "guardgate_storage_errors", "guardgate_challenges_issued",
        "guardgate_challenges_failed", "guardgate_transforms", "guardgate_marked_answers",
        "guardgate_policy_reloads", "guardgate_policy_info",
    } <= names
