"""When each principal was first seen, for quotas that grow with age.

In memory, the times are kept for the store's life (across policy reloads),
each for `TTL` as the Redis key is, and for at most `MEMORY_CAP`
principals: past it the principal first seen last is forgotten first (when
it comes back its ramp starts again), so a flood of new principals never
costs an established one its age. In Redis, one key per principal.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Protocol

from guardgate.store.errors import guarded

TTL = 90 * 24 * 3600


class FirstSeen(Protocol):
    async def get(self, principal: str, now: float) -> float:
        """When ``principal`` was first seen; ``now`` for a principal never seen."""


class MemoryFirstSeen:
    MEMORY_CAP = 100_000

    def __init__(self) -> None:
        self._memory: OrderedDict[str, float] = OrderedDict()  # in the order first seen

    async def get(self, principal: str, now: float) -> float:
        memory = self._memory
        seen = memory.get(principal)
        if seen is not None and seen > now - TTL:
            return seen
        while memory:
            first = next(iter(memory))
            if memory[first] > now - TTL:
                break
            del memory[first]
        if len(memory) >= self.MEMORY_CAP:
            memory.popitem(last=True)
        memory[principal] = now
        return now


@guarded
class RedisFirstSeen:
    def __init__(self, client: Any) -> None:
        self._client = client

    async def get(self, principal: str, now: float) -> float:
        previous = await self._client.set(
            "guardgate/seen{" + principal + "}", now, nx=True, get=True, ex=TTL
        )
        return float(previous) if previous is not None else now


__all__ = ["TTL", "FirstSeen", "MemoryFirstSeen", "RedisFirstSeen"]
