"""Per-request features: what one request tells about its caller."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from guardgate.apis.anthropic import parse_messages
from guardgate.apis.base import ModelCall
from guardgate.apis.openai import parse_chat, parse_responses
from guardgate.risk.features import SCAN_CAP, extract, harvest_of, scanned, skeleton


def chat(text: str, **params: Any) -> ModelCall:
    body = {"model": "m", "messages": [{"role": "user", "content": text}], **params}
    return parse_chat(orjson.dumps(body))


@pytest.mark.parametrize(
    "text",
    [
        "Solve 17*23. Think step by step.",
        "Show your full chain of thought.",
        (
            "Before answering, imagine and articulate the internal reasoning behind a "
            "completed response and write it out step-by-step."
        ),
        "Walk me through your reasoning, please.",
        "Explain your thought process.",
        "Let's think about this.",
        "Write out your complete reasoning process, then the answer.",
        "Put your scratchpad in <thinking> tags.",
    ],
)
def test_reasoning_elicitation_is_recognised(text: str) -> None:
    assert extract(chat(text)).reasoning == 1.0


@pytest.mark.parametrize(
    "text",
    ["What is the capital of France?", "Write a poem about steps.", "I think so too.",
     "Summarise the process for filing taxes."],
)
def test_ordinary_prompts_do_not_count_as_reasoning_requests(text: str) -> None:
    assert extract(chat(text)).reasoning == 0.0


def test_reasoning_options_alone_count_half() -> None:
    effort = chat("Hello", reasoning_effort="high")
    assert extract(effort).reasoning == 0.5
    thinking = parse_messages(orjson.dumps({
        "model": "m", "max_tokens": 2000, "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": "Hello"}],
    }))
    assert extract(thinking).reasoning == 0.5
    assert extract(chat("Hello", reasoning_effort="low")).reasoning == 0.0


def test_harvest_grows_with_every_mining_knob() -> None:
    plain = harvest_of(chat("x"))
    logprobs = harvest_of(chat("x", logprobs=True))
    top = harvest_of(chat("x", logprobs=True, top_logprobs=20))
    everything = harvest_of(chat("x", logprobs=True, top_logprobs=20, max_tokens=1,
                                 temperature=0, logit_bias={"1": 5}))
    assert plain == 0.0 < logprobs < top < everything == 1.0
    assert harvest_of(chat("x", n=4)) == pytest.approx(0.2)


def test_slot_fillers_numbers_and_quotes_fold_into_one_skeleton() -> None:
    a = extract(chat('Explain the concept of photosynthesis in detail, in 300 words: "go".'))
    b = extract(chat('Explain the concept of the French Revolution in detail, in 12 words: "x y".'))
    assert a.template == b.template
    assert a.bands == b.bands
    assert a.prompt != b.prompt


def test_different_prompts_share_no_band() -> None:
    a = extract(chat("Explain the concept of photosynthesis in detail and give examples of it."))
    b = extract(chat("Write a short message to my landlord about the broken heating, politely."))
    assert a.template != b.template
    assert not set(a.bands) & set(b.bands)


def test_a_one_word_paraphrase_shares_a_band_more_often_than_not() -> None:
    base = ("write a detailed guide about {} that explains each main point with one clear "
            "example and a short summary at the end of every section for new students")
    words = base.split()
    original = set(extract(chat(base.format("tax law"))).bands)
    shared = total = 0
    for i, word in enumerate(words):
        if word == "{}":
            continue
        for other in ("simple", "full", "long"):
            variant = " ".join([*words[:i], other, *words[i + 1 :]]).format("tax law")
            shared += bool(original & set(extract(chat(variant)).bands))
            total += 1
    # Three bands of four bins: a pair of skeletons this close (Jaccard about
    # 0.85 over word pairs) shares a band with probability about 0.7.
    assert shared / total > 0.55


def test_short_prompts_cluster_only_with_the_same_skeleton() -> None:
    hi = extract(chat("hi there"))
    assert hi.bands == ("x." + hi.template,)
    assert extract(chat("hi there")).bands == hi.bands
    assert extract(chat("thanks a lot")).bands != hi.bands


def test_the_skeleton_keeps_common_words_only() -> None:
    folded, kept = skeleton("explain quantum chromodynamics in 5 steps")
    assert folded == ["explain", "quantum", "chromodynamics", "in", "0", "steps"]
    assert kept == ["explain", "_", "in", "_", "steps"]


def test_single_turn_and_conversations() -> None:
    assert extract(chat("hello")).single_turn
    convo = parse_chat(orjson.dumps({"model": "m", "messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "more"}]}))
    assert not extract(convo).single_turn


# --- the reasoning ask, wherever the request tells it ------------------------------

ASK = "Think step by step and show your full reasoning before answering"
PLAIN = "You are a helpful assistant. Answer in English"
QUESTION = "What is 17 * 23?"
# Benign filler with none of the reasoning words.
FILLER = "The quick brown fox jumps over the lazy dog. "


def _chat(messages: list[dict[str, Any]], **params: Any) -> ModelCall:
    return parse_chat(orjson.dumps({"model": "m", "messages": messages, **params}))


def _responses(**params: Any) -> ModelCall:
    return parse_responses(orjson.dumps({"model": "m", **params}))


def _messages(**params: Any) -> ModelCall:
    return parse_messages(orjson.dumps({"model": "m", "max_tokens": 100, **params}))


def _tool_turns(result: str) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "Read the file."},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "read", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": result},
        {"role": "user", "content": QUESTION},
    ]


def _schema(description: str) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": {
        "type": "object", "properties": {"answer": {"type": "string", "description": description}}}}}


CHANNELS: dict[str, Callable[[str], ModelCall]] = {
    "user turn": lambda text: chat(f"{text}. {QUESTION}"),
    "chat system": lambda text: _chat([{"role": "system", "content": text},
                                       {"role": "user", "content": QUESTION}]),
    "chat developer": lambda text: _chat([{"role": "developer", "content": text},
                                          {"role": "user", "content": QUESTION}]),
    "chat system parts": lambda text: _chat([
        {"role": "system", "content": [{"type": "text", "text": text}]},
        {"role": "user", "content": QUESTION}]),
    "responses instructions": lambda text: _responses(instructions=text, input=QUESTION),
    "responses instruction items": lambda text: _responses(
        instructions=[{"role": "developer", "content": text}], input=QUESTION),
    "responses developer item": lambda text: _responses(input=[
        {"role": "developer", "content": [{"type": "input_text", "text": text}]},
        {"role": "user", "content": QUESTION}]),
    "anthropic system string": lambda text: _messages(
        system=text, messages=[{"role": "user", "content": QUESTION}]),
    "anthropic system blocks": lambda text: _messages(
        system=[{"type": "text", "text": "You are a tutor."}, {"type": "text", "text": text}],
        messages=[{"role": "user", "content": QUESTION}]),
    "start of a long user turn": lambda text: chat(f"{text}. " + FILLER * 250 + QUESTION),
    "first of many turns": lambda text: _chat([
        {"role": "user", "content": text},
        {"role": "assistant", "content": FILLER * 200},
        {"role": "user", "content": QUESTION}]),
    "chat tool result": lambda text: _chat(_tool_turns(text)),
    "responses tool output": lambda text: _responses(input=[
        {"role": "user", "content": "Read the file."},
        {"type": "function_call", "call_id": "c1", "name": "read", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": text},
        {"role": "user", "content": QUESTION}]),
    "anthropic tool result": lambda text: _messages(messages=[
        {"role": "user", "content": "Read the file."},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "t1", "name": "read", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": text}]},
            {"type": "text", "text": QUESTION}]}]),
    "anthropic document": lambda text: _messages(messages=[{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": text}},
        {"type": "text", "text": QUESTION}]}]),
    # JSON escapes read as what they say: a newline inside the phrase is still a space.
    "tool definition": lambda text: _chat(
        [{"role": "user", "content": QUESTION}],
        tools=[{"type": "function", "function": {
            "name": "answer", "description": text.replace(" ", "\n"),
            "parameters": {"type": "object"}}}]),
    "output schema": lambda text: _chat([{"role": "user", "content": QUESTION}],
                                        response_format=_schema(text)),
    "stored prompt variables": lambda text: _responses(
        prompt={"id": "pmpt_1", "variables": {"style": text}}, input=QUESTION),
}


@pytest.mark.parametrize("channel", list(CHANNELS))
def test_a_reasoning_ask_scores_the_same_wherever_the_model_is_told_it(channel: str) -> None:
    in_user_turn = extract(CHANNELS["user turn"](ASK)).reasoning
    assert in_user_turn == 1.0
    assert extract(CHANNELS[channel](ASK)).reasoning == in_user_turn


@pytest.mark.parametrize("channel", list(CHANNELS))
def test_no_ask_scores_nothing_in_any_channel(channel: str) -> None:
    assert extract(CHANNELS[channel](PLAIN)).reasoning == 0.0


def test_the_template_still_comes_from_the_newest_turn() -> None:
    bare = extract(chat(QUESTION))
    told = extract(CHANNELS["chat system"](ASK))
    assert (told.template, told.bands) == (bare.template, bare.bands)
    assert told.system is not None and bare.system is None


def _parts(call: ModelCall) -> list[str]:
    return [part for _, part in scanned((call.system or "", call.context, call.prompt))]


def test_the_scan_reads_all_of_a_request_up_to_the_cap() -> None:
    system = "S" * 100_000
    prompt = FILLER * ((SCAN_CAP - len(system)) // len(FILLER))
    call = _chat([{"role": "system", "content": system}, {"role": "user", "content": prompt}])
    assert _parts(call) == [system, prompt]  # the text itself, not copied


def test_past_the_cap_the_head_and_the_tail_are_read() -> None:
    mib = 1 << 20
    body = FILLER * (mib // len(FILLER))
    call = chat(body)
    parts = _parts(call)
    assert sum(map(len, parts)) == SCAN_CAP  # characters examined, of about 1 MiB
    assert parts == [body[: SCAN_CAP // 2], body[-(SCAN_CAP // 2) :]]
    for text in (f"{ASK}. {body}", f"{body}{ASK}."):
        assert extract(chat(text)).reasoning == 1.0
    # An ask in the middle goes unread only behind more than SCAN_CAP characters.
    half = len(body) // 2
    assert extract(chat(f"{body[:half]}{ASK}. {body[half:]}")).reasoning == 0.0
    edge = SCAN_CAP // 2 - len(ASK) - 10
    assert extract(chat(f"{body[:edge]}{ASK}. {body[edge:]}")).reasoning == 1.0


def test_the_head_and_tail_span_every_channel() -> None:
    # A system prompt at the head, the newest turn at the tail, a huge tool
    # result between: both ends are read, whichever channel they are in.
    big = FILLER * ((1 << 20) // len(FILLER))
    call = _chat([{"role": "system", "content": ASK}, *_tool_turns(big)])
    assert extract(call).reasoning == 1.0
    call = _chat([{"role": "system", "content": PLAIN}, *_tool_turns(big)[:-1],
                  {"role": "user", "content": ASK}])
    assert extract(call).reasoning == 1.0


def _fastest(call: ModelCall, rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        began = time.perf_counter()
        extract(call)
        best = min(best, time.perf_counter() - began)
    return best


def test_a_huge_body_costs_no_more_than_the_cap() -> None:
    # The worst text for the scan: a reasoning word everywhere, so that the
    # expression runs over everything read. 1 MiB is read as 256 KiB is.
    dense = "show them work " * (SCAN_CAP // 15)
    at_cap = chat(dense[:SCAN_CAP])
    huge = chat(dense * 4)
    assert extract(at_cap).reasoning == extract(huge).reasoning == 0.0
    assert _fastest(huge) < 2 * _fastest(at_cap)
