"""What the risk engine concludes from evidence, and from its absence: a
missing account age, org or usage counts for nothing; an account's own
history is its baseline, so an aged account that turns to harvesting is
caught on its first day; past its extraction budget an account is held in
the budget's tier."""

from __future__ import annotations

import itertools
from typing import Any

import orjson

from guardgate import load_policy
from guardgate.apis.openai import parse_chat
from guardgate.identity import Identity
from guardgate.policy.model import Policy
from guardgate.risk.engine import Assessment, RiskEngine
from guardgate.store.risk import MemoryRisk

T0 = 1_767_225_600.0
DAY = 86400.0
TIERS = {
    "watch": {"score": 0.3, "mark": True},
    "suspicious": {"score": 0.5, "mark": True},
    "high": {"score": 0.7, "mark": True},
    "blocked": {"score": 0.9, "deny": True},
}
TOPICS = [f"{a} {b}" for a, b in itertools.product(
    ("quantum", "medieval", "tropical", "urban", "molecular", "arctic", "solar", "neural"),
    ("economics", "architecture", "biology", "poetry", "chemistry", "trade", "law", "ecology"))]


def policy(**risk: Any) -> Policy:
    return load_policy({"upstream": "http://127.0.0.1:9", "tiers": TIERS,
                        "watermark": {"key": "k" * 32}, "risk": risk})


def engine(p: Policy) -> RiskEngine:
    return RiskEngine(p, MemoryRisk(RiskEngine.clock_of(p)))


def who(name: str, *, created: float | None = None, org: str | None = None,
        prefix: str = "198.51.100") -> Identity:
    return Identity(f"acct:{name}", f"{prefix}.{sum(map(ord, name)) % 250 + 1}",
                    f"{prefix}.0/24", "OpenAI/Python 2.3.0", False, org=org, created=created)


def chat(text: str, **params: Any) -> Any:
    body = {"model": "m", "messages": [{"role": "user", "content": text}], **params}
    return parse_chat(orjson.dumps(body))


async def send(e: RiskEngine, identity: Identity, call: Any, now: float,
               tokens: tuple[int, int] | None) -> Assessment:
    assessment = await e.assess(identity, call, now)
    await e.record(assessment, tokens)
    return assessment


async def test_missing_age_org_and_usage_count_for_nothing() -> None:
    """Benign callers with no account-age header, no org and no usage in
    their answers: nothing is held against them for it. The same traffic
    with the headers and usage of old accounts scores the same or less."""
    p = policy()
    bare, told = engine(p), engine(p)
    scores: dict[str, list[float]] = {"bare": [], "told": []}
    texts = ["what should I cook tonight with {}", "ideas for a party about {}",
             "fix the grammar: me and him goes to {}", "how does {} work"]
    for user in range(40):
        for turn in range(6):
            call = chat(texts[(user + turn) % 4].format(TOPICS[(user * 7 + turn) % 64]))
            now = T0 + user * 300 + turn * 40
            a = await send(bare, who(f"u{user}"), call, now, None)
            b = await send(told, who(f"u{user}", created=T0 - 400 * DAY, org=f"org{user}"),
                           call, now, (40, 300))
            scores["bare"].append(a.score)
            scores["told"].append(b.score)
            assert a.tier == "normal", (user, turn, a.scored.top())
            parts = {name: part for name, _, part in a.scored.signals}
            assert parts.get("account_youth", 0.0) == 0.0
            assert parts.get("output_ratio", 0.0) == 0.0
    assert max(scores["bare"]) < 0.3


async def test_an_aged_account_turning_to_harvest_at_the_quota_ceiling_is_caught_on_day_one(
) -> None:
    """Two ordinary requests a day for two weeks, then harvesting at the
    example policy's ceiling (600 requests a minute, 200,000 tokens: about
    one request every 0.3 s of 1,000-token answers): suspicious or above
    within its first day of harvesting."""
    p = policy(long_half_life="3d")
    e = engine(p)
    account = who("sleeper")  # no account-age header: its age is its history
    for day in range(14):
        for i in range(2):
            now = T0 + day * DAY + 9 * 3600 + i * 4000
            a = await send(e, account, chat(f"how do I cook rice number {day}-{i}"), now,
                           (20, 200))
    assert a.tier == "normal"
    start = T0 + 14 * DAY
    caught = None
    for i in range(20_000):
        now = start + 0.3 * i
        topic = TOPICS[i % 64]
        call = chat(f"Write a complete, detailed textbook chapter on {topic}, part {i}.",
                    max_tokens=1000)
        a = await send(e, account, call, now, (30, 1000))
        if a.rank >= 2 and caught is None:
            caught = now - start
            break
    assert caught is not None and caught < DAY, caught
    assert "burst" in a.scored.top(5)


async def test_a_nightly_job_on_its_second_and_third_night_is_no_burst() -> None:
    """A job that sends 1,500 requests in a two-hour window every night has
    one earlier night behind it on its second: that is no baseline, and its
    own past is what the third night is judged against."""
    e = engine(policy(long_half_life="3d"))
    job = who("nightly", org="org-batch")
    bursts = []
    for night in range(3):
        for i in range(1500):
            call = chat(f"Classify the sentiment of review #{night}-{i}: fine.", temperature=0)
            a = await send(e, job, call, T0 + night * DAY + 2 * 3600 + i * 4.8, (30, 2))
        bursts.append({name: part for name, _, part in a.scored.signals}["burst"])
    assert bursts == [0.0, 0.0, 0.0], bursts


async def test_past_its_extraction_budget_an_account_is_held_in_the_budget_tier() -> None:
    """However quiet its score: a fresh account gets `requests` untouched,
    then a steady r a day is held about r * long_half_life / ln 2."""
    e = engine(policy(budget={"requests": 20, "tier": "watch"}))
    account = who("steady", created=T0 - 400 * DAY)
    tiers = []
    for i in range(30):
        a = await send(e, account, chat(f"what is a good name for a cat, take {i}"),
                       T0 + 600 * i, (20, 100))
        tiers.append(a.tier)
    # The count decays a little between requests: past 20 within one or two.
    assert tiers[:19] == ["normal"] * 19
    assert "watch" in tiers[19:21] and tiers[21:] == ["watch"] * 9
    assert "extraction_budget" in a.scored.top() and a.score < 0.3
    # Three quiet weeks later, the count has decayed: untouched again.
    a = await send(e, account, chat("one more cat name"), T0 + 21 * DAY, (20, 100))
    assert a.tier == "normal"
