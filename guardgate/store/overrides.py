"""Overrides set at runtime through the operator API, shared by every
replica: in memory for one process, in one Redis hash for many.

Each replica reads them all at most once a second (not once a request), so
a change made through one replica applies on every other within a second.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import orjson

from guardgate.store.errors import guarded

KEY = "{guardgate/overrides}"
REFRESH_SECONDS = 1.0


class RuntimeOverrides(Protocol):
    async def all(self) -> dict[str, dict[str, Any]]:
        """Principal -> action ({"tier": name}, {"allow": true} or {"deny": true})."""

    async def set(self, principal: str, action: dict[str, Any]) -> None: ...

    async def remove(self, principal: str) -> bool: ...


class MemoryOverrides:
    def __init__(self) -> None:
        self._actions: dict[str, dict[str, Any]] = {}

    async def all(self) -> dict[str, dict[str, Any]]:
        return self._actions

    async def set(self, principal: str, action: dict[str, Any]) -> None:
        self._actions = {**self._actions, principal: action}

    async def remove(self, principal: str) -> bool:
        if principal not in self._actions:
            return False
        self._actions = {p: a for p, a in self._actions.items() if p != principal}
        return True


@guarded
class RedisOverrides:
    def __init__(self, client: Any) -> None:
        self._client = client
        self._cached: dict[str, dict[str, Any]] = {}
        self._read = -REFRESH_SECONDS

    async def all(self) -> dict[str, dict[str, Any]]:
        now = time.monotonic()
        if now - self._read >= REFRESH_SECONDS:
            raw = await self._client.hgetall(KEY)
            self._cached = {k.decode(): orjson.loads(v) for k, v in raw.items()}
            self._read = now
        return self._cached

    async def set(self, principal: str, action: dict[str, Any]) -> None:
        await self._client.hset(KEY, principal, orjson.dumps(action))
        self._read = -REFRESH_SECONDS

    async def remove(self, principal: str) -> bool:
        removed = bool(await self._client.hdel(KEY, principal))
        self._read = -REFRESH_SECONDS
        return removed
