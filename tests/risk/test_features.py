"""Per-request features: what one request tells about its caller."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from guardgate.apis.anthropic import parse_messages
from guardgate.apis.base import ModelCall
from guardgate.apis.openai import parse_chat
from guardgate.risk.features import extract, harvest_of, skeleton


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


def test_only_the_end_of_a_huge_prompt_is_read() -> None:
    huge = chat("filler " * 200_000 + "Think step by step.")
    assert extract(huge).reasoning == 1.0
