"""Shared state: in-process memory, or Redis for many replicas.

A `Store` holds what the steps share: the `limits` storage the quotas
meter against, and the in-flight slots of concurrency quotas. Errors from
Redis and from `limits` are translated into `guardgate.StorageError` here.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from weakref import WeakKeyDictionary

import redis.asyncio as aioredis
from limits.aio.storage import Storage as LimitsStorage
from limits.storage import storage_from_string

from guardgate.store.clearances import Clearances, MemoryClearances, RedisClearances
from guardgate.store.errors import STORAGE_ERRORS
from guardgate.store.overrides import MemoryOverrides, RedisOverrides, RuntimeOverrides
from guardgate.store.risk import Clock, MemoryRisk, RedisRisk, RiskStore
from guardgate.store.settle import Settlements
from guardgate.store.slots import MemorySlots, RedisSlots, Slots
from guardgate.store.windows import MemoryWindows, RedisWindows

# Commands must fail fast when Redis is away: the policy decides what a
# failure means (on_storage_error), and a hung request decides nothing.
_TIMEOUT = 1.0



def redacted(url: str) -> str:
    """``url`` as it may be shown: a password in it (``user:password@``, or
    the ``password`` query parameter redis-py also reads) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None and "password" not in parts.query.lower():
        return url
    if parts.password is not None:
        user = parts.username or ""
        parts = parts._replace(netloc=f"{user}:***@{parts.netloc.rpartition('@')[2]}")
    if "password" in parts.query.lower():
        query = [(k, "***" if k.lower() == "password" else v)
                 for k, v in parse_qsl(parts.query, keep_blank_values=True)]
        parts = parts._replace(query=urlencode(query, safe="*"))
    return urlunsplit(parts)


def is_redis(url: str) -> bool:
    return url.startswith(("redis://", "rediss://", "redis+cluster://", "unix://"))


class Store:
    """The state backend named by the policy's ``storage``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client: Any = None
        self._clearances: MemoryClearances | None = None
        self._overrides: RuntimeOverrides | None = None
        self._risk_states: dict[Clock, MemoryRisk] = {}
        if not is_redis(url):
            self.limits: LimitsStorage = storage_from_string("async+memory://")  # type: ignore[assignment]
            self.slots: Slots = MemorySlots()
            self.windows: MemoryWindows | RedisWindows = MemoryWindows()
            self.settlements = Settlements(self)
            return
        cluster = url.startswith("redis+cluster://")
        if url.startswith("unix://"):
            limits_url = "async+redis+unix://" + url[len("unix://") :]
        else:
            limits_url = "async+" + url
        self.limits = storage_from_string(  # type: ignore[assignment]
            limits_url,
            implementation="redispy",
            wrap_exceptions=True,
            socket_timeout=_TIMEOUT,
            socket_connect_timeout=_TIMEOUT,
        )
        if cluster:
            target = "redis://" + url[len("redis+cluster://") :]
            self.client = aioredis.RedisCluster.from_url(target, socket_timeout=_TIMEOUT)
        else:
            self.client = aioredis.Redis.from_url(
                url, socket_timeout=_TIMEOUT, socket_connect_timeout=_TIMEOUT
            )
        self.windows = RedisWindows(self.client, self.limits)
        self.settlements = Settlements(self)
        self.slots = RedisSlots(self.client, self.settlements)

    def clearances(self) -> Clearances:
        """Challenge redemptions and clearance meters on this storage. In
        memory there is one for the store's life, kept across policy reloads."""
        if self.client is None:
            if self._clearances is None:
                self._clearances = MemoryClearances()
            return self._clearances
        return RedisClearances(self.client, self.settlements)

    def overrides(self) -> RuntimeOverrides:
        """Overrides set at runtime, one set for the store's life."""
        if self._overrides is None:
            self._overrides = (
                MemoryOverrides() if self.client is None else RedisOverrides(self.client)
            )
        return self._overrides

    def risk_state(self, clock: Clock) -> RiskStore:
        """The risk state on this storage, with one policy's time constants.
        In memory, one per set of time constants, kept across policy reloads."""
        if self.client is None:
            state = self._risk_states.get(clock)
            if state is None:
                state = self._risk_states[clock] = MemoryRisk(clock)
            return state
        return RedisRisk(self.client, clock, self.settlements)

    async def ready(self) -> bool:
        """Whether the storage answers (memory always does)."""
        if self.client is None:
            return True
        try:
            return bool(await self.client.ping())
        except STORAGE_ERRORS:
            return False

    async def close(self) -> None:
        await self.settlements.drain()
        if self.client is not None:
            try:
                await self.client.aclose()
            except STORAGE_ERRORS:
                pass


class FirstSeen:
    """When each principal was first seen, for quotas that grow with age.

    In memory, the times are kept for the store's life (across policy
    reloads), each for `TTL` as the Redis key is, and for at most
    `MEMORY_CAP` principals: past it the principal first seen last is
    forgotten first (when it comes back its ramp starts again), so a flood
    of new principals never costs an established one its age."""

    TTL = 90 * 24 * 3600
    MEMORY_CAP = 100_000

    def __init__(self, store: Store) -> None:
        self._client = store.client
        memory = _FIRST_SEEN.get(store)
        if memory is None:
            memory = _FIRST_SEEN[store] = OrderedDict()
        self._memory = memory  # in the order first seen

    async def get(self, principal: str, now: float) -> float:
        if self._client is None:
            return self._remembered(principal, now)
        previous = await self._client.set(
            "{guardgate/seen}/" + principal, now, nx=True, get=True, ex=self.TTL
        )
        return float(previous) if previous is not None else now

    def _remembered(self, principal: str, now: float) -> float:
        memory = self._memory
        seen = memory.get(principal)
        if seen is not None and seen > now - self.TTL:
            return seen
        while memory:
            first = next(iter(memory))
            if memory[first] > now - self.TTL:
                break
            del memory[first]
        if len(memory) >= self.MEMORY_CAP:
            memory.popitem(last=True)
        memory[principal] = now
        return now


# Each memory store's first-seen times, as long as the store lives.
_FIRST_SEEN: WeakKeyDictionary[Store, OrderedDict[str, float]] = WeakKeyDictionary()


__all__ = ["STORAGE_ERRORS", "FirstSeen", "Store", "is_redis", "redacted"]
