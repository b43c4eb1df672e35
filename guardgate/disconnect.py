"""Cancelling exchanges whose client went away.

An upstream request should not run to its end for nobody. Listening for the
disconnect needs a task beside the exchange, and most exchanges end long
before a client could leave, so the task is not made per request: exchanges
register here, and a sweep every ``interval`` seconds gives a watcher to the
ones older than ``after``.
"""

from __future__ import annotations

import asyncio
import time

from guardgate.exchange import Exchange
from guardgate.types import Receive


class DisconnectWatch:
    def __init__(self, after: float = 0.2, interval: float = 0.1) -> None:
        self._after = after
        self._interval = interval
        self._inflight: dict[Exchange, tuple[float, Receive, asyncio.Task[object]]] = {}
        self._watchers: dict[Exchange, asyncio.Task[None]] = {}
        self._sweeping = False

    def add(
        self, ex: Exchange, receive: Receive, task: asyncio.Task[object] | None = None
    ) -> None:
        """Watch ``ex``, run by ``task`` (by default the current one)."""
        task = task or asyncio.current_task()
        if task is None:
            return
        self._inflight[ex] = (time.monotonic(), receive, task)
        if not self._sweeping:
            self._sweeping = True
            asyncio.get_running_loop().call_later(self._interval, self._sweep)

    def discard(self, ex: Exchange) -> None:
        if self._inflight.pop(ex, None) is not None:
            watcher = self._watchers.pop(ex, None)
            if watcher is not None:
                watcher.cancel()

    def _sweep(self) -> None:
        cutoff = time.monotonic() - self._after
        for ex, (began, receive, task) in self._inflight.items():
            if began <= cutoff and ex not in self._watchers:
                self._watchers[ex] = asyncio.ensure_future(_watch(ex, receive, task))
        if self._inflight:
            asyncio.get_running_loop().call_later(self._interval, self._sweep)
        else:
            self._sweeping = False


async def _watch(ex: Exchange, receive: Receive, task: asyncio.Task[object]) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if not ex.complete:
                ex.gone = True
                task.cancel()
            return
