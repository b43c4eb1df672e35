"""Prose is prose wherever it sits: an answer asked for in a prose fence (or
a fence with no info string, line by line), as JSON string values or as
tool-call arguments is marked, and the mark stays when the adversary takes
the text out of its container; code, keys, numbers, URLs and the JSON's
structure stay byte for byte, and a stream is marked as the whole text is."""

from __future__ import annotations

import json
import random
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from guardgate.apis import ADAPTERS
from guardgate.perturb.send import ResponseRewriter
from guardgate.perturb.transforms import Transforms
from guardgate.perturb.watermark import GROUP_OF, Detector, Key, Marker, detect, mark
from guardgate.perturb.watermark.zones import reads_as_prose
from tests.perturb.test_transforms import Alternate, Replay, events, run
from tests.perturb.test_watermark import expanded
from tests.servers import serve_in_thread

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.corpus import documents

KEY = b"watermark-container-key-0123"
KEYS = [f"container-key-{i}".encode() for i in range(12)]
PROSE = ("We often need quick answers, and it is usual to start with a big plan. "
         "You should use it because it is simple, and we do not need to help them. "
         "The main goal is to improve the large project quickly.")
Json = dict[str, Any]


@pytest.fixture(scope="module")
def docs() -> list[str]:
    return documents(40, words=500, seed=23)


def values(value: object) -> list[str]:
    """The string values of a JSON value, in order (keys left out)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in values(item)]
    if isinstance(value, list):
        return [s for item in value for s in values(item)]
    return []


def keys(value: object) -> list[str]:
    if isinstance(value, dict):
        return [k for key, item in value.items() for k in (key, *keys(item))]
    if isinstance(value, list):
        return [k for item in value for k in keys(item)]
    return []


def only_slots_changed(before: str, after: str) -> bool:
    """Whether ``after`` is ``before`` with only slot words written otherwise:
    synonyms of a group, or a negation or a pronoun's verb written either way."""
    old, new = expanded(before).split(), expanded(after).split()
    if len(old) != len(new):
        return False
    for a, b in zip(old, new, strict=True):
        if a.lower() != b.lower() and a.lower().strip(".,;:!?()\"'") not in GROUP_OF:
            return False
    return True


def pieces(text: str, rng: random.Random, most: int = 12) -> list[str]:
    out, at = [], 0
    while at < len(text):
        step = rng.randint(1, most)
        out.append(text[at : at + step])
        at += step
    return out


# --- fences ----------------------------------------------------------------------------


@pytest.mark.parametrize("info", ["text", "markdown", "md", "TEXT", " text"])
def test_a_prose_fence_is_marked_as_its_text_alone(docs: list[str], info: str) -> None:
    for doc in docs[:10]:
        for fence in ("```", "~~~", "````"):
            wrapped = f"{fence}{info}\n{doc}\n{fence}"
            marked = mark(wrapped, KEY)
            assert marked == f"{fence}{info}\n{mark(doc, KEY)}\n{fence}"
    # The adversary's unwrapping keeps the mark.
    unwrapped = [mark(f"```{info}\n{doc}\n```", KEY).splitlines()[1:-1] for doc in docs]
    assert detect("\n\n".join("\n".join(lines) for lines in unwrapped), KEY).p_value < 1e-20


# A fence with no info string: code, as models write it unlabelled, with one
# line of prose.
UNLABELLED = ('Here is how:\n\n```\nif value is not None:\n    return value\n'
              'print("do not use this")\nSELECT name FROM users WHERE id is not null\n'
              "it is not a problem, we do not need to use it\n```\n")
UNLABELLED_PROSE = "it is not a problem, we do not need to use it"


def test_code_in_a_fence_with_no_info_string_stays_byte_identical() -> None:
    code = UNLABELLED.split("\n")[3:7]
    prose_marked = 0
    for i in range(60):
        marked = mark(UNLABELLED, f"k{i}".encode())
        lines = marked.split("\n")
        assert lines[2] == "```" and lines[3:7] == code and lines[8:] == ["```", ""]
        prose_marked += lines[7] != UNLABELLED_PROSE
        assert only_slots_changed(UNLABELLED_PROSE, lines[7])
    assert prose_marked > 30


