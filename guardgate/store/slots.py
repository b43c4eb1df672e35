"""In-flight slots for concurrency quotas.

The `limits` library meters rates, not requests in flight, so slots are
kept here: a counter in memory, or in Redis a sorted set of holders whose
leases expire, so a replica that dies holding slots cannot leak them.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, Protocol

from guardgate.store.errors import guarded
from guardgate.store.scripts import LuaScript

ACQUIRE = LuaScript.named("acquire_slot")

# A slot outlives a stream that runs longer than this only by being
# re-counted: long enough for any answer, short enough to heal a crash.
LEASE_SECONDS = 15 * 60


class Slots(Protocol):
    async def acquire(self, key: str, limit: int, holder: str) -> bool: ...
    async def release(self, key: str, holder: str) -> None: ...


class MemorySlots:
    def __init__(self) -> None:
        self._held: defaultdict[str, int] = defaultdict(int)

    async def acquire(self, key: str, limit: int, holder: str) -> bool:
        if self._held[key] >= limit:
            return False
        self._held[key] += 1
        return True

    async def release(self, key: str, holder: str) -> None:
        count = self._held.get(key, 0) - 1
        if count > 0:
            self._held[key] = count
        else:
            self._held.pop(key, None)


@guarded
class RedisSlots:
    def __init__(self, client: Any, settlements: Any) -> None:
        self._client = client
        self._settlements = settlements

    async def acquire(self, key: str, limit: int, holder: str) -> bool:
        # Rides with the waiting settlements, in one round trip.
        taken, = await self._settlements.run([self.script(key, limit, holder)])
        if isinstance(taken, Exception):
            raise taken
        return bool(taken)

    @staticmethod
    def script(key: str, limit: int, holder: str) -> tuple[LuaScript, list[str], list[Any]]:
        """The acquisition as a script call, to send with others."""
        now = int(time.time() * 1000)
        return ACQUIRE, [key], [now, LEASE_SECONDS * 1000, limit, holder]

    async def release(self, key: str, holder: str) -> None:
        await self._client.zrem(key, holder)
