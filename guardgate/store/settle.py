"""Settling after the answer, batched.

A request's settlement (its token delta, its in-flight slot) is not on the
answer's path, so with Redis it joins the settlements of the requests that
ended in the same few milliseconds and they all go in one pipelined round
trip. In memory it is applied at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

from guardgate.logs import get_logger
from guardgate.store.slots import ACQUIRE_SHA, ACQUIRE_SOURCE

log = get_logger("guardgate")


class Settlements:
    def __init__(self, store: Any, interval: float = 0.02, batch: int = 256) -> None:
        self._store = store
        self._interval = interval
        self._batch = batch
        self._counts: list[tuple[str, int, int]] = []   # (limits key, expiry, delta)
        self._slots: list[tuple[str, str]] = []         # (slot set, holder)
        self._pending: asyncio.TimerHandle | None = None
        self._flushing: set[asyncio.Task[None]] = set()
        self.failures = 0
        self._source = resources.files("guardgate.store").joinpath("lua/settle_count.lua").read_text()
        self._sha = hashlib.sha1(self._source.encode()).hexdigest()

    async def add(self, counts: list[tuple[str, int, int]], slots: list[tuple[str, str]]) -> None:
        if self._store.client is None:
            for key, expiry, delta in counts:
                await self._store.limits.incr(key, expiry, amount=delta)
            for key, holder in slots:
                await self._store.slots.release(key, holder)
            return
        self._counts.extend(counts)
        self._slots.extend(slots)
        if len(self._counts) + len(self._slots) >= self._batch:
            self._flush_soon()
        elif self._pending is None:
            loop = asyncio.get_running_loop()
            self._pending = loop.call_later(self._interval, self._flush_soon)

    def _flush_soon(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        counts, self._counts = self._counts, []
        slots, self._slots = self._slots, []
        if counts or slots:
            task = asyncio.ensure_future(self._send(counts, slots))
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)

    async def _send(self, counts: list[tuple[str, int, int]], slots: list[tuple[str, str]]) -> None:
        from guardgate.store import STORAGE_ERRORS

        try:
            await self._pipeline(counts, slots, None)
        except STORAGE_ERRORS as exc:
            # Lost settlements only err on the safe side: an unrefunded
            # reservation, a slot held until its lease ends.
            self.failures += 1
            log.warning("settlement failed", error=repr(exc), counts=len(counts), slots=len(slots))

    async def acquire_slot(self, key: str, limit: int, holder: str, lease_ms: int) -> bool:
        """Take an in-flight slot, sending what is waiting to be settled in the
        same round trip: under load, settling costs no round trip of its own."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        counts, self._counts = self._counts, []
        slots, self._slots = self._slots, []
        now = int(time.time() * 1000)
        results = await self._pipeline(counts, slots, (key, now, lease_ms, limit, holder))
        return bool(results[-1])

    async def _pipeline(
        self,
        counts: list[tuple[str, int, int]],
        slots: list[tuple[str, str]],
        acquire: tuple[str, int, int, int, str] | None,
    ) -> list[Any]:
        for attempt in (1, 2):
            # One round trip: scripts by hash, no per-batch script check.
            async with self._store.client.pipeline(transaction=False) as pipe:
                prefixed = self._store.limits.bridge.prefixed_key
                for key, _, delta in counts:
                    pipe.evalsha(self._sha, 1, prefixed(key), delta)
                for key, holder in slots:
                    pipe.zrem(key, holder)
                if acquire is not None:
                    pipe.evalsha(ACQUIRE_SHA, 1, *acquire)
                results: list[Any] = await pipe.execute(raise_on_error=False)
            if attempt == 1 and any(isinstance(r, NoScriptError) for r in results):
                # A restarted Redis forgot the scripts: load them, send again.
                # Settlements already applied are not resent.
                await self._store.client.script_load(self._source)
                await self._store.client.script_load(ACQUIRE_SOURCE)
                counts = [c for c, r in zip(counts, results, strict=False)
                          if isinstance(r, NoScriptError)]
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
