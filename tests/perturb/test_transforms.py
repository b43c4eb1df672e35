"""Degrade transforms (`guardgate.perturb.transforms`) on the toy upstream's real answers:
every API, JSON and SSE, any chunking, read back by the official OpenAI SDK."""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from guardgate.apis import ADAPTERS
from guardgate.apis.answers.chain import MAX_JSON
from guardgate.apis.sse import event_data
from guardgate.perturb.logprobs import COARSE_NOISE
from guardgate.perturb.send import ResponseRewriter
from guardgate.perturb.tarpit import TARPIT_STEPS, Tarpit
from guardgate.perturb.transforms import (
    TRANSFORM_NAMES,
    Transforms,
    parse_degrade,
    rewrite_request,
)
from guardgate.toy import create_toy_app
from tests.servers import serve_in_thread

Json = dict[str, Any]
KEY = b"transform-test-key"
PATHS = {adapter.name: adapter.path for adapter in ADAPTERS.values()}
USER = [{"role": "user", "content": "How should I plan a small software project?"}]
LOGPROBS_INCLUDE = "message.output_text.logprobs"

# Requests whose answers carry what the transforms act on, where the API has it.
CASES: list[tuple[str, Json]] = [
    ("openai.chat", {"messages": USER, "logprobs": True, "top_logprobs": 4, "max_tokens": 9}),
    ("openai.chat", {"messages": USER, "reasoning_effort": "medium", "max_tokens": 7}),
    ("openai.chat", {"messages": USER, "n": 2, "logprobs": True, "top_logprobs": 3,
                     "reasoning_effort": "low"}),
    ("openai.chat", {"messages": USER}),
    ("openai.completions", {"prompt": "Why is the sky blue", "max_tokens": 8, "logprobs": 4}),
    ("openai.completions", {"prompt": ["Once upon a time", "The plan is"], "n": 2,
                            "max_tokens": 5, "logprobs": 2}),
    ("openai.completions", {"prompt": "Write a short story about"}),
    ("openai.responses", {"input": "Tell me about cells", "top_logprobs": 4,
                          "include": [LOGPROBS_INCLUDE], "max_output_tokens": 9}),
    ("openai.responses", {"input": [{"role": "user", "content": "Plan my week"}],
                          "reasoning": {"effort": "medium", "summary": "auto"},
                          "include": [LOGPROBS_INCLUDE], "top_logprobs": 3}),
    ("openai.responses", {"input": "Explain gravity to a child."}),
    ("anthropic.messages", {"messages": USER, "max_tokens": 12,
                            "thinking": {"type": "enabled", "budget_tokens": 1024}}),
    ("anthropic.messages", {"messages": USER, "system": "Be brief"}),
]
IDS = [f"{api}-{i}" for i, (api, _) in enumerate(CASES)]
OPENAI_CASES = [(api, body) for api, body in CASES if api.startswith("openai.")]
OPENAI_IDS = [f"{api}-{i}" for i, (api, _) in enumerate(OPENAI_CASES)]

EVERYTHING = Transforms(drop_reasoning=True, cap_top_logprobs=2, coarsen_logprobs=True)
RESPONSE_SETS = {
    "drop_logprobs": Transforms(drop_logprobs=True),
    "cap1": Transforms(cap_top_logprobs=1),
    "cap0": Transforms(cap_top_logprobs=0),
    "coarsen": Transforms(coarsen_logprobs=True),
    "drop_reasoning": Transforms(drop_reasoning=True),
    "everything": EVERYTHING,
    "everything_and_drop": Transforms(drop_logprobs=True, drop_reasoning=True,
                                      coarsen_logprobs=True),
}


class Alternate:
    """A stand-in for the watermark: upper-cases every other complete word and holds
    back a trailing partial word until more text (or the end) completes it."""

    def __init__(self) -> None:
        self.held = ""
        self.count = 0

    def _words(self, text: str) -> str:
        def swap(match: re.Match[str]) -> str:
            self.count += 1
            return match.group().upper() if self.count % 2 else match.group()

        return re.sub(r"\S+", swap, text)

    def feed(self, text: str) -> str:
        match = re.fullmatch(r"(.*\s)?(\S*)", self.held + text, re.DOTALL)
        assert match is not None
        self.held = match.group(2)
        return self._words(match.group(1) or "")

    def flush(self) -> str:
        out, self.held = self._words(self.held), ""
        return out


def whole(text: str) -> str:
    marker = Alternate()
    return marker.feed(text) + marker.flush()


# --- servers -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with serve_in_thread(create_toy_app()) as base, httpx.Client(base_url=base, timeout=10) as c:
        yield c


class Replay:
    """Answers every model route with the bytes it was last given, as the gateway would
    send a rewritten answer: the upstream's headers without its length."""

    def __init__(self) -> None:
        self.body = b""
        self.headers: dict[str, str] = {}

    async def answer(self, request: Request) -> Response:
        await request.body()
        return Response(self.body, headers=self.headers)


@pytest.fixture(scope="module")
def replay() -> Iterator[tuple[Replay, openai.OpenAI]]:
    state = Replay()
    app = Starlette(routes=[Route(path, state.answer, methods=["POST"])
                            for path in PATHS.values()])
    with serve_in_thread(app) as base, openai.OpenAI(
        base_url=base + "/v1", api_key="sk-test", max_retries=0
    ) as sdk:
        yield state, sdk