@pytest.mark.parametrize("fence", ["```", "~~~", "````"])
def test_a_fence_with_no_info_string_marks_the_lines_that_read_as_prose(
    docs: list[str], fence: str
) -> None:
    for doc in docs[:10]:
        lines = doc.split("\n")
        marked = mark(f"{fence}\n{doc}\n{fence}", KEY)
        alone = [mark(line, KEY) if reads_as_prose(line) else line for line in lines]
        assert marked == f"{fence}\n" + "\n".join(alone) + f"\n{fence}"
    # Most of an answer's prose reads as prose: unwrapped, it keeps the mark,
    # and the detector reads the fence as the marker does.
    fenced = [mark(f"{fence}\n{doc}\n{fence}", KEY) for doc in docs]
    unwrapped = "\n\n".join("\n".join(text.splitlines()[1:-1]) for text in fenced)
    assert detect(unwrapped, KEY).p_value < 1e-15
    evidence = detect("\n\n".join(fenced), KEY)
    assert evidence.hits == evidence.slots > 100


@pytest.mark.parametrize("info", ["python", "sh", "json5", "js title=big", "c++"])
def test_a_code_fence_stays_byte_identical(info: str) -> None:
    code = ("We often need quick answers, it is usual.\nx = big if quick else large\n"
            "if x is not None and big:\n    do_not(quickly)\n")
    text = f"{PROSE}\n\n```{info}\n{code}```\n\n{PROSE}"
    for key in KEYS:
        marked = mark(text, key)
        assert f"```{info}\n{code}```" in marked
        assert marked != text  # the prose around it is marked


def test_the_fence_lines_are_never_touched() -> None:
    for key in KEYS:
        marked = mark(f"``` text we often need quick answers\n{PROSE}\n```\n", key)
        assert marked.startswith("``` text we often need quick answers\n")
        assert marked.endswith("\n```\n")
    assert any(mark(f"```text\n{PROSE}\n```", key) != f"```text\n{PROSE}\n```" for key in KEYS)


def test_code_fenced_inside_a_prose_fence_stays_code() -> None:
    code = "```\nx = big if quick else large  # we often need quick answers\n```"
    python = "```python\nif x is not None and big:\n    pass\n```"
    text = f"````markdown\n{PROSE}\n\n{code}\n\n{python}\n\n{PROSE}\n````\n{PROSE}"
    for key in KEYS:
        marked = mark(text, key)
        assert code in marked and python in marked
        assert marked.startswith("````markdown\n") and "\n````\n" in marked
    assert sum(mark(text, key).count(PROSE) < 3 for key in KEYS) == len(KEYS)


def test_backticks_in_a_line_are_inline_code_not_a_fence() -> None:
    text = f"Use ```x is not None``` here. {PROSE}"
    for key in KEYS:
        marked = mark(text, key)
        assert marked.startswith("Use ```x is not None``` here. ")
    assert any(mark(text, key) != text for key in KEYS)


# --- JSON -------------------------------------------------------------------------------


def as_json(doc: str, **options: Any) -> str:
    return json.dumps({"paragraphs": doc.split("\n\n"), "count": 3}, **options)


def test_json_prose_values_carry_the_mark_out_of_the_json(docs: list[str]) -> None:
    marked_values: list[str] = []
    for doc in docs:
        for options in ({}, {"ensure_ascii": False}, {"indent": 2}):
            text = as_json(doc, **options)
            marked = mark(text, KEY)
            value, given = json.loads(marked), json.loads(text)
            assert keys(value) == keys(given) and value["count"] == 3
            assert len(value["paragraphs"]) == len(given["paragraphs"])
            for old, new in zip(given["paragraphs"], value["paragraphs"], strict=True):
                assert only_slots_changed(old, new), (old, new)
        marked_values.append("\n\n".join(json.loads(mark(as_json(doc), KEY))["paragraphs"]))
        # The values do not depend on the JSON's layout.
        assert json.loads(mark(as_json(doc, indent=4), KEY)) == json.loads(
            mark(as_json(doc, ensure_ascii=False), KEY))
    plain = [mark(doc, KEY) for doc in docs]
    assert sum(a != b for a, b in zip(marked_values, docs, strict=True)) >= 0.9 * len(docs)
    # Unwrapped, the answer carries the mark: one value's first two words are
    # context only, the rest is marked as the plain answer would be.
    found, whole = Detector(KEY), Detector(KEY)
    for text in marked_values:
        found.feed(text)
    for text in plain:
        whole.feed(text)
    assert found.evidence().p_value < 1e-30
    assert found.evidence().hits >= 0.75 * whole.evidence().hits
    assert detect("\n\n".join(docs), KEY).p_value > 1e-3  # and unmarked it carries none


