"""The answer walkers and their chain (`guardgate.apis.answers`) on the toy
upstream's streams: a stream the processors shortened or lengthened keeps its
own numbering whole, and the chain hands on what it does not parse."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from guardgate.apis import walker_for
from guardgate.apis.answers import AnswerChain, Edit, Processor
from guardgate.apis.sse import event_data
from guardgate.perturb.send import ResponseRewriter
from guardgate.perturb.transforms import Transforms

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
