"""The answer walkers and their chain (`guardgate.apis.answers`) on the toy
upstream's answers: a stream the processors shortened or lengthened keeps its
own numbering whole, the chain hands on what it does not parse, and an answer
too large to hold whole is cut into parts and treated as the whole would be."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardgate.apis import walker_for
from guardgate.apis.answers import AnswerChain, Edit, Processor
from guardgate.apis.answers import chain as chain_module
from guardgate.apis.answers.cut import ITEM, MEMBER, RAW, AnswerCutter, Piece
from guardgate.apis.sse import event_data
from guardgate.apis.usage import Meter
from guardgate.perturb.send import Perturbation, ResponseRewriter
from guardgate.perturb.transforms import Transforms
from guardgate.perturb.watermark import Key

Json = dict[str, Any]
USER = [{"role": "user", "content": "How should I plan a small software project?"}]


class Upper:
    """A text filter that holds back the last character of what it is fed."""

    def __init__(self) -> None:
        self.held = ""

    def feed(self, text: str) -> str:
        text, self.held = self.held + text, ""
        out, self.held = text[:-1], text[-1:]
        return out.upper()

    def flush(self) -> str:
        out, self.held = self.held.upper(), ""
        return out


@pytest.fixture(scope="module")
def http(toy: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=toy, timeout=10) as client:
        yield client


def stream(http: httpx.Client, path: str, body: Json) -> bytes:
    return http.post(path, json={"model": "toy", "stream": True, **body}).content


def events(raw: bytes) -> list[Json]:
    datas = [event_data(block + b"\n\n") for block in raw[:-2].split(b"\n\n")]
    return [orjson.loads(d) for d in datas if d is not None and d != b"[DONE]"]


def test_responses_numbers_stay_whole_when_reasoning_goes_and_held_text_comes(
    http: httpx.Client,
) -> None:
    raw = stream(http, "/v1/responses", {"input": "Plan my week",
                                         "reasoning": {"effort": "medium", "summary": "auto"}})
    before = events(raw)
    assert any(e.get("item", {}).get("type") == "reasoning" for e in before)
    chain = ResponseRewriter("openai.responses", True, Transforms(drop_reasoning=True), b"k",
                             Upper)
    after = events(chain.feed(raw) + chain.finish())
    assert len(after) < len(before)
    assert [e["sequence_number"] for e in after] == list(range(len(after)))
    indexes = sorted({e["output_index"] for e in after if "output_index" in e})
    assert indexes == list(range(len(indexes)))
    assert not any(e["type"].startswith("response.reasoning") for e in after)


def test_anthropic_blocks_are_renumbered_when_thinking_goes(http: httpx.Client) -> None:
    raw = stream(http, "/v1/messages", {"messages": USER, "max_tokens": 30,
                                        "thinking": {"type": "enabled", "budget_tokens": 1024}})
    chain = ResponseRewriter("anthropic.messages", True, Transforms(drop_reasoning=True),
                             b"k", Upper)
    after = events(chain.feed(raw) + chain.finish())
    blocks = [e for e in after if e["type"].startswith("content_block")]
    assert blocks and {e["index"] for e in blocks} == {0}
    text = "".join(e["delta"]["text"] for e in blocks if e["type"] == "content_block_delta")
    assert text and text == text.upper()
    # The held character goes out before the block stops.
    assert [e["type"] for e in blocks][-2:] == ["content_block_delta", "content_block_stop"]


class Spy(Processor):
    """Records what it is shown; drops what ``drop`` names."""

    def __init__(self, drop: str | None = None, rewrites: bool = True) -> None:
        self.seen: list[Json] = []
        self.drop = drop
        self.rewrites = rewrites

    def event(self, edit: Edit) -> None:
        self.seen.append(edit.value)
        edit.dropped = edit.value.get("id") == self.drop


def test_a_dropped_event_goes_no_further_and_odd_events_pass_unread() -> None:
    first, second = Spy(drop="b"), Spy()
    chain = AnswerChain(walker_for("openai.chat", True), [first, second])
    odd = [b": keep-alive\n\n", b"event: ping\n\n", b"data: not json\n\n", b"data: [1]\n\n"]
    raw = [b'data: {"id":"a"}\n\n', *odd, b'data: {"id":"b"}\n\n', b'data: {"id":"c"}\n\n']
    out = b"".join(chain.feed(piece) for piece in raw) + chain.finish()
    assert out == b"".join(p for p in raw if b'"b"' not in p)
    assert [e["id"] for e in first.seen] == ["a", "b", "c"]
    assert [e["id"] for e in second.seen] == ["a", "c"]


def test_a_chain_that_only_reads_hands_every_chunk_on_at_once() -> None:
    spy = Spy(rewrites=False)
    chain = AnswerChain(walker_for("openai.chat", True), [spy])
    pieces = [b'data: {"id":', b'"a"}\n', b"\ndata: [DONE]\n\n"]
    assert [chain.feed(p) for p in pieces] == pieces
    assert chain.finish() == b""
    assert spy.seen == [{"id": "a"}]


# --- answers too large to hold whole: cut into parts --------------------------------------

SECRET = b"answers-cut-into-parts-key"
TREATED = Perturbation(Transforms(drop_reasoning=True, cap_top_logprobs=1,
                                  coarsen_logprobs=True), Key(SECRET), SECRET)
LARGE = [
    ("/v1/chat/completions", "openai.chat",
     {"messages": USER, "n": 3, "logprobs": True, "top_logprobs": 3, "reasoning_effort": "low"}),
    ("/v1/completions", "openai.completions",
     {"prompt": ["Write a story", "Plan a week"], "n": 2, "logprobs": 3, "max_tokens": 30}),
    ("/v1/responses", "openai.responses",
     {"input": "Plan my week", "reasoning": {"effort": "low", "summary": "auto"},
      "include": ["message.output_text.logprobs"], "top_logprobs": 2}),
    ("/v1/messages", "anthropic.messages",
     {"messages": USER, "max_tokens": 60, "thinking": {"type": "enabled",
                                                         "budget_tokens": 1024}}),
]


def through_chain(api: str, raw: bytes, size: int) -> tuple[bytes, tuple[Any, ...]]:
    """``raw`` through the meter and a treating tier's processors, in chunks of ``size``."""
    walker = walker_for(api, False)
    meter = Meter(walker, False)
    chain = AnswerChain(walker, [meter, *TREATED.processors(walker)])
    out = b"".join(chain.feed(raw[i:i + size]) for i in range(0, len(raw), size))
    out += chain.finish()
    return out, (meter.input_tokens, meter.output_tokens, meter.text_chars)