def test_json_keys_numbers_urls_and_code_stay_byte_identical() -> None:
    given: Json = {
        "we often need quick answers and big plans": 1,
        "id": "big_quick_large", "count": -12.5e3, "ok": True, "none": None,
        "url": "https://example.com/we/often/need/quick/answers",
        "path": "/usr/share/big quick/large answers.txt",
        "blob": "d2Ugb2Z0ZW4gbmVlZCBxdWljayBhbnN3ZXJz",
        "code": "x = big if quick else large; it is not None",
        "python": "def f(x):\n    return x is not None and big_value(quick)",
        "shell": "rm -rf ./big && cp quick/large /tmp/often/need",
        "label": "Be quick", "other": "Stay simple",
        "list": ["big", "fairly big", 3, {"nested key with words": "large"}],
        "prose": PROSE,
    }
    text = json.dumps(given, indent=2)
    start = text.index(json.dumps(PROSE))
    end = start + len(json.dumps(PROSE))
    changed = 0
    for key in KEYS:
        marked = mark(text, key)
        tail = len(text) - end
        assert marked[:start] == text[:start] and marked[len(marked) - tail:] == text[end:]
        value = json.loads(marked)
        assert {k: v for k, v in value.items() if k != "prose"} == \
            {k: v for k, v in given.items() if k != "prose"}
        assert only_slots_changed(PROSE, value["prose"])
        changed += value["prose"] != PROSE
    assert changed == len(KEYS)


def test_escapes_are_kept_and_the_words_next_to_them_left_alone() -> None:
    prose = ("We often need \"quick\" answers,\nbig plans and it is usual.\tWe should "
             "use it because it\u2019s simple, \\ and we do not need large tools quickly. "
             "So we often need the big\" plans and the quick\" ones, which is simple\" too.")
    for ascii_only in (True, False):
        text = json.dumps({"text": prose}, ensure_ascii=ascii_only)
        escaped = [c for c in text.split() if "\\" in c]
        seen = set()
        for key in KEYS:
            marked = mark(text, key)
            assert [c for c in marked.split() if "\\" in c] == escaped
            seen.add(json.loads(marked)["text"])
            assert only_slots_changed(prose, json.loads(marked)["text"])
        assert len(seen) > 1


def test_inline_code_in_a_json_string_stays_as_written() -> None:
    code = "`it is not big, we do not use quick`"
    prose = f"We often need {code} and {PROSE}"
    text = json.dumps({"text": prose})
    for key in KEYS:
        marked = json.loads(mark(text, key))["text"]
        assert code in marked and only_slots_changed(prose, marked)
    assert any(json.loads(mark(text, key))["text"] != prose for key in KEYS)


def test_a_text_that_is_json_marks_nothing_outside_its_values() -> None:
    value = json.dumps({"note": PROSE})
    for key in KEYS:
        # Tool-call arguments are read as prose would read that JSON.
        assert mark(value, key, json=True) == mark(value, key)
        after = mark(value + " and " + PROSE, key, json=True)
        assert after.endswith(" and " + PROSE)
        # Broken JSON: nothing from the break on is marked.
        rest = " oops " + json.dumps(PROSE) + "}"
        assert mark('{"a": "we often need big plans",' + rest, key, json=True).endswith(rest)
        assert mark("not json: " + PROSE, key, json=True) == "not json: " + PROSE
    assert any(mark(value, key, json=True) != value for key in KEYS)


def test_json_in_prose_in_a_json_fence_and_in_a_text_fence_is_marked() -> None:
    value = json.dumps({"id": "big_quick", "note": PROSE})
    for text in (f"Here it is: {value} as asked.", f"```json\n{value}\n```",
                 f"```text\n{value}\n```", f"```json\n{json.dumps(json.loads(value), indent=2)}\n```"):
        marks = [mark(text, key) for key in KEYS]
        assert all(m.count('"id": "big_quick"') == 1 for m in marks)
        assert sum(m != text for m in marks) == len(KEYS)
        for m in marks:
            found = re.search(r"\{.*\}", m, re.DOTALL)
            assert found is not None and json.loads(found.group())["id"] == "big_quick"


