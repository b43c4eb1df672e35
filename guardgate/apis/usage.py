"""Each answer's real token usage, read as its body streams past (steps 7, 9, 10).

Quotas settle against what the upstream reports. `prepare_stream_usage` asks
an OpenAI chat or completions stream for its usage chunk when the client did
not; `Meter`, the first processor of an answer's chain, reads usage and
counts generated text (the walker says where they are) without holding the
answer back. It changes nothing, except that a stream whose usage the
gateway asked for loses what asking added, whatever the upstream's shape:
the usage-only event (``"choices": []``) is dropped; a ``"usage"`` member
on an event that also carries choices (some upstreams put the usage on the
last chunk with a choice, others ``"usage": null`` on every chunk) is cut
from its bytes, the rest of the event kept as it came. The client receives
the stream it would have had without the gateway.

`UsageMeter` is a chain of one meter, for reading an answer on its own.
"""

from __future__ import annotations

import json
import math
import re
from itertools import islice

import orjson

from guardgate.apis import ADAPTERS, walker_for
from guardgate.apis.answers import AnswerChain, Edit, Json, Processor, Walker
from guardgate.apis.base import ModelCall
from guardgate.apis.sse import event_data

__all__ = ["CHARS_PER_TOKEN", "Meter", "UsageMeter", "prepare_stream_usage"]

CHARS_PER_TOKEN = 4

def prepare_stream_usage(call: ModelCall) -> bytes | None:
    """The body to forward so that the stream reports usage, or None when it already will.

    Other ``stream_options`` keys are kept. The meter of such a response must
    strip what this adds (``strip_usage_chunk=True``).
    """
    adapter = ADAPTERS.get(call.api)
    # Some streams carry usage only when asked; others always do.
    if adapter is None or not adapter.fields.stream_usage or not call.stream \
            or call.include_usage:
        return None
    options = call.body.get("stream_options")
    merged = (
        {**options, "include_usage": True} if type(options) is dict else {"include_usage": True}
    )
    try:
        return orjson.dumps({**call.body, "stream_options": merged})
    except orjson.JSONEncodeError:  # not serializable again: settle on the estimate
        return None


class Meter(Processor):
    """Reads one answer's usage.

    ``input_tokens`` and ``output_tokens`` are the upstream's own counts,
    None until seen; ``text_chars`` counts generated text (answers, reasoning,
    tool arguments), the basis of `estimated_output_tokens`.
    """

    __slots__ = ("_chars", "_strip", "_usage", "input_tokens", "output_tokens", "rewrites",
                 "text_chars")
    treats = False  # it reads; what it cannot read passes on, estimated by its size

    def __init__(self, walker: Walker, strip_usage_chunk: bool) -> None:
        # Bound once: they run for every event of the answer.
        self._chars = walker.chars
        self._usage = walker.usage
        self._strip = walker.streaming and strip_usage_chunk
        self.rewrites = self._strip
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.text_chars = 0

    def answer(self, edit: Edit) -> None:
        self.event(edit)  # read as an event is; nothing to strip from a JSON answer

    def event(self, edit: Edit) -> None:
        value = edit.value
        self.text_chars += self._chars(value)
        usage = self._usage(value)
        if usage is not None:
            given, made = usage
            if given is not None:
                self.input_tokens = given
            if made is not None:
                self.output_tokens = made
        if self._strip and "usage" in value:
            # What asking for usage added (written out: most events have it).
            asked = value["usage"]
            if asked is None:
                edit.raw = _without_null_usage(edit.raw, value)
                del value["usage"]
            elif type(asked) is dict:
                if value.get("choices") == []:
                    edit.dropped = True  # the usage-only event
                    return
                # Usage on an event with choices: the member goes, the rest stays.
                cut = _without_usage(edit.raw, value)
                del value["usage"]
                if cut is None:
                    edit.changed = True  # written again, without it
                else:
                    edit.raw = cut

    def skipped(self, size: int) -> None:
        # Not read: every byte counts as text, so that what cannot be read is
        # never settled as free.
        self.text_chars += size

    def estimated_output_tokens(self) -> int:
        """Output tokens estimated from the generated text, when no usage was seen."""
        return math.ceil(self.text_chars / CHARS_PER_TOKEN)

    def measured_output(self) -> int:
        """The answer's output tokens as seen: the upstream's count, or the
        estimate from its text; never a reservation."""
        if self.output_tokens is not None:
            return self.output_tokens
        return self.estimated_output_tokens()

    def billed_output(self, reserved: int, ok: bool) -> int:
        """The output tokens an answer is charged: the upstream's count; with
        none seen, what was ``reserved`` for it (or the estimate, if larger)
        when the answer was the model's (``ok``: a 2xx), the estimate for an
        error. A count from characters is no bound (a token of Chinese text
        or digits is one or two characters), and a caller that leaves a
        stream before its output count arrives (an Anthropic stream gives
        its input count first) must not be charged less. A call that makes
        no output (embeddings) reserves none: see `Admission._settle`."""
        if self.output_tokens is not None:
            return self.output_tokens
        estimate = self.estimated_output_tokens()
        return max(estimate, reserved) if ok else estimate



