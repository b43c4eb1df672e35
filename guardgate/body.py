"""Reading request bodies, bounded by the policy's ``max_body``."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from guardgate.errors import BodyTooLarge
from guardgate.types import Body, Receive


class ClientGone(Exception):
    """The client went away before the exchange finished."""


async def read_body(
    receive: Receive, headers: Mapping[bytes, bytes], limit: int, *, buffer: bool
) -> Body:
    """The request body: bytes when it came in one message or ``buffer`` is
    set, otherwise a `BodyStream`. Never more than ``limit`` bytes."""
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(_too_large(limit), reason=f"content-length {int(declared)}")
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone()
    first: bytes = message.get("body", b"")
    if len(first) > limit:
        raise BodyTooLarge(_too_large(limit), reason=f"body over {limit} bytes")
    if not message.get("more_body", False):
        return first
    if not buffer:
        return BodyStream(first, receive, limit)
    chunks = [first]
    size = len(first)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(_too_large(limit), reason=f"body over {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class BodyStream:
    """A request body relayed as it arrives, at most ``limit`` bytes.

    The upstream client consumes it in its own task and reports any failure
    as its own error; ``failure`` keeps the real cause (too large, client
    gone) so the gateway answers with that instead.
    """

    def __init__(self, first: bytes, receive: Receive, limit: int) -> None:
        self._first: bytes | None = first
        self._receive = receive
        self._limit = limit
        self._size = len(first)
        self._done = False
        self.failure: Exception | None = None
        self.on_end: Callable[[], None] | None = None  # called once the client sent it all

    def __aiter__(self) -> BodyStream:
        return self

    async def __anext__(self) -> bytes:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        if self._done:
            raise StopAsyncIteration
        try:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk: bytes = message.get("body", b"")
            self._size += len(chunk)
            if self._size > self._limit:
                raise BodyTooLarge(_too_large(self._limit), reason="streamed body over limit")
        except Exception as exc:
            self.failure = exc
            raise
        self._done = not message.get("more_body", False)
        if self._done and self.on_end is not None:
            self.on_end()
        return chunk


def _too_large(limit: int) -> str:
    return f"Request body too large: the limit is {limit} bytes."
