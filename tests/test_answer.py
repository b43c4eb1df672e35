"""The answer's way back (`guardgate.answer.answer_path`) on the toy upstream's
real answers: what passes untouched is the upstream's bytes, each event is
parsed once for the meter, the degrade transforms and the marker together,
the official SDK reads what the whole chain sends, and a marked stream says
what the marked answer says."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from guardgate.answer import answer_path
from guardgate.apis import ADAPTERS, walker_for
from guardgate.apis.sse import event_data
from guardgate.apis.usage import Meter
from guardgate.metrics import Metrics
from guardgate.perturb.send import Perturbation
from guardgate.perturb.texts import answer_texts
from guardgate.perturb.transforms import Transforms
from guardgate.perturb.watermark import Key, mark
from tests.servers import serve_in_thread

Json = dict[str, Any]
SECRET = b"answer-path-test-key-0001"
PATHS = {adapter.name: adapter.path for adapter in ADAPTERS.values()}
USER = [{"role": "user", "content": "How should I plan a small software project?"}]
CASES: list[tuple[str, Json]] = [
    ("openai.chat", {"messages": USER, "logprobs": True, "top_logprobs": 3,
                     "reasoning_effort": "low", "max_tokens": 60}),
    ("openai.completions", {"prompt": "Write a short story about", "max_tokens": 40,
                            "logprobs": 2}),
    ("openai.responses", {"input": "Plan my week", "reasoning": {"effort": "low"},
                          "include": ["message.output_text.logprobs"], "top_logprobs": 2}),
    ("anthropic.messages", {"messages": USER, "max_tokens": 60,
                            "thinking": {"type": "enabled", "budget_tokens": 1024}}),
]
IDS = [api for api, _ in CASES]
UPSTREAM_HEADERS = [(b"content-length", b"9"), (b"x-ratelimit-limit-requests", b"999")]
QUOTA = [(b"x-ratelimit-limit-requests", b"5")]
EVERYTHING = Perturbation(Transforms(drop_logprobs=True, drop_reasoning=True,
                                     clamp_max_tokens=50), Key(SECRET), SECRET)


@pytest.fixture(scope="module")
def http(toy: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=toy, timeout=10) as client:
        yield client


class Answered:
    """What the client got: the response start's headers, the body, and the meter."""

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.meter: Meter | None = None

    async def send(self, message: Any) -> None:
        if message["type"] == "http.response.start":
            self.headers = list(message["headers"])
        else:
            self.body += message.get("body", b"")


async def through(http: httpx.Client, api: str, client_body: Json, *,
                  perturbation: Perturbation | None = None, meter_tokens: bool = True
                  ) -> tuple[bytes, Answered]:
    """The upstream's answer to what `answer_path` forwards, and what the client gets."""
    raw = orjson.dumps({"model": "toy", **client_body})
    call = ADAPTERS[api].parse(raw)
    got = Answered()
    body, send, got.meter = answer_path(call, raw, got.send, headers=QUOTA,
                                        meter_tokens=meter_tokens, perturbation=perturbation,
                                        metrics=Metrics())
    assert isinstance(body, bytes)
    with http.stream("POST", PATHS[api], content=body) as response:
        chunks = list(response.iter_raw())
        kind = response.headers["content-type"].encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", kind), *UPSTREAM_HEADERS]})
    for i, chunk in enumerate(chunks):
        await send({"type": "http.response.body", "body": chunk,
                    "more_body": i < len(chunks) - 1})
    return b"".join(chunks), got


def events(raw: bytes) -> list[Json]:
    out = []
    for block in raw[:-2].split(b"\n\n"):
        data = event_data(block + b"\n\n")
        if data is not None and data != b"[DONE]":
            out.append(orjson.loads(data))
    return out


def test_every_api_walks_its_own_answers() -> None:
    from guardgate.apis.answers import Walker

    for adapter in ADAPTERS.values():
        assert issubclass(adapter.walker, Walker)
        assert walker_for(adapter.name, True).streaming
    with pytest.raises(ValueError):
        walker_for("other.api", False)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize(("api", "body"), CASES, ids=IDS)
async def test_what_nothing_changes_is_the_upstreams_bytes(
    http: httpx.Client, api: str, body: Json, stream: bool
) -> None:
    asked: Json = {"stream": True} if stream else {}
    if stream and api in ("openai.chat", "openai.completions"):
        asked["stream_options"] = {"include_usage": True}  # the client asks: nothing to strip
    upstream, got = await through(http, api, {**body, **asked})
    assert got.body == upstream
    assert got.meter is not None and got.meter.output_tokens
    # The length stays when nothing may change, and the gateway's quota fields win.
    assert (b"content-length", b"9") in got.headers
    assert [v for k, v in got.headers if k == b"x-ratelimit-limit-requests"] == [b"5"]


