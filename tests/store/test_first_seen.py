"""First-seen times in memory: kept across policy reloads, for `TTL`, and
for at most `MEMORY_CAP` principals, the newest forgotten first."""

from __future__ import annotations

import pytest

from guardgate.store import FirstSeen, Store

T0 = 1_767_225_600.0


async def test_first_seen_times_outlive_a_policy_reload() -> None:
    store = Store("memory://")
    assert await FirstSeen(store).get("key:a", T0) == T0
    # A reload builds its admission again, with a FirstSeen of its own.
    assert await FirstSeen(store).get("key:a", T0 + 60) == T0
    assert await FirstSeen(Store("memory://")).get("key:a", T0 + 60) == T0 + 60


async def test_a_flood_of_new_principals_never_costs_an_established_one_its_age(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(FirstSeen, "MEMORY_CAP", 100)
    seen = FirstSeen(Store("memory://"))
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
    seen = FirstSeen(Store("memory://"))
    assert await seen.get("key:a", T0) == T0
    assert await seen.get("key:a", T0 + FirstSeen.TTL - 1) == T0
    assert await seen.get("key:a", T0 + FirstSeen.TTL + 1) == T0 + FirstSeen.TTL + 1
