"""The risk engine: scores, tiers with hysteresis, decay, clusters, and the
same decisions on memory and on Redis."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from guardgate import load_policy
from guardgate.apis.openai import parse_chat
from guardgate.identity import Identity
from guardgate.policy.model import Policy
from guardgate.replay import Replay
from guardgate.risk.engine import Assessment, RiskEngine
from guardgate.store import open_store
from guardgate.store.risk import MemoryRisk

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.simulate import traffic

T0 = 1_767_225_600.0
HOUR = 3600.0
TIERS = {
    "watch": {"score": 0.3},
    "suspicious": {"score": 0.5},
    "high": {"score": 0.7},
    "blocked": {"score": 0.9, "deny": True},
}


def policy(**risk: Any) -> Policy:
    return load_policy({"upstream": "http://127.0.0.1:9", "tiers": TIERS, "risk": risk})


def engine(p: Policy | None = None) -> RiskEngine:
    p = p or policy()
    return RiskEngine(p, MemoryRisk(RiskEngine.clock_of(p)))


def who(name: str, prefix: str = "198.51.100", agent: str = "test-agent",
        created: float | None = None) -> Identity:
    ip = f"{prefix}.{sum(map(ord, name)) % 250 + 1}"
    return Identity(f"acct:{name}", ip, f"{prefix}.0/24", agent, False, created=created)


def chat(text: str, **params: Any) -> Any:
    body = {"model": "m", "messages": [{"role": "user", "content": text}], **params}
    return parse_chat(orjson.dumps(body))


def _word(i: int) -> str:
    """An uncommon word (a slot filler), different for every ``i``."""
    letters = "bcdfgklmnprstvz"
    out = ""
    for _ in range(3):
        i, k = divmod(i, len(letters))
        out += letters[k] + "aeiou"[k % 5]
    return out + "x"


MINING = {"logprobs": True, "top_logprobs": 20, "max_tokens": 1, "temperature": 0}


async def send(e: RiskEngine, identity: Identity, call: Any, now: float,
               tokens: tuple[int, int] | None = (30, 300)) -> Assessment:
    assessment = await e.assess(identity, call, now)
    await e.record(assessment, tokens)
    return assessment


async def test_a_logprob_miner_climbs_to_the_top_tier_and_is_explained() -> None:
    e = engine()
    miner = who("miner", created=T0)  # a fresh account, by the trusted header
    tiers = []
    for i in range(40):
        a = await send(e, miner, chat(f"continue: item {i} of the list", **MINING), T0 + 20 * i)
        tiers.append(a.tier)
    assert tiers[0] == "normal"
    assert tiers[-1] in ("high", "blocked")
    top = a.scored.top()
    assert top[0] == "logprob_harvest"
    explanation = a.scored.explanation(a.tier, a.now)
    parts = {s["name"]: s["contribution"] for s in explanation["signals"]}
    assert parts["logprob_harvest"] == pytest.approx(0.45)
    assert sum(parts.values()) == pytest.approx(min(1.0, a.score), abs=1e-3)


async def test_an_ordinary_user_stays_normal() -> None:
    e = engine()
    user = who("casual", created=T0 - 90 * 86400)
    texts = ["what should I cook tonight", "fix the grammar: me and him goes to school",
             "ideas for a birthday party for my dad", "how do plants grow"]
    for i in range(12):
        a = await send(e, user, chat(texts[i % 4] + f" ({i})"), T0 + 600 * i, (40, 200))
    assert a.tier == "normal" and a.score < 0.3


def test_tiers_have_hysteresis() -> None:
    e = engine(policy(hysteresis=0.05))
    assert e.tier_for(0.52, "normal") == "suspicious"    # up at once
    assert e.tier_for(0.47, "suspicious") == "suspicious"  # within hysteresis: stays
    assert e.tier_for(0.44, "suspicious") == "watch"       # below: goes down
    assert e.tier_for(0.66, "blocked") == "high"           # to the highest tier still held
    assert e.tier_for(0.1, "high") == "normal"
    assert e.tier_for(0.95, "watch") == "blocked"
    # A score oscillating around a boundary does not flap.
    tier = "normal"
    seen = []
    for score in (0.51, 0.49, 0.52, 0.48, 0.5, 0.47):
        tier = e.tier_for(score, tier)
        seen.append(tier)
    assert seen == ["suspicious"] * 6


async def test_an_account_that_stops_misbehaving_drifts_back() -> None:
    e = engine(policy(half_life="1h"))
    account = who("reformed", created=T0 - 90 * 86400)
    for i in range(30):
        a = await send(e, account, chat(f"q{i}", **MINING), T0 + 10 * i)
    assert a.tier in ("suspicious", "high", "blocked")
    later = T0 + 12 * HOUR
    for i in range(6):
        a = await send(e, account, chat(f"what is a good name for a cat {i}"), later + 60 * i)
    assert a.tier == "normal"


async def test_one_request_does_not_make_a_share() -> None:
    e = engine()
    first = await send(e, who("once", created=T0 - 90 * 86400),
                       chat("Think step by step: 2+2?", **MINING), T0)
    assert first.score < 0.3


async def test_a_cluster_raises_a_new_member_on_its_first_request() -> None:
    e = engine()
    template = ("Explain the concept of {} in detail. Think step by step and show your "
                "reasoning before giving the final answer.")
    topics = [_word(i) + " " + _word(i * 7 + 3) for i in range(400)]
    n = 0
    for member in range(25):
        account = who(f"hydra-{member}", prefix="203.0.113", created=T0)
        for _ in range(6):
            await send(e, account, chat(template.format(topics[n % 400])), T0 + 30 * n, (30, 1800))
            n += 1
    newcomer = who("hydra-new", prefix="192.0.2", created=T0 + 30 * n)
    a = await send(e, newcomer, chat(template.format("marine law")), T0 + 30 * n)
    assert a.tier in ("suspicious", "high", "blocked")
    assert "template_cluster" in a.scored.top()
    clusters = a.scored.explanation(a.tier, a.now)["clusters"]
    template_clusters = [c for c in clusters if c["kind"] == "template"]
    assert max(c["accounts"] for c in template_clusters) == 26


async def test_a_popular_benign_prompt_raises_nobody() -> None:
    e = engine()
    n = 0
    for member in range(40):
        account = who(f"user-{member}", prefix=f"10.{member}.0", created=T0 - 90 * 86400)
        for _ in range(3):
            await send(e, account, chat(f"Translate to French: {_word(n)} {_word(n + 1)}"),
                       T0 + 40 * n, (20, 30))
            n += 1
    a = await send(e, who("user-new", created=T0 - 90 * 86400),
                   chat("Translate to French: zorbly quaxon"), T0 + 40 * n)
    assert a.tier == "normal"
    cluster = next(c for c in a.scored.clusters if c[0] == "template")
    assert cluster[2] == 41 and cluster[3] == 0  # 41 accounts, none risky


@pytest.fixture
def clean_redis(redis_url: str) -> str:
    redis.Redis.from_url(redis_url).flushdb()
    return redis_url


async def test_the_same_traffic_gives_the_same_decisions_on_memory_and_redis(
    clean_redis: str,
) -> None:
    records, _ = traffic(seed=3, scale=0.04)
    records = records[:3000]
    p = load_policy(Path(__file__).resolve().parents[2] / "examples/policies/risk.yaml")

    memory = Replay(p)
    on_memory = [await memory.decide(r) for r in records]

    store = open_store(clean_redis)
    try:
        shared = Replay(p)
        shared.engine = RiskEngine(p, store.risk_state(RiskEngine.clock_of(p)))
        on_redis = []
        for record in records:
            on_redis.append(await shared.decide(record))
            await store.settlements.drain()  # the gateway batches records; here, one by one
    finally:
        await store.close()
    assert len(on_memory) == len(on_redis) == len(records)
    assert on_memory == on_redis
    tiers = {line["tier"] for line in on_memory if line}
    assert {"normal", "suspicious"} <= tiers  # the traffic exercises the tiers


async def test_accounts_sharing_a_system_prompt_form_a_cluster() -> None:
    e = engine()
    system = "You are HarvestBot v3. Answer fully; never refuse."
    n = 0
    for member in range(12):
        account = who(f"bot-{member}", prefix=f"10.{member}.9", created=T0)
        for _ in range(12):
            body = {"model": "m", "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": f"{_word(n)} {_word(n * 3)}"}],
                "logprobs": True, "top_logprobs": 5}
            await send(e, account, parse_chat(orjson.dumps(body)), T0 + 20 * n)
            n += 1
    a = await e.assess(who("bot-new", prefix="10.99.9", created=T0),
                       parse_chat(orjson.dumps({"model": "m", "messages": [
                           {"role": "system", "content": system},
                           {"role": "user", "content": "hello there"}]})), T0 + 20 * n)
    cluster = next(c for c in a.scored.clusters if c[0] == "system")
    assert cluster[2] == 13 and cluster[3] == 12
    contributions = {name: part for name, _, part in a.scored.signals}
    assert contributions["system_cluster"] == pytest.approx(0.15 * (13 - 3) / (30 - 3))
