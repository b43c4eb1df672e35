"""Per-request risk features, computed from the `ModelCall` and the identity.

Cheap on purpose: substring searches, a few regular-expression passes and
CRC32 hashes over bounded slices of the request, no model and no network.
What a request contributes to its caller's rolling state and to the
cross-account clusters is all here; `guardgate.risk.signals` turns the
accumulated state into scores.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

from guardgate.apis.base import ModelCall

# The template and its bands read this much of the prompt, its end: the
# newest turn, what a template is about.
TEXT_WINDOW = 4000

# The reasoning ask is looked for in all the text the request sends the
# model (system and developer messages, Responses instructions, every turn,
# tool results, tool definitions and schemas), up to this many characters.
# Past it, the first and the last SCAN_CAP // 2 are read: an ask goes unread
# only with more than SCAN_CAP characters of text around it (about 64,000
# tokens, paid on every request that hides one). The cost per request stays
# bounded whatever the body size: a lowering and eight substring searches
# over at most SCAN_CAP characters, and the expression only over a text
# that holds one of its words.
SCAN_CAP = 256 * 1024

# Instructions that ask the model to write out its reasoning, the most
# valuable thing a distiller can harvest. Every alternative starts with a
# character, so the search skips the positions no alternative starts at
# (about 10 times faster on text without them).
_SHOW_TAIL = (
    r"\s+(?:all\s+)?(?:of\s+)?(?:your|the|each)?\s*(?:full\s+|complete\s+|detailed\s+|hidden\s+)?"
    r"(?:reasoning|thinking|work|thoughts|steps|derivation)"
)
_REASONING = re.compile("|".join([
    r"step[\s-]+by[\s-]+step", r"chain[\s-]+of[\s-]+thought", r"thought\s+process",
    r"internal\s+(?:reasoning|monologue|thoughts?)",
    *(verb + _SHOW_TAIL for verb in (r"show", r"explain", r"reveal", r"write\s+out",
                                     r"walk\s+me\s+through", r"articulate", r"describe",
                                     r"outline")),
    r"reasoning\s+(?:behind|process|trace|steps)",
    r"think\s+(?:aloud|out\s+loud|through\s+(?:it|this|the\s+problem)\s+carefully)",
    r"let'?s\s+think", r"<think(?:ing)?>", r"scratchpad",
]))
# Every phrase above holds one of these: a text with none of them (most
# texts) is cleared by a few substring searches, without the expression.
_REASONING_WORDS = ("step", "thought", "reason", "think", "work", "derivation", "monologue",
                    "scratchpad")
# A JSON escape in `ModelCall.context` (tool definitions, schemas, tool
# outputs): read as a space, so that "step\\nby step" is the phrase it says.
_JSON_ESCAPE = re.compile(r"\\(?:u[0-9a-f]{4}|.)", re.DOTALL)

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


def scanned(texts: Sequence[str]) -> list[tuple[int, str]]:
    """What the reasoning scan reads of ``texts`` (in the order the model
    reads them), each part with the index of the text it comes from: all of
    them when they hold at most `SCAN_CAP` characters together; otherwise
    their first and their last ``SCAN_CAP // 2`` characters."""
    total = sum(len(text) for text in texts)
    if total <= SCAN_CAP:
        return [(i, text) for i, text in enumerate(texts) if text]
    half = SCAN_CAP // 2
    tail = total - half
    parts: list[tuple[int, str]] = []
    start = 0
    for i, text in enumerate(texts):
        end = start + len(text)
        if start < half:
            parts.append((i, text[: half - start]))
        if end > tail:
            parts.append((i, text[max(0, tail - start) :]))
        start = end
    return [(i, part) for i, part in parts if part]


_CONTEXT = 1  # index of `ModelCall.context` among the texts scanned


def asks_reasoning(call: ModelCall, end: str = "") -> bool:
    """Whether anything the request tells the model asks for its reasoning.
    ``end``: the prompt's last `TEXT_WINDOW` characters, lower-cased, if at hand."""
    for source, part in scanned((call.system or "", call.context, call.prompt)):
        lower = end if end and part is call.prompt and len(part) <= TEXT_WINDOW else part.lower()
        if any(word in lower for word in _REASONING_WORDS):
            if source == _CONTEXT:
                lower = _JSON_ESCAPE.sub(" ", lower)
            if _REASONING.search(lower) is not None:
                return True
    return False


def reasoning_of(call: ModelCall, end: str = "") -> float:
    """1 for an ask for the model's reasoning, 0.5 for reasoning options
    alone; ``end`` as in `asks_reasoning`."""
    if asks_reasoning(call, end):
        return 1.0
    if call.reasoning and (call.reasoning_effort == "high" or (call.reasoning_budget or 0) > 0):
        return 0.5
    return 0.0


def harvest_of(call: ModelCall) -> float:
    """Logprob and logit mining: each knob a distiller turns adds to it, and
    the more alternatives per token the more of the model's distribution
    leaves (an evaluation reads a few; 20, the most OpenAI gives, is the
    distiller's setting)."""
    score = 0.0
    if call.logprobs:
        score += 0.3
        top = call.top_logprobs or 0
        score += 0.3 if top >= 20 else 0.2 if top >= 10 else 0.1 if top >= 5 else 0.0
    if call.logit_bias:
        score += 0.3 if call.logit_bias < 50 else 0.5
    if call.n >= 2:
        score += 0.2 if call.n < 5 else 0.3
    if call.temperature == 0:
        score += 0.1
    if call.max_tokens is not None and call.max_tokens <= 4:
        score += 0.2
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