def test_what_is_no_json_is_a_bracket_zone_as_before() -> None:
    for text in ("See [the big quick note]", "A {big, quick}", '[we "often" need]',
                 "[the quick one](https://x.io/quick)"):
        for key in KEYS:
            marked = mark(text + " " + PROSE, key)
            assert marked.startswith(text + " ")
    # "[1]" is JSON, and what follows it prose.
    assert any(mark("[1] " + PROSE, key) != "[1] " + PROSE for key in KEYS)


# --- streams ----------------------------------------------------------------------------


MIXED = (f"{PROSE}\n\n```text\n{PROSE}\n```\n\n```python\nx = big if quick else large\n```\n"
         f"{json.dumps({'a': PROSE, 'n': [1, 2, {'b': 'big quick'}]}, indent=2)}\n"
         f"```json\n{json.dumps({'c': PROSE})}\n```\nA [ stray {PROSE}\n\n"
         f"~~~md\n{PROSE}\n~~~\n" + json.dumps({"e": "We often \"need\" quick\nanswers, it is "
                                                     "usual. " + PROSE}))


# Code and prose lines of a fence with no info string, mixed.
UNLABELLED_LINES = ("x = big if quick else large", "if x is not None:", "  it is not big",
                    "    we do not need it, it is quick", "it's", '"We often need it," he said.',
                    "do", "SELECT big FROM quick")
UNLABELLED_MIXED = (f"{PROSE}\n\n~~~\n{PROSE}\n" + UNLABELLED + f"{PROSE}\n\n```\n"
                    + "\n".join(f"{line}\n{PROSE}\n- {PROSE}" for line in UNLABELLED_LINES)
                    + f"\n```\n{PROSE}\n```\nwe often need quick answers, it is usual")


@pytest.mark.parametrize("as_json_text", [False, True], ids=["prose", "json"])
def test_a_stream_in_random_pieces_is_marked_as_the_whole(
    docs: list[str], as_json_text: bool
) -> None:
    texts = [json.dumps({"note": PROSE, "items": [PROSE, 3]}), as_json(docs[0]),
             json.dumps({"x": docs[1]}, indent=2)]
    if not as_json_text:
        texts += [MIXED, f"```\n{docs[2]}\n```", as_json(docs[3]) + "\n\n" + docs[3],
                  UNLABELLED_MIXED]
    rng = random.Random(41)
    for text in texts:
        for key in KEYS[:4]:
            whole = mark(text, key, json=as_json_text)
            for _ in range(6):
                marker = Marker(Key(key), json=as_json_text)
                out = [marker.feed(piece) for piece in pieces(text, rng, rng.choice((3, 12, 40)))]
                assert "".join(out) + marker.flush() == whole


def test_a_fence_with_no_info_string_streamed_in_small_pieces_is_marked_as_the_whole() -> None:
    rng = random.Random(43)
    for text in (UNLABELLED, UNLABELLED_MIXED, UNLABELLED_MIXED.replace("\n", "\r\n")):
        for key in KEYS:
            whole = mark(text, key)
            for most in (1, 2, 5, 30):
                marker = Marker(Key(key))
                out = [marker.feed(piece) for piece in pieces(text, rng, most)]
                assert "".join(out) + marker.flush() == whole
    # The code lines stay as written, the prose lines are marked.
    marks = [mark(UNLABELLED_MIXED, key) for key in KEYS]
    for line in ("x = big if quick else large", "    we do not need it, it is quick",
                 "SELECT big FROM quick", "    return value"):
        assert all(f"\n{line}\n" in m for m in marks)
    assert all(m.count(PROSE) < UNLABELLED_MIXED.count(PROSE) for m in marks)


# --- tool-call arguments through the answer walkers --------------------------------------


ARGUMENTS = json.dumps({"title": "Plan", "count": 3, "url": "https://example.com/a/b",
                        "body": PROSE, "steps": [PROSE, "big_quick"]})


def marker() -> Marker:
    return Marker(Key(KEY))


def sse(value: Json, named: bool = False) -> bytes:
    head = b"event: " + value["type"].encode() + b"\n" if named else b""
    return head + b"data: " + orjson.dumps(value) + b"\n\n"


