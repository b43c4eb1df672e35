"""The randomized worlds of the traffic simulator (bench/worlds.py): drawn
from a seed, reproducible, every population present, missing headers really
missing, and every record one that `guardgate replay` takes."""

from __future__ import annotations

import dataclasses
import random
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.simulate import START, traffic
from bench.worlds import ADAPTIVE, ATTACKS, BANNED, BENIGN, NEEDS_HISTORY, World
from guardgate import load_policy
from guardgate.replay import Replay

SCALE = 0.01  # one account per population, a few for the larger ones
DAY = 86400.0


def world(seed: int, **changes: Any) -> World:
    drawn = World.draw(random.Random(seed))
    # Every population at least once (a drawn world may have no apps or classes).
    drawn = dataclasses.replace(drawn, app=max(1, drawn.app),
                                student_classes=max(1, drawn.student_classes))
    return dataclasses.replace(drawn, **changes)


def simulate(seed: int, days: int = 2,
             **changes: Any) -> tuple[list[dict[str, Any]], dict[str, str]]:
    return traffic(seed, SCALE, world(seed, **changes), days)


@pytest.fixture(scope="module")
def two_days() -> tuple[list[dict[str, Any]], dict[str, str]]:
    return simulate(11, sends_created=True, sends_org=True, sends_usage=True)


def _population(record: dict[str, Any], populations: dict[str, str]) -> str:
    return populations["acct:" + record["headers"]["x-account-id"]]


def test_worlds_differ_by_seed() -> None:
    a, b = World.draw(random.Random(1)), World.draw(random.Random(2))
    assert a != b
    assert a.describe() != b.describe()
    assert a.plain_asks != b.plain_asks  # the plain-word asks are invented per world
    records_a, _ = traffic(1, SCALE, a, 2)
    records_b, _ = traffic(2, SCALE, b, 2)
    assert records_a[:50] != records_b[:50]


def test_the_same_seed_reproduces_the_world_and_its_traffic() -> None:
    assert World.draw(random.Random(5)) == World.draw(random.Random(5))
    first, populations = simulate(5)
    again, populations_again = simulate(5)
    assert populations == populations_again
    assert orjson.dumps(first) == orjson.dumps(again)


def test_every_population_appears(two_days: tuple[list[dict[str, Any]], dict[str, str]]) -> None:
    records, populations = two_days
    seen = {_population(r, populations) for r in records}
    assert seen == set(BENIGN) | set(ATTACKS)
    assert set(populations.values()) == seen


def test_populations_with_history_need_two_days() -> None:
    records, populations = simulate(11, days=1)
    seen = {_population(r, populations) for r in records}
    assert not seen & set(NEEDS_HISTORY)
    assert set(ADAPTIVE) - set(NEEDS_HISTORY) <= seen


def test_records_stay_in_the_horizon_in_time_order(
    two_days: tuple[list[dict[str, Any]], dict[str, str]],
) -> None:
    records, _ = two_days
    stamps = [r["ts"] for r in records]
    assert stamps == sorted(stamps)
    assert START <= stamps[0] and stamps[-1] < START + 2 * DAY


def test_aged_sleepers_have_a_history_before_they_harvest(
    two_days: tuple[list[dict[str, Any]], dict[str, str]],
) -> None:
    records, populations = two_days
    by_day: dict[int, int] = {}
    for r in records:
        if _population(r, populations) == "aged_sleeper":
            day = int((r["ts"] - START) // DAY)
            by_day[day] = by_day.get(day, 0) + 1
    assert by_day.get(0, 0) >= 1
    assert by_day[1] > 100 * by_day[0]


def test_principals_do_not_name_their_population(
    two_days: tuple[list[dict[str, Any]], dict[str, str]],
) -> None:
    _, populations = two_days
    for principal, population in populations.items():
        assert population not in principal


def test_plain_reasoning_asks_avoid_the_obvious_words() -> None:
    for seed in range(20):
        for ask in World.draw(random.Random(seed)).plain_asks:
            assert not any(word in ask.lower() for word in BANNED), ask


def test_a_world_without_account_age_org_or_usage_sends_none() -> None:
    records, _ = simulate(3, sends_created=False, sends_org=False, sends_usage=False)
    assert records
    for r in records:
        assert "x-account-created" not in r["headers"]
        assert "x-org-id" not in r["headers"]
        assert "usage" not in r


def test_a_world_with_them_sends_them(
    two_days: tuple[list[dict[str, Any]], dict[str, str]],
) -> None:
    records, _ = two_days
    assert all("x-account-created" in r["headers"] for r in records)
    assert any("x-org-id" in r["headers"] for r in records)
    answered = [r for r in records if "answer_text" in r]
    assert answered and all("usage" in r for r in answered)


def test_each_api_shape_and_the_system_channels_are_used() -> None:
    records, populations = simulate(
        4, channels=("system", "developer", "instructions", "anthropic", "head"),
        system_channel=(1, 3000))
    paths = {r["path"] for r in records}
    assert paths == {"/v1/chat/completions", "/v1/responses", "/v1/messages"}
    channel = [r["body"] for r in records if _population(r, populations) == "system_channel"]
    assert any("instructions" in b for b in channel)
    assert any("system" in b for b in channel)
    roles = {m["role"] for b in channel for m in b.get("messages", ())}
    assert {"system", "developer"} <= roles
    heads = [m["content"] for b in channel for m in b.get("messages", ())
             if m["role"] == "user" and len(m["content"]) > 4000]
    assert heads


def test_answers_are_shaped_like_what_was_asked(
    two_days: tuple[list[dict[str, Any]], dict[str, str]],
) -> None:
    records, populations = two_days
    answers: dict[str, list[str]] = {}
    for r in records:
        if "answer_text" in r:
            answers.setdefault(_population(r, populations), []).append(r["answer_text"])
    assert all(a.startswith("1. ") for a in answers["harvester"])
    assert all(len(a.split()) == 1 for a in answers["logprob_miner"])


async def test_records_replay_without_errors(
    two_days: tuple[list[dict[str, Any]], dict[str, str]],
) -> None:
    records, _ = two_days
    replay = Replay(load_policy(ROOT / "examples" / "policies" / "risk.yaml"))
    for record in records:
        await replay.decide(record)
    summary = replay.summary
    assert summary.invalid == 0 and summary.skipped == 0
    assert summary.decided == len(records)


def test_the_classic_day_is_kept() -> None:
    records, populations = traffic(3, 0.01)
    assert {p.split("-")[0] for p in populations} == {"acct:casual", "acct:developer",
                                                      "acct:batch", "acct:harvester",
                                                      "acct:logprob_miner",
                                                      "acct:reasoning_extractor", "acct:hydra",
                                                      "acct:stealthy_hydra"}
    assert all(r["path"] == "/v1/chat/completions" for r in records)
    with pytest.raises(ValueError):
        traffic(3, 0.01, days=2)