def post(http: httpx.Client, api: str, body: Json, stream: bool) -> tuple[list[bytes], Json]:
    """The raw answer in the chunks it arrived in, and its headers (without the length)."""
    extra: Json = {"stream": True} if stream else {}
    if stream and api in ("openai.chat", "openai.completions"):
        extra["stream_options"] = {"include_usage": True}
    raw = orjson.dumps({"model": "toy", **body, **extra})
    with http.stream("POST", PATHS[api], content=raw) as response:
        assert response.status_code == 200, response.read()
        headers = {k: v for k, v in response.headers.items()
                   if k not in ("content-length", "date", "server", "transfer-encoding")}
        return list(response.iter_raw()), headers


def rewrite(api: str, stream: bool, t: Transforms, chunks: list[bytes],
            text_filter: Callable[[], Alternate] | None = None, key: bytes = KEY) -> bytes:
    """Feed ``chunks`` through a rewriter, and check that any other chunking gives the same."""
    out = run(ResponseRewriter(api, stream, t, key, text_filter), chunks)
    data = b"".join(chunks)
    rng = random.Random(len(data))
    for _ in range(2 if stream else 1):
        pieces, at = [], 0
        while at < len(data):
            size = rng.randint(1, 60)
            pieces.append(data[at:at + size])
            at += size
        assert run(ResponseRewriter(api, stream, t, key, text_filter), pieces) == out
    return out


def run(rewriter: ResponseRewriter, chunks: list[bytes]) -> bytes:
    return b"".join(rewriter.feed(c) for c in chunks) + rewriter.finish()


def events(raw: bytes) -> list[Json]:
    """The JSON events of a stream, checked to be well formed: each ends with a blank line,
    a named event's name is its type, and only ``[DONE]`` is not JSON."""
    assert raw.endswith(b"\n\n")
    out = []
    for block in raw[:-2].split(b"\n\n"):
        data = event_data(block + b"\n\n")
        assert data is not None, block
        if data == b"[DONE]":
            continue
        value = orjson.loads(data)
        name = re.match(rb"event: (\S+)\n", block)
        if name is not None:
            assert name.group(1).decode() == value["type"]
        out.append(value)
    return out


# --- what an answer holds, read independently of the rewriter --------------------------


def chat_parts(body: Json) -> Json:
    choices = {c["index"]: c for c in body["choices"]}
    return {
        "text": {i: c["message"]["content"] for i, c in choices.items()},
        "reasoning": {i: c["message"].get("reasoning_content") for i, c in choices.items()},
        "logprobs": {i: c["logprobs"] and c["logprobs"]["content"] for i, c in choices.items()},
        "usage": body["usage"],
    }


def chat_stream_parts(stream: list[Json]) -> Json:
    text: dict[int, str] = {}
    reasoning: dict[int, str | None] = {}
    logprobs: dict[int, list[Json] | None] = {}
    usage = None
    for chunk in stream:
        usage = chunk.get("usage") or usage
        for c in chunk["choices"]:
            i, delta = c["index"], c["delta"]
            text[i] = text.get(i, "") + (delta.get("content") or "")
            if "reasoning_content" in delta:
                reasoning[i] = (reasoning.get(i) or "") + delta["reasoning_content"]
            else:
                reasoning.setdefault(i, None)
            if c["logprobs"] is not None:
                logprobs[i] = (logprobs.get(i) or []) + c["logprobs"]["content"]
            else:
                logprobs.setdefault(i, None)
    return {"text": text, "reasoning": reasoning, "logprobs": logprobs, "usage": usage}


def completion_parts(body: Json) -> Json:
    return {"text": {c["index"]: c["text"] for c in body["choices"]},
            "logprobs": {c["index"]: c["logprobs"] for c in body["choices"]},
            "usage": body["usage"]}


def completion_stream_parts(stream: list[Json]) -> Json:
    text: dict[int, str] = {}
    logprobs: dict[int, Json | None] = {}
    usage = None
    for chunk in stream:
        usage = chunk.get("usage") or usage
        for c in chunk["choices"]:
            i = c["index"]
            text[i] = text.get(i, "") + c["text"]
            if c["logprobs"] is None:
                logprobs.setdefault(i, None)
                continue
            held = logprobs.get(i) or {k: [] for k in c["logprobs"]}
            logprobs[i] = {k: held[k] + v for k, v in c["logprobs"].items()}
    return {"text": text, "logprobs": logprobs, "usage": usage}


def response_parts(body: Json) -> Json:
    """A Responses answer without what differs between a stream and a JSON answer."""
    output = [{k: v for k, v in item.items() if k != "id"} for item in body["output"]]
    return {"output": output, "usage": body["usage"], "status": body["status"]}


def unbytes(value: Any) -> Any:
    """``value`` without the ``bytes`` of its logprob entries (stream events leave them out)."""
    if type(value) is dict:
        return {k: unbytes(v) for k, v in value.items() if k != "bytes"}
    if type(value) is list:
        return [unbytes(v) for v in value]
    return value