@pytest.mark.parametrize("spaced", [False, True], ids=["compact", "spaced"])
async def test_a_usage_chunk_with_choices_loses_only_the_usage_asked_for(spaced: bool) -> None:
    """Some upstreams (LiteLLM, DeepSeek) put usage on the last chunk that still
    carries a choice. Asked for by the client, the stream passes as it came;
    asked for by the gateway, only the usage it added goes: that chunk keeps
    its choice, byte for byte, and no other chunk changes."""
    def chunk(**fields: Any) -> bytes:
        value = {"id": "c", "object": "chat.completion.chunk", **fields}
        data = json.dumps(value).encode() if spaced else orjson.dumps(value)
        return b"data: " + data + b"\n\n"

    choice = {"index": 0, "delta": {"content": "Hi"}, "logprobs": None, "finish_reason": None}
    done = {**choice, "delta": {}, "finish_reason": "stop"}
    usage = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    asked = [chunk(choices=[choice]), chunk(choices=[done], usage=usage), b"data: [DONE]\n\n"]
    unasked = [chunk(choices=[choice]), chunk(choices=[done]), b"data: [DONE]\n\n"]
    for client_asks in (True, False):
        options = {"stream_options": {"include_usage": True}} if client_asks else {}
        call = ADAPTERS["openai.chat"].parse(orjson.dumps(
            {"model": "m", "messages": USER, "stream": True, **options}))
        got = Answered()
        _, send, meter = answer_path(call, b"", got.send, headers=[], meter_tokens=True,
                                     perturbation=None, metrics=Metrics())
        for part in asked:
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        assert meter is not None and (meter.input_tokens, meter.output_tokens) == (3, 1)
        assert got.body == b"".join(asked if client_asks else unasked)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_each_event_is_parsed_once_for_the_whole_chain(
    http: httpx.Client, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    api, body = CASES[0]
    parsed: list[bytes] = []
    loads = orjson.loads

    def counting(data: Any) -> Any:
        parsed.append(bytes(data))
        return loads(data)

    monkeypatch.setattr(orjson, "loads", counting)
    upstream, got = await through(http, api, {**body, "stream": stream},
                                  perturbation=EVERYTHING)
    monkeypatch.undo()
    answers = [upstream]
    if stream:
        datas = [event_data(block + b"\n\n") for block in upstream[:-2].split(b"\n\n")]
        answers = [data for data in datas if data is not None and data != b"[DONE]"]
    assert len(answers) > (10 if stream else 0)
    # (The toy upstream, in this process, parses its requests too.)
    assert [parsed.count(data) for data in answers] == [answers.count(d) for d in answers]
    assert got.body != upstream


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_the_meter_reads_the_usage_before_reasoning_leaves_it(
    http: httpx.Client, stream: bool
) -> None:
    """Quotas settle on what the upstream spent; the client sees what it was sent."""
    api, body = CASES[0]
    upstream, got = await through(http, api, {**body, "stream": stream},
                                  perturbation=EVERYTHING)
    answers = events(upstream) if stream else [orjson.loads(upstream)]
    [spent] = [answer["usage"] for answer in answers if answer.get("usage")]
    assert got.meter is not None and got.meter.output_tokens == spent["completion_tokens"]
    reasoning = spent["completion_tokens_details"]["reasoning_tokens"]
    assert reasoning > 0
    if not stream:  # (a stream's usage was asked for by the gateway: the client sees none)
        sent = orjson.loads(got.body)["usage"]
        assert sent["completion_tokens"] == spent["completion_tokens"] - reasoning


@pytest.fixture(scope="module")
def replay() -> Iterator[tuple[Any, openai.OpenAI]]:
    class Replay:
        body = b""

        async def answer(self, request: Request) -> Response:
            await request.body()
            return Response(self.body, media_type="application/json")

    state = Replay()
    app = Starlette(routes=[Route(path, state.answer, methods=["POST"])
                            for path in PATHS.values()])
    with serve_in_thread(app) as base, openai.OpenAI(
        base_url=base + "/v1", api_key="sk-test", max_retries=0
    ) as sdk:
        yield state, sdk


@pytest.mark.parametrize(("api", "body"), CASES[:3], ids=IDS[:3])
async def test_the_sdk_reads_what_the_whole_chain_sends(
    http: httpx.Client, replay: tuple[Any, openai.OpenAI], api: str, body: Json
) -> None:
    """The meter stripping the usage it asked for, the degrade transforms and the
    marker, on one answer: the official SDK reads it, JSON and streamed."""
    state, sdk = replay
    create: Any = {"openai.chat": sdk.chat.completions.create,
                   "openai.completions": sdk.completions.create,
                   "openai.responses": sdk.responses.create}[api]
    ask: Json = {"messages": USER} if api == "openai.chat" else (
        {"prompt": "x"} if api == "openai.completions" else {"input": "x"})
    _, got = await through(http, api, body, perturbation=EVERYTHING)
    state.body = got.body
    answer = create(model="t", **ask)
    assert answer.model_dump(mode="json", exclude_unset=True) == orjson.loads(got.body)
    _, got = await through(http, api, {**body, "stream": True}, perturbation=EVERYTHING)
    state.body = got.body
    streamed = [e.model_dump(mode="json", exclude_unset=True)
                for e in create(model="t", stream=True, **ask)]
    assert streamed == events(got.body)
    assert b"usage" not in got.body or api == "openai.responses"  # asked by the gateway


@pytest.mark.parametrize(("api", "body"), CASES, ids=IDS)
async def test_a_marked_stream_says_what_the_marked_answer_says(
    http: httpx.Client, api: str, body: Json
) -> None:
    marks = Perturbation(None, Key(SECRET), SECRET)
    upstream, whole = await through(http, api, body, perturbation=marks)
    _, streamed = await through(http, api, {**body, "stream": True}, perturbation=marks)
    [text] = answer_texts(upstream, jsonl=True)
    [marked] = answer_texts(whole.body, jsonl=True)
    assert marked == mark(text, SECRET) != text
    assert _streamed_text(api, events(streamed.body)) == marked


def _streamed_text(api: str, stream: list[Json]) -> str:
    if api == "openai.chat":
        return "".join(c["choices"][0]["delta"].get("content") or ""
                       for c in stream if c["choices"])
    if api == "openai.completions":
        return "".join(c["choices"][0]["text"] for c in stream if c["choices"])
    if api == "openai.responses":
        return "".join(e["delta"] for e in stream if e["type"] == "response.output_text.delta")
    return "".join(e["delta"]["text"] for e in stream
                   if e["type"] == "content_block_delta" and e["delta"]["type"] == "text_delta")
