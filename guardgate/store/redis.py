"""The Redis backends: one server (``redis://``, ``rediss://``, ``unix://``),
a Redis Cluster (``redis+cluster://``) and a primary found through Redis
Sentinel (``redis+sentinel://host:port[,host:port]/service``). Every replica
of the gateway shares their state.

The key layout is cluster-safe everywhere: each script declares the keys it
touches, a caller's keys share its hash slot, and what spans accounts lives
in slots of its own (`guardgate.store.risk`). The clients handle MOVED and
ASK redirections and find the new primary after a failover; until then a
command fails fast and the policy's ``on_storage_error`` decides.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from limits.storage import storage_from_string
from redis.asyncio.sentinel import Sentinel

from guardgate.store.base import Store, register
from guardgate.store.clearances import RedisClearances
from guardgate.store.errors import FOREIGN, StorageError
from guardgate.store.first_seen import RedisFirstSeen
from guardgate.store.ledger import RedisLedger
from guardgate.store.overrides import RedisOverrides
from guardgate.store.risk import Clock, RedisRisk
from guardgate.store.settle import Settlements
from guardgate.store.slots import RedisSlots
from guardgate.store.windows import RedisWindows

# Commands must fail fast when Redis is away: the policy decides what a
# failure means (on_storage_error), and a hung request decides nothing.
TIMEOUT = 1.0
_OPTIONS: dict[str, Any] = {"socket_timeout": TIMEOUT, "socket_connect_timeout": TIMEOUT}


@register
class RedisStore(Store):
    schemes: ClassVar[tuple[str, ...]] = ("redis", "rediss", "unix")
    sharded: ClassVar[bool] = False  # keys of many hash slots may go in one script
    remote = True

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = self._client(url)
        self._limits = storage_from_string(self._limits_url(url), implementation="redispy",
                                           wrap_exceptions=True, **_OPTIONS)
        self.windows = RedisWindows(self.client)
        self.settlements = Settlements(self.client, self.windows.key)
        self.slots = RedisSlots(self.client, self.settlements)
        self._limiters = {}
        self._overrides = RedisOverrides(self.client)
        self._first_seen = RedisFirstSeen(self.client)
        self._ledger = RedisLedger(self.client, self.settlements)

    def _client(self, url: str) -> Any:
        return aioredis.Redis.from_url(url, **_OPTIONS)

    def _limits_url(self, url: str) -> str:
        if url.startswith("unix://"):
            return "async+redis+unix://" + url[len("unix://"):]
        return "async+" + url

    async def reserve(self, hits: list[tuple[str, int, int]], slots: list[tuple[str, int, str]]
                      ) -> tuple[list[tuple[int, float]], list[bool]]:
        scripts = [self.windows.script(key, seconds, amount) for key, seconds, amount in hits]
        scripts += [RedisSlots.script(key, limit, holder) for key, limit, holder in slots]
        if not scripts:
            return [], []
        # Releasing a slot never taken is harmless: on any failure every slot
        # of the request goes, and every charge known to have applied.
        releases = [(key, holder) for key, _, holder in slots]
        try:
            results = await self.settlements.run(scripts)
        except StorageError:
            await self.settlements.add([], releases)
            raise
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:
            refunds = [(key, int(r[1]) / 1000, -amount, seconds)
                       for (key, seconds, amount), r in zip(hits, results, strict=False)
                       if not isinstance(r, Exception)]
            await self.settlements.add(refunds, releases)
            raise StorageError(f"RedisStore.reserve: {failed[0]!r}") from failed[0]
        counted = [(int(count), int(ends) / 1000) for count, ends in results[:len(hits)]]
        return counted, [bool(taken) for taken in results[len(hits):]]

    def clearances(self) -> RedisClearances:
        return RedisClearances(self.client, self.settlements)

    def overrides(self) -> RedisOverrides:
        return self._overrides

    def risk_state(self, clock: Clock) -> RedisRisk:
        return RedisRisk(self.client, clock, self.settlements, sharded=self.sharded)

    def first_seen(self) -> RedisFirstSeen:
        return self._first_seen

    def caught_ledger(self) -> RedisLedger:
        return self._ledger

    async def ready(self) -> bool:
        try:
            return bool(await self.client.ping())
        except FOREIGN:
            return False

    async def close(self) -> None:
        await self.settlements.drain()
        try:
            await self.client.aclose()
        except FOREIGN:
            pass


@register
class RedisClusterStore(RedisStore):
    schemes: ClassVar[tuple[str, ...]] = ("redis+cluster",)
    sharded = True

    def _client(self, url: str) -> Any:
        return aioredis.RedisCluster.from_url("redis://" + url[len("redis+cluster://"):],
                                              **_OPTIONS)


@register
class RedisSentinelStore(RedisStore):
    """``redis+sentinel://[:password@]host:port[,host:port]/service``: the
    sentinels, and the name of the primary they watch (database 0: the
    policy refuses another, which the `limits` strategies would not follow)."""

    schemes: ClassVar[tuple[str, ...]] = ("redis+sentinel",)

    def _client(self, url: str) -> Any:
        parts = urlsplit(url)
        hosts = []
        for host in parts.netloc.rpartition("@")[2].split(","):
            name, _, port = host.rpartition(":")
            hosts.append((name.strip("[]") or "127.0.0.1", int(port or 26379)))
        service = parts.path.strip("/")
        sentinel = Sentinel(hosts, sentinel_kwargs=_OPTIONS, **_OPTIONS)
        return sentinel.master_for(service, password=parts.password)


__all__ = ["TIMEOUT", "RedisClusterStore", "RedisSentinelStore", "RedisStore"]
