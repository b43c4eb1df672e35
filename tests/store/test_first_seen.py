"""First-seen times in memory: kept across policy reloads, for `TTL`, and
for at most `MEMORY_CAP` principals, the newest forgotten first."""

from __future__ import annotations

import pytest

from guardgate.store import open_store
from guardgate.store.first_seen import TTL, MemoryFirstSeen

T0 = 1_767_225_600.0


async def test_first_seen_times_outlive_a_policy_reload() -> None:
    store = open_store("memory://")
    assert await store.first_seen().get("key:a", T0) == T0
    # A reload builds its admission again, asking the same store.
    assert await store.first_seen().get("key:a", T0 + 60) == T0
    assert await open_store("memory://").first_seen().get("key:a", T0 + 60) == T0 + 60


async def test_a_flood_of_new_principals_never_costs_an_established_one_its_age(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(MemoryFirstSeen, "MEMORY_CAP", 100)
    seen = open_store("memory://").first_seen()
    for i in range(50):
        await seen.get(f"key:old-{i}", T0 + i)
    for i in range(10_000):
        await seen.get(f"key:new-{i}", T0 + 3600 + i)
    assert len(seen._memory) == 100
    assert [await seen.get(f"key:old-{i}", T0 + 86400) for i in range(50)] == [
        T0 + i for i in range(50)]
    # The flood's own keys are the ones forgotten: one that comes back is new again.
    assert await seen.get("key:new-9998", T0 + 86400) == T0 + 86400


async def test_a_first_seen_time_lasts_as_long_as_its_redis_key() -> None:
    seen = open_store("memory://").first_seen()
    assert await seen.get("key:a", T0) == T0
    assert await seen.get("key:a", T0 + TTL - 1) == T0
    assert await seen.get("key:a", T0 + TTL + 1) == T0 + TTL + 1