def response_stream_parts(stream: list[Json]) -> Json:
    """The final response, checked against the deltas, done texts and item events."""
    numbers = [e["sequence_number"] for e in stream]
    assert numbers == list(range(len(numbers)))
    final = stream[-1]["response"]
    added = [e for e in stream if e["type"] == "response.output_item.added"]
    assert [e["output_index"] for e in added] == list(range(len(final["output"])))
    assert [e["item"]["type"] for e in added] == [i["type"] for i in final["output"]]
    for index, item in enumerate(final["output"]):
        for at, part in enumerate(item.get("content", [])):
            mine = [e for e in stream if e.get("output_index") == index
                    and e.get("content_index") == at]
            deltas = "".join(e["delta"] for e in mine if e["type"] == "response.output_text.delta")
            [done] = [e for e in mine if e["type"] == "response.output_text.done"]
            assert deltas == done["text"] == part["text"]
            streamed = [lp for e in mine if e["type"] == "response.output_text.delta"
                        for lp in e["logprobs"]]
            assert unbytes(part.get("logprobs", [])) == unbytes(done["logprobs"])
            assert [lp["logprob"] for lp in streamed] == [lp["logprob"] for lp in done["logprobs"]]
    return response_parts(final)


def message_parts(body: Json) -> Json:
    return {"content": body["content"], "stop_reason": body["stop_reason"]}


def message_stream_parts(stream: list[Json]) -> Json:
    """The blocks of an Anthropic stream, checked to open, grow and close in index order."""
    blocks: list[Json] = []
    open_index = None
    for event in stream:
        kind = event["type"]
        if kind == "content_block_start":
            assert open_index is None and event["index"] == len(blocks)
            open_index = event["index"]
            blocks.append(dict(event["content_block"]))
        elif kind == "content_block_delta":
            assert event["index"] == open_index
            delta, block = event["delta"], blocks[event["index"]]
            for field in ("text", "thinking", "signature"):
                if field in delta:
                    block[field] = block.get(field, "") + delta[field]
        elif kind == "content_block_stop":
            assert event["index"] == open_index
            open_index = None
        elif kind == "message_delta":
            stop = event["delta"]["stop_reason"]
    assert open_index is None and stream[-1]["type"] == "message_stop"
    return {"content": blocks, "stop_reason": stop}


JSON_PARTS = {"openai.chat": chat_parts, "openai.completions": completion_parts,
              "openai.responses": response_parts, "anthropic.messages": message_parts}
STREAM_PARTS = {"openai.chat": chat_stream_parts, "openai.completions": completion_stream_parts,
                "openai.responses": response_stream_parts,
                "anthropic.messages": message_stream_parts}


def degraded(http: httpx.Client, api: str, body: Json, t: Transforms,
             text_filter: Callable[[], Alternate] | None = None
             ) -> tuple[Json, Json, bytes, list[Json]]:
    """The original and rewritten JSON answers' parts, the rewritten stream and its events;
    the rewritten stream is checked to hold what the rewritten JSON answer holds."""
    chunks, _ = post(http, api, body, False)
    original = JSON_PARTS[api](orjson.loads(b"".join(chunks)))
    parts = JSON_PARTS[api](orjson.loads(rewrite(api, False, t, chunks, text_filter)))
    raw = rewrite(api, True, t, post(http, api, body, True)[0], text_filter)
    stream = events(raw)
    assert STREAM_PARTS[api](stream) == parts
    return original, parts, raw, stream


# --- configuration -----------------------------------------------------------------


def test_parse_degrade_reads_names_and_mappings() -> None:
    t = parse_degrade(["drop_logprobs", {"clamp_max_tokens": 512}, {"cap_top_logprobs": 0},
                       "coarsen_logprobs", {"drop_reasoning": None}, "force_n1",
                       "drop_logit_bias", {"tarpit": 2}, {"reroute": "http://slow:8000/v1"}])
    assert t == Transforms(drop_logprobs=True, cap_top_logprobs=0, coarsen_logprobs=True,
                           drop_logit_bias=True, force_n1=True, clamp_max_tokens=512,
                           drop_reasoning=True, tarpit=2.0, reroute="http://slow:8000/v1")
    assert t.names() == TRANSFORM_NAMES
    assert type(t.tarpit) is float
    assert parse_degrade([]) == Transforms() and Transforms().names() == ()
    assert parse_degrade([{"cap_top_logprobs": 0}]).names() == ("cap_top_logprobs",)
    assert not Transforms(tarpit=1.0, reroute="http://x").rewrites_response
    assert not Transforms(tarpit=1.0).rewrites_request
    assert Transforms(coarsen_logprobs=True).rewrites_request  # no prompt logprobs
    assert Transforms(clamp_max_tokens=5).rewrites_request


