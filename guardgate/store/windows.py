"""Fixed-window counters that know their window.

A window starts at its first charge and lasts its length, as `limits`
fixed windows do; a charge learns when its window ends, and that end names
the window: a refund is applied only while the counter is still that
window's, so it never raises the next window's allowance; what an answer
cost beyond its reservation is owed whatever the window, charged to the
one open when it settles. In
memory a dict; in Redis, a key of its own per counter, one script
(`window_hit.lua`) per charge and `settle_count.lua` per settlement (batched
by `Settlements`). A counter brought back to zero by refunds keeps its
window (`limits` would start a new one at the next charge).
"""

from __future__ import annotations

import time
from typing import Any

from guardgate.store.errors import guarded
from guardgate.store.scripts import LuaScript

HIT = LuaScript.named("window_hit")
SETTLE = LuaScript.named("settle_count")


class MemoryWindows:
    """The counters in a dict: key -> [count, end]; ended ones swept now and then."""

    SWEEP = 4096  # charges between sweeps of ended windows

    def __init__(self) -> None:
        self._counters: dict[str, list[float]] = {}
        self._charges = 0

    async def hit(self, key: str, seconds: int, amount: int) -> tuple[int, float]:
        """Charge ``amount``: (the count now, when the window ends)."""
        now = time.time()
        counter = self._counters.get(key)
        if counter is None or counter[1] <= now:
            counter = self._counters[key] = [0, now + seconds]
        counter[0] += amount
        self._charges += 1
        if self._charges % self.SWEEP == 0:
            self._sweep(now)
        return int(counter[0]), counter[1]

    async def get(self, key: str) -> tuple[int, float | None]:
        """(The count, when the window ends), (0, None) outside any window."""
        counter = self._counters.get(key)
        if counter is None or counter[1] <= time.time():
            return 0, None
        return int(counter[0]), counter[1]

    async def settle(self, key: str, ends: float, delta: int, seconds: int) -> None:
        """Add ``delta`` to the window ending at ``ends``: a refund only while
        it counts, a charge to the window open now if that one ended."""
        counter = self._counters.get(key)
        if counter is not None and counter[1] == ends and ends > time.time():
            counter[0] += delta
        elif delta > 0:
            await self.hit(key, seconds, delta)

    def _sweep(self, now: float) -> None:
        for key in [k for k, (_, ends) in self._counters.items() if ends <= now]:
            del self._counters[key]


@guarded
class RedisWindows:
    def __init__(self, client: Any) -> None:
        self._client = client

    @staticmethod
    def key(key: str) -> str:
        """The counter's Redis key: apart from the `limits` strategies' keys,
        so that a quota whose strategy a reload changes finds no key of the
        other kind."""
        return "guardgate/window:" + key

    async def hit(self, key: str, seconds: int, amount: int) -> tuple[int, float]:
        count, ends = await HIT.run(self._client, *self.script(key, seconds, amount)[1:])
        return int(count), int(ends) / 1000

    def script(self, key: str, seconds: int, amount: int) -> tuple[LuaScript, list[str], list[Any]]:
        """A charge as a script call, to send with others."""
        return HIT, [self.key(key)], [seconds * 1000, amount]

    async def get(self, key: str) -> tuple[int, float | None]:
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.get(self.key(key))
            pipe.pexpiretime(self.key(key))
            count, ends = await pipe.execute()
        if count is None or ends < 0:
            return 0, None
        return int(count), int(ends) / 1000

    async def settle(self, key: str, ends: float, delta: int, seconds: int) -> None:
        await SETTLE.run(self._client, [self.key(key)],
                         [delta, round(ends * 1000), seconds * 1000])
