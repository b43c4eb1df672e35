"""Usage metering (`guardgate.apis.usage`, `guardgate.apis.sse`) against the real toy upstream:
every API, JSON and SSE, any chunking, and upstreams that send garbage."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardgate.apis import ADAPTERS
from guardgate.apis.answers.chain import MAX_JSON
from guardgate.apis.sse import MAX_EVENT, EventReader, event_data
from guardgate.apis.usage import UsageMeter, prepare_stream_usage
from guardgate.toy import create_toy_app
from tests.servers import serve_in_thread

PATHS = {adapter.name: adapter.path for adapter in ADAPTERS.values()}
USER = [{"role": "user", "content": "How should I plan a small software project?"}]

CHAT = [
    {"messages": USER},
    {"messages": USER, "max_tokens": 7},
    {"messages": USER, "n": 2, "max_completion_tokens": 5},
    {"messages": USER, "reasoning_effort": "low"},
    {"messages": USER, "logprobs": True, "top_logprobs": 2, "max_tokens": 4},
]
COMPLETIONS = [
    {"prompt": "Write a short story about"},
    {"prompt": ["Once upon a time", "The plan is"], "n": 2, "max_tokens": 6},
    {"prompt": "Why is the sky blue", "max_tokens": 5, "logprobs": 2},
]
RESPONSES = [
    {"input": "Explain gravity to a child."},
    {"input": "Explain gravity to a child.", "max_output_tokens": 9},
    {"input": [{"role": "user", "content": "Plan my week"}], "reasoning": {"effort": "low"}},
    {
        "input": "Tell me about cells",
        "instructions": "Be brief",
        "top_logprobs": 2,
        "include": ["message.output_text.logprobs"],
    },
]
MESSAGES = [
    {"messages": USER},
    {"messages": USER, "max_tokens": 11, "system": "Be brief"},
    {"messages": USER, "thinking": {"type": "enabled", "budget_tokens": 1024}},
]
CASES = (
    [("openai.chat", b) for b in CHAT]
    + [("openai.completions", b) for b in COMPLETIONS]
    + [("openai.responses", b) for b in RESPONSES]
    + [("anthropic.messages", b) for b in MESSAGES]
)
IDS = [f"{api}-{i}" for i, (api, _) in enumerate(CASES)]
ASKED = [(api, b) for api, b in CASES if api in ("openai.chat", "openai.completions")]
ASKED_IDS = [f"{api}-{i}" for i, (api, _) in enumerate(ASKED)]


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with serve_in_thread(create_toy_app()) as base, httpx.Client(base_url=base, timeout=10) as c:
        yield c


def post(http: httpx.Client, api: str, body: dict[str, Any] | bytes) -> list[bytes]:
    """The raw response body of one request, in the chunks it arrived in."""
    raw = body if isinstance(body, bytes) else orjson.dumps({"model": "toy", **body})
    with http.stream("POST", PATHS[api], content=raw) as response:
        assert response.status_code == 200, response.read()
        return list(response.iter_raw())


def run(meter: UsageMeter, chunks: list[bytes]) -> bytes:
    return b"".join(meter.feed(c) for c in chunks) + meter.finish()


def reading(meter: UsageMeter) -> tuple[int | None, int | None, int]:
    return meter.input_tokens, meter.output_tokens, meter.text_chars


def json_usage(api: str, answer: dict[str, Any]) -> tuple[int, int]:
    usage = answer["usage"]
    if api in ("openai.chat", "openai.completions"):
        counts = usage["prompt_tokens"], usage["completion_tokens"]
    else:
        cached = usage.get("cache_creation_input_tokens", 0) + usage.get(
            "cache_read_input_tokens", 0
        )
        counts = usage["input_tokens"] + cached, usage["output_tokens"]
    assert all(type(n) is int and n > 0 for n in counts)
    return counts


def json_chars(api: str, answer: dict[str, Any]) -> int:
    """Characters of generated text in a JSON answer, read independently of the meter."""
    if api == "openai.chat":
        messages = [c["message"] for c in answer["choices"]]
        return sum(len(m["content"]) + len(m.get("reasoning_content", "")) for m in messages)
    if api == "openai.completions":
        return sum(len(c["text"]) for c in answer["choices"])
    if api == "openai.responses":
        parts = [p for item in answer["output"] for p in item.get("content", [])]
        parts += [p for item in answer["output"] for p in item.get("summary", [])]
        return sum(len(p["text"]) for p in parts)
    return sum(len(b.get("text", "") + b.get("thinking", "")) for b in answer["content"])


def json_answer(http: httpx.Client, api: str, body: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = orjson.loads(b"".join(post(http, api, body)))
    return answer


def first_id(stream: bytes) -> bytes:
    data = event_data(stream.split(b"\n\n", 1)[0])
    assert data is not None
    ident: str = orjson.loads(data)["id"]
    return ident.encode()


# --- JSON answers ------------------------------------------------------------------


@pytest.mark.parametrize(("api", "body"), CASES, ids=IDS)
def test_json_usage_is_the_upstreams_and_bytes_pass_at_once(
    http: httpx.Client, api: str, body: dict[str, Any]
) -> None:
    chunks = post(http, api, body)
    answer = orjson.loads(b"".join(chunks))
    meter = UsageMeter(api, False, False)
    for chunk in chunks:
        assert meter.feed(chunk) == chunk  # never held back
    assert meter.finish() == b""
    assert (meter.input_tokens, meter.output_tokens) == json_usage(api, answer)
    assert meter.text_chars == json_chars(api, answer) > 0


def test_json_pieces_are_never_held_and_parsed_once_at_the_end() -> None:
    body = orjson.dumps(
        {"choices": [{"text": "abcdef"}], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
    )
    meter = UsageMeter("openai.completions", False, False)
    pieces = [body[i : i + 5] for i in range(0, len(body), 5)]
    assert [meter.feed(p) for p in pieces] == pieces
    assert meter.output_tokens is None  # not before the end
    assert meter.finish() == b""
    assert reading(meter) == (3, 2, 6)


def test_json_past_the_cap_is_read_one_part_at_a_time() -> None:
    """Too large to hold whole: read part by part as it passes, never held
    back; the usage at its end is the upstream's, the choices counted by size."""
    text = "x" * (MAX_JSON // 3)
    choices = [{"index": i, "text": text} for i in range(5)]
    body = orjson.dumps(
        {"id": "c", "choices": choices, "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
    )
    meter = UsageMeter("openai.completions", False, False)
    pieces = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    assert [meter.feed(p) for p in pieces] == pieces
    assert meter.finish() == b""
    assert reading(meter)[:2] == (3, 2)
    assert 5 * len(text) < meter.text_chars < len(body)


def test_json_part_past_the_cap_passes_through_and_falls_back() -> None:
    text = "x" * (2 * MAX_JSON)
    body = orjson.dumps(
        {"choices": [{"text": text}], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
    )
    meter = UsageMeter("openai.completions", False, False)
    pieces = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    assert b"".join(meter.feed(p) for p in pieces) == body
    assert meter.finish() == b""
    # One part too large to parse: the estimate counts every byte from there
    # on as text, so an oversized answer is never settled as free.
    assert reading(meter)[:2] == (None, None)
    assert len(text) < meter.text_chars <= len(body)
    assert meter.estimated_output_tokens() >= len(text) // 4


# --- streams that carry usage ------------------------------------------------------


def with_usage(api: str, body: dict[str, Any]) -> dict[str, Any]:
    if api in ("openai.chat", "openai.completions"):
        return {**body, "stream": True, "stream_options": {"include_usage": True}}
    return {**body, "stream": True}


@pytest.mark.parametrize(("api", "body"), CASES, ids=IDS)
def test_stream_usage_equals_the_json_usage_and_bytes_pass_unchanged(
    http: httpx.Client, api: str, body: dict[str, Any]
) -> None:
    answer = json_answer(http, api, body)
    chunks = post(http, api, with_usage(api, body))
    assert len(chunks) > 3
    meter = UsageMeter(api, True, False)
    for chunk in chunks:
        assert meter.feed(chunk) is chunk
    assert meter.finish() == b""
    assert (meter.input_tokens, meter.output_tokens) == json_usage(api, answer)
    assert meter.text_chars == json_chars(api, answer)


@pytest.mark.parametrize(("api", "body"), ASKED, ids=ASKED_IDS)
def test_stream_without_usage_falls_back_to_the_text_estimate(
    http: httpx.Client, api: str, body: dict[str, Any]
) -> None:
    answer = json_answer(http, api, body)
    chunks = post(http, api, {**body, "stream": True})
    meter = UsageMeter(api, True, False)
    assert run(meter, chunks) == b"".join(chunks)
    assert (meter.input_tokens, meter.output_tokens) == (None, None)
    assert meter.text_chars == json_chars(api, answer)
    assert meter.estimated_output_tokens() == math.ceil(json_chars(api, answer) / 4) > 0


# --- asking for usage on the client's behalf ---------------------------------------


@pytest.mark.parametrize(
    "options",
    [None, {}, {"include_usage": False}, {"include_obfuscation": False}],
    ids=["absent", "empty", "false", "other-key"],
)
@pytest.mark.parametrize(("api", "body"), ASKED, ids=ASKED_IDS)
def test_stripped_stream_is_the_stream_the_client_asked_for(
    http: httpx.Client, api: str, body: dict[str, Any], options: dict[str, Any] | None
) -> None:
    client = {"model": "toy", **body, "stream": True}
    if options is not None:
        client["stream_options"] = options
    raw = orjson.dumps(client)
    call = ADAPTERS[api].parse(raw)
    forwarded = prepare_stream_usage(call)
    assert forwarded is not None
    assert orjson.loads(forwarded)["stream_options"] == {**(options or {}), "include_usage": True}

    direct = b"".join(post(http, api, raw))
    chunks = post(http, api, forwarded)
    assert b'"usage":{' in b"".join(chunks)  # the upstream did send usage
    meter = UsageMeter(api, True, True)
    seen = run(meter, chunks)
    # The toy derives ids from the raw request body, the one thing the rewrite changes.
    old, new = first_id(direct), first_id(seen)
    assert len(old) == len(new) and old != new
    assert seen.replace(new, old) == direct
    assert (meter.input_tokens, meter.output_tokens) == json_usage(
        api, json_answer(http, api, body)
    )


@pytest.mark.parametrize(
    ("api", "body"),
    [
        ("openai.chat", {"messages": USER}),
        ("openai.chat", {"messages": USER, "stream": False}),
        (
            "openai.chat",
            {"messages": USER, "stream": True, "stream_options": {"include_usage": True}},
        ),
        (
            "openai.completions",
            {"prompt": "x", "stream": True, "stream_options": {"include_usage": True}},
        ),
        ("openai.responses", {"input": "x", "stream": True}),
        ("anthropic.messages", {"messages": USER, "max_tokens": 5, "stream": True}),
    ],
)
def test_no_rewrite_when_usage_comes_anyway(api: str, body: dict[str, Any]) -> None:
    assert prepare_stream_usage(ADAPTERS[api].parse(orjson.dumps({"model": "m", **body}))) is None


def test_rewrite_keeps_the_body_and_leaves_the_call_alone() -> None:
    body = {"model": "m", "messages": USER, "stream": True, "stream_options": {"x": 1}, "n": 2}
    call = ADAPTERS["openai.chat"].parse(orjson.dumps(body))
    forwarded = prepare_stream_usage(call)
    assert forwarded is not None
    assert orjson.loads(forwarded) == {**body, "stream_options": {"x": 1, "include_usage": True}}
    assert list(orjson.loads(forwarded)) == list(body)  # key order kept
    assert call.body == body


# --- any chunking ----------------------------------------------------------------


def splits(data: bytes) -> Iterator[list[bytes]]:
    yield [data]
    for size in (1, 7):
        yield [data[i : i + size] for i in range(0, len(data), size)]
    rng = random.Random(0)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 40))))
        yield [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def every_cut(data: bytes) -> Iterator[list[bytes]]:
    for cut in range(1, len(data)):
        yield [data[:cut], data[cut:]]


STREAMS = [
    ("openai.chat", {"messages": USER, "max_tokens": 3, "n": 2}, True),
    ("openai.completions", {"prompt": "Why", "max_tokens": 3}, True),
    ("openai.chat", {"messages": USER, "max_tokens": 3, "reasoning_effort": "minimal"}, False),
    ("openai.responses", {"input": "Why", "max_output_tokens": 2}, False),
    ("anthropic.messages", {"messages": USER, "max_tokens": 3}, False),
]


@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
@pytest.mark.parametrize(("api", "body", "strip"), STREAMS, ids=[s[0] for s in STREAMS])
def test_any_chunking_gives_the_same_bytes_and_usage(
    http: httpx.Client, api: str, body: dict[str, Any], strip: bool, crlf: bool
) -> None:
    data = b"".join(post(http, api, with_usage(api, body)))
    if crlf:
        data = data.replace(b"\n", b"\r\n")
    whole = UsageMeter(api, True, strip)
    expected = run(whole, [data])
    assert whole.output_tokens is not None and whole.input_tokens is not None
    assert whole.text_chars > 0
    if strip:
        assert b'"usage"' not in expected and len(expected) < len(data)
        assert expected.endswith(b"data: [DONE]\r\n\r\n" if crlf else b"data: [DONE]\n\n")
    else:
        assert expected == data
    for pieces in [*splits(data), *every_cut(data)]:
        meter = UsageMeter(api, True, strip)
        assert run(meter, pieces) == expected
        assert reading(meter) == reading(whole)


def test_strip_holds_back_only_an_incomplete_last_event() -> None:
    event = b'data: {"choices":[{"delta":{"content":"hi"}}],"usage":null}\n\n'
    meter = UsageMeter("openai.chat", True, True)
    assert meter.feed(event[:20]) == b""
    assert meter.feed(event[20:-1]) == b""
    assert (
        meter.feed(event[-1:] + event[:5]) == b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'
    )
    assert meter.finish() == event[:5]
    assert meter.text_chars == 2


def test_strip_treats_a_last_event_without_blank_line_alike() -> None:
    meter = UsageMeter("openai.chat", True, True)
    assert meter.feed(b'data: {"choices":[{"delta":{"content":"hi"}}],"usage":null}') == b""
    assert meter.finish() == b'data: {"choices":[{"delta":{"content":"hi"}}]}'
    meter = UsageMeter("openai.chat", True, True)
    assert (
        meter.feed(b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}') == b""
    )
    assert meter.finish() == b""
    assert (meter.input_tokens, meter.output_tokens) == (1, 2)


def test_without_strip_nothing_is_held_back() -> None:
    meter = UsageMeter("openai.chat", True, False)
    for piece in (b"data: {", b'"usage":{"prompt_tokens":1,"completion_tokens":2}}', b"\n", b"\n"):
        assert meter.feed(piece) is piece
    assert meter.finish() == b""
    assert (meter.input_tokens, meter.output_tokens) == (1, 2)


def test_last_event_without_blank_line_still_counts() -> None:
    meter = UsageMeter("openai.chat", True, False)
    meter.feed(b'data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":5}}')
    assert meter.finish() == b""
    assert (meter.input_tokens, meter.output_tokens) == (4, 5)


# --- other layouts of the same events ------------------------------------------------


@pytest.mark.parametrize(
    ("event", "left"),
    [
        (
            b'data: {"id":"a","usage":null,"choices":[{"delta":{}}]}\n\n',
            b'data: {"id":"a","choices":[{"delta":{}}]}\n\n',
        ),
        (
            b'data: {"usage": null, "choices": [{"delta": {}}]}\n\n',
            b'data: {"choices": [{"delta": {}}]}\n\n',
        ),
        (
            b'data: {"choices": [{"delta": {"usage": null}}], "usage": null}\n\n',
            b'data: {"choices": [{"delta": {"usage": null}}]}\n\n',
        ),
        (
            b'event: chunk\r\ndata: {"choices":[],"x":1,"usage":null}\r\n\r\n',
            b'event: chunk\r\ndata: {"choices":[],"x":1}\r\n\r\n',
        ),
        (
            b'data: {"choices":[{"delta":{"usage":null}}],"usage":null,"k":"\\"usage\\":null"}\n\n',
            b'data: {"choices":[{"delta":{"usage":null}}],"k":"\\"usage\\":null"}\n\n',
        ),
        (
            b'data: {"choices":[],\ndata: "usage":{"prompt_tokens":1,"completion_tokens":1}}\n\n',
            b"",
        ),
        (b'data: {"choices":[],"usage":5}\n\n', b'data: {"choices":[],"usage":5}\n\n'),
        # Usage on a chunk that still carries a choice (LiteLLM, DeepSeek): the
        # member goes, every other byte stays.
        (
            b'data: {"choices":[1],"usage":{"prompt_tokens":1}}\n\n',
            b'data: {"choices":[1]}\n\n',
        ),
        (
            (b'data: {"id": "c", "usage": {"prompt_tokens": 1, "completion_tokens": 2},\n'
             b'data:  "choices": [{"delta": {"content": "\\"usage\\": {}"}}]}\n\n'),
            b'data: {"id": "c",\ndata:  "choices": [{"delta": {"content": "\\"usage\\": {}"}}]}\n\n',
        ),
        (
            b'data: {"usage": {"prompt_tokens": 1}, "choices": [{"delta": {"usage": {}}}]}\r\n\r\n',
            b'data: {"choices": [{"delta": {"usage": {}}}]}\r\n\r\n',
        ),
        (
            b'data: {"choices":[{"delta":{"content":"\xc3\xa9"}}] , "usage" : {"a": [1, {}]} }\n\n',
            b'data: {"choices":[{"delta":{"content":"\xc3\xa9"}}]  }\n\n',
        ),
        (b"data: [DONE]\n\n", b"data: [DONE]\n\n"),
        (b": keep-alive\n\n", b": keep-alive\n\n"),
    ],
)
def test_strip_removes_exactly_what_asking_added(event: bytes, left: bytes) -> None:
    meter = UsageMeter("openai.chat", True, True)
    assert run(meter, [event]) == left


def test_anthropic_cached_prompt_tokens_count_as_input() -> None:
    usage = {"input_tokens": 5, "cache_creation_input_tokens": 7, "cache_read_input_tokens": 11}
    answer = orjson.dumps(
        {"content": [{"type": "text", "text": "abc"}], "usage": {**usage, "output_tokens": 3}}
    )
    meter = UsageMeter("anthropic.messages", False, False)
    run(meter, [answer])
    assert reading(meter) == (23, 3, 3)

    start = {"type": "message_start", "message": {"usage": {**usage, "output_tokens": 1}}}
    stream = b"event: message_start\ndata: " + orjson.dumps(start) + b"\n\n"
    meter = UsageMeter("anthropic.messages", True, False)
    run(meter, [stream])
    assert (meter.input_tokens, meter.output_tokens) == (23, None)  # 1 is a placeholder
    delta = {"type": "message_delta", "usage": {"output_tokens": 9}}
    run(meter, [b"data: " + orjson.dumps(delta) + b"\n\n"])
    assert (meter.input_tokens, meter.output_tokens) == (23, 9)


def test_unknown_api_is_refused() -> None:
    with pytest.raises(ValueError, match="nope"):
        UsageMeter("nope", True, False)


# --- hostile upstreams ------------------------------------------------------------

HOSTILE = [
    b"",
    b"\n\n\n\n\r\n\r\n",
    b"garbage without any structure",
    b"data: \xff\xfe{\x80}\n\n",
    b'data: {"usage": "\xff"}\n\n',
    b"data: [DONE]\n\ndata: [DONE]\n\n",
    b'data: [1, 2, 3]\n\ndata: 42\n\ndata: null\n\ndata: "s"\n\n',
    b"data: " + b"[" * 5000 + b"]" * 5000 + b"\n\n",
    b"data: " + b'{"a":' * 3000 + b"1" + b"}" * 3000 + b"\n\n",
    b'data: {"usage": 5, "choices": "x"}\n\n',
    b'data: {"usage": [], "choices": [[], 1, "x", null]}\n\n',
    b'data: {"usage": {"prompt_tokens": true, "completion_tokens": -1, "input_tokens": 1.5}}\n\n',
    b'data: {"usage": {"input_tokens": 99999999999999999999999}}\n\n',
    b'data: {"type": ["unhashable"], "delta": 1, "response": []}\n\n',
    b'data: {"type": {"a": 1}}\n\ndata: {"type": "response.completed", "response": 1}\n\n',
    b'data: {"type": "content_block_delta", "delta": "x"}\n\n',
    b'data: {"type": "message_start", "message": {"usage": null}}\n\n',
    b'data: {"type": "response.output_text.delta", "delta": ["x"]}\n\n',
    b'data: {"choices": [{"delta": {"tool_calls": [1, {"function": "f"}]}, "message": []}]}\n\n',
    b'data: {"choices": [{"message": {"tool_calls": {"a": 1}}}], "output": [1, {"content": 5}]}\n\n',
    b'data: {"usage":null,"usage":null}\n\n',
    b"data:{}\n\ndata:\n\nevent: x\n\nid: 1\nretry: 5\n\n",
    b"\r\r\r\rdata: {}\r\r",
    bytes(range(256)) * 4,
]


@pytest.mark.parametrize("api", list(PATHS))
@pytest.mark.parametrize("data", HOSTILE)
def test_hostile_bodies_never_raise(api: str, data: bytes) -> None:
    for streaming, strip in ((False, False), (True, False), (True, True)):
        for pieces in ([data], [data[i : i + 3] for i in range(0, len(data), 3)]):
            meter = UsageMeter(api, streaming, strip)
            out = run(meter, pieces)
            if not strip:
                assert out == data
            for tokens in (meter.input_tokens, meter.output_tokens):
                assert tokens is None or (type(tokens) is int and tokens >= 0)
            assert meter.estimated_output_tokens() >= 0


@pytest.mark.parametrize("strip", [False, True])
def test_huge_event_without_boundary_is_passed_on_not_held(strip: bool) -> None:
    huge = b'data: {"choices":[{"delta":{"content":"' + b"x" * (3 * MAX_EVENT)
    tail = (
        b'"}}]}\n\ndata: {"choices":[{"delta":{"content":"hi"}}],"usage":null}\n\n'
        b'data: {"choices":[],"usage":{"prompt_tokens":8,"completion_tokens":9}}\n\n'
    )
    data = huge + tail
    meter = UsageMeter("openai.chat", True, strip)
    fed = sent = 0
    step = 65536
    for i in range(0, len(data), step):
        piece = data[i : i + step]
        fed += len(piece)
        sent += len(meter.feed(piece))
        assert fed - sent <= MAX_EVENT + step
    sent += len(meter.finish())
    assert (meter.input_tokens, meter.output_tokens) == (8, 9)
    # The oversized event is passed on unread, its bytes counted as text.
    assert meter.text_chars == 2 + len(huge) + len(b'"}}]}\n\n')
    expected = huge + b'"}}]}\n\ndata: {"choices":[{"delta":{"content":"hi"}}]}\n\n'
    assert sent == (len(expected) if strip else len(data))


def test_reader_keeps_order_around_an_oversized_event() -> None:
    reader = EventReader(limit=16)
    pieces = reader.push(b"data: 1\n\n" + b"y" * 40)
    assert pieces == [(b"data: 1\n\n", True), (b"y" * 40, False)]
    assert reader.push(b"zz\n") == [(b"zz\n", False)]
    assert reader.push(b"\ndata: 2\n\ndata: 3") == [(b"\n", False), (b"data: 2\n\n", True)]
    assert reader.flush() == b"data: 3"


def test_reader_splits_mixed_line_ends_within_one_chunk() -> None:
    reader = EventReader()
    assert reader.push(b"data: a\r\n\r\ndata: b\n\n") == [
        (b"data: a\r\n\r\n", True),
        (b"data: b\n\n", True),
    ]
    assert reader.push(b"data: c\r\n\ndata: d\n\r\n") == [
        (b"data: c\r\n\n", True),
        (b"data: d\n\r\n", True),
    ]
    assert reader.flush() == b""
    assert event_data(b"event: x\r\ndata: 1\r\ndata:2\r\n\r\n") == b"1\n2"
    assert event_data(b": comment\n\n") is None


JSONS = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text(max_size=5)
    | st.sampled_from(
        [
            "response.completed",
            "message_start",
            "message_delta",
            "content_block_delta",
            "response.output_text.delta",
        ]
    ),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "usage",
                    "choices",
                    "delta",
                    "message",
                    "type",
                    "response",
                    "content",
                    "text",
                    "prompt_tokens",
                    "completion_tokens",
                    "input_tokens",
                    "output_tokens",
                    "tool_calls",
                    "function",
                    "arguments",
                    "output",
                ]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(
    api=st.sampled_from(list(PATHS)),
    events=st.lists(JSONS, max_size=6),
    junk=st.binary(max_size=30),
    cut=st.integers(1, 50),
)
def test_arbitrary_events_never_raise(api: str, events: list[Any], junk: bytes, cut: int) -> None:
    data = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + junk
    pieces = [data[i : i + cut] for i in range(0, len(data), cut)]
    for streaming, strip in ((False, False), (True, False), (True, True)):
        whole, split = UsageMeter(api, streaming, strip), UsageMeter(api, streaming, strip)
        out = run(whole, [data])
        assert run(split, pieces) == out
        assert reading(split) == reading(whole)
        if not strip:
            assert out == data


def test_a_stream_cut_before_its_output_count_is_charged_what_it_reserved() -> None:
    """An Anthropic stream tells its input count first (message_start) and
    its output count last (message_delta): cut between, the output is
    charged at the reservation, not at a quarter of its characters."""
    meter = UsageMeter("anthropic.messages", True, False)
    start = {"type": "message_start", "message": {
        "id": "m", "type": "message", "role": "assistant", "content": [], "model": "x",
        "usage": {"input_tokens": 10, "output_tokens": 1}}}
    delta = {"type": "content_block_delta", "index": 0,
             "delta": {"type": "text_delta", "text": "模" * 400}}
    for event in (start, delta):
        meter.feed(b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event)
                   + b"\n\n")
    assert meter.input_tokens == 10 and meter.output_tokens is None
    assert meter.meter.billed_output(4000, ok=True) == 4000
    assert meter.meter.billed_output(4000, ok=False) == meter.estimated_output_tokens() == 100