@pytest.mark.parametrize(("items", "message"), [
    (["drop_everything"], "unknown degrade transform 'drop_everything'"),
    (["drop_logprobs", "drop_logprobs"], "listed twice"),
    ([{"drop_logprobs": 3}], "takes no value"),
    (["clamp_max_tokens"], "needs a value"),
    ([{"clamp_max_tokens": 0}], "at least 1"),
    ([{"clamp_max_tokens": True}], "at least 1"),
    ([{"clamp_max_tokens": 5.0}], "at least 1"),
    ([{"cap_top_logprobs": -1}], "at least 0"),
    ([{"tarpit": 0}], "above 0"),
    ([{"tarpit": "2s"}], "above 0"),
    ([{"tarpit": float("inf")}], "above 0"),
    ([{"reroute": "slow-upstream"}], "URL"),
    ([{"reroute": "ftp://x"}], "URL"),
    ([{"tarpit": 1, "reroute": "http://x"}], "one name"),
    ([3], "one name"),
])
def test_parse_degrade_refuses_with_a_clear_message(items: list[Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_degrade(items)


# --- step 7: requests ----------------------------------------------------------------


def rewritten(api: str, body: Json, t: Transforms) -> tuple[bool, Json]:
    call = ADAPTERS[api].parse(orjson.dumps(body))
    asked = copy.deepcopy(call.max_tokens), call.logprobs, call.n
    changed = rewrite_request(call, t)
    assert (call.max_tokens, call.logprobs, call.n) == asked  # the parsed call keeps the ask
    return changed, call.body


REQUESTS: list[tuple[str, Json, Transforms, Json | None]] = [
    # (api, body, transforms, the body after; None: unchanged)
    ("openai.chat", {"messages": USER, "logprobs": True, "top_logprobs": 5, "n": 3},
     Transforms(drop_logprobs=True), {"messages": USER, "n": 3}),
    ("openai.chat", {"messages": USER, "logprobs": True, "top_logprobs": 5},
     Transforms(cap_top_logprobs=2), {"messages": USER, "logprobs": True, "top_logprobs": 2}),
    ("openai.chat", {"messages": USER, "logprobs": True, "top_logprobs": 1},
     Transforms(cap_top_logprobs=2), None),
    # vLLM's prompt logprobs: no walker treats them, so no logprob tier asks.
    ("openai.chat", {"messages": USER, "prompt_logprobs": 20},
     Transforms(drop_logprobs=True), {"messages": USER}),
    ("openai.chat", {"messages": USER, "logprobs": True, "prompt_logprobs": 20},
     Transforms(cap_top_logprobs=2), {"messages": USER, "logprobs": True}),
    ("openai.completions", {"prompt": "x", "echo": True, "prompt_logprobs": 5},
     Transforms(coarsen_logprobs=True), {"prompt": "x", "echo": True}),
    ("openai.chat", {"messages": USER, "logit_bias": {"50256": -100}},
     Transforms(drop_logit_bias=True), {"messages": USER}),
    ("openai.chat", {"messages": USER, "n": 4}, Transforms(force_n1=True),
     {"messages": USER, "n": 1}),
    ("openai.chat", {"messages": USER}, Transforms(force_n1=True, drop_logprobs=True,
                                                   drop_logit_bias=True), None),
    ("openai.chat", {"messages": USER, "max_tokens": 900, "max_completion_tokens": 50},
     Transforms(clamp_max_tokens=100),
     {"messages": USER, "max_tokens": 100, "max_completion_tokens": 50}),
    ("openai.chat", {"messages": USER, "max_completion_tokens": 500},
     Transforms(clamp_max_tokens=100), {"messages": USER, "max_completion_tokens": 100}),
    ("openai.chat", {"messages": USER, "max_tokens": None}, Transforms(clamp_max_tokens=100),
     {"messages": USER, "max_tokens": 100}),
    ("openai.chat", {"messages": USER, "max_tokens": 10}, Transforms(clamp_max_tokens=100),
     None),
    ("openai.completions", {"prompt": "x", "logprobs": 5, "echo": True},
     Transforms(drop_logprobs=True), {"prompt": "x", "echo": True}),
    ("openai.completions", {"prompt": "x", "logprobs": 5}, Transforms(cap_top_logprobs=1),
     {"prompt": "x", "logprobs": 1}),
    ("openai.completions", {"prompt": "x", "n": 3, "best_of": 5, "logit_bias": {"1": 2}},
     Transforms(force_n1=True, drop_logit_bias=True), {"prompt": "x", "n": 1}),
    ("openai.completions", {"prompt": "x"}, Transforms(clamp_max_tokens=64),
     {"prompt": "x", "max_tokens": 64}),
    ("openai.responses", {"input": "x", "top_logprobs": 5,
                          "include": ["reasoning.encrypted_content", LOGPROBS_INCLUDE]},
     Transforms(drop_logprobs=True), {"input": "x", "include": ["reasoning.encrypted_content"]}),
    ("openai.responses", {"input": "x", "top_logprobs": 5, "include": [LOGPROBS_INCLUDE]},
     Transforms(cap_top_logprobs=3),
     {"input": "x", "top_logprobs": 3, "include": [LOGPROBS_INCLUDE]}),
    ("openai.responses", {"input": "x"}, Transforms(clamp_max_tokens=64),
     {"input": "x", "max_output_tokens": 64}),
    ("openai.responses", {"input": "x", "max_output_tokens": 1000},
     Transforms(clamp_max_tokens=64, force_n1=True), {"input": "x", "max_output_tokens": 64}),
    ("anthropic.messages", {"messages": USER, "max_tokens": 4096},
     Transforms(clamp_max_tokens=256, drop_logprobs=True, force_n1=True, drop_logit_bias=True,
                cap_top_logprobs=1),
     {"messages": USER, "max_tokens": 256}),
    ("anthropic.messages", {"messages": USER}, Transforms(clamp_max_tokens=256),
     {"messages": USER, "max_tokens": 256}),
    ("anthropic.messages", {"messages": USER, "max_tokens": 8000,
                            "thinking": {"type": "enabled", "budget_tokens": 4000}},
     Transforms(clamp_max_tokens=2000),
     {"messages": USER, "max_tokens": 2000,
      "thinking": {"type": "enabled", "budget_tokens": 1999}}),
    ("anthropic.messages", {"messages": USER, "max_tokens": 8000,
                            "thinking": {"type": "enabled", "budget_tokens": 4000}},
     Transforms(clamp_max_tokens=512),
     {"messages": USER, "max_tokens": 512, "thinking": {"type": "disabled"}}),
    ("anthropic.messages", {"messages": USER, "max_tokens": 8000,
                            "thinking": {"type": "enabled", "budget_tokens": 1024}},
     Transforms(clamp_max_tokens=4000), {"messages": USER, "max_tokens": 4000,
                                         "thinking": {"type": "enabled", "budget_tokens": 1024}}),
]


@pytest.mark.parametrize(("api", "body", "t", "after"), REQUESTS,
                         ids=[f"{r[0]}-{i}" for i, r in enumerate(REQUESTS)])
def test_rewrite_request(api: str, body: Json, t: Transforms, after: Json | None,
                         http: httpx.Client) -> None:
    changed, result = rewritten(api, copy.deepcopy(body), t)
    assert changed is (after is not None)
    assert result == (body if after is None else after)
    # The upstream takes what was rewritten.
    response = http.post(PATHS[api], content=orjson.dumps({"model": "toy", **result}))
    assert response.status_code == 200, response.text


def test_rewrite_request_refuses_an_unknown_api() -> None:
    call = ADAPTERS["openai.chat"].parse(b'{"messages": []}')
    call.api = "openai.embeddings"
    with pytest.raises(ValueError, match="no request rewrite"):
        rewrite_request(call, Transforms(force_n1=True))
    with pytest.raises(ValueError, match="no answer walker"):
        ResponseRewriter("openai.embeddings", False, Transforms(), KEY)


def test_clamped_requests_get_short_answers(http: httpx.Client) -> None:
    for api, body in CASES:
        changed, result = rewritten(api, copy.deepcopy(body), Transforms(clamp_max_tokens=3))
        assert changed
        answer = http.post(PATHS[api], content=orjson.dumps({"model": "t", **result})).json()
        usage = answer["usage"]
        reasoning = (usage.get("completion_tokens_details") or usage.get(
            "output_tokens_details") or {}).get("reasoning_tokens", 0)
        n = result.get("n", 1) * (len(result["prompt"]) if type(result.get("prompt")) is list
                                  else 1)
        if api != "anthropic.messages":  # thinking is counted in Anthropic's output
            output = usage.get("completion_tokens", usage.get("output_tokens"))
            assert output - reasoning == 3 * n


# --- step 9: answers, transform by transform ---------------------------------------------


def test_nothing_to_do_passes_every_byte(http: httpx.Client) -> None:
    for api, body in CASES:
        for stream in (False, True):
            chunks, _ = post(http, api, body, stream)
            rewriter = ResponseRewriter(api, stream, Transforms(tarpit=1.0), KEY)
            assert [rewriter.feed(c) for c in chunks] == chunks
            assert rewriter.finish() == b""


@pytest.mark.parametrize(("api", "body"), CASES, ids=IDS)
def test_transforms_with_nothing_to_act_on_keep_the_bytes(
    http: httpx.Client, api: str, body: Json
) -> None:
    """An answer without logprobs or reasoning comes out as it went in."""
    has_logprobs = "logprobs" in body or "top_logprobs" in body
    has_reasoning = "reasoning_effort" in body or "reasoning" in body or "thinking" in body
    for t in RESPONSE_SETS.values():
        if (has_logprobs and t.names() != ("drop_reasoning",)) or (
                has_reasoning and t.drop_reasoning):
            continue
        for stream in (False, True):
            chunks, _ = post(http, api, body, stream)
            assert rewrite(api, stream, t, chunks) == b"".join(chunks), (t, stream)


def logprob_positions(api: str, parts: Json) -> list[list[tuple[str, float]]]:
    """Per token of every choice: (token, logprob) of the sampled token, then the top ones."""
    out = []
    if api == "openai.completions":
        for lp in parts["logprobs"].values():
            for token, value, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"],
                                         strict=True):
                out.append([(token, value), *top.items()])
        return out
    if api == "openai.chat":
        lists = list(parts["logprobs"].values())
    else:
        lists = [p["logprobs"] for item in parts["output"] for p in item.get("content", [])]
    for entries in lists:
        for e in entries:
            out.append([(e["token"], e["logprob"])]
                       + [(t["token"], t["logprob"]) for t in e["top_logprobs"]])
    return out


def without_logprobs(api: str, parts: Json) -> Json:
    """``parts`` with every logprob list emptied and chat/completions logprobs null."""
    parts = copy.deepcopy(parts)
    if api == "openai.responses":
        for item in parts["output"]:
            for p in item.get("content", []):
                if "logprobs" in p:
                    p["logprobs"] = []
    else:
        parts["logprobs"] = dict.fromkeys(parts["logprobs"])
    return parts


LOGPROB_CASES = [(api, body) for api, body in OPENAI_CASES
                 if "logprobs" in body or "top_logprobs" in body]
LOGPROB_IDS = [f"{api}-{i}" for i, (api, _) in enumerate(LOGPROB_CASES)]


@pytest.mark.parametrize(("api", "body"), LOGPROB_CASES, ids=LOGPROB_IDS)
def test_drop_logprobs(http: httpx.Client, api: str, body: Json) -> None:
    original, parts, _, stream = degraded(http, api, body, Transforms(drop_logprobs=True))
    assert logprob_positions(api, original)
    assert parts == without_logprobs(api, original)
    if api == "openai.responses":
        deltas = [e for e in stream if e["type"] == "response.output_text.delta"]
        assert deltas and all(e["logprobs"] == [] for e in deltas)


@pytest.mark.parametrize("k", [0, 1, 2])
@pytest.mark.parametrize(("api", "body"), LOGPROB_CASES, ids=LOGPROB_IDS)
def test_cap_top_logprobs(http: httpx.Client, api: str, body: Json, k: int) -> None:
    original, parts, _, _ = degraded(http, api, body, Transforms(cap_top_logprobs=k))
    before, after = logprob_positions(api, original), logprob_positions(api, parts)
    assert len(before) == len(after) > 0
    for old, new in zip(before, after, strict=True):
        assert new[0] == old[0]  # the sampled token keeps its logprob
        best = sorted(old[1:], key=lambda pair: -pair[1])[:k]
        assert sorted(new[1:], key=lambda pair: -pair[1]) == best
        assert len(new) - 1 == min(k, len(old) - 1)
    assert without_logprobs(api, parts) == without_logprobs(api, original)


@pytest.mark.parametrize(("api", "body"), LOGPROB_CASES, ids=LOGPROB_IDS)
def test_coarsen_logprobs(http: httpx.Client, api: str, body: Json) -> None:
    original, parts, _, _ = degraded(http, api, body, Transforms(coarsen_logprobs=True))
    before, after = logprob_positions(api, original), logprob_positions(api, parts)
    assert len(before) == len(after) > 0
    changed = 0
    for old, new in zip(before, after, strict=True):
        assert [t for t, _ in new] == [t for t, _ in old]
        top = max(range(len(old)), key=lambda i: old[i][1])
        ceiling = new[top][1]
        for (_, value), (token, coarse) in zip(old, new, strict=True):
            assert coarse <= 0.0
            if abs(coarse - round(value, 1)) > COARSE_NOISE + 1e-9:
                assert coarse < ceiling and token != old[top][0]  # clamped below the top
            changed += coarse != value
        # The top token stays the top, alone.
        assert all(v < ceiling for i, (_, v) in enumerate(new) if new[i][0] != new[top][0])
    assert changed > len(before)  # the values do move
    assert without_logprobs(api, parts) == without_logprobs(api, original)


def test_coarsening_is_keyed_and_deterministic(http: httpx.Client) -> None:
    api, body = LOGPROB_CASES[0]
    chunks, _ = post(http, api, body, False)
    t = Transforms(coarsen_logprobs=True)
    first = rewrite(api, False, t, chunks)
    assert rewrite(api, False, t, chunks) == first
    assert rewrite(api, False, t, chunks, key=b"another key") != first


@pytest.mark.parametrize(("api", "body"), [c for c in CASES if any(
    k in c[1] for k in ("reasoning", "reasoning_effort", "thinking"))])
def test_drop_reasoning(http: httpx.Client, api: str, body: Json) -> None:
    original, parts, raw, stream = degraded(http, api, body, Transforms(drop_reasoning=True))
    expected = copy.deepcopy(original)
    if api == "openai.chat":
        assert all(original["reasoning"].values())
        expected["reasoning"] = dict.fromkeys(original["reasoning"])
        usage, details = expected["usage"], "completion_tokens_details"
        output = "completion_tokens"
    elif api == "openai.responses":
        assert [i["type"] for i in original["output"]] == ["reasoning", "message"]
        expected["output"] = expected["output"][1:]
        usage, details, output = expected["usage"], "output_tokens_details", "output_tokens"
        assert not any(e["type"].startswith("response.reasoning") for e in stream)
    else:
        assert [b["type"] for b in original["content"]] == ["thinking", "text"]
        expected["content"] = expected["content"][1:]
        assert b"thinking" not in raw and b"signature" not in raw
        usage = None
    if usage is not None:
        spent = usage[details]["reasoning_tokens"]
        assert spent > 0
        usage[details]["reasoning_tokens"] = 0
        usage[output] -= spent
        usage["total_tokens"] -= spent
    assert parts == expected
    assert b"reasoning_content" not in raw


def test_a_reasoning_only_chunk_is_dropped_and_a_role_chunk_kept() -> None:
    def chunk(delta: Json, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        return b"data: " + orjson.dumps({"id": "c", "choices": [choice], **extra}) + b"\n\n"

    stream = [chunk({"role": "assistant", "reasoning_content": "hm"}),
              chunk({"reasoning": "thinking"}), chunk({"reasoning_content": "x"}, usage=None),
              chunk({"content": "Hi", "reasoning_content": "y"}), b"data: [DONE]\n\n"]
    out = events(run(ResponseRewriter("openai.chat", True, Transforms(drop_reasoning=True),
                                      KEY), stream))
    assert [e["choices"][0]["delta"] for e in out] == [{"role": "assistant"}, {"content": "Hi"}]


# --- the watermark hook ------------------------------------------------------------------


def answer_texts(api: str, parts: Json) -> list[str]:
    if api in ("openai.chat", "openai.completions"):
        return list(parts["text"].values())
    if api == "openai.responses":
        return [p["text"] for i in parts["output"] for p in i.get("content", [])]
    return [b["text"] for b in parts["content"] if b["type"] == "text"]


def other_texts(api: str, parts: Json) -> Json:
    """Everything but the answer text: reasoning stays as it was."""
    parts = copy.deepcopy(parts)
    if api in ("openai.chat", "openai.completions"):
        del parts["text"]
    elif api == "openai.responses":
        for item in parts["output"]:
            for p in item.get("content", []):
                del p["text"]
    else:
        for b in parts["content"]:
            b.pop("text", None)
    return parts


@pytest.mark.parametrize("t", [Transforms(), EVERYTHING], ids=["filter-only", "with-degrade"])
@pytest.mark.parametrize(("api", "body"), CASES, ids=IDS)
def test_text_filter_streamed_equals_whole(
    http: httpx.Client, api: str, body: Json, t: Transforms
) -> None:
    _, original, _, _ = degraded(http, api, body, t)  # degraded, not filtered
    _, parts, _, _ = degraded(http, api, body, t, Alternate)
    texts = answer_texts(api, original)
    assert texts and any(" " in text for text in texts)
    # degraded() checked that the streamed deltas join to the JSON answer's text.
    assert answer_texts(api, parts) == [whole(text) for text in texts]
    assert answer_texts(api, parts) != texts
    assert other_texts(api, parts) == other_texts(api, original)  # reasoning untouched


def test_text_filter_never_sees_reasoning_or_tool_arguments() -> None:
    seen: list[str] = []

    class Spy(Alternate):
        def feed(self, text: str) -> str:
            seen.append(text)
            return super().feed(text)

    chat = {"choices": [{"index": 0, "message": {
        "content": "the answer", "reasoning_content": "a thought",
        "tool_calls": [{"id": "t", "type": "function",
                        "function": {"name": "f", "arguments": "{\"a\": 1}"}}]}}]}
    rewriter = ResponseRewriter("openai.chat", False, Transforms(), KEY, Spy)
    out = orjson.loads(run(rewriter, [orjson.dumps(chat)]))
    assert seen == ["the answer"]
    assert out["choices"][0]["message"]["reasoning_content"] == "a thought"
    assert out["choices"][0]["message"]["content"] == "THE answer"


def test_held_text_is_sent_when_a_stream_ends_without_finishing() -> None:
    chunk = {"id": "c", "object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": {"content": "one two thr"}, "logprobs": None,
         "finish_reason": None}]}
    data = b"data: " + orjson.dumps(chunk) + b"\n\n"
    for tail in (b"data: [DONE]\n\n", b""):
        out = events(run(ResponseRewriter("openai.chat", True, Transforms(), KEY, Alternate),
                         [data, tail]))
        assert "".join(e["choices"][0]["delta"]["content"] for e in out) == "ONE two THR"