def chat_stream(fragments: list[str], done: bool = True) -> list[bytes]:
    def chunk(delta: Json, finish: str | None = None) -> bytes:
        return sse({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                    "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                 "finish_reason": finish}]})

    first = {"role": "assistant", "content": None, "tool_calls": [
        {"index": 0, "id": "call_1", "type": "function",
         "function": {"name": "plan", "arguments": ""}}]}
    out = [chunk(first)]
    out += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": f}}]})
            for f in fragments]
    if done:
        out += [chunk({}, "tool_calls"), b"data: [DONE]\n\n"]
    return out


def chat_arguments(stream: list[Json]) -> str:
    return "".join(call["function"].get("arguments") or ""
                   for event in stream for choice in event["choices"]
                   for call in choice["delta"].get("tool_calls") or [])


def messages_stream(fragments: list[str]) -> list[bytes]:
    start = {"type": "message_start", "message": {
        "id": "msg", "type": "message", "role": "assistant", "model": "m", "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 1}}}
    out = [sse(start, True), sse({"type": "content_block_start", "index": 0, "content_block": {
        "type": "tool_use", "id": "toolu_1", "name": "plan", "input": {}}}, True)]
    out += [sse({"type": "content_block_delta", "index": 0,
                 "delta": {"type": "input_json_delta", "partial_json": f}}, True)
            for f in fragments]
    return out + [sse({"type": "content_block_stop", "index": 0}, True),
                  sse({"type": "message_delta", "delta": {"stop_reason": "tool_use",
                                                          "stop_sequence": None},
                       "usage": {"output_tokens": 9}}, True),
                  sse({"type": "message_stop"}, True)]


CALL = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "plan",
        "arguments": ARGUMENTS, "status": "completed"}


def response(status: str, output: list[Json]) -> Json:
    return {"id": "resp_1", "object": "response", "created_at": 1, "model": "m",
            "status": status, "output": output, "parallel_tool_calls": True, "tools": [],
            "tool_choice": "auto", "usage": None, "error": None, "incomplete_details": None,
            "instructions": None, "metadata": {}, "temperature": 1.0, "top_p": 1.0,
            "text": {"format": {"type": "text"}}}


def responses_stream(fragments: list[str]) -> list[bytes]:
    numbers = iter(range(1000))

    def event(value: Json) -> bytes:
        return sse({**value, "sequence_number": next(numbers)}, True)

    added = {**CALL, "arguments": "", "status": "in_progress"}
    out = [event({"type": "response.created", "response": response("in_progress", [])}),
           event({"type": "response.output_item.added", "output_index": 0, "item": added})]
    out += [event({"type": "response.function_call_arguments.delta", "item_id": "fc_1",
                   "output_index": 0, "delta": f}) for f in fragments]
    return out + [
        event({"type": "response.function_call_arguments.done", "item_id": "fc_1",
               "output_index": 0, "arguments": ARGUMENTS}),
        event({"type": "response.output_item.done", "output_index": 0, "item": CALL}),
        event({"type": "response.completed", "response": response("completed", [CALL])})]


def json_answer(api: str) -> Json:
    if api == "openai.chat":
        return {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None,
                             "message": {"role": "assistant", "content": None, "tool_calls": [
                                 {"id": "call_1", "type": "function",
                                  "function": {"name": "plan", "arguments": ARGUMENTS}}]}}]}
    if api == "openai.responses":
        return response("completed", [CALL])
    return {"id": "msg", "type": "message", "role": "assistant", "model": "m",
            "stop_reason": "tool_use", "stop_sequence": None,
            "usage": {"input_tokens": 5, "output_tokens": 9},
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "plan",
                         "input": json.loads(ARGUMENTS)}]}


