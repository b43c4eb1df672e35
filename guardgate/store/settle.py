"""Settling after the answer, batched.

A request's settlement (its token delta, its in-flight slot) is not on the
answer's path, so with Redis it joins the settlements of the requests that
ended in the same few milliseconds and they all go in one pipelined round
trip. In memory it is applied at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from guardgate.logs import get_logger
from guardgate.store.errors import STORAGE_ERRORS
from guardgate.store.scripts import LuaScript
from guardgate.store.slots import ACQUIRE_SHA, ACQUIRE_SOURCE
from guardgate.store.windows import SETTLE

log = get_logger("guardgate")

# What waits to be sent: counter deltas, slots to release, risk records.
# A script call with the plain commands that go with it (keys in other hash slots).
_Call = tuple[LuaScript, list[str], list[Any], list[tuple[Any, ...]]]
# (window counter, the charged window's end, delta, the window's length in seconds)
_Count = tuple[str, float, int, int]
_Batch = tuple[list[_Count], list[tuple[str, str]], list[_Call]]


class Settlements:
    def __init__(self, store: Any, interval: float = 0.02, batch: int = 256) -> None:
        self._store = store
        self._interval = interval
        self._batch = batch
        self._counts: list[_Count] = []
        self._slots: list[tuple[str, str]] = []         # (slot set, holder)
        self._calls: list[_Call] = []                   # scripts run after answers
        self._pending: asyncio.TimerHandle | None = None
        self._flushing: set[asyncio.Task[None]] = set()
        self.failures = 0

    async def add(self, counts: list[_Count], slots: list[tuple[str, str]]) -> None:
        """Settle fixed-window counts (`guardgate.store.windows`) and release
        slots: at once in memory, with the next batch in Redis."""
        if self._store.client is None:
            for key, ends, delta, seconds in counts:
                await self._store.windows.settle(key, ends, delta, seconds)
            for key, holder in slots:
                await self._store.slots.release(key, holder)
            return
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
            await self._pipeline(batch, None)
        except STORAGE_ERRORS as exc:
            # Lost settlements only err on the safe side: an unrefunded
            # reservation, a slot held until its lease ends, a risk record
            # (tier, explanation, answer tokens) missing from the state.
            self.failures += 1
            counts, slots, calls = batch
            log.warning("settlement failed", error=repr(exc), counts=len(counts),
                        slots=len(slots), calls=len(calls))

    async def acquire_slot(self, key: str, limit: int, holder: str, lease_ms: int) -> bool:
        """Take an in-flight slot, sending what is waiting to be settled in the
        same round trip: under load, settling costs no round trip of its own."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        now = int(time.time() * 1000)
        results = await self._pipeline(self._take(), (key, now, lease_ms, limit, holder))
        return bool(results[-1])

    async def _pipeline(
        self, batch: _Batch, acquire: tuple[str, int, int, int, str] | None
    ) -> list[Any]:
        counts, slots, calls = batch
        for attempt in (1, 2):
            # One round trip: scripts by hash, no per-batch script check.
            async with self._store.client.pipeline(transaction=False) as pipe:
                counter = self._store.windows.key
                for key, ends, delta, seconds in counts:
                    pipe.evalsha(SETTLE.sha, 1, counter(key), delta, round(ends * 1000),
                                 seconds * 1000)
                for key, holder in slots:
                    pipe.zrem(key, holder)
                for script, keys, args, _ in calls:
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                if attempt == 1:
                    # Idempotent or commutative (rank, HyperLogLog adds): sent
                    # once, whatever happens to the scripts.
                    for *_, commands in calls:
                        for command in commands:
                            pipe.execute_command(*command)
                if acquire is not None:
                    pipe.evalsha(ACQUIRE_SHA, 1, *acquire)
                results: list[Any] = await pipe.execute(raise_on_error=False)
            if attempt == 1 and any(isinstance(r, NoScriptError) for r in results):
                # A restarted Redis forgot the scripts: load them, send again.
                # What was already applied is not resent.
                for source in {SETTLE.source, ACQUIRE_SOURCE, *(c[0].source for c in calls)}:
                    await self._store.client.script_load(source)
                missed = [isinstance(r, NoScriptError) for r in results]
                counts = [c for c, m in zip(counts, missed, strict=False) if m]
                calls = [
                    c for c, m in zip(calls, missed[len(batch[0]) + len(slots):], strict=False)
                    if m
                ]
                slots = []
                continue
            for result in results:
                if isinstance(result, Exception):
                    raise result
            return results
        raise AssertionError("unreachable")

    async def drain(self) -> None:
        """Send what is waiting; for shutdown and tests."""
        self._flush_soon()
        if self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)
