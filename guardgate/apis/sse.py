"""Server-sent events cut from a byte stream, whatever its chunking.

`EventReader` turns response body chunks into whole events, each with the
blank line that ends it, so that joining what it returns gives back the
stream byte for byte. Events end at a blank line written with LF or CRLF line
ends (the model APIs use LF); a stream that never ends an event is held back
only up to ``limit`` bytes, after which the rest of that event is handed on
raw, unparsed, up to its end. `event_data` reads an event's ``data:`` lines;
`event_head` and `render_event` write an event again around new data.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

__all__ = ["MAX_EVENT", "EventReader", "event_data", "event_head", "render_event"]

MAX_EVENT = 1 << 20

# A blank line: a line end (LF, or CRLF whose CR the previous line keeps) and an empty line.
_BOUNDARY = re.compile(rb"\n\r?\n")
_OVERLAP = 2  # bytes of what is held that a boundary straddling the next chunk may start in


class EventReader:
    """Splits one stream into events; one reader per response.

    `push` returns pieces in stream order as ``(bytes, whole)``: ``whole`` is
    True for a complete event (ending with its blank line), False for raw
    bytes of an event too large to hold. Anything else is held until a later
    push completes it, or `flush` at the end.
    """

    __slots__ = ("_edge", "_held", "_limit", "_skipping")

    def __init__(self, limit: int = MAX_EVENT) -> None:
        self._held = bytearray()
        self._limit = limit
        self._skipping = False  # inside an oversized event, passing it on raw to its end
        self._edge = b""  # last bytes passed on raw: a boundary may start there

    def push(self, chunk: bytes) -> list[tuple[bytes, bool]]:
        out: list[tuple[bytes, bool]] = []
        if self._skipping:
            chunk = self._skip(chunk, out)
        if not chunk:
            return out
        held = self._held
        data: bytes | bytearray
        if held:
            start = max(0, len(held) - _OVERLAP)
            held += chunk
            data = held
        else:
            # The common case: the chunk is exactly one LF event.
            end = chunk.find(b"\n\n")
            if end >= 0 and end == len(chunk) - 2 and b"\r" not in chunk:
                out.append((chunk, True))
                return out
            start, data = 0, chunk
        pos = 0
        for match in _BOUNDARY.finditer(data, start):
            out.append((bytes(data[pos : match.end()]), True))
            pos = match.end()
        if data is held:
            del held[:pos]
        else:
            held += memoryview(chunk)[pos:]
        if len(held) > self._limit:
            self._edge = bytes(held[-_OVERLAP:])
            out.append((bytes(held), False))
            held.clear()
            self._skipping = True
        return out

    def _skip(self, chunk: bytes, out: list[tuple[bytes, bool]]) -> bytes:
        """Pass on raw the part of ``chunk`` up to the end of the oversized event; the rest."""
        region = self._edge + chunk
        match = _BOUNDARY.search(region)
        if match is None:
            self._edge = region[-_OVERLAP:]
            if chunk:
                out.append((chunk, False))
            return b""
        cut = match.end() - len(self._edge)
        out.append((chunk[:cut], False))
        self._skipping, self._edge = False, b""
        return chunk[cut:]

    def flush(self) -> bytes:
        """What is held back at the end of the stream: an incomplete last event, or nothing."""
        rest = bytes(self._held)
        self._held.clear()
        self._skipping, self._edge = False, b""
        return rest


def event_data(event: bytes) -> bytes | None:
    """The event's data: its ``data:`` lines (one leading space dropped) joined by LF.

    None when the event has no data line (a comment, or only other fields).
    """
    # The common case, as the model APIs write it: one ``data: `` line, LF.
    end = len(event) - 2
    if (
        event.startswith(b"data: ")
        and event.endswith(b"\n\n")
        and event.find(b"\n", 6) == end
        and event[end - 1] != 13  # CR
    ):
        return event[6:end]
    if event.startswith(b"data:"):
        at = 0
    else:
        at = event.find(b"\ndata:") + 1
        if not at:
            return None
    values: list[bytes] = []
    while True:
        start = at + 6 if event.startswith(b" ", at + 5) else at + 5
        end = event.find(b"\n", start)
        if end < 0:
            end = len(event)
        values.append(event[start : end - 1 if event.startswith(b"\r", end - 1) else end])
        at = event.find(b"\ndata:", end) + 1
        if not at:
            return values[0] if len(values) == 1 else b"\n".join(values)


def event_head(event: bytes) -> bytes:
    """The event's lines other than data (``event:``, ``id:``, ...), each ended by LF."""
    return b"".join(
        line + b"\n"
        for line in event.replace(b"\r", b"").split(b"\n")
        if line and not line.startswith(b"data:")
    )


def render_event(head: bytes, value: dict[str, Any], fallback: bytes) -> bytes:
    """An event of ``head`` and ``value`` as one compact data line; ``fallback``
    when orjson cannot write ``value`` (an integer past 64 bits, say)."""
    try:
        return head + b"data: " + orjson.dumps(value) + b"\n\n"
    except orjson.JSONEncodeError:
        return fallback
