"""One suite, every backend (memory, Redis, Redis Cluster: `conftest.py`):
what the steps rely on the store for behaves the same on each, and replayed
traffic gets the same decisions on each."""

from __future__ import annotations

import random
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
import redis.sentinel
from limits import parse

from guardgate import load_policy
from guardgate.policy.fields import STORAGE_SCHEMES
from guardgate.replay import Replay
from guardgate.risk.engine import RiskEngine
from guardgate.store import BACKENDS, Store
from guardgate.store.risk import Clock, Observation, Record

T0 = 1_767_225_600.0
ROOT = Path(__file__).resolve().parents[2]


def test_every_scheme_a_policy_accepts_has_a_backend() -> None:
    assert set(BACKENDS) == set(STORAGE_SCHEMES)


async def test_ready(store: Store) -> None:
    assert await store.ready() is True


async def test_fixed_windows_name_their_window_and_settle_in_it(store: Store,
                                                                unique: str) -> None:
    key = f"{unique}/rpm"
    first, ends = await store.windows.hit(key, 60, 3)
    count, same = await store.windows.hit(key, 60, 2)
    assert (first, count) == (3, 5) and same == ends and ends > time.time()
    assert await store.windows.get(key) == (5, ends)
    await store.windows.settle(key, ends, -4, 60)
    assert (await store.windows.get(key))[0] == 1
    # A refund for a window that is not this one is dropped; a charge owed
    # to it goes to the window open now.
    await store.windows.settle(key, ends - 60, -1, 60)
    await store.windows.settle(key, ends - 60, 2, 60)
    assert (await store.windows.get(key))[0] == 3
    assert await store.windows.get(f"{unique}/never") == (0, None)


async def test_settlements_land_once_drained(store: Store, unique: str) -> None:
    key = f"{unique}/tpm"
    _, ends = await store.windows.hit(key, 60, 100)
    await store.settlements.add([(key, ends, -60, 60)], [])
    await store.settlements.drain()
    assert (await store.windows.get(key))[0] == 40


@pytest.mark.parametrize("strategy", ["fixed-window", "moving-window", "sliding-window-counter"])
async def test_rate_strategies_refuse_past_their_limit(store: Store, unique: str,
                                                       strategy: str) -> None:
    limiter = store.limiter(strategy)
    item = parse("3/minute")
    allowed = [await limiter.hit(item, unique, "q") for _ in range(5)]
    assert allowed == [True, True, True, False, False]
    stats = await limiter.get_window_stats(item, unique, "q")
    assert stats.remaining == 0


async def test_slots_hold_up_to_their_limit(store: Store, unique: str) -> None:
    key = "{guardgate/slots/" + unique + "}"
    taken = [await store.slots.acquire(key, 2, f"h{i}") for i in range(3)]
    assert taken == [True, True, False]
    await store.slots.release(key, "h0")
    assert await store.slots.acquire(key, 2, "h3") is True


async def test_clearances_redeem_once_spend_their_budget_and_revoke(store: Store,
                                                                   unique: str) -> None:
    clearances = store.clearances()
    who = f"key:{unique}"
    assert await clearances.redeem(who, "c1", 60) == 0
    assert await clearances.redeem(who, "c1", 60) is None
    spent = [await clearances.spend(who, "k1", 0, 3, 1000, 60, reserve=100, opening=i == 0)
             for i in range(4)]
    assert spent == ["ok", "ok", "ok", "spent"]
    assert await clearances.spend(who, "k-unopened", 0, 3, 1000, 60) == "spent"
    # Tokens: 300 reserved; charging 700 more leaves the budget spent.
    assert await clearances.spend(who, "k2", 0, 10, 1000, 60, reserve=300,
                                  opening=True) == "ok"
    await clearances.charge(who, "k2", 700)
    await store.settlements.drain()
    assert await clearances.spend(who, "k2", 0, 10, 1000, 60) == "spent"
    assert await clearances.revoke(who) == 1
    assert await clearances.epoch(who) == 1
    assert await clearances.spend(who, "k1", 0, 3, 1000, 60) == "revoked"


async def test_runtime_overrides_set_list_and_remove(store: Store, unique: str) -> None:
    overrides = store.overrides()
    who = f"key:{unique}"
    await overrides.set(who, {"deny": True})
    assert (await overrides.all())[who] == {"deny": True}
    assert await overrides.remove(who) is True
    assert who not in await overrides.all()
    assert await overrides.remove(who) is False