# --- the official SDK reads every degraded answer ---------------------------------------


def sdk_call(sdk: openai.OpenAI, api: str, stream: bool) -> Any:
    if api == "openai.chat":
        return sdk.chat.completions.create(model="t", messages=USER, stream=stream)
    if api == "openai.completions":
        return sdk.completions.create(model="t", prompt="x", stream=stream)
    return sdk.responses.create(model="t", input="x", stream=stream)


@pytest.mark.parametrize("with_filter", [False, True], ids=["plain", "filtered"])
@pytest.mark.parametrize("name", list(RESPONSE_SETS))
@pytest.mark.parametrize(("api", "body"), OPENAI_CASES, ids=OPENAI_IDS)
def test_the_sdk_reads_degraded_answers(
    http: httpx.Client, replay: tuple[Replay, openai.OpenAI], api: str, body: Json, name: str,
    with_filter: bool,
) -> None:
    state, sdk = replay
    t, text_filter = RESPONSE_SETS[name], Alternate if with_filter else None
    chunks, state.headers = post(http, api, body, False)
    state.body = rewrite(api, False, t, chunks, text_filter)
    expected = orjson.loads(state.body)
    answer = sdk_call(sdk, api, False)
    assert answer.model_dump(mode="json", exclude_unset=True) == expected

    chunks, state.headers = post(http, api, body, True)
    state.body = rewrite(api, True, t, chunks, text_filter)
    streamed = list(sdk_call(sdk, api, True))
    assert [e.model_dump(mode="json", exclude_unset=True) for e in streamed] == events(state.body)
    # The SDK's stream helpers accumulate the stream; they refuse answers cut at the limit.
    if api == "openai.chat" and {c["finish_reason"] for c in expected["choices"]} == {"stop"}:
        with sdk.chat.completions.stream(model="t", messages=USER) as helper:
            final = helper.get_final_completion()
        assert [c.message.content for c in final.choices] == [
            c["message"]["content"] for c in expected["choices"]]
    elif api == "openai.responses" and expected["status"] == "completed":
        with sdk.responses.stream(model="t", input="x") as helper:
            response = helper.get_final_response()
        assert response.output_text == answer.output_text
        assert [i.type for i in response.output] == [i["type"] for i in expected["output"]]


