"""One answer's bytes through a chain of processors: framed once, parsed once.

`AnswerChain` takes the response body chunk by chunk. A stream is cut into
events (`EventReader`) and each event's JSON is parsed once; a JSON answer
is held until its end (up to `MAX_JSON`) and parsed once. Each processor,
in the chain's order, then sees the same `Edit`: the meter reads it, a
degrade transform or the marker changes it, and a processor may drop it.
A processor does not see what an earlier one dropped.

What comes out: an event or answer no processor changed is the upstream's
bytes, byte for byte; a changed one is serialized again with orjson,
keeping the event's other fields (``event:``, ``id:``). A chain whose
processors only read (the meter, when it strips nothing) returns every
chunk as it came, at once, and reads on the side.

Nothing here raises on what the upstream sends, and nothing holds more than
`MAX_JSON` of a JSON answer or `MAX_EVENT` of one event.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from guardgate.apis.answers.walk import Edit, Json, Walker
from guardgate.apis.sse import MAX_EVENT, EventReader, event_data, event_head, render_event

__all__ = ["MAX_JSON", "AnswerChain", "Processor"]

MAX_JSON = 4 << 20  # a larger JSON answer passes unread (the meter estimates it by size)


class Processor:
    """One step of the chain, for one answer. Subclasses override what they do.

    ``rewrites``: the processor may change what is sent. A chain in which
    none does only reads: it never holds bytes back.
    """

    __slots__ = ()
    rewrites = True

    def answer(self, edit: Edit) -> None:
        """A whole JSON answer."""

    def event(self, edit: Edit) -> None:
        """One stream event."""

    def end(self, events: list[Json]) -> None:
        """The stream ends (its ``[DONE]``, or its last bytes): add events to send before."""

    def skipped(self, size: int) -> None:
        """``size`` bytes of the answer passed on unread: too large to hold."""


class AnswerChain:
    """Runs one answer through ``processors``, in order; `feed` every body chunk, then `finish`."""

    __slots__ = ("_body", "_edit", "_events", "_last", "_numbers", "_processors", "_walker",
                 "rewrites")

    def __init__(self, walker: Walker, processors: Sequence[Processor]) -> None:
        self._walker = walker
        self._numbers = walker.numbers
        self._processors = tuple(processors)
        self.rewrites = False
        for processor in self._processors:
            self.rewrites = self.rewrites or processor.rewrites
        self._events = EventReader(MAX_EVENT) if walker.streaming else None
        self._body: bytearray | None = None if walker.streaming else bytearray()
        self._edit = Edit()  # reused: one event at a time
        self._last = b""  # the last event parsed: added events are named as it is

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to send on for ``chunk``: itself when the chain only reads."""
        events = self._events
        if events is None:
            return self._feed_json(chunk)
        pieces = events.push(chunk)
        if not self.rewrites:
            for piece, whole in pieces:
                if whole:
                    self._read(piece)
            return chunk
        out = [self._event(piece) if whole else piece for piece, whole in pieces]
        return out[0] if len(out) == 1 else b"".join(out)

    def finish(self) -> bytes:
        """What is left at the end of the body: the JSON answer, or the stream's end."""
        events = self._events
        if events is None:
            return self._finish_json()
        rest = events.flush()
        if not self.rewrites:
            if rest:
                self._read(rest)
            return b""  # already sent on
        last = self._event(rest) if rest else b""
        held = self._end()
        # Added events go before an unfinished last event, after a whole one.
        return last + held if last.endswith(b"\n\n") else held + last

    # -- JSON answers

    def _feed_json(self, chunk: bytes) -> bytes:
        body = self._body
        if body is None:
            self._skipped(len(chunk))
            return chunk
        if len(body) + len(chunk) > MAX_JSON:
            # Too large to hold: it passes as it is.
            self._body = None
            self._skipped(len(body) + len(chunk))
            return bytes(body) + chunk if self.rewrites else chunk
        body += chunk
        return b"" if self.rewrites else chunk

    def _skipped(self, size: int) -> None:
        for processor in self._processors:
            processor.skipped(size)

    def _finish_json(self) -> bytes:
        body, self._body = self._body, None
        if not body:
            return b""
        value = _load(body)
        edit = self._edit
        if not self.rewrites:
            if value is not None:
                edit.value = value
                for processor in self._processors:
                    processor.answer(edit)
            return b""  # already sent on
        raw = bytes(body)
        if value is None:
            return raw
        edit.reset(value, raw)
        for processor in self._processors:
            processor.answer(edit)
        if not edit.changed:
            return raw
        try:
            return orjson.dumps(value)
        except orjson.JSONEncodeError:
            return raw

    # -- streams

    def _read(self, raw: bytes) -> None:
        """One event, to processors that only read it (`_load` written out: the hot path)."""
        data = event_data(raw)
        if data is None or data.startswith(b"[DONE]"):
            return
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if type(value) is dict:
            edit = self._edit
            edit.value, edit.raw = value, raw
            for processor in self._processors:
                processor.event(edit)

    def _event(self, raw: bytes) -> bytes:
        """One event through the processors: the bytes to send for it."""
        data = event_data(raw)
        if data is None:
            return raw
        if data.startswith(b"[DONE]"):
            return self._end() + raw
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            return raw
        if type(value) is not dict:
            return raw
        self._last = raw
        edit = self._edit
        # `Edit.reset` written out: this runs once per event.
        edit.value = value
        edit.raw = raw
        edit.dropped = edit.changed = False
        if edit.before:
            edit.before = []
        for processor in self._processors:
            processor.event(edit)
            if edit.dropped:
                break
        if self._numbers:
            self._walker.settle(edit)
        own = b"" if edit.dropped else _render(edit) if edit.changed else edit.raw
        if not edit.before:
            return own
        return b"".join([*(self._render_new(event) for event in edit.before), own])

    def _end(self) -> bytes:
        """What processors add at the end of the stream (text a filter still held)."""
        events: list[Json] = []
        for processor in self._processors:
            processor.end(events)
        if not events:
            return b""
        self._walker.settle_end(events)
        return b"".join(self._render_new(event) for event in events)

    def _render_new(self, value: Json) -> bytes:
        """An event the chain adds, named like the stream's own."""
        kind = value.get("type")
        last = self._last
        named = last.startswith(b"event:") or b"\nevent:" in last
        head = b"event: " + kind.encode() + b"\n" if named and type(kind) is str else b""
        return render_event(head, value, b"")


def _render(edit: Edit) -> bytes:
    """A changed event, with its other fields; as it came if it cannot be written again."""
    return render_event(event_head(edit.raw), edit.value, edit.raw)


def _load(data: bytes | bytearray) -> Json | None:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return value if type(value) is dict else None
