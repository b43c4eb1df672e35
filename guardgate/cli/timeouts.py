"""Read deadlines for ``guardgate serve``: how long a client may take to send
a request's head, and how long it may fall silent in the middle of its body.

uvicorn closes idle keep-alive connections, but a client that sends its
headers a byte at a time, or starts a body and never finishes it, holds its
connection (a descriptor, a buffer, for a body a task) as long as it likes,
and a thousand such clients hold a thousand. `TimedHttpToolsProtocol` is
uvicorn's httptools protocol with one timer per connection, armed while a
request is incomplete on the wire: from the connection to its first head,
and after that only for a request that does not arrive in one read. API
calls do, so on a kept-alive connection the pass-through path pays a few
attribute reads per read and nothing else.

The state is read from the protocol's own (a new head begins with a new
``scope``; a complete head makes a ``cycle`` for it; ``more_body`` is
cleared when the body is complete), so the parser's callbacks run as they
are. Time the server itself is not reading (flow control holds the body
while the app is busy, ``Expect: 100-continue`` waits for the app) is not
counted against the client.
"""

from __future__ import annotations

import asyncio
import functools
import math
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from guardgate.logs import get_logger

log = get_logger("guardgate")


@dataclass(frozen=True, slots=True)
class ReadTimeouts:
    """Seconds. ``header``: from the connection (or, on a kept-alive one, the
    request's first byte) to the end of the request's head. ``body``: the
    longest silence while the body is expected and the server reads it."""

    header: float
    body: float


def timed_protocol(timeouts: ReadTimeouts) -> Any:
    """What uvicorn's ``http`` setting takes: it makes each connection's
    protocol. A partial of a module-level class pickles, so it reaches
    worker processes too."""
    return functools.partial(TimedHttpToolsProtocol, timeouts=timeouts)


_OPENED = object()  # the first head's deadline runs from the connection
# Called directly rather than through super(): it runs on every read.
_data_received = HttpToolsProtocol.data_received


class TimedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, timeouts: ReadTimeouts, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timeouts = timeouts
        self._timer: asyncio.TimerHandle | None = None
        self._head_of: object = _OPENED  # the scope whose head `_since` times
        self._since = 0.0  # when the pending head began, or the body last moved
        self._watching = True

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._since = self.loop.time()
        self._arm(self._since + self._timeouts.header)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        self._watching = False  # the connection is another protocol's from here
        self._disarm()
        super().handle_websocket_upgrade()

    def data_received(self, data: bytes) -> None:
        _data_received(self, data)
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope and not cycle.more_body:
            if self._timer is not None:  # the request is complete
                self._head_of = None
                self._disarm()
            return
        self._incomplete()

    def _incomplete(self) -> None:
        if not self._watching:
            return
        cycle = self.cycle
        if cycle is None or cycle.scope is not self.scope:  # a head is incomplete
            if self._head_of is not self.scope:
                if self._head_of is not _OPENED:
                    self._since = self.loop.time()
                self._head_of = self.scope
                self._arm(self._since + self._timeouts.header)
            elif self._timer is None:
                self._arm(self._since + self._timeouts.header)
        else:  # the head is complete, the body is not
            self._since = self.loop.time()
            if self._head_of is not None or self._timer is None:  # the body's first read
                self._head_of = None
                self._arm(self._since + self._timeouts.body)

    def _arm(self, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_at(deadline, self._expire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if self.transport.is_closing() or not self._watching:
            return
        now = self.loop.time()
        cycle = self.cycle
        if cycle is None or cycle.scope is not self.scope:
            limit, reason = self._timeouts.header, "header_timeout"
        elif cycle.more_body:
            limit, reason = self._timeouts.body, "body_timeout"
            if cycle.waiting_for_100_continue:
                self._since = now
        else:
            return
        if self.flow.read_paused:
            self._since = now
        deadline = self._since + limit
        if now < deadline:
            self._arm(deadline)
            return
        _closed.count(reason, limit, now)
        self.transport.close()


class _Closed:
    """Connections closed for their slowness, said in the log at most once
    a minute per reason: a flood of slow clients makes a line, not
    thousands."""

    EVERY = 60.0

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._said: dict[str, float] = {}

    def count(self, reason: str, limit: float, now: float) -> None:
        count = self._counts.get(reason, 0) + 1
        if now - self._said.get(reason, -math.inf) < self.EVERY:
            self._counts[reason] = count
            return
        self._counts[reason] = 0
        self._said[reason] = now
        log.warning("slow clients closed", reason=reason, seconds=limit, connections=count)


_closed = _Closed()