# --- what the upstream may send ------------------------------------------------------------


@pytest.mark.parametrize("api", list(PATHS))
@pytest.mark.parametrize("raw", [b"{", b"", b"[1, 2]", b"null", b"\xff\xfe",
                                 b'{"choices": 3, "output": {}, "content": "x"}',
                                 b'{"choices": [{"logprobs": {"content": 5}, "message": 1}]}'])
def test_malformed_json_passes_unchanged(api: str, raw: bytes) -> None:
    rewriter = ResponseRewriter(api, False, EVERYTHING, KEY, Alternate)
    assert run(rewriter, [raw]) == raw


def test_json_past_the_bound_is_treated_part_by_part() -> None:
    answer = {"choices": [{"index": 0, "logprobs": {"content": []},
                           "message": {"content": "x" * MAX_JSON}}]}
    body = orjson.dumps(answer)
    rewriter = ResponseRewriter("openai.chat", False, Transforms(drop_logprobs=True), KEY)
    pieces = [body[i:i + 65536] for i in range(0, len(body), 65536)]
    sent = b"".join(rewriter.feed(p) for p in pieces) + rewriter.finish()
    answer["choices"][0]["logprobs"] = None
    assert orjson.loads(sent) == answer


def test_odd_events_pass_unchanged() -> None:
    odd = [b": keep-alive\n\n", b"event: ping\n\n", b"data: not json\n\n", b"data: 5\n\n",
           b"id: 7\r\ndata: {\"choices\": [{\"index\": 0, \"delta\": {}}]}\r\n\r\n",
           b"data: [DONE]\n\n"]
    for api in PATHS:
        rewriter = ResponseRewriter(api, True, EVERYTHING, KEY, Alternate)
        assert run(rewriter, odd) == b"".join(odd)