@pytest.mark.parametrize(("path", "api", "body"), LARGE, ids=[c[1] for c in LARGE])
def test_an_answer_cut_into_parts_is_treated_as_the_whole_one(
    http: httpx.Client, monkeypatch: pytest.MonkeyPatch, path: str, api: str, body: Json
) -> None:
    """Each choice, output item or content block on its own, each other member
    on its own: the same bytes out, the same usage read, as the answer held whole."""
    raw = http.post(path, json={"model": "toy", **body}).content
    whole, read = through_chain(api, raw, len(raw))
    assert whole != raw
    monkeypatch.setattr(chain_module, "MAX_JSON", 64)  # every answer is cut
    for size in (len(raw), 1, 7, 4096):
        cut, cut_read = through_chain(api, raw, size)
        assert cut == whole
        assert cut_read == read


@pytest.mark.parametrize("drop", ["first", "middle", "last", "every"])
def test_a_part_that_goes_takes_its_comma_and_none_other(
    monkeypatch: pytest.MonkeyPatch, drop: str
) -> None:
    blocks = [{"type": "thinking", "thinking": "hmm"} if drop == "every" or
              (drop, i) in {("first", 0), ("middle", 1), ("last", 2)}
              else {"type": "text", "text": f"part {i}"} for i in range(3)]
    answer = {"id": "m", "content": blocks, "usage": {"input_tokens": 1, "output_tokens": 2}}
    raw = orjson.dumps(answer, option=orjson.OPT_INDENT_2)
    monkeypatch.setattr(chain_module, "MAX_JSON", 16)
    chain = ResponseRewriter("anthropic.messages", False, Transforms(drop_reasoning=True), b"k")
    out = b"".join(chain.feed(raw[i:i + 5]) for i in range(0, len(raw), 5)) + chain.finish()
    kept = [b for b in blocks if b["type"] == "text"]
    assert orjson.loads(out) == {**answer, "content": kept}
    if drop == "every":
        assert b'"content": [\n  ]' in out  # the rest as it came


