"""Settling after the answer, batched.

A request's settlement (its token delta, its in-flight slot) is not on the
answer's path, so with Redis it joins the settlements of the requests that
ended in the same few milliseconds and they all go in one pipelined round
trip (`Settlements`). In memory it is applied at once (`MemorySettlements`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from guardgate.errors import StorageError
from guardgate.logs import get_logger
from guardgate.store.errors import FOREIGN, translated
from guardgate.store.scripts import LuaScript
from guardgate.store.windows import SETTLE, MemoryWindows

log = get_logger("guardgate")
CAUGHT: tuple[type[BaseException], ...] = (StorageError, *FOREIGN)

# What waits to be sent: counter deltas, slots to release, risk records.
# A script call with the plain commands that go with it (keys in other hash slots).
_Call = tuple[LuaScript, list[str], list[Any], list[tuple[Any, ...]]]
# A script run on the request's path: its keys and arguments.
_Script = tuple[LuaScript, list[str], list[Any]]
# (window counter, the charged window's end, delta, the window's length in seconds)
_Count = tuple[str, float, int, int]
_Batch = tuple[list[_Count], list[tuple[str, str]], list[_Call]]


class MemorySettlements:
    """In memory, each settlement is applied at once."""

    def __init__(self, windows: MemoryWindows, slots: Any) -> None:
        self._windows = windows
        self._slots = slots
        self.failures = 0

    async def add(self, counts: list[_Count], slots: list[tuple[str, str]]) -> None:
        for key, ends, delta, seconds in counts:
            await self._windows.settle(key, ends, delta, seconds)
        for key, holder in slots:
            await self._slots.release(key, holder)

    async def drain(self) -> None:
        pass


class Settlements:
    """With Redis: settlements and scripts run after answers, batched."""

    def __init__(self, client: Any, counter: Any, interval: float = 0.02,
                 batch: int = 256) -> None:
        self._client = client
        self._counter = counter  # a quota counter's Redis key
        self._interval = interval
        self._batch = batch
        self._counts: list[_Count] = []
        self._slots: list[tuple[str, str]] = []         # (slot set, holder)
        self._calls: list[_Call] = []                   # scripts run after answers
        self._pending: asyncio.TimerHandle | None = None
        self._flushing: set[asyncio.Task[None]] = set()
        # Scripts asked for on requests' paths in this turn of the loop.
        self._asked: list[tuple[list[_Script], asyncio.Future[list[Any]]]] = []
        self.failures = 0
        # Raised on the request's path: StorageError, as every backend raises.
        self.run = translated(self._run, "Settlements.run")

    async def add(self, counts: list[_Count], slots: list[tuple[str, str]]) -> None:
        """Settle fixed-window counts (`guardgate.store.windows`) and release
        slots with the next batch."""
        self._counts.extend(counts)
        self._slots.extend(slots)
        self._schedule()

    async def add_call(self, script: LuaScript, keys: list[str], args: list[Any],
                       commands: Sequence[tuple[Any, ...]] = ()) -> None:
        """A script to run with the next batch (a risk record, a clearance
        charge), and plain ``commands`` sent with it."""
        self._calls.append((script, keys, args, list(commands)))
        self._schedule()

    def _schedule(self) -> None:
        if len(self._counts) + len(self._slots) + len(self._calls) >= self._batch:
            self._flush_soon()
        elif self._pending is None:
            loop = asyncio.get_running_loop()
            self._pending = loop.call_later(self._interval, self._flush_soon)

    def _flush_soon(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        batch = self._take()
        if any(batch):
            task = asyncio.ensure_future(self._send(batch))
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)

    def _take(self) -> _Batch:
        batch = (self._counts, self._slots, self._calls)
        self._counts, self._slots, self._calls = [], [], []
        return batch

    async def _send(self, batch: _Batch) -> None:
        try:
            await self._pipeline(batch)
        except CAUGHT as exc:
            self._lost(batch, exc)

    def _lost(self, batch: _Batch, exc: BaseException) -> None:
        # Lost settlements only err on the safe side: an unrefunded
        # reservation, a slot held until its lease ends, a risk record
        # (tier, explanation, answer tokens) missing from the state.
        self.failures += 1
        counts, slots, calls = batch
        log.warning("settlement failed", error=repr(exc), counts=len(counts),
                    slots=len(slots), calls=len(calls))

    async def _run(self, scripts: list[_Script]) -> list[Any]:
        """Run ``scripts`` on the request's path, sending what is waiting to
        be settled in the same round trip: under load, settling costs no
        round trip of its own. Scripts asked for in the same turn of the
        event loop (a request's risk assessment and its quota reservation,
        and those of other requests arriving together) share that round
        trip too. Their results in order, an error as its exception (a
        script may fail while the others apply); what waits to be settled
        fails apart, logged and counted."""
        waiter: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._asked.append((scripts, waiter))
        if len(self._asked) == 1:
            asyncio.get_running_loop().call_soon(self._send_asked)
        return await waiter

    def _send_asked(self) -> None:
        asked, self._asked = self._asked, []
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        task = asyncio.ensure_future(self._answer(self._take(), asked))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _answer(self, batch: _Batch,
                      asked: list[tuple[list[_Script], asyncio.Future[list[Any]]]]) -> None:
        scripts = [script for wanted, _ in asked for script in wanted]
        try:
            results = await self._pipeline(batch, scripts)
        except BaseException as exc:
            if any(batch):
                self._lost(batch, exc)
            for _, waiter in asked:
                if waiter.done():
                    continue
                if isinstance(exc, Exception):
                    waiter.set_exception(exc)
                else:
                    waiter.cancel()
            if not isinstance(exc, Exception):
                raise
            return
        start = 0
        for wanted, waiter in asked:
            if not waiter.done():
                waiter.set_result(results[start:start + len(wanted)])
            start += len(wanted)

    async def _pipeline(self, batch: _Batch, scripts: Sequence[_Script] = ()) -> list[Any]:
        counts, slots, calls = batch
        counter = self._counter
        items: list[_Script] = [
            *((SETTLE, [counter(key)], [delta, round(ends * 1000), seconds * 1000])
              for key, ends, delta, seconds in counts),
            *((script, keys, args) for script, keys, args, _ in calls),
            *scripts,
        ]
        # Releases go first (a caller's next request must find its last
        # one's slot free); then the scripts; then what goes with the risk
        # records (rank, HyperLogLog adds). Plain commands are idempotent or
        # commutative: sent once, whatever happens to the scripts.
        releases: list[tuple[Any, ...]] = [("ZREM", key, holder) for key, holder in slots]
        plain = [command for *_, commands in calls for command in commands]
        results: list[Any] = [None] * len(items)
        todo = list(range(len(items)))
        for attempt in (1, 2):
            # One round trip: scripts by hash, no per-batch script check.
            async with self._client.pipeline(transaction=False) as pipe:
                if attempt == 1:
                    for command in releases:
                        pipe.execute_command(*command)
                for i in todo:
                    script, keys, args = items[i]
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                if attempt == 1:
                    for command in plain:
                        pipe.execute_command(*command)
                out: list[Any] = await pipe.execute(raise_on_error=False)
            if attempt == 1:
                failed = [r for r in out[:len(releases)] + out[len(releases) + len(todo):]
                          if isinstance(r, Exception)]
                out = out[len(releases):len(releases) + len(todo)]
            missed = []
            for i, result in zip(todo, out, strict=True):
                results[i] = result
                if isinstance(result, NoScriptError):
                    missed.append(i)
            if not missed or attempt == 2:
                break
            # A restarted (or failed-over) Redis forgot the scripts: load
            # them, send again what was not applied.
            for source in {items[i][0].source for i in missed}:
                await self._client.script_load(source)
            todo = missed
        own = len(items) - len(scripts)
        failed += [r for r in results[:own] if isinstance(r, Exception)]
        if failed:
            self._lost(batch, failed[0])
        return results[own:]

    async def drain(self) -> None:
        """Send what is waiting; for shutdown and tests."""
        self._flush_soon()
        if self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)
