"""Per-request risk features, computed from the `ModelCall` and the identity.

Cheap on purpose: a few regular-expression passes and CRC32 hashes over a
bounded slice of the prompt, no model and no network. What a request
contributes to its caller's rolling state and to the cross-account clusters
is all here; `guardgate.risk.signals` turns the accumulated state into scores.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from importlib import resources

from guardgate.apis.base import ModelCall

# Only this much of a prompt is looked at: its end holds the newest turn,
# and a bound keeps the cost per request flat whatever the body size.
TEXT_WINDOW = 4000

# Instructions that ask the model to write out its reasoning, the most
# valuable thing a distiller can harvest.
_REASONING = re.compile(
    r"step[\s-]+by[\s-]+step|chain[\s-]+of[\s-]+thought|thought\s+process|"
    r"internal\s+(?:reasoning|monologue|thoughts?)|"
    r"(?:show|explain|reveal|write\s+out|walk\s+me\s+through|articulate|describe|outline)"
    r"\s+(?:all\s+)?(?:of\s+)?(?:your|the|each)?\s*(?:full\s+|complete\s+|detailed\s+|hidden\s+)?"
    r"(?:reasoning|thinking|work|thoughts|steps|derivation)|"
    r"reasoning\s+(?:behind|process|trace|steps)|"
    r"think\s+(?:aloud|out\s+loud|through\s+(?:it|this|the\s+problem)\s+carefully)|"
    r"let'?s\s+think|<think(?:ing)?>|scratchpad",
)
# Every phrase above holds one of these: a prompt with none of them (most
# prompts) is cleared by a few substring searches, without the expression.
_REASONING_WORDS = ("step", "thought", "reason", "think", "work", "derivation", "monologue",
                    "scratchpad")

_WORD = re.compile(r"[a-z]+|[0-9]+(?:[.,][0-9]+)*|\"[^\"]{0,200}\"|'[^'\s][^']{0,200}'")

_COMMON: frozenset[str] = frozenset(
    word
    for line in resources.files("guardgate.risk").joinpath("words.txt").read_text().splitlines()
    if not line.startswith("#")
    for word in line.split()
)

_ARTICLES = frozenset({"a", "an", "the"})

# One-permutation MinHash over the skeleton's word pairs: BANDS bands of
# ROWS bins each. Prompts from one template share every band; a paraphrase
# of it (a few words changed) still shares some, unrelated prompts none.
BANDS = 3
ROWS = 4
_BINS = BANDS * ROWS
_EMPTY = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class Features:
    """What one request tells about its caller."""

    reasoning: float   # 1: the prompt asks for the model's reasoning; 0.5: reasoning options only
    harvest: float     # 0..1: how much the request mines logprobs, logit bias and samples
    single_turn: bool  # one user message, no conversation
    template: str      # the prompt's skeleton (slot fillers folded), hashed
    prompt: str        # the prompt itself (numbers folded), hashed
    bands: tuple[str, ...]  # MinHash bands of the skeleton, for cross-account clusters
    system: str | None      # the system prompt, hashed; None without one


def reasoning_of(call: ModelCall, lower: str) -> float:
    """``lower``: the prompt's text, lower-cased."""
    if any(word in lower for word in _REASONING_WORDS) and _REASONING.search(lower) is not None:
        return 1.0
    if call.reasoning and (call.reasoning_effort == "high" or (call.reasoning_budget or 0) > 0):
        return 0.5
    return 0.0


def harvest_of(call: ModelCall) -> float:
    """Logprob and logit mining: each knob a distiller turns adds to it."""
    score = 0.0
    if call.logprobs:
        score += 0.4
        if call.top_logprobs is not None and call.top_logprobs >= 5:
            score += 0.3
    if call.logit_bias:
        score += 0.3 if call.logit_bias < 50 else 0.5
    if call.n >= 2:
        score += 0.2 if call.n < 5 else 0.3
    if call.temperature == 0:
        score += 0.1
    if call.max_tokens is not None and call.max_tokens <= 4:
        score += 0.3
    return min(1.0, score)


def skeleton(lower: str) -> tuple[list[str], list[str]]:
    """The prompt's words (from ``lower``, its lower-cased text) with numbers
    and quotes folded, and its skeleton: common words kept, each run of other
    words folded into one ``_``."""
    words = _WORD.findall(lower)
    folded: list[str] = []
    kept: list[str] = []
    gap = False
    for word in words:
        first = word[0]
        if first.isdigit():
            word = "0"
        elif first in "\"'":
            word = "q"
        folded.append(word)
        if word in _ARTICLES:
            continue  # "of the French Revolution" and "of photosynthesis" fill one slot
        if word in _COMMON:
            kept.append(word)
            gap = False
        elif not gap:
            kept.append("_")
            gap = True
    return folded, kept


def _digest(words: list[str]) -> str:
    return f"{zlib.crc32(' '.join(words).encode()):08x}"


def minhash_bands(words: list[str], exact: str) -> tuple[str, ...]:
    """The skeleton's bands (one-permutation MinHash). A skeleton too short
    to fill every bin has too little to compare on: banding it would match
    unrelated short prompts through one shared word pair, so it is named by
    its ``exact`` digest instead."""
    mins = [_EMPTY] * _BINS
    previous = "^"
    for word in words:
        h = zlib.crc32(f"{previous} {word}".encode())
        slot = h % _BINS
        if h < mins[slot]:  # noqa: PLR1730 (a comparison is cheaper than a call here)
            mins[slot] = h
        previous = word
    if _EMPTY in mins:
        return ("x." + exact,)
    return tuple(
        f"{band}.{zlib.crc32(repr(mins[band * ROWS : (band + 1) * ROWS]).encode()):08x}"
        for band in range(BANDS)
    )


def extract(call: ModelCall) -> Features:
    lower = call.prompt[-TEXT_WINDOW:].lower()
    folded, kept = skeleton(lower)
    template = _digest(kept)
    return Features(
        reasoning=reasoning_of(call, lower),
        harvest=harvest_of(call),
        single_turn=call.user_turns <= 1 and call.turns <= 2,
        template=template,
        prompt=_digest(folded),
        bands=minhash_bands(kept, template),
        system=f"{zlib.crc32(call.system.encode()):08x}" if call.system else None,
    )
