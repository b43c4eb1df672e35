"""The storage interface the steps share, and its backends by URL scheme.

A `Store` is what the pipeline keeps between requests and between replicas:
quota counters (`windows` and the `limits` strategies of `limiter`),
concurrency `slots`, the `settlements` made after answers, challenge
`clearances`, runtime `overrides`, the `risk_state` of callers and clusters,
when principals were `first_seen`, the `caught_ledger` of campaigns'
fingerprints; `ready` says whether it answers. Every
backend raises `StorageError` for what its clients raise
(`guardgate.store.errors`).

Backends register the URL schemes they serve (`register`); `open_store`
opens the one a policy's ``storage`` names, as `limits` does with its
storage URLs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

from guardgate.store.clearances import Clearances
from guardgate.store.first_seen import FirstSeen
from guardgate.store.ledger import CaughtLedger
from guardgate.store.limiter import Limiter
from guardgate.store.overrides import RuntimeOverrides
from guardgate.store.risk import Clock, RiskStore
from guardgate.store.slots import Slots


class Store(ABC):
    """The state backend named by a policy's ``storage``."""

    schemes: ClassVar[tuple[str, ...]] = ()
    # Across a network: operations asked for together share a round trip.
    remote: ClassVar[bool] = False

    url: str
    windows: Any        # fixed-window counters: `MemoryWindows` or `RedisWindows`
    slots: Slots
    settlements: Any    # `MemorySettlements` or `Settlements`

    _limits: Any        # the `limits` storage the strategies meter against
    _limiters: dict[str, Limiter]

    def limiter(self, strategy: str) -> Limiter:
        """A `limits` strategy (``fixed-window``, ...) on this storage."""
        limiter = self._limiters.get(strategy)
        if limiter is None:
            limiter = self._limiters[strategy] = Limiter(strategy, self._limits)
        return limiter

    @abstractmethod
    async def reserve(self, hits: list[tuple[str, int, int]], slots: list[tuple[str, int, str]]
                      ) -> tuple[list[tuple[int, float]], list[bool]]:
        """Charge fixed-window counters and take in-flight slots at once (one
        round trip on Redis, what waits to be settled riding along): for each
        hit (counter, window seconds, amount) the count after it and when its
        window ends; for each slot (key, limit, holder) whether it was taken."""

    @abstractmethod
    def clearances(self) -> Clearances:
        """Challenge redemptions and clearance meters."""

    @abstractmethod
    def overrides(self) -> RuntimeOverrides:
        """Overrides set at runtime, one set for the store's life."""

    @abstractmethod
    def risk_state(self, clock: Clock) -> RiskStore:
        """Callers' and clusters' risk state, with one policy's time constants."""

    @abstractmethod
    def first_seen(self) -> FirstSeen:
        """When each principal was first seen, kept for the store's life."""

    @abstractmethod
    def caught_ledger(self) -> CaughtLedger:
        """The fingerprints of caught callers, kept for the store's life."""

    @abstractmethod
    async def ready(self) -> bool:
        """Whether the storage answers."""

    @abstractmethod
    async def close(self) -> None:
        """Send what waits to be settled, and let go of connections."""


BACKENDS: dict[str, Callable[[str], Store]] = {}


def register(cls: type[Store]) -> type[Store]:
    """Class decorator: ``cls`` serves the URL schemes in its ``schemes``."""
    for scheme in cls.schemes:
        BACKENDS[scheme] = cls
    return cls


def open_store(url: str) -> Store:
    """The backend for ``url`` (a policy's ``storage``), by its scheme."""
    scheme = url.partition("://")[0]
    try:
        backend = BACKENDS[scheme]
    except KeyError:
        raise ValueError(f"unsupported storage {scheme!r}: use one of "
                         f"{', '.join(s + '://' for s in sorted(BACKENDS))}") from None
    return backend(url)


__all__ = ["BACKENDS", "Store", "open_store", "register"]
