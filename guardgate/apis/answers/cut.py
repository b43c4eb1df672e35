"""A JSON answer too large to hold whole, cut into its parts as it arrives.

An answer is one JSON object. Its parts are its members, except the one that
holds the answer's items (``choices``, ``output``, ``content``: the walker's
`Walker.items`), whose items are parts each. `AnswerCutter.push` takes the
body chunk by chunk and returns what it could cut so far, as `Piece` s: each
part with the separator before it, and the bytes around the parts (braces,
the head of the items member, its closing bracket), so that joining every
piece gives the body back byte for byte. Only the part being read is held,
up to ``limit`` bytes; a larger one, or bytes that are no JSON object, end
the cut: the rest comes back as `RAW` pieces and `broken` says why.

The cutter follows strings and brackets only; each part is parsed on its own
afterwards (orjson), which checks everything else. One regular expression
(possessive, so it never backtracks) steps over whole strings and over
groups nested up to `_NESTING` deep, so Python only walks the few brackets
still open at the end of a chunk: on a chat answer full of logprobs the cut
reads about 160 MB/s, a sixth of what parsing its parts then costs. (An
incremental parser, ijson on its C backend, reads the same answer at about
14 MB/s, and gives back objects, not the upstream's bytes.)
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["GLUE", "ITEM", "ITEMS", "MEMBER", "RAW", "AnswerCutter", "Piece"]

GLUE, MEMBER, ITEMS, ITEM, RAW = range(5)


class Piece(NamedTuple):
    """``kind``: `GLUE` (bytes around the parts), `MEMBER` (``"key": value``),
    `ITEMS` (the head of the items member, through its ``[``), `ITEM` (one
    item), `RAW` (bytes past where the cut ended). ``lead``: the separator
    before a member or an item (empty for the first)."""

    kind: int
    lead: bytes
    data: bytes


_NESTING = 6
_STRING = rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"'
_FLAT = rb'[^"\[\]{}]*+(?:' + _STRING + rb'[^"\[\]{}]*+)*+'


def _run(depth: int) -> re.Pattern[bytes]:
    """Text and whole groups nested up to ``depth`` deep, at one level: it
    stops before the bracket that closes that level, and before a string or
    group not yet complete (or deeper)."""
    run = _FLAT
    for _ in range(depth):
        run = _FLAT + rb"(?:[\[{]" + run + rb"[\]}]" + _FLAT + rb")*+"
    return re.compile(run, re.DOTALL)


_RUN = _run(_NESTING)
_STRING_REST = re.compile(rb'[^"\\]*+(?:\\.[^"\\]*+)*+', re.DOTALL)
_SCALAR = re.compile(rb"[^,\]}\s]*+")
_SPACE = re.compile(rb"[ \t\r\n]*+")
_KEY = re.compile(_STRING, re.DOTALL)
_QUOTE, _COMMA, _COLON = 0x22, 0x2C, 0x3A
_OPENERS = (0x5B, 0x7B)
_OPEN_OBJECT, _CLOSE_OBJECT, _OPEN_ARRAY, _CLOSE_ARRAY = 0x7B, 0x7D, 0x5B, 0x5D

_MALFORMED = "not a JSON object"
# Where the cut is: before the answer, among its members, among the items, after it.
_TOP, _MEMBERS, _ITEMS, _END = range(4)


class AnswerCutter:
    """Cuts one JSON answer; `push` each body chunk, then `finish`."""

    __slots__ = ("_buf", "_depth", "_first", "_in_string", "_items", "_limit", "_phase",
                 "_scan", "_value", "broken")

    def __init__(self, items: str | None, limit: int) -> None:
        self._items = None if items is None else b'"' + items.encode() + b'"'
        self._limit = limit
        self._buf = bytearray()
        self._phase = _TOP
        self._first = True  # no member (or item) yet at this level
        # The value under way: where it starts (-1: none), how far it is
        # read, how deep, and whether that is inside a string.
        self._value = -1
        self._scan = 0
        self._depth = 0
        self._in_string = False
        self.broken: str | None = None  # why the cut ended: "too large", "not a JSON object"

    def push(self, chunk: bytes) -> list[Piece]:
        if self.broken is not None:
            return [Piece(RAW, b"", chunk)] if chunk else []
        self._buf += chunk
        out = self._cut(final=False)
        if self.broken is None and len(self._buf) > self._limit:
            self._break("too large", out)
        return out

    def finish(self) -> list[Piece]:
        """What is left: a scalar the end completes, the closing bytes; the rest raw."""
        if self.broken is not None:
            return []
        out = self._cut(final=True)
        if self.broken is None:
            if self._phase != _END:
                self._break("cut short", out)
            elif self._buf:
                out.append(Piece(GLUE, b"", bytes(self._buf)))
        return out

    def _cut(self, final: bool) -> list[Piece]:
        out: list[Piece] = []
        start = 0
        while self.broken is None:
            step = self._step(start, out, final)
            if step is None:
                break
            start = step
        if self.broken is not None:
            del self._buf[:start]
            self._break(self.broken, out)
        elif start:
            del self._buf[:start]
            if self._value >= 0:
                self._value -= start
                self._scan -= start
        return out

    def _break(self, why: str, out: list[Piece]) -> None:
        """Cut no further: what is held goes on raw, and so does everything after."""
        self.broken = why
        if self._buf:
            out.append(Piece(RAW, b"", bytes(self._buf)))
        self._buf = bytearray()

    # -- one unit at a time, from ``start``: its end, or None when it is not all here

    def _step(self, start: int, out: list[Piece], final: bool) -> int | None:
        buf = self._buf
        pos = _skip(buf, start)
        if pos >= len(buf):
            return None
        c = buf[pos]
        phase = self._phase
        if phase == _TOP:
            if c != _OPEN_OBJECT:
                self.broken = _MALFORMED
                return None
            self._phase, self._first = _MEMBERS, True
            out.append(Piece(GLUE, b"", bytes(buf[start : pos + 1])))
            return pos + 1
        if phase == _END:
            self.broken = _MALFORMED
            return None
        closer = _CLOSE_OBJECT if phase == _MEMBERS else _CLOSE_ARRAY
        if c == closer:
            out.append(Piece(GLUE, b"", bytes(buf[start : pos + 1])))
            self._phase = _END if phase == _MEMBERS else _MEMBERS
            self._first = False
            return pos + 1
        if not self._first:
            if c != _COMMA:
                self.broken = _MALFORMED
                return None
            pos = _skip(buf, pos + 1)
            if pos >= len(buf):
                return None
        if phase == _ITEMS:
            return self._item(start, pos, out, final)
        return self._member(start, pos, out, final)

    def _item(self, start: int, pos: int, out: list[Piece], final: bool) -> int | None:
        end = self._value_end(pos, final)
        if end is None:
            return None
        buf = self._buf
        out.append(Piece(ITEM, bytes(buf[start:pos]), bytes(buf[pos:end])))
        self._first = False
        return end

    def _member(self, start: int, pos: int, out: list[Piece], final: bool) -> int | None:
        buf = self._buf
        if buf[pos] != _QUOTE:
            self.broken = _MALFORMED
            return None
        key = _KEY.match(buf, pos)
        if key is None:
            return None  # the key goes on in the next chunk
        colon = _skip(buf, key.end())
        if colon >= len(buf):
            return None
        if buf[colon] != _COLON:
            self.broken = _MALFORMED
            return None
        value = _skip(buf, colon + 1)
        if value >= len(buf):
            return None
        items = self._items
        if buf[value] == _OPEN_ARRAY and items is not None \
                and key.end() - pos == len(items) and buf.startswith(items, pos):
            # The items: their head is cut here, each item on its own.
            out.append(Piece(ITEMS, bytes(buf[start:pos]), bytes(buf[pos : value + 1])))
            self._phase, self._first = _ITEMS, True
            return value + 1
        end = self._value_end(value, final)
        if end is None:
            return None
        out.append(Piece(MEMBER, bytes(buf[start:pos]), bytes(buf[pos:end])))
        self._first = False
        return end

    def _value_end(self, pos: int, final: bool) -> int | None:
        """The end of the value starting at ``pos``, or None when it is not all here
        (how far it was read is kept, so that the next chunk goes on from there)."""
        buf = self._buf
        if self._value != pos:
            c = buf[pos]
            if c in _OPENERS:
                self._scan, self._depth, self._in_string = pos + 1, 1, False
            elif c == _QUOTE:
                self._scan, self._depth, self._in_string = pos + 1, 0, True
            else:
                scalar = _SCALAR.match(buf, pos)
                stop = scalar.end() if scalar is not None else pos
                return stop if stop < len(buf) or final else None
            self._value = pos
        end = self._read(buf)
        if end is not None:
            self._value = -1
        return end

    def _read(self, buf: bytearray) -> int | None:
        """Go on reading the value under way: its end, or None at the end of ``buf``."""
        pos, depth, in_string = self._scan, self._depth, self._in_string
        size = len(buf)
        while pos < size:
            if in_string:
                rest = _STRING_REST.match(buf, pos)
                pos = rest.end() if rest is not None else pos
                if pos >= size or buf[pos] != _QUOTE:
                    break  # the string goes on (a lone backslash waits for its pair)
                pos += 1
                in_string = False
                if depth == 0:
                    return pos
                continue
            run = _RUN.match(buf, pos)
            pos = run.end() if run is not None else pos
            if pos >= size:
                break
            c = buf[pos]
            pos += 1
            if c == _QUOTE:
                in_string = True
            elif c in _OPENERS:
                depth += 1
            else:
                depth -= 1
                if depth == 0:
                    return pos
        self._scan, self._depth, self._in_string = pos, depth, in_string
        return None


def _skip(buf: bytearray, pos: int) -> int:
    """Past the whitespace at ``pos``."""
    space = _SPACE.match(buf, pos)
    return space.end() if space is not None else pos