class UsageMeter(AnswerChain):
    """A chain of one `Meter`: `feed` every body chunk, then `finish`."""

    __slots__ = ("meter",)

    def __init__(self, api: str, streaming: bool, strip_usage_chunk: bool) -> None:
        walker = walker_for(api, streaming)
        self.meter = Meter(walker, strip_usage_chunk)
        super().__init__(walker, (self.meter,))

    @property
    def input_tokens(self) -> int | None:
        return self.meter.input_tokens

    @property
    def output_tokens(self) -> int | None:
        return self.meter.output_tokens

    @property
    def text_chars(self) -> int:
        return self.meter.text_chars

    def estimated_output_tokens(self) -> int:
        return self.meter.estimated_output_tokens()


# --- the ``"usage": null`` member, cut from the bytes --------------------------------

_NULL_LAST = b',"usage":null}'
_NULL_MEMBER = re.compile(rb'(,\s*)?"usage"\s*:\s*null(\s*,\s*)?')
_TRIES = 4


def _without_null_usage(event: bytes, value: Json) -> bytes:
    """``event`` without its top-level ``"usage": null`` member, or unchanged if not found."""
    line = event.rstrip(b"\r\n")
    if (
        line.endswith(_NULL_LAST)
        and line.startswith(b"data:")
        and b"\n" not in line
        and b"\r" not in line
    ):
        # One compact data line ending in the member (as OpenAI writes it): it is top level.
        cut = len(line) - len(_NULL_LAST)
        return event[:cut] + event[cut + len(_NULL_LAST) - 1 :]
    # Any other layout: cut each candidate and keep the cut that leaves exactly the rest.
    try:
        expected = orjson.dumps({k: v for k, v in value.items() if k != "usage"})
    except orjson.JSONEncodeError:
        return event
    for match in islice(_NULL_MEMBER.finditer(event), _TRIES):
        lead, trail = match.group(1), match.group(2)
        if lead is not None:
            start, end = match.start(), match.start(2) if trail is not None else match.end()
        elif trail is not None:
            start, end = match.start(), match.end()
        else:
            continue
        candidate = event[:start] + event[end:]
        left = _load_event(candidate)
        try:
            if left is not None and orjson.dumps(left) == expected:
                return candidate
        except orjson.JSONEncodeError:
            return event
    return event


# --- a ``"usage": {...}`` member, cut from the bytes ------------------------------------

_USAGE_KEY = re.compile(r'"usage"\s*:\s*')
_COMMA = re.compile(r"\s*,\s*")
_DECODER = json.JSONDecoder()


def _without_usage(event: bytes, value: Json) -> bytes | None:
    """``event`` without its top-level ``"usage"`` member, every other byte as
    it came; None when no cut leaves exactly the rest.

    Once per stream at most (the usage comes once), so each candidate cut is
    checked by parsing what is left.
    """
    try:
        expected = orjson.dumps({k: v for k, v in value.items() if k != "usage"})
        text = event.decode()
    except (orjson.JSONEncodeError, UnicodeDecodeError):
        return None
    for match in islice(_USAGE_KEY.finditer(text), _TRIES):
        try:
            _, end = _DECODER.raw_decode(text, match.end())
        except ValueError:
            continue
        start = match.start()
        before = text[:start].rstrip()
        if before.endswith(","):  # a member after others: its comma goes with it
            start = len(before) - 1
        else:  # the first member: the comma after it goes
            follow = _COMMA.match(text, end)
            if follow is None:
                continue
            end = follow.end()
        candidate = (text[:start] + text[end:]).encode()
        left = _load_event(candidate)
        try:
            if left is not None and orjson.dumps(left) == expected:
                return candidate
        except orjson.JSONEncodeError:
            return None
    return None


def _load_event(event: bytes) -> Json | None:
    data = event_data(event)
    if data is None:
        return None
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return value if type(value) is dict else None