async def test_first_seen_is_the_first_time(store: Store, unique: str) -> None:
    seen = store.first_seen()
    assert await seen.get(f"key:{unique}", T0) == T0
    assert await seen.get(f"key:{unique}", T0 + 50) == T0


async def test_risk_state_counts_callers_clusters_and_risky_members(store: Store,
                                                                    unique: str) -> None:
    state = store.risk_state(Clock(3600, 3600, 86400))
    cluster = (("prefix", f"{unique}/24"),)

    def seen(who: str, now: float) -> Observation:
        return Observation(who, now, 1.0, 0.0, 1.0, "skeleton", f"prompt {now}", cluster)

    a, b = f"key:a-{unique}", f"key:b-{unique}"
    one = await state.observe(seen(a, T0))
    assert (one.n, one.reasoning, one.requests, one.templates, one.prompts) == (1, 1, 1, 1, 1)
    assert one.clusters == [("prefix", f"{unique}/24", 1, 0)]
    await state.record(Record(a, T0, "watch", True, b'[0.6, 0.6, "watch", 0, [], []]',
                              (10, 500), cluster, 0.6, 1))
    await store.settlements.drain()
    two = await state.observe(seen(b, T0 + 10))
    assert two.clusters == [("prefix", f"{unique}/24", 2, 1)]
    again = await state.observe(seen(a, T0 + 20))
    assert again.n == pytest.approx(1 + 2 ** (-20 / 3600))
    assert (again.input_tokens, again.output_tokens, again.tier) == pytest.approx(
        (10 * 2 ** (-20 / 3600), 500 * 2 ** (-20 / 3600), "watch"))
    peeked = await state.peek(a)
    assert peeked is not None and peeked["tier"] == "watch"
    assert (a, 0.6) in await state.top(10_000)
    await state.forget(a)
    assert await state.peek(a) is None


async def test_replayed_traffic_gets_the_same_decisions_on_every_backend(
        store: Store, unique: str, backend_url: str) -> None:
    """A simulated day's first hours through the example risk policy: the
    decision of every request is the one memory gives."""
    from bench.simulate import traffic

    records, _ = traffic(3, 0.02)
    records = [r for r in records if r["ts"] < records[0]["ts"] + 4 * 3600]
    for record in records:  # principals of this test's own
        record["headers"] = {**record["headers"],
                             "x-account-id": f"{unique}-{record['headers'].get('x-account-id')}"}
    policy = load_policy(ROOT / "examples" / "policies" / "risk.yaml")

    async def decisions(replay: Replay, settle: Store | None) -> list[tuple[str, str]]:
        made = []
        for record in records:
            line = await replay.decide(record)
            if settle is not None:
                await settle.settlements.drain()  # each record before the next request
            if line is not None:
                made.append((line["principal"], line["tier"]))
        return made

    # Cluster counts span principals: they start from nothing, as memory's do. The
    # servers are the tests' own (or GUARDGATE_TEST_REDIS, whose database tests empty).
    if not backend_url.startswith("memory"):
        for url in _nodes(backend_url):
            redis.Redis.from_url(url).flushdb()
    expected = await decisions(Replay(policy), None)
    state = store.risk_state(RiskEngine.clock_of(policy))
    got = await decisions(Replay(policy, state), store)
    assert len(got) > 300
    assert {tier for _, tier in expected} - {"normal"}, "the traffic reaches no tier"
    assert got == expected, random.sample(
        [(g, e) for g, e in zip(got, expected, strict=True) if g != e], 1)


def _nodes(url: str) -> list[str]:
    """The URLs of a Redis, of the primary a Sentinel watches, or of every
    primary of a Redis Cluster."""
    if url.startswith("redis+sentinel://"):
        parts = urlsplit(url)
        sentinel = redis.sentinel.Sentinel([(parts.hostname, parts.port)])
        host, port = sentinel.discover_master(parts.path.strip("/"))
        return [f"redis://{host}:{port}"]
    if not url.startswith("redis+cluster://"):
        return [url]
    plain = "redis://" + url[len("redis+cluster://"):]
    cluster = redis.RedisCluster.from_url(plain)
    try:
        return [f"redis://{node.host}:{node.port}" for node in cluster.get_primaries()]
    finally:
        cluster.close()