def json_arguments(api: str, answer: Json) -> str:
    if api == "openai.chat":
        return str(answer["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])
    if api == "openai.responses":
        return str(answer["output"][0]["arguments"])
    return json.dumps(answer["content"][0]["input"])


STREAMS = {"openai.chat": chat_stream, "anthropic.messages": messages_stream,
           "openai.responses": responses_stream}


def stream_arguments(api: str, stream: list[Json]) -> str:
    if api == "openai.chat":
        return chat_arguments(stream)
    if api == "anthropic.messages":
        return "".join(e["delta"]["partial_json"] for e in stream
                       if e["type"] == "content_block_delta")
    deltas = "".join(e["delta"] for e in stream
                     if e["type"] == "response.function_call_arguments.delta")
    # Every repetition of the arguments says what the deltas said.
    [done] = [e for e in stream if e["type"] == "response.function_call_arguments.done"]
    [item] = [e for e in stream if e["type"] == "response.output_item.done"]
    assert done["arguments"] == item["item"]["arguments"] == deltas
    assert stream[-1]["response"]["output"][0]["arguments"] == deltas
    assert [e["sequence_number"] for e in stream] == list(range(len(stream)))
    return deltas


@pytest.mark.parametrize("api", list(STREAMS))
def test_tool_call_arguments_are_marked_streamed_or_whole(api: str) -> None:
    want = mark(ARGUMENTS, KEY, json=True)
    assert want != ARGUMENTS and only_slots_changed(ARGUMENTS, want)
    assert json.loads(want)["url"] == "https://example.com/a/b" and json.loads(want)["count"] == 3
    assert json.loads(want)["steps"][1] == "big_quick"
    answer = orjson.loads(run(ResponseRewriter(api, False, Transforms(), KEY, marker),
                              [orjson.dumps(json_answer(api))]))
    assert json.loads(json_arguments(api, answer)) == json.loads(want)
    rng = random.Random(7)
    for most in (1, 5, 40):
        stream = STREAMS[api](pieces(ARGUMENTS, rng, most))
        out = events(run(ResponseRewriter(api, True, Transforms(), KEY, marker), stream))
        assert stream_arguments(api, out) == want
    # The values, taken out of the arguments, carry the mark.
    assert detect("\n\n".join(values(json.loads(want))), KEY).hits >= 8


def test_arguments_held_when_a_chat_stream_stops_short_are_sent() -> None:
    want = mark(ARGUMENTS, KEY, json=True)
    for tail in ([b"data: [DONE]\n\n"], []):
        stream = chat_stream(pieces(ARGUMENTS, random.Random(3), 9), done=False) + tail
        out = events(run(ResponseRewriter("openai.chat", True, Transforms(), KEY, marker),
                         stream))
        assert chat_arguments(out) == want


def test_a_filter_that_cannot_mark_json_never_sees_arguments() -> None:
    stream = chat_stream(pieces(ARGUMENTS, random.Random(5), 9))
    out = events(run(ResponseRewriter("openai.chat", True, Transforms(), KEY, Alternate),
                     stream))
    assert chat_arguments(out) == ARGUMENTS


# --- the SDKs read the marked arguments ----------------------------------------------


@pytest.fixture(scope="module")
def replay() -> Iterator[tuple[Replay, str]]:
    state = Replay()
    app = Starlette(routes=[Route(adapter.path, state.answer, methods=["POST"])
                            for adapter in ADAPTERS.values()])
    with serve_in_thread(app) as base:
        yield state, base


@pytest.mark.parametrize("api", list(STREAMS))
def test_the_sdks_read_the_marked_arguments(replay: tuple[Replay, str], api: str) -> None:
    state, base = replay
    want = json.loads(mark(ARGUMENTS, KEY, json=True))
    state.headers = {"content-type": "text/event-stream"}
    state.body = run(ResponseRewriter(api, True, Transforms(), KEY, marker),
                     STREAMS[api](pieces(ARGUMENTS, random.Random(11), 7)))
    user = [{"role": "user", "content": "Plan it."}]
    if api == "anthropic.messages":
        with anthropic.Anthropic(base_url=base, api_key="k", max_retries=0) as client, \
                client.messages.stream(model="m", max_tokens=9, messages=user) as stream:
            message = stream.get_final_message()
        block = message.content[0]
        assert block.type == "tool_use" and block.input == want
        return
    with openai.OpenAI(base_url=base + "/v1", api_key="k", max_retries=0) as sdk:
        if api == "openai.chat":
            with sdk.chat.completions.stream(model="m", messages=user) as chat:
                final = chat.get_final_completion()
            calls = final.choices[0].message.tool_calls
            assert calls is not None and json.loads(calls[0].function.arguments) == want
        else:
            with sdk.responses.stream(model="m", input="Plan it.") as responses:
                done = responses.get_final_response()
            item = done.output[0]
            assert item.type == "function_call" and json.loads(item.arguments) == want