def test_a_rewritten_event_keeps_its_other_fields() -> None:
    event = (b"id: 12\nevent: content_block_start\ndata: {\"type\": \"content_block_start\","
             b" \"index\": 1, \"content_block\": {\"type\": \"text\", \"text\": \"\"}}\n\n")
    thinking = (b"event: content_block_start\ndata: {\"type\": \"content_block_start\", "
                b"\"index\": 0, \"content_block\": {\"type\": \"thinking\", \"thinking\": \"\"}}"
                b"\n\n")
    rewriter = ResponseRewriter("anthropic.messages", True, Transforms(drop_reasoning=True), KEY)
    assert run(rewriter, [thinking, event]) == (
        b"id: 12\nevent: content_block_start\ndata: {\"type\":\"content_block_start\","
        b"\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-20, 5) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["index", "type", "delta", "text", "logprobs", "content", "choices",
                         "output_index", "item", "usage", "top_logprobs", "token", "logprob",
                         "finish_reason", "content_index", "sequence_number", "response",
                         "output", "message", "reasoning_content", "tokens", "token_logprobs",
                         "content_block"]), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(api=st.sampled_from(list(PATHS)), values=st.lists(JSON_VALUES, max_size=6),
       stream=st.booleans())
def test_never_raises_on_what_the_upstream_sends(api: str, values: list[Any],
                                                 stream: bool) -> None:
    for t in (EVERYTHING, Transforms(drop_logprobs=True, drop_reasoning=True)):
        rewriter = ResponseRewriter(api, stream, t, KEY, Alternate)
        if stream:
            chunks = [b"data: " + orjson.dumps(v) + b"\n\n" for v in values]
            if values:
                chunks.append(b"data: " + orjson.dumps(values[0]))
        else:
            chunks = [orjson.dumps(values[0] if values else {})]
        run(rewriter, chunks)


