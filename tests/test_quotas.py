"""Quotas that hold: exact counts, token reservations under concurrency, many
replicas on one Redis, storage faults. Real servers over sockets throughout."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from guardgate import GuardGate
from guardgate.toy import create_toy_app
from tests.servers import free_port, own_redis, principal_of, serve_in_thread

CHAT = {"model": "toy-1", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}


def _policy(toy: str, quotas: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"upstream": toy, "quotas": quotas, **extra}


def test_exactly_the_limit_passes_then_429_with_every_header(toy: str) -> None:
    policy = _policy(toy, [{"name": "rpm", "limit": "10/minute"}])
    with serve_in_thread(GuardGate(policy=policy)) as base:
        client = openai.OpenAI(base_url=base + "/v1", api_key="sk-ten", max_retries=0)
        for _ in range(10):
            raw = client.chat.completions.with_raw_response.create(**CHAT)  # type: ignore[call-overload]
            assert raw.headers["x-ratelimit-limit-requests"] == "10"
            assert raw.headers["ratelimit-policy"] == '"rpm";q=10;w=60'
        assert raw.headers["x-ratelimit-remaining-requests"] == "0"
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(**CHAT)
        other = httpx.post(base + "/v1/chat/completions", json=CHAT,
                           headers={"authorization": "Bearer sk-other"})
    response = refused.value.response
    headers = response.headers
    assert response.status_code == 429
    assert 1 <= int(headers["retry-after"]) <= 60
    assert 1 <= int(headers["retry-after-ms"]) <= 60_000
    assert headers["x-ratelimit-limit-requests"] == "10"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"].endswith("s")
    assert headers["ratelimit-policy"] == '"rpm";q=10;w=60'
    assert headers["ratelimit"].startswith('"rpm";r=0;t=')
    body = response.json()["error"]
    assert body["code"] == "rate_limit_exceeded" and body["type"] == "requests"
    # The SDK reads the delay it would wait from these headers.
    delay = client._parse_retry_after_header(headers)
    assert delay is not None and 0 < delay <= 60
    # Another principal has its own quota.
    assert other.status_code == 200


def _served_tokens(base: str, n: int, key: str) -> tuple[int, int]:
    async def one(client: httpx.AsyncClient) -> int:
        body = {"model": "toy-1", "stream": True, "max_tokens": 100,
                "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": "Write about tokens."}]}
        async with client.stream("POST", "/v1/chat/completions", json=body,
                                 headers={"authorization": f"Bearer {key}"}) as response:
            if response.status_code != 200:
                await response.aread()
                return -1
            total = 0
            async for line in response.aiter_lines():
                if line.startswith("data: {") and '"usage":{' in line.replace(" ", ""):
                    import json

                    usage = json.loads(line[6:]).get("usage")
                    if usage:
                        total = usage["total_tokens"]
            return total

    async def run() -> list[int]:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            return await asyncio.gather(*[one(client) for _ in range(n)])

    results = asyncio.run(run())
    served = sum(r for r in results if r > 0)
    return served, sum(1 for r in results if r < 0)


def test_token_quota_holds_under_64_concurrent_streams() -> None:
    with serve_in_thread(create_toy_app(token_delay=0.002)) as slow_toy:
        policy = _policy(slow_toy, [{"name": "tpm", "limit": "1000/minute", "cost": "total_tokens"}])
        with serve_in_thread(GuardGate(policy=policy)) as base:
            served, refused = _served_tokens(base, 64, "sk-burst")
    one_reservation = 100 + 10  # max_tokens plus the prompt estimate
    assert refused > 0
    assert 0 < served <= 1000 + one_reservation


def test_usage_chunk_not_asked_for_is_not_seen(toy: str) -> None:
    policy = _policy(toy, [{"name": "tpm", "limit": "100000/minute", "cost": "total_tokens"}])
    body = {**CHAT, "stream": True}
    with serve_in_thread(GuardGate(policy=policy)) as base:
        direct = httpx.post(toy + "/v1/chat/completions", json=body).content
        through = httpx.post(base + "/v1/chat/completions", json=body,
                             headers={"authorization": "Bearer sk-u"})
    assert through.status_code == 200
    # The toy derives its ids from the request body, which the gateway
    # changed (it asked for usage); everything else must be the same bytes.
    import json as _json

    def first_id(stream: bytes) -> bytes:
        return _json.loads(stream.split(b"\n", 1)[0][6:])["id"].encode()

    assert b'"usage"' not in through.content
    assert through.content.replace(first_id(through.content), first_id(direct)) == direct
    assert through.headers["x-ratelimit-limit-tokens"] == "100000"


def test_quota_factor_from_an_override_tier(toy: str) -> None:
    policy = _policy(
        toy, [{"name": "rpm", "limit": "10/minute"}],
        tiers={"watch": {"score": 0.3, "quota_factor": 0.2}},
        overrides=[{"principal": "ip:127.0.0.1", "tier": "watch"}],
    )
    with serve_in_thread(GuardGate(policy=policy)) as base:
        codes = [httpx.post(base + "/v1/chat/completions", json=CHAT).status_code
                 for _ in range(4)]
    assert codes == [200, 200, 429, 429]


def test_overrides_allow_and_deny(toy: str) -> None:
    import hashlib

    digest = hashlib.sha256(b"sk-vip").hexdigest()
    policy = _policy(
        toy, [{"name": "rpm", "limit": "1/minute"}],
        overrides=[{"api_key_sha256": digest, "allow": True},
                   {"ip": "127.0.0.0/8", "deny": True}],
    )
    with serve_in_thread(GuardGate(policy=policy)) as base:
        vip = [httpx.post(base + "/v1/chat/completions", json=CHAT,
                          headers={"authorization": "Bearer sk-vip"}).status_code
               for _ in range(3)]
        denied = httpx.post(base + "/v1/chat/completions", json=CHAT,
                            headers={"authorization": "Bearer sk-nobody"})
    assert vip == [200, 200, 200]
    assert denied.status_code == 403
    assert denied.json()["error"]["type"] == "permission_error"
    assert "override" not in denied.text  # the client never learns why


def test_shadow_mode_enforces_nothing(toy: str) -> None:
    policy = _policy(toy, [{"name": "rpm", "limit": "1/minute"}], mode="shadow")
    with serve_in_thread(GuardGate(policy=policy)) as base:
        codes = [httpx.post(base + "/v1/chat/completions", json=CHAT).status_code
                 for _ in range(3)]
    assert codes == [200, 200, 200]


@pytest.mark.parametrize("storage", ["memory", "redis"])
def test_concurrency_quota_holds_a_slot_until_the_stream_ends(
    storage: str, request: pytest.FixtureRequest
) -> None:
    with serve_in_thread(create_toy_app(token_delay=0.02)) as slow_toy:
        policy = _policy(slow_toy, [{"name": "p" + uuid.uuid4().hex[:8], "concurrency": 1}])
        if storage == "redis":
            url = request.getfixturevalue("redis_url")
            policy["storage"] = url
            # Scripts forgotten by Redis must be loaded again on the fly.
            import redis as redis_sync

            redis_sync.Redis.from_url(url).script_flush()
        with serve_in_thread(GuardGate(policy=policy)) as base:
            body = {**CHAT, "stream": True, "max_tokens": 20}
            with httpx.Client(base_url=base, timeout=10) as client:
                with client.stream("POST", "/v1/chat/completions", json=body) as first:
                    assert first.status_code == 200
                    second = client.post("/v1/chat/completions", json=body)
                    first.read()
                time.sleep(0.05)  # the slot's release is settled after the answer
                third = client.post("/v1/chat/completions", json=body)
    assert second.status_code == 429
    assert second.headers["retry-after"] == "1"
    assert third.status_code == 200


def test_metrics_count_quota_decisions(toy: str) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    policy = _policy(toy, [{"name": "rpm", "limit": "2/minute"}])
    with serve_in_thread(GuardGate(policy=policy)) as base:
        for _ in range(3):
            httpx.post(base + "/v1/chat/completions", json=CHAT)
        text = httpx.get(base + "/_guardgate/metrics").text
    samples = {
        (s.labels.get("quota"), s.labels.get("outcome")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "guardgate_quota_decisions_total"
    }
    assert samples[("rpm", "allowed")] == 2
    assert samples[("rpm", "refused")] == 1


# --- many replicas on one Redis ---------------------------------------------

@contextmanager
def _gateway_process(policy_file: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "guardgate.cli", "serve", "--policy", str(policy_file),
         "--port", str(port), "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(base + "/_guardgate/healthz")
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(proc.stderr.read() if proc.stderr else "no start")
                time.sleep(0.1)
        yield base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)


@pytest.mark.redis
def test_two_replicas_share_one_global_limit(toy: str, redis_url: str, tmp_path: Path) -> None:
    name = "g" + uuid.uuid4().hex[:8]  # a fresh counter for every run
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"upstream: {toy}\nstorage: {redis_url}\n"
        f"quotas:\n  - {{name: {name}, per: global, limit: 20/minute}}\n"
    )
    with _gateway_process(policy) as a, _gateway_process(policy) as b:
        codes = [httpx.post((a, b)[i % 2] + "/v1/chat/completions", json=CHAT,
                            headers={"authorization": f"Bearer sk-{i}"}).status_code
                 for i in range(40)]
    assert codes.count(200) == 20
    assert codes.count(429) == 20
    assert codes[:20] == [200] * 20


# --- storage faults ----------------------------------------------------------

@pytest.mark.redis
@pytest.mark.parametrize("on_error", ["open", "closed"])
def test_redis_stopped_mid_run_then_back(toy: str, on_error: str) -> None:
    port = free_port()
    policy = _policy(toy, [{"name": "rpm", "limit": "3/minute"}],
                     storage=f"redis://127.0.0.1:{port}/0", on_storage_error=on_error)

    def post(base: str) -> int:
        return httpx.post(base + "/v1/chat/completions", json=CHAT, timeout=10).status_code

    with serve_in_thread(GuardGate(policy=policy)) as base:
        with own_redis(port):
            assert post(base) == 200
        # Redis is gone.
        down = [post(base) for _ in range(3)]
        expected = 200 if on_error == "open" else 503
        assert down == [expected] * 3
        metrics = httpx.get(base + "/_guardgate/metrics").text
        assert 'guardgate_storage_errors_total{operation="reserve"}' in metrics
        with own_redis(port):
            back = [post(base) for _ in range(4)]
    # A fresh Redis holds no counts: three pass, the fourth is refused.
    assert back == [200, 200, 200, 429]


@pytest.mark.parametrize("storage", ["memory", "redis"])
def test_token_quota_settles_to_real_usage(storage: str, request: pytest.FixtureRequest) -> None:
    app = create_toy_app()
    # No max_tokens: each request reserves default_max_tokens (100) and the
    # toy answers in about 60; only refunds let more than three through.
    policy: dict[str, Any] = {
        "quotas": [{"name": "tpm", "limit": "300/minute", "cost": "total_tokens"}],
        "default_max_tokens": 100,
    }
    if storage == "redis":
        policy["storage"] = request.getfixturevalue("redis_url")
    body = {"model": "toy-1", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    key = {"authorization": f"Bearer sk-{uuid.uuid4().hex}"}  # a fresh counter each run
    with serve_in_thread(GuardGate(app, policy=policy)) as base:
        codes = []
        for _ in range(8):
            response = httpx.post(base + "/v1/chat/completions", json=body, headers=key)
            time.sleep(0.02)  # let the settlement of the last answer land
            codes.append(response.status_code)
            if response.status_code == 200:
                assert b'"usage"' not in response.content
                assert response.content.endswith(b"data: [DONE]\n\n")
    passed = codes.count(200)
    assert passed >= 4, codes
    assert codes == [200] * passed + [429] * (8 - passed)


def test_new_principals_start_low_and_grow_with_age(toy: str) -> None:
    policy = _policy(
        toy, [{"name": "rpm", "limit": "10/minute;1000/hour"}],
        new_principals={"start": 0.2, "full_after": "7d"},
        identity={"trusted_proxies": ["127.0.0.1/32"],
                  "principal": [{"header": "x-account-id"}, "ip"]},
    )
    old = str(time.time() - 30 * 86400)
    with serve_in_thread(GuardGate(policy=policy)) as base:
        def codes(account: str, created: str | None) -> list[int]:
            headers = {"x-account-id": account}
            if created is not None:
                headers["x-account-created"] = created
            return [httpx.post(base + "/v1/chat/completions", json=CHAT, headers=headers).status_code
                    for _ in range(11)]

        fresh = codes("fresh-" + uuid.uuid4().hex, None)
        veteran = codes("old-" + uuid.uuid4().hex, old)
    assert fresh == [200] * 2 + [429] * 9          # a fifth of 10 on its first day
    assert veteran == [200] * 10 + [429]           # the whole quota after 30 days


def test_repeated_credentials_are_refused(toy: str) -> None:
    policy = _policy(toy, [{"name": "rpm", "limit": "1/minute"}])
    with serve_in_thread(GuardGate(policy=policy)) as base:
        response = httpx.post(
            base + "/v1/chat/completions", json=CHAT,
            headers=[("authorization", "Bearer sk-real"), ("authorization", "Bearer sk-junk")],
        )
    assert response.status_code == 400
    assert "only once" in response.json()["error"]["message"]


@pytest.mark.parametrize("storage", ["memory", "redis"])
def test_a_request_that_can_never_fit_is_refused_without_charge(
    toy: str, storage: str, request: pytest.FixtureRequest
) -> None:
    policy = _policy(toy, [{"name": "tpm", "limit": "1000/minute", "cost": "total_tokens",
                            "per": "global"}])
    if storage == "redis":
        policy["storage"] = request.getfixturevalue("redis_url")
        policy["quotas"][0]["name"] = "t" + uuid.uuid4().hex[:8]
    huge = {**CHAT, "max_tokens": 2**63 - 1}
    with serve_in_thread(GuardGate(policy=policy)) as base:
        refused = [httpx.post(base + "/v1/chat/completions", json=huge) for _ in range(5)]
        normal = httpx.post(base + "/v1/chat/completions", json=CHAT)
    assert all(r.status_code == 429 for r in refused)
    assert refused[0].headers["x-should-retry"] == "false"
    assert "retry-after" not in refused[0].headers
    # Nothing was charged: a normal caller on the same global quota passes.
    assert normal.status_code == 200


def test_leaving_before_the_answer_keeps_the_charge() -> None:
    with serve_in_thread(create_toy_app(token_delay=0.05)) as slow_toy:
        policy = _policy(slow_toy, [{"name": "rpm", "limit": "2/minute"}])
        with serve_in_thread(GuardGate(policy=policy)) as base:
            body = {**CHAT, "max_tokens": 40}  # about 2 s to answer
            for _ in range(2):
                with pytest.raises(httpx.ReadTimeout):
                    httpx.post(base + "/v1/chat/completions", json=body, timeout=0.3)
            time.sleep(0.5)
            after = httpx.post(base + "/v1/chat/completions", json=CHAT, timeout=10)
    assert after.status_code == 429


def test_other_methods_on_model_paths_pass_through(toy: str) -> None:
    with serve_in_thread(GuardGate(policy={"upstream": toy})) as base:
        options = httpx.request("OPTIONS", base + "/v1/chat/completions")
        get = httpx.get(base + "/v1/chat/completions")
    direct = httpx.get(toy + "/v1/chat/completions")
    assert get.status_code == direct.status_code != 400
    assert options.status_code != 400


def test_gateway_rate_limit_fields_replace_the_upstreams() -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def chat(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True}, headers={"x-ratelimit-limit-requests": "999999"})

    upstream = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    with serve_in_thread(upstream) as up:
        policy = _policy(up, [{"name": "rpm", "limit": "5/minute"}])
        with serve_in_thread(GuardGate(policy=policy)) as base:
            response = httpx.post(base + "/v1/chat/completions", json=CHAT)
    assert response.headers.get_list("x-ratelimit-limit-requests") == ["5"]


def test_refusals_are_logged_with_their_private_reason(toy: str) -> None:
    from structlog.testing import capture_logs

    policy = _policy(toy, [{"name": "rpm", "limit": "1/minute"}],
                     overrides=[{"principal": principal_of("sk-bad"), "deny": True}])
    with serve_in_thread(GuardGate(policy=policy)) as base, capture_logs() as logs:
        httpx.post(base + "/v1/chat/completions", json=CHAT)
        refused = httpx.post(base + "/v1/chat/completions", json=CHAT)
        denied = httpx.post(base + "/v1/chat/completions", json=CHAT,
                            headers={"authorization": "Bearer sk-bad"})
    lines = [e for e in logs if e["event"] == "request"]
    assert [(e["status"], e["action"]) for e in lines] == [
        (200, "allow"), (429, "throttle"), (403, "block")]
    assert "rpm" in lines[1]["error"] and "override" in lines[2]["error"]
    # The client sees neither.
    assert "override" not in denied.text
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"


@pytest.mark.parametrize("client_asks_usage", [False, True])
def test_openai_sdk_streams_through_token_metering(toy: str, client_asks_usage: bool) -> None:
    policy = _policy(toy, [{"name": "tpm", "limit": "100000/minute", "cost": "total_tokens"}])
    with serve_in_thread(GuardGate(policy=policy)) as base:
        client = openai.OpenAI(base_url=base + "/v1", api_key="sk-sdk", max_retries=0)
        extra: dict[str, Any] = (
            {"stream_options": {"include_usage": True}} if client_asks_usage else {}
        )
        chunks = list(client.chat.completions.create(
            model="toy-1", messages=[{"role": "user", "content": "Hi"}], max_tokens=20,
            stream=True, **extra,
        ))
        completions = list(client.completions.create(
            model="toy-1", prompt="Once", max_tokens=5, stream=True, **extra,
        ))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    usage = [c.usage for c in chunks if c.usage is not None]
    assert (len(usage) == 1) is client_asks_usage
    if client_asks_usage:
        assert usage[0].completion_tokens == 20
    assert any(c.choices and c.choices[0].text for c in completions)
    assert any(c.usage is not None for c in completions) is client_asks_usage
