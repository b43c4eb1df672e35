"""What an answer walker is, and what the walkers of every API share.

A walker knows where one API family's answers keep their parts: the answer
text, reasoning, logprobs and usage, in a whole JSON answer and in each
stream event. Processors (the meter, the degrade transforms, the marker)
know what to do with those parts and ask the walker where they are; so an
answer format is read in one place, and a processor works for every API.

A walker serves one answer: a stream's walk has state (the indexes of
dropped reasoning, the text a part has streamed so far, sequence numbers).
Every method takes whatever the upstream sent and never raises on it: a
part of the wrong JSON type is not that part.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

__all__ = [
    "Arguments",
    "Edit",
    "Json",
    "LogprobSink",
    "TextSink",
    "Usage",
    "Walker",
    "chars",
    "dicts",
    "discount_reasoning",
    "read_usage",
    "whole_arguments",
]

Json = dict[str, Any]
Usage = tuple[int | None, int | None]  # (input tokens, output tokens); None: not reported


class Edit:
    """One JSON answer or stream event on its way through the processors.

    ``value`` is the parsed JSON, changed in place; ``raw`` the bytes it came
    as, sent on while ``changed`` is False (a processor may swap in an
    equivalent cut of them, as the meter does); ``before`` holds events added
    ahead of it; ``dropped``: it is not sent.
    """

    __slots__ = ("before", "changed", "dropped", "raw", "value")

    def __init__(self) -> None:
        self.value: Json = {}
        self.raw = b""
        self.before: list[Json] = []
        self.dropped = False
        self.changed = False

    def reset(self, value: Json, raw: bytes) -> None:
        self.value = value
        self.raw = raw
        self.before = []
        self.dropped = False
        self.changed = False


@dataclass(frozen=True, slots=True)
class Arguments:
    """The key a tool call's arguments go to a `TextSink` under: a JSON
    text, which the sink marks as JSON (the prose of its string values) or
    leaves as it is. ``part``: the choice, content block or output item that
    made the call; ``call``: which of the choice's calls (its ``index``, or
    "function_call"). `whole_arguments` uses ``Arguments()``."""

    part: int = -1
    call: int | str = 0


_WHOLE = Arguments()


class TextSink(Protocol):
    """Where a walker hands the answer text (the marker), and tool calls' arguments.

    ``key`` names one text part of the answer (a choice, a content part, a
    text block), or one tool call's arguments (an `Arguments`); ``feed``
    gets it piece by piece as it streams and may hold some back, ``close``
    returns what is held when the part ends ("" when nothing is, or the part
    never streamed), ``whole`` takes a text at once.
    """

    def feed(self, key: Hashable, text: str) -> str: ...

    def close(self, key: Hashable) -> str: ...

    def whole(self, text: str) -> str: ...

    def open_keys(self) -> list[Hashable]: ...


class LogprobSink(Protocol):
    """Where a walker hands the logprobs it finds; each method returns whether it changed them.

    ``key`` names the token sequence the logprobs continue (their positions
    count on from what that key had before), or is None for logprobs that
    start at the first token of their text.
    """

    def entries(self, entries: list[Any], key: Hashable | None) -> bool:
        """Chat and Responses: ``[{token, logprob, top_logprobs: [{token, logprob}]}]``."""
        ...

    def table(self, logprobs: Json, key: Hashable | None) -> bool:
        """Completions: ``{tokens, token_logprobs, top_logprobs: [{token: logprob}]}``."""
        ...


class Walker:
    """One answer of one API. The base finds nothing: an API without some
    part (logprobs in Anthropic messages) keeps the base's method for it.

    ``streaming`` says which shape the answer has: a JSON answer, or events;
    ``numbers``: the walker keeps its stream's numbering (`settle`);
    ``items``: the member of a JSON answer that holds its items (choices,
    output items, content blocks). A JSON answer too large to hold is read
    one item at a time, each as the answer ``{items: [item]}``, and one
    other member at a time: a walker's JSON methods must treat such a part
    as they would the whole answer.
    """

    __slots__ = ("streaming",)
    numbers: ClassVar[bool] = False
    items: ClassVar[str | None] = None

    def __init__(self, streaming: bool) -> None:
        self.streaming = streaming

    # -- what the meter reads

    def usage(self, value: Json) -> Usage | None:
        """The token counts the upstream reports in ``value``, if any."""
        return None

    def chars(self, value: Json) -> int:
        """Characters of generated text in ``value``: answer, reasoning, tool arguments."""
        return 0

    # -- what the degrade transforms change

    def drop_logprobs(self, edit: Edit) -> None:
        """Empty every logprobs field, the way the API writes "none"."""

    def logprobs(self, edit: Edit, sink: LogprobSink) -> None:
        """Hand every logprobs field to ``sink``."""

    def drop_reasoning(self, edit: Edit) -> None:
        """Remove reasoning and its tokens; drop an event that only carried reasoning."""

    # -- what the marker changes

    def mark(self, edit: Edit, sink: TextSink) -> None:
        """Hand the answer text and tool calls' arguments, and only them, to
        ``sink``; an event whose part ends gets what the sink still held for it."""

    def held(self, sink: TextSink) -> list[Json]:
        """Events carrying what ``sink`` still holds, at the end of the stream."""
        return []

    # -- after the processors

    def settle(self, edit: Edit) -> None:
        """Keep the stream's own numbering whole once events were added or dropped."""

    def settle_end(self, events: list[Json]) -> None:
        """Number the events added at the end of the stream, as `settle` does."""


def whole_arguments(sink: TextSink, text: str) -> str:
    """``text``, a tool call's whole arguments, through ``sink``."""
    if not text:
        return text
    return sink.feed(_WHOLE, text) + sink.close(_WHOLE)


def dicts(value: object) -> list[Json]:
    """The objects in ``value`` when it is an array; nothing otherwise."""
    return [item for item in value if type(item) is dict] if type(value) is list else []


def chars(value: object) -> int:
    return len(value) if type(value) is str else 0


def _count(usage: Json, key: str) -> int | None:
    value = usage.get(key)
    return value if type(value) is int and value >= 0 else None


def read_usage(usage: object) -> Usage | None:
    """Input and output tokens from a usage object, in either family's names."""
    if type(usage) is not dict:
        return None
    prompt = _count(usage, "prompt_tokens")
    if prompt is None:
        prompt = _count(usage, "input_tokens")
        if prompt is not None:
            # Anthropic counts cached prompt tokens apart; OpenAI's counts include them.
            prompt += (_count(usage, "cache_creation_input_tokens") or 0) + (
                _count(usage, "cache_read_input_tokens") or 0
            )
    completion = _count(usage, "completion_tokens")
    if completion is None:
        completion = _count(usage, "output_tokens")
    return prompt, completion


def discount_reasoning(usage: object, output: str, details: str) -> bool:
    """Take reasoning tokens out of ``usage``, so that it counts what is sent; True if it did."""
    if type(usage) is not dict:
        return False
    detail = usage.get(details)
    if type(detail) is not dict:
        return False
    spent = detail.get("reasoning_tokens")
    if type(spent) is not int or spent <= 0:
        return False
    detail["reasoning_tokens"] = 0
    for key in (output, "total_tokens"):
        count = usage.get(key)
        if type(count) is int:
            usage[key] = max(0, count - spent)
    return True
