"""The memory backend (``memory://``): state in this process, for one replica.

What a policy reload must not lose (clearances, overrides, risk state,
first-seen times, the caught ledger) lives as long as the store, across reloads.
"""

from __future__ import annotations

from typing import ClassVar

from limits.aio.storage import MemoryStorage

from guardgate.store.base import Store, register
from guardgate.store.clearances import MemoryClearances
from guardgate.store.first_seen import MemoryFirstSeen
from guardgate.store.ledger import MemoryLedger
from guardgate.store.overrides import MemoryOverrides
from guardgate.store.risk import Clock, MemoryRisk
from guardgate.store.settle import MemorySettlements
from guardgate.store.slots import MemorySlots
from guardgate.store.windows import MemoryWindows


@register
class MemoryStore(Store):
    schemes: ClassVar[tuple[str, ...]] = ("memory",)

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._limits = MemoryStorage()
        self.windows = MemoryWindows()
        self.slots = MemorySlots()
        self.settlements = MemorySettlements(self.windows, self.slots)
        self._limiters = {}
        self._clearances = MemoryClearances()
        self._overrides = MemoryOverrides()
        self._risk_states: dict[Clock, MemoryRisk] = {}
        self._first_seen = MemoryFirstSeen()
        self._ledger = MemoryLedger()

    async def reserve(self, hits: list[tuple[str, int, int]], slots: list[tuple[str, int, str]]
                      ) -> tuple[list[tuple[int, float]], list[bool]]:
        counted = [await self.windows.hit(key, seconds, amount) for key, seconds, amount in hits]
        taken = [await self.slots.acquire(key, limit, holder) for key, limit, holder in slots]
        return counted, taken

    def clearances(self) -> MemoryClearances:
        return self._clearances

    def overrides(self) -> MemoryOverrides:
        return self._overrides

    def risk_state(self, clock: Clock) -> MemoryRisk:
        """One per set of time constants, kept across policy reloads."""
        state = self._risk_states.get(clock)
        if state is None:
            state = self._risk_states[clock] = MemoryRisk(clock)
        return state

    def first_seen(self) -> MemoryFirstSeen:
        return self._first_seen

    def caught_ledger(self) -> MemoryLedger:
        return self._ledger

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        pass


__all__ = ["MemoryStore"]
