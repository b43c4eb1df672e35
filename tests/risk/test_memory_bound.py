"""The memory risk state stays bounded: at most ``risk.max_callers``
callers, the least risky forgotten first and never a caller in a tier while
a lower one can go, window budgets per caller slot, and at most
`CALLER_BYTES` a caller slot whatever the traffic."""

from __future__ import annotations

import gc
import sys
import types
from collections.abc import Callable

import orjson
import pytest

from guardgate import load_policy
from guardgate.risk.engine import RiskEngine
from guardgate.store import open_store
from guardgate.store.risk import (
    CALLER_BYTES,
    CLUSTERED_PER_CALLER,
    HELD_PER_CALLER,
    Clock,
    MemoryRisk,
    Observation,
    Record,
)

T0 = 1_767_225_600.0
CLOCK = Clock(6 * 3600.0, 6 * 3600.0)
EXPLANATION = orjson.dumps((0.1, 0.1, "normal", T0, [["volume", 1.0, 0.0]] * 13,
                            [["template", "0.1a2b3c4d", 3, 0, 0.0]] * 5))
Clusters = tuple[tuple[str, str], ...]


def request(state: MemoryRisk, principal: str, at: float, *, rank: int = 0,
            score: float = 0.1, answered: bool = True, template: str = "t",
            prompt: str = "p", clusters: Clusters = ()) -> None:
    """One request of ``principal``: assessed, then recorded as the gateway
    does once it is answered (or refused: ``answered=False``)."""
    state.observe_now(Observation(principal, at, 0.0, 0.0, 1.0, template, prompt, clusters))
    state.record_now(Record(principal, at, "tier" if rank else "normal", rank > 0,
                            EXPLANATION, (10, 20) if answered else None, clusters, score, rank))


async def tracked(state: MemoryRisk, principals: list[str]) -> list[str]:
    return [p for p in principals if await state.peek(p) is not None]


async def test_new_keys_never_answered_push_out_only_each_other() -> None:
    state = MemoryRisk(CLOCK, 100)
    known = [f"acct:known-{i}" for i in range(60)]
    for i, principal in enumerate(known):
        request(state, principal, T0 + i)
    # 5,000 new keys, each refused (or throttled, or never answered).
    for i in range(5_000):
        request(state, f"key:{i:016x}", T0 + 100 + i, answered=False)
    assert len(state) == 100
    assert await tracked(state, known) == known


async def test_the_least_risky_go_first_and_tiers_last() -> None:
    state = MemoryRisk(CLOCK, 100)
    blocked = [f"acct:blocked-{i}" for i in range(15)]
    watched = [f"acct:watched-{i}" for i in range(15)]
    sticky = [f"acct:sticky-{i}" for i in range(10)]  # in a tier, its score fell below
    edgy = [f"acct:edgy-{i}" for i in range(20)]      # normal, score 0.28
    quiet = [f"acct:quiet-{i}" for i in range(40)]    # normal, score 0.02
    at = T0
    for group, rank, score in ((blocked, 2, 0.95), (watched, 1, 0.35), (sticky, 1, 0.26),
                               (edgy, 0, 0.28), (quiet, 0, 0.02)):
        for principal in group:
            at += 1
            # A blocked caller's requests are refused: it is kept for its tier.
            request(state, principal, at, rank=rank, score=score, answered=rank < 2)
    # A flood of new keys, every request answered, each key at 0.1.
    for i in range(45):
        at += 1
        request(state, f"key:{i:016x}", at)
    assert len(state) == 100
    assert len(await tracked(state, quiet)) == 0  # the 40 quietest went first
    assert await tracked(state, edgy) == edgy
    # A flood of keys scoring 0.29, all normal: the edgy go (the stalest of
    # their tenth), and the flood's own stalest, but not the sticky callers,
    # lower as their scores are: they are in a tier.
    for i in range(45, 2_000):
        at += 1
        request(state, f"key:{i:016x}", at, score=0.29)
    assert len(state) == 100
    assert len(await tracked(state, edgy)) == 0
    for group in (blocked, watched, sticky):
        assert await tracked(state, group) == group


async def test_when_every_caller_kept_is_in_a_tier_a_new_one_stays_only_if_riskier() -> None:
    state = MemoryRisk(CLOCK, 100)
    watched = [f"acct:w-{i}" for i in range(100)]
    for i, principal in enumerate(watched):
        request(state, principal, T0 + i, rank=1, score=0.35)
    # A new caller waits for its verdict beyond the cap: in no tier, it goes.
    request(state, "key:plain", T0 + 200)
    assert await state.peek("key:plain") is None
    assert await tracked(state, watched) == watched
    # One in a higher tier takes the place of the stalest caller in the lowest.
    request(state, "key:blocked", T0 + 201, rank=2, score=0.95, answered=False)
    assert await state.peek("key:blocked") is not None
    assert await tracked(state, watched) == watched[1:]
    assert len(state) == 100
    # New callers in flight wait beyond the cap one at a time: each takes
    # the place of the one before, never of a caller in a tier.
    for i in range(30):
        state.observe_now(Observation(f"key:rush-{i}", T0 + 300, 0.0, 0.0, 1.0, "t", "p", ()))
    assert len(state) == 101
    assert await tracked(state, watched) == watched[1:]