def mutations(value: Any, rng: random.Random) -> Any:
    """``value`` with some of its leaves and containers swapped for other JSON values."""
    swaps: list[Any] = [None, 0, -1, 1.5, "", "x", [], {}, True, [None], {"type": None}]
    if rng.random() < 0.08:
        return rng.choice(swaps)
    if type(value) is dict:
        return {k: mutations(v, rng) for k, v in value.items() if rng.random() > 0.03}
    if type(value) is list:
        return [mutations(v, rng) for v in value]
    return value


@pytest.mark.parametrize(("api", "body"), CASES, ids=IDS)
def test_never_raises_on_damaged_real_answers(http: httpx.Client, api: str, body: Json) -> None:
    rng = random.Random(7)
    for stream in (False, True):
        chunks, _ = post(http, api, body, stream)
        raw = b"".join(chunks)
        for _ in range(15):
            if stream:
                damaged = b"".join(
                    (b"data: " + orjson.dumps(mutations(orjson.loads(d), rng)) + b"\n\n")
                    if (d := event_data(block + b"\n\n")) not in (None, b"[DONE]") else block
                    + b"\n\n" for block in raw[:-2].split(b"\n\n"))
            else:
                damaged = orjson.dumps(mutations(orjson.loads(raw), rng))
            for t in RESPONSE_SETS.values():
                run(ResponseRewriter(api, stream, t, KEY, Alternate), [damaged])


# --- tarpit ----------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


async def test_tarpit_waits_once_before_a_json_answer() -> None:
    clock = Clock()
    tarpit = Tarpit(3.0, False, clock.sleep)
    await tarpit.pause({"type": "http.response.start", "status": 200, "headers": []})
    await tarpit.pause({"type": "http.response.body", "body": b"{}", "more_body": False})
    assert clock.sleeps == [3.0]


async def test_tarpit_spreads_over_a_stream(http: httpx.Client) -> None:
    clock = Clock()
    tarpit = Tarpit(2.0, True, clock.sleep)
    await tarpit.pause({"type": "http.response.start", "status": 200, "headers": []})
    assert clock.sleeps == []
    chunks, _ = post(http, "openai.chat", {"messages": USER}, True)
    assert len(chunks) > TARPIT_STEPS
    for chunk in chunks:
        await tarpit.pause({"type": "http.response.body", "body": chunk, "more_body": True})
    assert clock.sleeps == [pytest.approx(0.1)] * TARPIT_STEPS
    assert sum(clock.sleeps) == pytest.approx(2.0)
    clock.sleeps.clear()
    tarpit = Tarpit(2.0, True, clock.sleep)
    await tarpit.pause({"type": "http.response.body", "body": b"".join(chunks[:5])})
    assert clock.sleeps == [pytest.approx(0.5)]  # five events at once
