"""Reserving a request's quotas at once (`Store.reserve`, one round trip on
Redis), on every backend: a released slot is free for the caller's next
request, a request refused by its own quota charges nothing others share,
and a failure in the round trip leaks none of the request's charges or
slots."""

from __future__ import annotations

import time

import pytest

from guardgate import load_policy
from guardgate.errors import RateLimited, StorageError
from guardgate.quota import Charge, Demand, Quotas, Subject
from guardgate.store import Store, open_store
from guardgate.store.risk import Clock, Observation


async def test_a_slot_released_is_free_for_the_callers_next_request(store: Store,
                                                                    unique: str) -> None:
    """One request at a time on a concurrency of one: each finds the last
    one's slot given back, though the release waits in the settlement batch."""
    key = "{guardgate/slots/" + unique + "}"
    taken = []
    for i in range(20):
        _, got = await store.reserve([], [(key, 1, f"h{i}")])
        taken += got
        await store.settlements.add([], [(key, f"h{i}")])
    assert taken == [True] * 20


def quotas_for(store: Store) -> Quotas:
    policy = load_policy({"upstream": "http://upstream.invalid", "quotas": [
        {"name": "own", "limit": "1000/minute", "cost": "total_tokens"},
        {"name": "everyone", "per": "global", "limit": "3000/minute", "cost": "total_tokens"},
        {"name": "inflight", "per": "global", "concurrency": 5},
    ]})
    return Quotas(policy, store)


async def test_a_request_refused_by_its_own_quota_charges_nothing_others_share(
        store: Store, unique: str, monkeypatch: pytest.MonkeyPatch) -> None:
    quotas = quotas_for(store)
    attacker = Subject(f"key:a-{unique}", "192.0.2.1", "192.0.2.0/24", None)
    first = await quotas.reserve(attacker, Demand(0, 900))
    charged: list[str] = []
    reserve = store.reserve

    async def recorded(hits: list[tuple[str, int, int]], slots: list[tuple[str, int, str]]
                       ) -> tuple[list[tuple[int, float]], list[bool]]:
        charged.extend(key for key, _, _ in hits)
        charged.extend(key for key, _, _ in slots)
        return await reserve(hits, slots)

    monkeypatch.setattr(store, "reserve", recorded)
    for _ in range(20):
        with pytest.raises(RateLimited) as refused:
            await quotas.reserve(attacker, Demand(0, 900))
        assert refused.value.quota == "own"
    assert charged and not [key for key in charged if "everyone" in key or "inflight" in key]
    # An admitted request takes the shared ones too.
    other = await quotas.reserve(Subject(f"key:b-{unique}", "198.51.100.1",
                                         "198.51.100.0/24", None), Demand(0, 900))
    assert [key for key in charged if "everyone" in key] and \
        [key for key in charged if "inflight" in key]
    await quotas.release(first, refund=True)
    await quotas.release(other, refund=True)


async def test_the_headers_follow_the_policys_order(store: Store, unique: str) -> None:
    policy = load_policy({"upstream": "http://upstream.invalid", "quotas": [
        {"name": "rpm", "limit": "60/minute", "strategy": "moving-window"},
        {"name": "rpd", "limit": "1000/day"},
    ]})
    held = await Quotas(policy, store).reserve(
        Subject(f"key:{unique}", "192.0.2.1", "192.0.2.0/24", None), Demand(0, 10))
    headers = dict(held.headers)
    assert headers[b"x-ratelimit-limit-requests"] == b"60"


async def test_a_failed_round_trip_leaks_neither_charges_nor_slots(
        backend_url: str, store: Store, unique: str) -> None:
    """The request's own counter is of the wrong type (a key something else
    wrote): its reservation fails as a StorageError, and the slot taken in the
    same round trip is given back."""
    if backend_url.startswith("memory"):
        pytest.skip("memory has no round trip to fail")
    windows = store.windows
    counter = f"{unique}/own"
    client = store.client  # type: ignore[attr-defined]
    await client.hset(windows.key(counter), "x", "1")  # not a counter
    slot = "{guardgate/slots/" + unique + "}"
    other = f"{unique}/fine"
    with pytest.raises(StorageError):
        await store.reserve([(other, 60, 5), (counter, 60, 5)], [(slot, 3, "h")])
    await store.settlements.drain()
    assert await client.zcard(slot) == 0
    assert (await windows.get(other))[0] == 0
    # A settlement of someone else's that fails does not fail this request.
    await store.settlements.add([(counter, time.time() + 30, 1, 60)], [])
    counted, taken = await store.reserve([(other, 60, 5)], [(slot, 3, "h2")])
    assert counted[0][0] == 5 and taken == [True]
    assert store.settlements.failures >= 1


