"""The shared_intel signal: what a match adds, how it is explained, what
an established caller gets from it, how indicators fade; and the caught
ledger, alike on memory and on Redis."""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import orjson
import pytest
import redis

from guardgate.intel.export import build
from guardgate.intel.feeds import IntelFeeds
from guardgate.intel.fingerprints import network_of
from guardgate.intel.index import Indicator, IntelIndex
from guardgate.policy import load_policy
from guardgate.policy.intel_config import IntelConfig
from guardgate.replay import Replay
from guardgate.store import open_store
from guardgate.store.ledger import Caught, MemoryLedger
from tests.intel.traffic import policy

T0 = 1_767_225_600.0
DAY = 86400.0
SYSTEM = "You are a meticulous expert tutor."
DIGEST = f"{zlib.crc32(SYSTEM.encode()):08x}"


def record(account: str, ip: str, created: float, ts: float = T0) -> dict[str, Any]:
    return {"ts": ts, "path": "/v1/chat/completions", "client_ip": ip,
            "headers": {"x-account-id": account, "x-account-created": str(int(created))},
            "body": {"model": "m", "messages": [{"role": "system", "content": SYSTEM},
                                                {"role": "user", "content": "Hello there"}]}}


def feed(*indicators: tuple[str, str, int]) -> bytes:
    """A bundle of guardgate indicators (kind, value, confidence), last seen
    a few seconds before `T0`: too recent to have faded."""
    ledger = MemoryLedger()
    for n in range(10):
        clusters = tuple((kind, value, 10, 10) for kind, value, _ in indicators)
        asyncio.run(ledger.note(Caught(f"acct:c{n}", T0 - 20 + n, "suspicious", clusters)))
    exported = build(asyncio.run(ledger.entries(0, T0)), IntelConfig(min_tier="suspicious"),
                     ["watch", "suspicious", "high", "blocked"], "suspicious", 0).bundle
    wanted = {value: confidence for _, value, confidence in indicators}
    for obj in exported["objects"]:
        if obj["type"] == "indicator":
            value = next(iter(obj["extensions"].values()))["value"]
            obj["confidence"] = wanted[value]
    return orjson.dumps(exported)


def decide(bundle: bytes, *records: dict[str, Any], **intel: Any) -> list[dict[str, Any]]:
    replay = Replay(load_policy(policy(**intel)), intel=[("peer", bundle)])

    async def run() -> list[dict[str, Any]]:
        lines = []
        for item in records:
            line = await replay.decide(item)
            assert line is not None
            assert replay.engine is not None
            state = await replay.engine.state.peek(line["principal"])
            assert state is not None
            lines.append({**line, "explained": orjson.loads(state["last"])})
        return lines

    return asyncio.run(run())


def shared(line: dict[str, Any]) -> float:
    return next((part for name, _, part in line["explained"][4] if name == "shared_intel"), 0.0)


def test_a_match_adds_weight_times_confidence_and_is_explained() -> None:
    bundle = feed(("system", DIGEST, 80), ("prefix", "203.0.113.0/24", 50))
    fresh, elsewhere = decide(bundle, record("new", "203.0.113.9", T0 - 60),
                              record("other", "192.0.2.9", T0 - 60))
    # Two kinds matched: 1 - (1 - 0.8)(1 - 0.5) = 0.9, times the weight 0.4.
    assert shared(fresh) == pytest.approx(0.36, rel=1e-3)
    assert "shared_intel" in fresh["reasons"]
    matched = fresh["explained"][6]
    assert {(kind, value) for _, kind, value, *_ in matched} == {
        ("system", DIGEST), ("prefix", "203.0.113.0/24")}
    assert shared(elsewhere) == pytest.approx(0.32, rel=1e-3)  # the system prompt alone
    assert fresh["score"] - elsewhere["score"] == pytest.approx(0.04, abs=1e-3)


def test_an_established_caller_gets_nothing_but_from_a_setup() -> None:
    plain = feed(("system", DIGEST, 90), ("prefix", "203.0.113.0/24", 90))
    setup = feed(("setup", f"{DIGEST}@203.0.113.0/24", 90))
    old = T0 - 90 * DAY
    [settled] = decide(plain, record("old", "203.0.113.9", old))
    [coordinated] = decide(setup, record("old", "203.0.113.9", old))
    assert shared(settled) == 0.0 and settled["explained"][6]  # matched, shown, worth nothing
    assert shared(coordinated) == pytest.approx(0.36, rel=1e-3)


