"""Degraded and marked answers through the gateway: the OpenAI SDK reads
them, the mark is found, normal callers and shadow mode are untouched,
tarpit and reroute work. Real servers over sockets."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import httpx
import openai
import pytest
from structlog.testing import capture_logs

from guardgate import GuardGate
from guardgate.perturb.watermark import detect, mark
from tests.servers import serve_in_thread

KEY = "watermark-key-for-the-tests-0001"
HIGH = "sk-high-risk"
CHAT: dict[str, Any] = {
    "model": "toy-1",
    "messages": [{"role": "user", "content": "How should I plan a large project?"}],
    "max_tokens": 300,
    "logprobs": True,
    "top_logprobs": 5,
    "reasoning_effort": "high",
}


def policy(toy: str, degrade: list[Any], *, mark_: bool = True, **extra: Any) -> dict[str, Any]:
    tier: dict[str, Any] = {"score": 0.7, "degrade": degrade}
    if mark_:
        tier["mark"] = True
    return {
        "upstream": toy,
        "tiers": {"high": tier},
        "overrides": [{"api_key_sha256": hashlib.sha256(HIGH.encode()).hexdigest(),
                       "tier": "high"}],
        "watermark": {"key": KEY},
        **extra,
    }


def client(base: str, key: str = HIGH) -> openai.OpenAI:
    return openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)


def test_a_high_risk_caller_gets_a_degraded_marked_answer(toy: str) -> None:
    degrade = ["drop_logprobs", "drop_reasoning", {"clamp_max_tokens": 200}]
    direct = httpx.post(toy + "/v1/chat/completions", json={**CHAT, "max_tokens": 200}).json()
    with serve_in_thread(GuardGate(policy=policy(toy, degrade))) as base, \
            capture_logs() as logs:
        answer = client(base).chat.completions.create(**CHAT)
        normal = httpx.post(base + "/v1/chat/completions", json=CHAT,
                            headers={"authorization": "Bearer sk-normal"})
        metrics = httpx.get(base + "/_guardgate/metrics").text
    choice = answer.choices[0]
    assert choice.logprobs is None
    assert getattr(choice.message, "reasoning_content", None) is None
    original = direct["choices"][0]["message"]["content"]
    assert choice.message.content == mark(original, KEY.encode())
    assert choice.message.content != original
    evidence = detect(choice.message.content or "", KEY.encode())
    assert evidence.hits == evidence.slots > 5
    assert answer.usage is not None and answer.usage.completion_tokens == 200
    # The caller in no tier gets the upstream's bytes.
    assert normal.content == httpx.post(toy + "/v1/chat/completions", json=CHAT).content
    assert [e["action"] for e in logs if e["event"] == "request"] == ["degrade", "allow"]
    assert 'guardgate_transforms_total{name="drop_reasoning"} 1.0' in metrics
    assert "guardgate_marked_answers_total 1.0" in metrics


def test_a_marked_stream_equals_the_whole_answer_marked(toy: str) -> None:
    with serve_in_thread(GuardGate(policy=policy(toy, ["drop_logprobs"]))) as base:
        stream = client(base).chat.completions.create(**CHAT, stream=True)
        chunks = [c for c in stream if c.choices]
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    direct = httpx.post(toy + "/v1/chat/completions", json=CHAT).json()
    assert streamed == mark(direct["choices"][0]["message"]["content"], KEY.encode())
    assert all(c.choices[0].logprobs is None for c in chunks)


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/completions", {"model": "toy-1", "prompt": "Plan a large project", "max_tokens": 200}),
    ("/v1/responses", {"model": "toy-1", "input": "Plan a large project",
                       "max_output_tokens": 200}),
    ("/v1/messages", {"model": "toy-1", "max_tokens": 200,
                      "messages": [{"role": "user", "content": "Plan a large project"}]}),
])
def test_every_api_is_marked(toy: str, path: str, body: dict[str, Any]) -> None:
    with serve_in_thread(GuardGate(policy=policy(toy, ["drop_reasoning"]))) as base:
        marked = httpx.post(base + path, json=body, headers={"authorization": f"Bearer {HIGH}",
                                                             "x-api-key": HIGH})
    assert marked.status_code == 200
    from guardgate.perturb.texts import answer_texts
    text = "".join(answer_texts(marked.content, jsonl=True))
    evidence = detect(text, KEY.encode())
    assert evidence.slots > 3 and evidence.hits == evidence.slots


def test_shadow_mode_degrades_nothing(toy: str) -> None:
    shadow = policy(toy, ["drop_logprobs", "drop_reasoning"], mode="shadow")
    with serve_in_thread(GuardGate(policy=shadow)) as base, capture_logs() as logs:
        answer = httpx.post(base + "/v1/chat/completions", json=CHAT,
                            headers={"authorization": f"Bearer {HIGH}"})
    assert answer.content == httpx.post(toy + "/v1/chat/completions", json=CHAT).content
    assert [e["action"] for e in logs if e["event"] == "request"] == ["would_degrade"]


def test_tarpit_delays_and_reroute_serves_elsewhere(toy: str) -> None:
    async def small_model(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"served_by": "small"}'})

    with serve_in_thread(small_model) as small:
        degrade = [{"tarpit": "400ms"}, {"reroute": small}]
        with serve_in_thread(GuardGate(policy=policy(toy, degrade, mark_=False))) as base:
            began = time.perf_counter()
            rerouted = httpx.post(base + "/v1/chat/completions", json=CHAT,
                                  headers={"authorization": f"Bearer {HIGH}"})
            waited = time.perf_counter() - began
            began = time.perf_counter()
            normal = httpx.post(base + "/v1/chat/completions", json=CHAT,
                                headers={"authorization": "Bearer sk-normal"})
            plain = time.perf_counter() - began
    assert rerouted.json() == {"served_by": "small"}
    assert waited >= 0.4 > plain
    assert normal.json()["object"] == "chat.completion"
