"""The toy upstream, served by uvicorn and read by the official ``openai`` SDK (and httpx
for Anthropic's shapes): every API, streaming and not, parses and adds up."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from guardgate.toy import GENERAL, MAX_TOKENS_CAP, TOPICS, TOY_MODEL, create_toy_app, toy_answer
from tests.servers import serve_in_thread

USER: list[Any] = [{"role": "user", "content": "How should I plan a small software project?"}]
BANK = {s for _, sentences in TOPICS for s in sentences} | set(GENERAL)


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with serve_in_thread(create_toy_app()) as url:
        yield url


@pytest.fixture(scope="module")
def client(base: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=base + "/v1", api_key="sk-test", max_retries=0) as sdk:
        yield sdk


@pytest.fixture(scope="module")
def http(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base, timeout=10) as session:
        yield session


def sse(raw: bytes) -> list[tuple[str | None, bytes]]:
    """(event name, data) of each SSE event; every event ends with a blank line."""
    assert raw.endswith(b"\n\n")
    events = []
    for block in raw[:-2].split(b"\n\n"):
        name, data = None, b""
        for line in block.split(b"\n"):
            key, _, value = line.partition(b": ")
            if key == b"event":
                name = value.decode()
            else:
                assert key == b"data", line
                data = value
        events.append((name, data))
    return events


def words(text: str) -> int:
    return len(text.split())


def part(item: Any) -> Any:
    """The output_text part of a Responses message item."""
    assert item.type == "message" and item.content[0].type == "output_text"
    return item.content[0]


# --------------------------------------------------------------------------- chat


def test_chat_answer_is_prose_from_the_bank(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(model="toy-x", messages=USER)
    choice = out.choices[0]
    text = choice.message.content or ""
    assert out.object == "chat.completion" and out.model == "toy-x"
    assert out.id.startswith("chatcmpl-") and choice.message.role == "assistant"
    assert choice.finish_reason == "stop" and text.endswith(".") and not text.startswith(" ")
    sentences = re.findall(r"[^.]+\.", text)
    assert sentences and all(s.strip() in BANK for s in sentences)
    assert choice.logprobs is None and "reasoning_content" not in (choice.message.model_extra or {})
    usage = out.usage
    assert usage is not None
    assert usage.completion_tokens == words(text) <= 64
    assert usage.prompt_tokens == len(USER[0]["content"]) // 4 + 1
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_long_answers_mix_topic_and_general_sentences() -> None:
    text = toy_answer("Fix this python bug in my code", max_tokens=300).text
    sentences = [s.strip() for s in re.findall(r"[^.]+\.", text)]
    programming = TOPICS[0][1]
    assert sentences[0] in programming and sum(s in programming for s in sentences) >= 8
    assert any(s in GENERAL for s in sentences)
    assert len(set(sentences)) >= 12  # a whole round of the bank before any repeat


@pytest.mark.parametrize(("field", "asked", "expected"), [
    ("max_tokens", 20, 20), ("max_completion_tokens", 7, 7), ("max_tokens", 1, 1),
    ("max_tokens", 100_000, MAX_TOKENS_CAP),
])
def test_chat_max_tokens_cuts_the_answer(
    client: openai.OpenAI, field: str, asked: int, expected: int
) -> None:
    limit: dict[str, Any] = {field: asked}
    out = client.chat.completions.create(model="t", messages=USER, **limit)
    assert out.choices[0].finish_reason == "length"
    assert words(out.choices[0].message.content or "") == expected
    assert out.usage is not None and out.usage.completion_tokens == expected


def test_chat_logprobs(client: openai.OpenAI) -> None:
    plain = client.chat.completions.create(model="t", messages=USER, max_tokens=12)
    out = client.chat.completions.create(
        model="t", messages=USER, max_tokens=12, logprobs=True, top_logprobs=3
    )
    text = out.choices[0].message.content
    assert text == plain.choices[0].message.content  # asking for logprobs changes no word
    assert out.choices[0].logprobs is not None
    entries = out.choices[0].logprobs.content or []
    assert len(entries) == 12 and "".join(e.token for e in entries) == text
    for entry in entries:
        assert entry.bytes == list(entry.token.encode()) and entry.logprob <= 0
        tops = [t.logprob for t in entry.top_logprobs]
        assert len(tops) == 3 and tops == sorted(tops, reverse=True)
        assert entry.top_logprobs[0].token == entry.token
    none = client.chat.completions.create(
        model="t", messages=USER, max_tokens=4, logprobs=True
    )
    assert none.choices[0].logprobs is not None
    assert all(e.top_logprobs == [] for e in none.choices[0].logprobs.content or [])


def test_chat_n_choices_differ(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(model="t", messages=USER, n=3, max_tokens=30)
    texts = [c.message.content for c in out.choices]
    assert [c.index for c in out.choices] == [0, 1, 2] and len(set(texts)) == 3
    assert out.usage is not None and out.usage.completion_tokens == 90


def test_chat_reasoning_content(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model="t", messages=USER, max_tokens=10, reasoning_effort="high"
    )
    reasoning = (out.choices[0].message.model_extra or {}).get("reasoning_content")
    assert isinstance(reasoning, str) and words(reasoning) > 10
    usage = out.usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == words(reasoning)
    assert usage.completion_tokens == 10 + words(reasoning)
    low = client.chat.completions.create(
        model="t", messages=USER, max_tokens=10, reasoning_effort="low"
    )
    assert words((low.choices[0].message.model_extra or {})["reasoning_content"]) < words(reasoning)
    off = client.chat.completions.create(
        model="t", messages=USER, max_tokens=10, reasoning_effort="none"
    )
    assert "reasoning_content" not in (off.choices[0].message.model_extra or {})


def test_chat_stream_without_usage(client: openai.OpenAI, http: httpx.Client) -> None:
    request: dict[str, Any] = {"model": "t", "messages": USER, "max_tokens": 15}
    whole = client.chat.completions.create(**request)
    chunks = list(client.chat.completions.create(**request, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert streamed == whole.choices[0].message.content
    assert len(chunks) == 1 + 15 + 1 and chunks[-1].choices[0].finish_reason == "length"
    assert all(c.usage is None and c.choices[0].logprobs is None for c in chunks)
    assert all(c.id == chunks[0].id and c.object == "chat.completion.chunk" for c in chunks)
    raw = http.post("/v1/chat/completions", json={**request, "stream": True})
    assert raw.headers["content-type"] == "text/event-stream"
    assert raw.headers["cache-control"] == "no-cache"
    assert b'"usage"' not in raw.content and raw.content.endswith(b"data: [DONE]\n\n")


def test_chat_stream_with_usage_and_logprobs(client: openai.OpenAI, http: httpx.Client) -> None:
    request: dict[str, Any] = {"model": "t", "messages": USER, "max_tokens": 9, "logprobs": True,
                               "top_logprobs": 2, "stream_options": {"include_usage": True}}
    chunks = list(client.chat.completions.create(**request, stream=True))
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == 9
    assert last.usage.total_tokens == last.usage.prompt_tokens + 9
    assert all(c.usage is None for c in chunks[:-1])
    content = [c for c in chunks[:-1] if c.choices and c.choices[0].delta.content]
    assert len(content) == 9
    for chunk in content:
        lp = chunk.choices[0].logprobs
        assert lp is not None and lp.content is not None and len(lp.content) == 1
        assert lp.content[0].token == chunk.choices[0].delta.content
        assert len(lp.content[0].top_logprobs) == 2
    events = sse(http.post("/v1/chat/completions", json={**request, "stream": True}).content)
    assert events[-1] == (None, b"[DONE]")
    bodies = [orjson.loads(data) for _, data in events[:-1]]
    assert all(b["usage"] is None for b in bodies[:-1]) and bodies[-1]["choices"] == []


def test_chat_stream_reasoning_first(client: openai.OpenAI) -> None:
    request: dict[str, Any] = {"model": "t", "messages": USER, "max_tokens": 6,
                               "reasoning_effort": "medium"}
    whole = client.chat.completions.create(**request)
    kinds, thinking = [], ""
    for chunk in client.chat.completions.create(**request, stream=True):
        extra = chunk.choices[0].delta.model_extra or {}
        if extra.get("reasoning_content"):
            kinds.append("r")
            thinking += extra["reasoning_content"]
        elif chunk.choices[0].delta.content:
            kinds.append("c")
    assert "".join(kinds) == "r" * kinds.count("r") + "cccccc" and kinds.count("r") > 3
    assert thinking == (whole.choices[0].message.model_extra or {})["reasoning_content"]


def test_chat_stream_n(client: openai.OpenAI) -> None:
    request: dict[str, Any] = {"model": "t", "messages": USER, "n": 2}
    whole = client.chat.completions.create(**request)
    texts = ["", ""]
    finishes: dict[int, str | None] = {}
    for chunk in client.chat.completions.create(**request, stream=True):
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    assert texts == [c.message.content for c in whole.choices]
    assert finishes == {0: "stop", 1: "stop"}


# --------------------------------------------------------------------------- completions


def test_completions(client: openai.OpenAI) -> None:
    prompt = "Write a short essay about editing"
    out = client.completions.create(model="t", prompt=prompt)
    text = out.choices[0].text
    assert out.object == "text_completion" and out.id.startswith("cmpl-")
    assert text.startswith(" ") and out.choices[0].finish_reason == "stop"
    assert out.choices[0].logprobs is None
    assert out.usage is not None and out.usage.completion_tokens == words(text)
    assert out.usage.prompt_tokens == len(prompt) // 4 + 1
    cut = client.completions.create(model="t", prompt=prompt, max_tokens=10, logprobs=2)
    lp = cut.choices[0].logprobs
    assert cut.choices[0].finish_reason == "length" and words(cut.choices[0].text) == 10
    assert lp is not None and lp.tokens is not None and lp.text_offset is not None
    assert "".join(lp.tokens) == cut.choices[0].text == text[: len(cut.choices[0].text)]
    assert len(lp.token_logprobs or []) == 10 and all(len(t) == 2 for t in lp.top_logprobs or [])
    assert lp.text_offset[0] == len(prompt)
    assert lp.text_offset[-1] == len(prompt) + len(cut.choices[0].text) - len(lp.tokens[-1])


def test_completions_batch_and_stream(client: openai.OpenAI) -> None:
    out = client.completions.create(model="t", prompt=["one", "two"], n=2, max_tokens=5)
    assert [c.index for c in out.choices] == [0, 1, 2, 3]
    assert len({c.text for c in out.choices}) == 4
    assert out.usage is not None and out.usage.completion_tokens == 20
    request: dict[str, Any] = {"model": "t", "prompt": "Tell me about light", "max_tokens": 8,
                               "logprobs": 1}
    whole = client.completions.create(**request)
    chunks = list(client.completions.create(
        **request, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 8
    assert all(c.usage is None for c in chunks[:-1])
    tokens = [c.choices[0].logprobs.tokens for c in chunks[:-2] if c.choices[0].logprobs]
    assert len(tokens) == 8 and chunks[-2].choices[0].finish_reason == "length"
    plain = list(client.completions.create(**request, stream=True))
    assert all(c.usage is None and c.choices for c in plain)


# --------------------------------------------------------------------------- responses


def test_responses(client: openai.OpenAI) -> None:
    out = client.responses.create(model="t", input="Why does ice float on water?")
    assert out.object == "response" and out.status == "completed" and out.id.startswith("resp_")
    assert [item.type for item in out.output] == ["message"]
    assert out.output_text and out.output_text.endswith(".")
    message = out.output[0]
    assert message.type == "message"
    part = message.content[0]
    assert part.type == "output_text" and part.annotations == [] and part.logprobs is None
    usage = out.usage
    assert usage is not None and usage.output_tokens == words(out.output_text)
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.cached_tokens == 0
    assert usage.output_tokens_details.reasoning_tokens == 0


def test_responses_logprobs_reasoning_and_limit(client: openai.OpenAI) -> None:
    out = client.responses.create(
        model="t", input=[{"role": "user", "content": "Plan my week"}], max_output_tokens=16,
        include=["message.output_text.logprobs"], top_logprobs=2,
        reasoning={"effort": "low", "summary": "auto"},
    )
    assert out.status == "incomplete" and out.incomplete_details is not None
    assert out.incomplete_details.reason == "max_output_tokens"
    reasoning, message = out.output
    assert reasoning.type == "reasoning" and message.type == "message"
    summary = reasoning.summary[0].text
    assert words(summary) > 3 and words(out.output_text) == 16
    logprobs = part(message).logprobs
    assert logprobs is not None and "".join(lp.token for lp in logprobs) == out.output_text
    assert all(len(lp.top_logprobs) == 2 for lp in logprobs)
    assert out.usage is not None and out.usage.output_tokens == 16 + words(summary)
    assert out.usage.output_tokens_details.reasoning_tokens == words(summary)
    assert out.reasoning is not None and out.reasoning.effort == "low"
    assert out.usage.input_tokens == len("Plan my week") // 4 + 1
    other = client.responses.create(
        model="t", input=[{"role": "user", "content": [{"type": "input_text", "text": "Hi"}]}],
        instructions="Be kind.")
    assert other.output_text != out.output_text and other.instructions == "Be kind."
    assert other.usage is not None and other.usage.input_tokens == len("Be kind.\nHi") // 4 + 2


def test_responses_stream_events(client: openai.OpenAI) -> None:
    request: dict[str, Any] = {"model": "t", "input": "Explain gravity", "max_output_tokens": 5}
    whole = client.responses.create(**request)
    events = list(client.responses.create(**request, stream=True))
    assert [e.type for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", *["response.output_text.delta"] * 5,
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.incomplete",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert all(e.logprobs == [] for e in events if e.type == "response.output_text.delta")
    done = events[-1].response
    assert deltas == whole.output_text == done.output_text
    assert events[0].response.status == "in_progress"
    assert done.usage is not None and done.usage.output_tokens == 5
    plain = list(client.responses.create(model="t", input="Explain gravity", stream=True))
    assert plain[-1].type == "response.completed"
    assert plain[-1].response.status == "completed"


def test_responses_stream_helper_with_reasoning(client: openai.OpenAI) -> None:
    request: dict[str, Any] = {"model": "t", "input": "Explain gravity",
                               "reasoning": {"effort": "medium"},
                               "include": ["message.output_text.logprobs"]}
    whole = client.responses.create(**request)
    with client.responses.stream(**request) as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [event.type for event in events]
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert deltas and all(len(e.logprobs) == 1 and e.logprobs[0].token == e.delta for e in deltas)
    [done] = [e for e in events if e.type == "response.output_text.done"]
    assert [lp.token for lp in done.logprobs] == [e.delta for e in deltas]
    assert final.output_text == whole.output_text
    assert final.usage == whole.usage and final.status == whole.status == "completed"
    assert final.output[0].model_dump(exclude={"id"}) == whole.output[0].model_dump(exclude={"id"})
    assert final.output[0].type == "reasoning"
    assert part(final.output[1]).logprobs == part(whole.output[1]).logprobs
    assert types[2:9] == [
        "response.output_item.added", "response.reasoning_summary_part.added",
        *["response.reasoning_summary_text.delta"] * 5,
    ][:7]
    assert "response.reasoning_summary_text.done" in types
    assert types.index("response.reasoning_summary_part.done") < types.index(
        "response.content_part.added")


# --------------------------------------------------------------------------- anthropic


def test_anthropic_message(http: httpx.Client) -> None:
    request = {"model": "claude-toy", "max_tokens": 30, "system": "Be brief.",
               "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi there"}]}]}
    out = http.post("/v1/messages", json=request).json()
    assert list(out) == ["id", "type", "role", "model", "content", "stop_sequence", "stop_reason",
                         "usage"]
    assert out["id"].startswith("msg_") and out["type"] == "message" and out["role"] == "assistant"
    assert out["model"] == "claude-toy" and out["stop_reason"] == "max_tokens"
    assert out["stop_sequence"] is None
    [block] = out["content"]
    assert block["type"] == "text" and words(block["text"]) == 30
    assert out["usage"]["output_tokens"] == 30
    assert out["usage"]["input_tokens"] == len("Be brief.\nHi there") // 4 + 2
    free = http.post("/v1/messages", json={**request, "max_tokens": None}).json()
    assert free["stop_reason"] == "end_turn"


def test_anthropic_thinking_and_stream(http: httpx.Client) -> None:
    request: dict[str, Any] = {"model": "c", "max_tokens": 12,
                               "thinking": {"type": "enabled", "budget_tokens": 1024},
                               "messages": [{"role": "user", "content": "Hello"}]}
    out = http.post("/v1/messages", json=request).json()
    thinking, text = out["content"]
    assert thinking["type"] == "thinking" and thinking["thinking"] and thinking["signature"]
    assert out["usage"]["output_tokens"] == 12 + words(thinking["thinking"])
    response = http.post("/v1/messages", json={**request, "stream": True})
    assert response.headers["content-type"] == "text/event-stream"
    events = [(name, orjson.loads(data)) for name, data in sse(response.content)]
    assert all(name == data["type"] for name, data in events)
    names = [name for name, _ in events]
    n_think = words(thinking["thinking"])
    assert names == [
        "message_start", "content_block_start", "ping", *["content_block_delta"] * (n_think + 1),
        "content_block_stop", "content_block_start", *["content_block_delta"] * 12,
        "content_block_stop", "message_delta", "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["id"].startswith("msg_") and start["usage"]["output_tokens"] == 1
    deltas = [d["delta"] for _, d in events if d["type"] == "content_block_delta"]
    assert "".join(d.get("thinking", "") for d in deltas) == thinking["thinking"]
    assert deltas[n_think] == {"type": "signature_delta", "signature": thinking["signature"]}
    assert "".join(d["text"] for d in deltas if d["type"] == "text_delta") == text["text"]
    assert events[-2][1]["delta"]["stop_reason"] == "max_tokens"
    assert events[-2][1]["usage"]["output_tokens"] == out["usage"]["output_tokens"]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/responses",
                                  "/v1/messages"])
@pytest.mark.parametrize("raw", [b"{", b"", b"[1, 2]", b"null", b'"text"', b"\xff"])
def test_bad_json_is_400_in_the_api_shape(http: httpx.Client, path: str, raw: bytes) -> None:
    response = http.post(path, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    if path == "/v1/messages":
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
        assert body["error"]["message"]
    else:
        assert set(body["error"]) == {"message", "type", "param", "code"}
        assert body["error"]["type"] == "invalid_request_error"


def test_sdk_raises_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="t", messages=USER, max_tokens=-3)
    assert caught.value.status_code == 400 and caught.value.param == "max_tokens"


MSG = [{"role": "user", "content": "x"}]
MALFORMED: list[tuple[str, dict[str, Any], int]] = [
    ("/v1/chat/completions", {}, 400),
    ("/v1/chat/completions", {"messages": "hi"}, 400),
    ("/v1/chat/completions", {"messages": []}, 400),
    ("/v1/chat/completions", {"messages": [1, None]}, 400),
    ("/v1/chat/completions", {"messages": MSG, "max_tokens": "5"}, 400),
    ("/v1/chat/completions", {"messages": MSG, "max_tokens": True}, 400),
    ("/v1/chat/completions", {"messages": MSG, "n": 0}, 400),
    ("/v1/chat/completions", {"messages": MSG, "logprobs": True, "top_logprobs": 99}, 400),
    ("/v1/chat/completions", {"messages": [{"content": {"a": [[[{"text": 5}]]]}}]}, 200),
    ("/v1/chat/completions", {"messages": MSG, "model": 7, "seed": "x", "stream": "yes"}, 200),
    ("/v1/chat/completions", {"messages": MSG, "stream": True, "stream_options": 5}, 200),
    ("/v1/chat/completions", {"messages": MSG, "reasoning_effort": 3, "logprobs": 1}, 200),
    ("/v1/completions", {"prompt": [1, "a"]}, 400),
    ("/v1/completions", {"prompt": {}}, 400),
    ("/v1/completions", {"prompt": []}, 400),
    ("/v1/completions", {"prompt": [[1, 2], [3]], "logprobs": 0}, 200),
    ("/v1/completions", {"prompt": "x", "logprobs": "5"}, 400),
    ("/v1/completions", {}, 200),
    ("/v1/responses", {"input": 5}, 400),
    ("/v1/responses", {"input": [3, {"content": None}], "reasoning": "high", "include": "x"}, 200),
    ("/v1/responses", {"instructions": ["a"], "max_output_tokens": 0}, 400),
    ("/v1/responses", {}, 200),
    ("/v1/messages", {}, 400),
    ("/v1/messages", {"messages": MSG, "max_tokens": 1.5}, 400),
    ("/v1/messages", {"messages": MSG, "thinking": "yes", "system": [{"text": 1}]}, 200),
]


@pytest.mark.parametrize(("path", "body", "status"), MALFORMED)
def test_malformed_requests_never_500(
    http: httpx.Client, path: str, body: dict[str, Any], status: int
) -> None:
    response = http.post(path, json=body)
    assert response.status_code == status, response.text
    if response.headers["content-type"] == "application/json":
        assert response.json()
    else:
        assert response.content.endswith(b"\n\n")


def test_deep_nesting_is_not_a_500(http: httpx.Client) -> None:
    deep: Any = "text"
    for _ in range(500):
        deep = [deep]
    response = http.post("/v1/chat/completions", json={"messages": [{"content": deep}]})
    assert response.status_code == 200
    too_deep = b'{"messages": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert http.post("/v1/chat/completions", content=too_deep).status_code == 400


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chat/completions", {"messages": USER, "n": 2, "logprobs": True, "top_logprobs": 5}),
    ("/v1/chat/completions", {"messages": USER, "stream": True, "reasoning_effort": "low",
                              "stream_options": {"include_usage": True}}),
    ("/v1/completions", {"prompt": "abc", "stream": True, "logprobs": 3}),
    ("/v1/responses", {"input": "abc", "stream": True, "reasoning": {}}),
    ("/v1/messages", {"messages": USER, "stream": True, "thinking": {"type": "enabled"}}),
])
def test_same_request_same_bytes(http: httpx.Client, path: str, body: dict[str, Any]) -> None:
    first, second = (http.post(path, json=body) for _ in range(2))
    assert first.status_code == 200 and first.content == second.content


def test_seeds_change_answers(base: str, http: httpx.Client) -> None:
    def text(session: httpx.Client | str, **extra: Any) -> str:
        body = {"messages": USER, "max_tokens": 40, **extra}
        if isinstance(session, str):
            return str(httpx.post(session + "/v1/chat/completions", json=body).json()[
                "choices"][0]["message"]["content"])
        out = session.post("/v1/chat/completions", json=body).json()
        return str(out["choices"][0]["message"]["content"])

    here = text(http)
    assert text(http, seed=1) != here and text(http, seed=1) == text(http, seed=1)
    assert text(http, messages=[{"role": "user", "content": "Another question"}]) != here
    with serve_in_thread(create_toy_app(seed=0)) as same, serve_in_thread(
            create_toy_app(seed=5)) as other:
        assert text(same) == here and text(other) != here
    assert toy_answer("x", seed=3).text == toy_answer("x", seed=3).text


# --------------------------------------------------------------------------- delays, misc


def test_token_delay() -> None:
    with serve_in_thread(create_toy_app(token_delay=0.03)) as url, openai.OpenAI(
            base_url=url + "/v1", api_key="sk-test", max_retries=0) as sdk:
        started = time.monotonic()
        arrivals = []
        for _ in sdk.chat.completions.create(model="t", messages=USER, max_tokens=10,
                                             stream=True):
            arrivals.append(time.monotonic() - started)
        assert arrivals[-1] >= 0.27 and arrivals[-1] - arrivals[1] >= 0.2  # spread, not batched
        started = time.monotonic()
        sdk.chat.completions.create(model="t", messages=USER, max_tokens=10)
        assert 0.27 <= time.monotonic() - started < 1.5
        started = time.monotonic()
        sdk.chat.completions.create(model="t", messages=USER, max_tokens=1000)
        assert 1.9 <= time.monotonic() - started < 3.5  # capped at 2 s


def test_models_and_health(client: openai.OpenAI, http: httpx.Client) -> None:
    assert [m.id for m in client.models.list()] == [TOY_MODEL]
    anthropic = http.get("/v1/models", headers={"anthropic-version": "2023-06-01"}).json()
    assert anthropic["data"][0]["id"] == TOY_MODEL and anthropic["has_more"] is False
    health = http.get("/")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.headers["content-type"] == "application/json"
    assert http.get("/v1/chat/completions").status_code == 405


def test_serve_in_thread_port_and_shutdown() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with serve_in_thread(create_toy_app(), port=port) as url:
        assert url == f"http://127.0.0.1:{port}"
        assert httpx.get(url + "/").status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/")