def test_weight_confidence_and_kinds_are_the_policys() -> None:
    bundle = feed(("system", DIGEST, 30))
    new = record("new", "198.51.100.9", T0 - 60)
    assert shared(decide(bundle, new)[0]) == pytest.approx(0.12, rel=1e-3)
    assert shared(decide(bundle, new, signal={"weight": 0.2})[0]) == pytest.approx(0.06, rel=1e-3)
    assert shared(decide(bundle, new, signal={"min_confidence": 31})[0]) == 0.0
    assert shared(decide(bundle, new, match=["template", "prefix"])[0]) == 0.0
    assert shared(decide(bundle, new, signal={"weight": 0})[0]) == 0.0


def test_indicators_fade_with_the_half_life_and_networks_match_by_containment() -> None:
    net = network_of("203.0.113.0/24")
    indicator = Indicator("indicator--1", "peer", "prefix", "203.0.113.0/24", 0.8, T0,
                          T0 + 30 * DAY, net)
    index = IntelIndex([indicator], half_life=DAY)
    [(_, now)] = index.match((), None, "", "203.0.113.200", T0)
    [(_, later)] = index.match((), None, "", "203.0.113.200", T0 + 2 * DAY)
    assert (now, later) == (pytest.approx(0.8, rel=1e-3), pytest.approx(0.2, rel=1e-3))
    assert not index.match((), None, "", "203.0.114.1", T0)
    assert not index.match((), None, "", "203.0.113.1", T0 + 30 * DAY)
    wide = IntelIndex([Indicator("indicator--2", "peer", "prefix", "203.0.0.0/16", 0.8, T0,
                                 None, network_of("203.0.0.0/16"))])
    assert wide.match((), None, "", "203.0.77.5", T0)


def test_nothing_in_force_costs_nothing() -> None:
    feeds = IntelFeeds()
    feeds.configure(load_policy(policy()).intel)
    assert feeds.index.size == 0
    replay = Replay(load_policy(policy()))
    assert replay.engine is not None and replay.engine.intel is not None
    assert replay.engine.intel.index.size == 0

    def never(*_: Any) -> None:
        raise AssertionError("looked up with nothing in force")

    replay.engine.intel.index.match = never  # type: ignore[method-assign]
    line = asyncio.run(replay.decide(record("new", "203.0.113.9", T0 - 60)))
    assert line is not None and "shared_intel" not in line["reasons"]


@pytest.mark.asyncio
@pytest.mark.parametrize("backend", ["redis", "cluster"])
async def test_the_ledger_is_alike_on_memory_and_on_redis(
        backend: str, request: pytest.FixtureRequest) -> None:
    if backend == "redis":
        url: str = request.getfixturevalue("redis_url")
        redis.Redis.from_url(url).flushdb()
    else:
        url = request.getfixturevalue("redis_cluster").url
    store = open_store(url)
    memory, shared_ledger = MemoryLedger(), store.caught_ledger()
    try:
        for n in range(40):
            caught = Caught(f"acct:h{n % 25}", T0 + n, "high" if n % 3 else "suspicious",
                            (("template", "0.5c1d9e2a", 20 + n % 5, 15),
                             ("prefix", "203.0.113.0/24", 10, 9)),
                            ("template_cluster", "account_youth"),
                            (("reasoning_elicitation", 0.5), ("output_ratio", 20.0)))
            await memory.note(caught)
            await shared_ledger.note(caught)
        await store.settlements.drain()
        alike = sorted(await memory.entries(0, T0 + 60), key=lambda e: e.kind)
        there = sorted(await shared_ledger.entries(0, T0 + 60), key=lambda e: e.kind)
    finally:
        await store.close()
    assert there == alike
    template = alike[1]
    assert (template.accounts, template.risky, template.requests) == (24, 15, 40)
    assert 20 <= template.caught <= 30  # 25 accounts: estimated from the sketch's 16 hashes
    assert template.tiers == {"high": T0 + 38, "suspicious": T0 + 39}
    assert template.signals == {"template_cluster": 40, "account_youth": 40}


def test_a_peers_indicator_for_this_deployments_everyday_fingerprint_counts_for_nobody() -> None:
    """A campaign caught at a peer while carrying the system prompt that
    many of this deployment's own, ordinary callers send: the peer's
    indicator moves none of them, nor the next one to arrive."""
    bundle = feed(("system", DIGEST, 90))
    ordinary = [record(f"user{n}", f"198.51.{n // 200}.{n % 200 + 1}", T0 - 60, T0 + n)
                for n in range(60)]
    lines = decide(bundle, *ordinary, record("newcomer", "192.0.2.77", T0 - 60, T0 + 100))
    assert shared(lines[0]) > 0  # the first few: not yet everyday here
    assert shared(lines[-1]) == 0.0 and lines[-1]["explained"][6]  # matched, shown, worth nothing
    assert "shared_intel" not in lines[-1]["reasons"]