async def test_a_script_error_in_an_assessment_is_a_storage_error(
        backend_url: str, store: Store, unique: str) -> None:
    """Not a TypeError out of the reply: the policy's on_storage_error applies."""
    if backend_url.startswith("memory"):
        pytest.skip("memory has no script to fail")
    principal = f"key:{unique}"
    client = store.client  # type: ignore[attr-defined]
    await client.set(f"guardgate/risk{{{principal}}}:p", "not a hash")
    state = store.risk_state(Clock(3600, 3600))
    with pytest.raises(StorageError):
        await state.observe(Observation(principal, 1e9, 0, 0, 1, "t", "p", ()))


def test_a_callers_own_quota_keys_share_its_risk_slot_and_shared_ones_spread() -> None:
    """On a Redis Cluster: one node for a caller's own state, shared quotas
    each on a slot of its own (not all on the node of one tag)."""
    from redis.crc import key_slot

    from guardgate.quota import _counter
    from guardgate.store.risk import caller_keys
    from guardgate.store.windows import RedisWindows

    policy = load_policy({"upstream": "http://upstream.invalid", "quotas": [
        {"name": "rpm", "limit": "60/minute"},
        {"name": "tpm", "limit": "6000/minute", "cost": "total_tokens"},
        {"name": "all-rpm", "per": "global", "limit": "600/minute"},
        {"name": "all-tpm", "per": "global", "limit": "60000/minute", "cost": "total_tokens"},
    ]})
    quotas = Quotas(policy, open_store("memory://"))
    caller = Subject("key:0123456789abcdef", "192.0.2.1", "192.0.2.0/24", None)
    risk = key_slot(f"{caller_keys(caller.principal)}:p".encode())
    slots = {}
    for quota in policy.quotas:
        limit = quotas.limit(quota, 0, 1.0)
        charge = Charge(quota, quota.windows[0], limit, caller.value(quota.per) or "", 1)
        slots[quota.name] = key_slot(RedisWindows.key(_counter(charge)).encode())
    assert slots["rpm"] == slots["tpm"] == risk
    assert slots["all-rpm"] != slots["all-tpm"]


def own_quota(store: Store) -> Quotas:
    policy = load_policy({"upstream": "http://upstream.invalid", "quotas": [
        {"name": "rpm", "limit": "10/minute"},
        {"name": "inflight", "concurrency": 3},
    ]})
    return Quotas(policy, store)


async def test_what_is_taken_before_the_tier_is_known_meets_the_tiers_limit(
        store: Store, unique: str) -> None:
    """`take_own` charges the counters a tier's factor does not change;
    `reserve` then holds them to the scaled limit: at factor 0.5, the sixth
    request of ten a minute is refused, and its charge and slot undone."""
    quotas = own_quota(store)
    caller = Subject(f"key:{unique}", "192.0.2.1", "192.0.2.0/24", None)
    held = []
    for _ in range(5):
        taken = await quotas.take_own(caller, Demand(0, 10))
        held.append(await quotas.reserve(caller, Demand(0, 10), 0.5, taken=taken))
        await quotas.release(held[-1], refund=False)
    assert [dict(h.headers)[b"x-ratelimit-remaining-requests"] for h in held] == \
        [b"4", b"3", b"2", b"1", b"0"]
    taken = await quotas.take_own(caller, Demand(0, 10))
    with pytest.raises(RateLimited) as refused:
        await quotas.reserve(caller, Demand(0, 10), 0.5, taken=taken)
    assert refused.value.quota == "rpm"
    await store.settlements.drain()
    # The refusal gave back the count and the slot: at factor 1 five remain.
    again = await quotas.reserve(caller, Demand(0, 10), 1.0)
    assert dict(again.headers)[b"x-ratelimit-remaining-requests"] == b"4"
    await quotas.release(again, refund=True)


async def test_what_is_taken_for_a_request_that_goes_no_further_is_given_back(
        store: Store, unique: str) -> None:
    """A request denied or challenged after its early take: released with a
    refund, it leaves the counter and its slots as they were."""
    quotas = own_quota(store)
    caller = Subject(f"key:{unique}", "192.0.2.1", "192.0.2.0/24", None)
    for _ in range(12):
        taken = await quotas.take_own(caller, Demand(0, 10))
        await quotas.release(taken, refund=True)
    await store.settlements.drain()
    held = await quotas.reserve(caller, Demand(0, 10))
    assert dict(held.headers)[b"x-ratelimit-remaining-requests"] == b"9"
    await quotas.release(held, refund=True)


async def test_full_own_slots_found_early_refuse_at_reserve(store: Store, unique: str) -> None:
    quotas = own_quota(store)
    caller = Subject(f"key:{unique}", "192.0.2.1", "192.0.2.0/24", None)
    open_ = [await quotas.reserve(caller, Demand(0, 10)) for _ in range(3)]
    taken = await quotas.take_own(caller, Demand(0, 10))
    assert [q.name for q in taken.full] == ["inflight"]
    with pytest.raises(RateLimited) as refused:
        await quotas.reserve(caller, Demand(0, 10), 1.0, taken=taken)
    assert refused.value.quota == "inflight"
    for held in open_:
        await quotas.release(held, refund=True)