async def test_heavy_callers_share_a_budget_of_window_members() -> None:
    state = MemoryRisk(CLOCK, 100)
    heavy = [f"acct:heavy-{i}" for i in range(10)]
    for n in range(1_000):
        for principal in heavy:
            request(state, principal, T0 + n, template=f"{principal}-{n}", prompt=f"{n}")
    # 10 callers x (1,000 skeletons + 1,000 prompts) is 20,000 members: past
    # the 3,200 of 100 caller slots, the stalest callers went (and came back
    # new), so what is held stays within the budget.
    assert state._held <= 100 * HELD_PER_CALLER
    held = [state.observe_now(Observation(p, T0 + 1_000, 0.0, 0.0, 1.0, "t", "p", ()))
            for p in heavy]
    assert sum(s.templates + s.prompts for s in held) <= 100 * HELD_PER_CALLER


async def test_a_campaigns_cluster_outlives_a_flood_of_one_off_prompts() -> None:
    state = MemoryRisk(CLOCK, 100)
    campaign = (("template", "0.campaign"),)
    at = T0
    for member in range(40):
        at += 1
        request(state, f"acct:bot-{member}", at, clusters=campaign)
    # 20,000 one-off prompts, each its own three bands: far past the cluster
    # budget of 100 caller slots.
    for i in range(20_000):
        at += 1
        bands = tuple(("template", f"{b}.{i:08x}") for b in range(3))
        request(state, f"key:{i % 500:016x}", at, prompt=f"{i}", clusters=bands)
    assert state._clustered <= 100 * CLUSTERED_PER_CALLER
    snapshot = state.observe_now(
        Observation("acct:bot-new", at + 1, 0.0, 0.0, 1.0, "t", "p", campaign))
    assert snapshot.clusters == [("template", "0.campaign", 41, 0)]


async def test_a_forgotten_callers_rank_goes_with_it() -> None:
    state = MemoryRisk(CLOCK, 100)
    for i in range(300):
        request(state, f"key:{i:016x}", T0 + i)
    ranked = await state.top(1_000)
    assert len(ranked) == 100
    assert None not in [await state.peek(principal) for principal, _ in ranked]


async def test_a_caller_unseen_for_its_state_ttl_is_new_again() -> None:
    state = MemoryRisk(CLOCK, 100)
    request(state, "acct:a", T0)
    request(state, "acct:a", T0 + 60)
    back = T0 + 60 + CLOCK.state_ttl + 1
    snapshot = state.observe_now(Observation("acct:a", back, 0.0, 0.0, 1.0, "t", "p", ()))
    assert (snapshot.n, snapshot.first) == (1.0, back)  # as its Redis keys expired


def test_the_policys_cap_applies_to_the_state_kept_across_reloads() -> None:
    store = open_store("memory://")
    tiers = {"watch": {"score": 0.3}}
    first = load_policy({"upstream": "http://127.0.0.1:9", "tiers": tiers})
    engine = RiskEngine(first, store.risk_state(RiskEngine.clock_of(first)))
    state = engine.state
    assert isinstance(state, MemoryRisk) and state.max_callers == 20_000
    lower = load_policy({"upstream": "http://127.0.0.1:9", "tiers": tiers,
                         "risk": {"max_callers": 500}})
    reloaded = RiskEngine(lower, store.risk_state(RiskEngine.clock_of(lower)))
    assert reloaded.state is state and state.max_callers == 500


def _deep_size(root: object) -> int:
    """Bytes of ``root`` and of everything it holds (its classes aside)."""
    seen: set[int] = set()
    stack = [root]
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type | types.ModuleType | types.FunctionType):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
        if isinstance(obj, dict):
            stack.extend(obj)  # a dict of str keys does not report them as referents
    return total


def _bands(i: int) -> Clusters:
    return tuple(("template", f"{b}.{i:08x}") for b in range(3))


PATTERNS: dict[str, Callable[[int], tuple[str, str, str, Clusters, int]]] = {
    # One request from each of many new keys.
    "new keys": lambda i: (f"key:{i:016x}", "t", f"{i:08x}",
                           (("template", "0.same"), ("prefix", "127.0.0.0/24")), 0),
    # Few keys, every prompt new: the callers' own windows grow.
    "distinct prompts": lambda i: (f"key:{i % 300:016x}", f"{i:08x}", f"{i * 7:08x}",
                                   (("prefix", "127.0.0.0/24"),), 0),
    # Every request new clusters of every kind, callers in every tier.
    "everything new": lambda i: (
        f"key:{i % 300:016x}", f"{i:08x}", f"{i * 7:08x}",
        (*_bands(i), ("prefix", f"10.{i % 256}.{i // 256 % 256}.0/24"),
         ("agent", f"{i % 977:08x}"), ("system", f"{i % 13:08x}"), ("org", f"org-{i}")),
        i % 3),
    # Big clusters (HyperLogLog windows), callers in every tier.
    "big clusters": lambda i: (
        f"key:{i:016x}", f"{i % 40:08x}", f"{i:08x}",
        (*_bands(i % 40), ("prefix", f"10.{i % 4}.0.0/24"), ("agent", f"{i % 3:08x}")),
        i % 3),
}


@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_caller_slot_costs_at_most_caller_bytes(pattern: str) -> None:
    cap = 300
    state = MemoryRisk(CLOCK, cap)
    make = PATTERNS[pattern]
    for i in range(15_000):
        principal, template, prompt, clusters, rank = make(i)
        # Twelve seconds apart: the traffic spans two days, every hour of them.
        request(state, principal, T0 + 12 * i, rank=rank, score=0.1 + 0.3 * rank,
                template=template, prompt=prompt, clusters=clusters)
    assert len(state) <= cap
    assert _deep_size(state) <= cap * CALLER_BYTES