# --- the cut itself -------------------------------------------------------------------


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(alphabet='ab"\\{}[],: é\n'),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(alphabet='ab"\\{}[],: ', max_size=4), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    members=st.dictionaries(st.sampled_from(["id", "choices", "usage", 'x"y\\', "{["]),
                            JSON_VALUES, max_size=5),
    items=st.lists(JSON_VALUES, max_size=5),
    indent=st.booleans(),
    cut=st.integers(1, 40),
)
def test_the_cut_gives_back_every_byte_and_parts_that_parse(
    members: Json, items: list[Any], indent: bool, cut: int
) -> None:
    answer = {**members, "choices": items}
    raw = orjson.dumps(answer, option=orjson.OPT_INDENT_2 if indent else 0)
    cutter = AnswerCutter("choices", 1 << 20)
    pieces = [p for i in range(0, len(raw), cut) for p in cutter.push(raw[i:i + cut])]
    pieces += cutter.finish()
    assert cutter.broken is None
    assert b"".join(p.lead + p.data for p in pieces) == raw
    got = [orjson.loads(p.data) for p in pieces if p.kind == ITEM]
    assert got == items
    read = {k: v for p in pieces if p.kind == MEMBER for k, v in
            orjson.loads(b"{" + p.data + b"}").items()}
    assert read == {k: v for k, v in answer.items() if k != "choices"}


@pytest.mark.parametrize(("raw", "why"), [
    (b"[1, 2]", "not a JSON object"),
    (b'{"a" 1}', "not a JSON object"),
    (b'{"a": 1,, "b": 2}', "not a JSON object"),
    (b'{"choices": [1 2]}', "not a JSON object"),
    (b'{"a": 1} x', "not a JSON object"),
    (b'{"a": [1, 2', "cut short"),
    (b'{"a": "' + b"x" * 100, "too large"),
])
def test_the_cut_ends_where_the_bytes_are_no_answer(raw: bytes, why: str) -> None:
    cutter = AnswerCutter("choices", 64)
    pieces = [p for i in range(0, len(raw), 3) for p in cutter.push(raw[i:i + 3])]
    pieces += cutter.finish()
    assert cutter.broken == why
    assert b"".join(p.lead + p.data for p in pieces) == raw
    assert pieces[-1].kind == RAW
    assert cutter.push(b"more") == [Piece(RAW, b"", b"more")]


def test_a_part_past_the_bound_is_never_held() -> None:
    """Only the part being read is held: a choice larger than the bound ends
    the cut once the bound is passed, whatever came before."""
    small = {"index": 0, "text": "x" * 1000}
    raw = orjson.dumps({"choices": [small] * 50 + [{"text": "y" * 10_000}]})
    cutter = AnswerCutter("choices", 4096)
    held = 0
    for i in range(0, len(raw), 512):
        pieces = cutter.push(raw[i:i + 512])
        held = max(held, len(cutter._buf))
        if cutter.broken:
            break
    assert cutter.broken == "too large"
    assert sum(p.kind == ITEM for p in pieces) <= 50
    assert held <= 4096 + 512
