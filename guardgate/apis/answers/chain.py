"""One answer's bytes through a chain of processors: framed once, parsed once.

`AnswerChain` takes the response body chunk by chunk. A stream is cut into
events (`EventReader`) and each event's JSON is parsed once; a JSON answer
is held until its end (up to `MAX_JSON`) and parsed once. Each processor,
in the chain's order, then sees the same `Edit`: the meter reads it, a
degrade transform or the marker changes it, and a processor may drop it.
A processor does not see what an earlier one dropped.

A JSON answer larger than `MAX_JSON` is cut into its parts as it arrives
(`AnswerCutter`: its members, and each item of its items member, such as
one choice) and each part goes through the processors on its own, as a
small answer of that one part: the meter, the degrade transforms and the
marker treat it as they would the whole. What is held is one part at most.
A chain that only reads passes every chunk on at once and reads the
members (the usage), counting the items by their size.

What comes out: an event or answer no processor changed is the upstream's
bytes, byte for byte; a changed one is serialized again with orjson,
keeping the event's other fields (``event:``, ``id:``). A chain whose
processors only read (the meter, when it strips nothing) returns every
chunk as it came, at once, and reads on the side.

Nothing holds more than `MAX_JSON` of a JSON answer, `MAX_PART` of one of
its parts, or `MAX_EVENT` of one event (`MAX_PART` when the chain treats the
answer). Nothing here raises on what the upstream sends, except
`Untreatable`, on an answer a processor treats (`Processor.treats`) that
can be neither treated nor passed on as it came: `TooLarge`, a part or event
larger than that; `Unreadable`, a JSON answer (or a part of one) that is no
JSON object, which is what a compressed or foreign answer looks like. A
chain that does not treat passes such answers on unread, and so does one
told the answer is not the model's (`strict` off: an upstream's error).
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from guardgate.apis.answers.cut import GLUE, ITEM, ITEMS, MEMBER, RAW, AnswerCutter, Piece
from guardgate.apis.answers.walk import Edit, Json, Walker
from guardgate.apis.sse import MAX_EVENT, EventReader, event_data, event_head, render_event

__all__ = ["MAX_JSON", "MAX_PART", "AnswerChain", "Processor", "TooLarge", "Unreadable",
           "Untreatable"]

MAX_JSON = 4 << 20  # a JSON answer is held whole up to this; a larger one is cut into parts
MAX_PART = 4 << 20  # one part of a cut answer, or one event of a treated stream, held up to this


class Untreatable(Exception):
    """An answer a processor treats cannot be read: it must not pass untreated."""


class TooLarge(Untreatable):
    """It holds a part or an event larger than the chain may hold."""


class Unreadable(Untreatable):
    """It is in no shape its walker reads: not JSON, or compressed."""


class Processor:
    """One step of the chain, for one answer. Subclasses override what they do.

    ``rewrites``: the processor may change what is sent. A chain in which
    none does only reads: it never holds bytes back. ``treats``: the
    processor is a treatment the policy decided (a degrade transform, the
    marker): an answer it cannot read is refused (`TooLarge`), never passed
    on untreated.
    """

    __slots__ = ()
    rewrites = True
    treats = True

    def answer(self, edit: Edit) -> None:
        """A whole JSON answer."""

    def event(self, edit: Edit) -> None:
        """One stream event."""

    def end(self, events: list[Json]) -> None:
        """The stream ends (its ``[DONE]``, or its last bytes): add events to send before."""

    def skipped(self, size: int) -> None:
        """``size`` bytes of the answer passed on unread: too large to hold, or no JSON."""


class AnswerChain:
    """Runs one answer through ``processors``, in order; `feed` every body chunk, then `finish`."""

    __slots__ = ("_body", "_edit", "_events", "_last", "_numbers", "_parts", "_processors",
                 "_walker", "rewrites", "streaming", "strict", "treats")

    def __init__(self, walker: Walker, processors: Sequence[Processor]) -> None:
        self._walker = walker
        self.streaming = walker.streaming
        self._numbers = walker.numbers
        self._processors = tuple(processors)
        self.rewrites = self.treats = False
        for processor in self._processors:
            self.rewrites = self.rewrites or processor.rewrites
            self.treats = self.treats or processor.treats
        # Whether an unreadable answer is refused: the answer's sender sets it
        # for a treated answer that is the model's (a 2xx).
        self.strict = False
        self._events = (EventReader(MAX_PART if self.treats else MAX_EVENT)
                        if walker.streaming else None)
        self._body = bytearray()  # a JSON answer, while it is held whole
        self._parts: _Parts | None = None  # a JSON answer too large to hold, cut
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
                else:
                    self._skipped(len(piece))
            return chunk
        out = [self._event(piece) if whole else self._unread(piece) for piece, whole in pieces]
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
        parts = self._parts
        if parts is not None:
            return parts.feed(chunk, chunk)
        body = self._body
        if len(body) + len(chunk) <= MAX_JSON:
            body += chunk
            return b"" if self.rewrites else chunk
        # Too large to hold whole: cut into parts from here on.
        parts = self._parts = _Parts(self, self._walker.items)
        held, self._body = bytes(body), bytearray()
        return parts.feed(held + chunk, chunk)

    def _unread(self, raw: bytes) -> bytes:
        """Bytes that pass unread (part of an event too large to hold, or no JSON)."""
        if self.treats:
            raise TooLarge(len(raw))
        self._skipped(len(raw))
        return raw

    def _skipped(self, size: int) -> None:
        for processor in self._processors:
            processor.skipped(size)

    def _finish_json(self) -> bytes:
        if self._parts is not None:
            return self._parts.finish()
        body, self._body = self._body, bytearray()
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
            if self.strict:
                raise Unreadable
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

    def _part(self, value: Json, raw: bytes) -> Edit | None:
        """One part of a cut answer, as a small answer of its own, through the
        processors: its edit, or None when one dropped it."""
        edit = self._edit
        edit.reset(value, raw)
        for processor in self._processors:
            processor.answer(edit)
            if edit.dropped:
                return None
        return edit

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
        head = b"event: " + kind.encode() + b"\n" if self._named() and type(kind) is str else b""
        return render_event(head, value, b"")

    def _named(self) -> bool:
        last = self._last
        return last.startswith(b"event:") or b"\nevent:" in last

    def error_event(self, data: bytes) -> bytes:
        """An ``error`` event carrying ``data`` (an error in the API's shape),
        named as the stream names its events: the last event of a stream refused."""
        return (b"event: error\n" if self._named() else b"") + b"data: " + data + b"\n\n"


def _render(edit: Edit) -> bytes:
    """A changed event, with its other fields; as it came if it cannot be written again."""
    return render_event(event_head(edit.raw), edit.value, edit.raw)


def _load(data: bytes | bytearray) -> Json | None:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return value if type(value) is dict else None


class _Parts:
    """A JSON answer too large to hold whole, through its chain part by part.

    A member goes through the processors as the answer ``{member}``, an item
    as ``{"choices": [item]}`` (the walker's items member); what comes back
    takes the part's place, with the separator before it. A part that no
    processor changed is sent as it came; one that went is sent with its
    separator (a comma left leading is dropped).
    """

    __slots__ = ("_chain", "_cutter", "_head", "_item_sent", "_items", "_member_sent")

    def __init__(self, chain: AnswerChain, items: str | None) -> None:
        self._chain = chain
        self._cutter = AnswerCutter(items, MAX_PART)
        self._items = items or ""
        self._head = orjson.dumps(self._items) + b":["  # an item is read as {"choices":[item]}
        self._member_sent = self._item_sent = False

    def feed(self, data: bytes, chunk: bytes) -> bytes:
        """The bytes to send for ``data``; ``chunk`` when the chain only reads
        (``data`` may start with bytes already sent)."""
        cutter = self._cutter
        pieces = cutter.push(data)
        chain = self._chain
        if cutter.broken == "too large" and chain.treats:
            raise TooLarge(len(data))
        if not chain.rewrites:
            for piece in pieces:
                self._read(piece)
            return chunk
        return b"".join([self._send(piece) for piece in pieces])

    def finish(self) -> bytes:
        pieces = self._cutter.finish()
        if not self._chain.rewrites:
            for piece in pieces:
                self._read(piece)
            return b""
        return b"".join([self._send(piece) for piece in pieces])

    def _value(self, piece: Piece) -> Json | None:
        if piece.kind == MEMBER:
            return _load(b"{" + piece.data + b"}")
        return _load(b"{" + self._head + piece.data + b"]}")

    def _read(self, piece: Piece) -> None:
        """A chain that only reads (the meter) reads the members, where the
        usage is, and counts the items by their size: parsing them would cost
        more than the whole cut, for an estimate only needed without usage."""
        kind = piece.kind
        if kind == MEMBER:
            value = self._value(piece)
            if value is not None:
                self._chain._part(value, piece.data)
                return
        if kind == MEMBER or kind == ITEM or kind == RAW:
            self._chain._skipped(len(piece.data))

    def _send(self, piece: Piece) -> bytes:
        kind, lead, data = piece
        if kind == GLUE:
            return data
        if kind == RAW:  # no JSON object, or cut short: it passes as it came
            if self._chain.strict:
                raise Unreadable
            self._chain._skipped(len(data))
            return data
        if kind == ITEMS:
            sent = self._lead(lead, self._member_sent) + data
            self._member_sent, self._item_sent = True, False
            return sent
        out = self._treat(piece)
        if out is None:
            return b""
        if kind == MEMBER:
            sent, self._member_sent = self._lead(lead, self._member_sent) + out, True
        else:
            sent, self._item_sent = self._lead(lead, self._item_sent) + out, True
        return sent

    @staticmethod
    def _lead(lead: bytes, after_another: bool) -> bytes:
        return lead if after_another else lead.replace(b",", b"", 1)

    def _treat(self, piece: Piece) -> bytes | None:
        """What takes the part's place: itself, as treated, or None when it went."""
        value = self._value(piece)
        if value is None:  # no JSON: as the answer would, if it were held whole
            if self._chain.strict:
                raise Unreadable
            self._chain._skipped(len(piece.data))
            return piece.data
        edit = self._chain._part(value, piece.data)
        if edit is None:
            return None
        if not edit.changed:
            return piece.data
        try:
            if piece.kind == MEMBER:
                return orjson.dumps(value)[1:-1] if value else None
            items = value.get(self._items)
            if type(items) is not list or not items:
                return None
            return b",".join([orjson.dumps(item) for item in items])
        except orjson.JSONEncodeError:
            return piece.data
