"""`limits` rate-limiting strategies over a store's `limits` storage, with
its failures raised as `StorageError`."""

from __future__ import annotations

from typing import Any

from limits.aio.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)
from limits.util import WindowStats

from guardgate.store.errors import guarded

STRATEGIES: dict[str, type[RateLimiter]] = {
    "fixed-window": FixedWindowRateLimiter,
    "moving-window": MovingWindowRateLimiter,
    "sliding-window-counter": SlidingWindowCounterRateLimiter,
}


@guarded
class Limiter:
    """One `limits` strategy (``fixed-window``, ``moving-window``,
    ``sliding-window-counter``) on a `limits` storage."""

    def __init__(self, strategy: str, storage: Any) -> None:
        self._strategy = STRATEGIES[strategy](storage)

    async def hit(self, item: Any, *identifiers: str, cost: int = 1) -> bool:
        hit: bool = await self._strategy.hit(item, *identifiers, cost=cost)
        return hit

    async def get_window_stats(self, item: Any, *identifiers: str) -> WindowStats:
        return await self._strategy.get_window_stats(item, *identifiers)


__all__ = ["STRATEGIES", "Limiter"]
