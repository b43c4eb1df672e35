"""``guardgate calibrate`` (issue 15, must show 4): fitted on one benign day,
the policy keeps another benign day, drawn from a different world, at most
at the target share of callers reaching ``suspicious``.

The days are randomized worlds of the simulator (bench/worlds.py), one day
each, with only their benign callers kept. At scale 0.5 a day has about 350
to 900 callers: a target of 1% is 3 to 9 of them, which the day can resolve
(0.5%, the command's default, would be 1 to 4, and the tier is fitted on
half the target). The policy calibrated is the example risk policy with
eager ramps (each starting at a quarter of its low, half as wide), which
flags 3% to 19% of such a day's callers, so that calibration has work to do.
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from bench.simulate import traffic
from bench.worlds import BENIGN, World
from guardgate import load_policy
from guardgate.cli import main
from guardgate.policy import Policy
from guardgate.policy.model import SignalConfig
from guardgate.replay import Replay
from guardgate.risk.calibrate import HEADROOM, fit_ramp, fit_score, fit_tiers

SCALE = 0.5
TARGET = 0.01
CALIBRATION_SEED, HELD_OUT_SEED = 2020, 2121
EXAMPLE = ROOT / "examples" / "policies" / "risk.yaml"


def benign_day(seed: int) -> list[dict[str, Any]]:
    world = World.draw(random.Random(seed))
    # Every kind of benign caller on both days, with values inside the draw's
    # own ranges: a drawn world may have no apps, no classes, no evaluation
    # harness or labelling job reading logprobs, and a kind of caller the
    # calibration day never saw cannot be calibrated for.
    world = dataclasses.replace(
        world, app=max(1, world.app), student_classes=max(1, world.student_classes),
        dev_evaluators=max(0.2, world.dev_evaluators),
        batch_logprobs=max(0.25, world.batch_logprobs))
    records, populations = traffic(seed, SCALE, world, days=1)
    return [r for r in records
            if populations["acct:" + r["headers"]["x-account-id"]] in BENIGN]


def write_lines(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


def eager_policy(path: Path) -> Path:
    """The example risk policy with eager ramps; its tiers as written."""
    document = yaml.safe_load(EXAMPLE.read_text())
    signals = load_policy(EXAMPLE).risk.signals
    document["risk"]["signals"] = {
        s.name: {"weight": s.weight, "low": s.low / 4, "high": s.low / 4 + (s.high - s.low) / 2}
        for s in signals
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def flagged(policy: Policy, records: list[dict[str, Any]], tier: str = "suspicious") -> tuple[int, int]:
    """Callers reaching ``tier`` or above, and callers, on a replay of ``records``."""
    import asyncio

    order = ["normal", *(t.name for t in policy.tiers)]
    replay = Replay(policy)
    highest: dict[str, int] = {}

    async def run() -> None:
        for record in records:
            line = await replay.decide(record)
            if line is not None:
                rank = order.index(line["tier"])
                highest[line["principal"]] = max(highest.get(line["principal"], 0), rank)

    asyncio.run(run())
    return sum(1 for r in highest.values() if r >= order.index(tier)), len(highest)


@pytest.fixture(scope="module")
def days() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return benign_day(CALIBRATION_SEED), benign_day(HELD_OUT_SEED)


def test_calibrated_on_one_benign_day_it_meets_the_target_on_another_world(
    days: tuple[list[dict[str, Any]], list[dict[str, Any]]], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    calibration_day, held_out_day = days
    policy_file = eager_policy(tmp_path / "eager.yaml")
    out = tmp_path / "calibrated.yaml"
    code = main(["calibrate", "--policy", str(policy_file),
                 str(write_lines(tmp_path / "day.jsonl", calibration_day)),
                 "--target-fpr", str(TARGET), "--out", str(out), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    eager, calibrated = load_policy(policy_file), load_policy(out)  # a policy that loads
    # The calibration day: the eager policy flags more than the target, the
    # calibrated one at most the target.
    assert report["flagged_before"] > TARGET
    assert report["flagged_after"] <= TARGET and report["met"]
    assert [s["name"] for s in report["signals"]] == [s.name for s in eager.risk.signals]
    assert all(s["fitted_low"] >= s["low"] and s["fitted_high"] >= s["high"]
               for s in report["signals"])
    fitted = [t.score for t in calibrated.tiers]
    assert [t.name for t in calibrated.tiers] == [t.name for t in eager.tiers]
    assert fitted == sorted(fitted) and all(
        new >= old.score for new, old in zip(fitted, eager.tiers, strict=True))
    # Everything but the ramps and the tier scores is as written.
    assert calibrated.identity == eager.identity and calibrated.quotas == eager.quotas
    # The held-out day, from another world: the eager policy flags more than
    # the target there too; the calibrated one at most the target, give or
    # take one caller (a share measured in whole callers: one caller is
    # 0.1-0.2% of such a day, under half the binomial standard deviation of
    # a 1% share over it, about 0.4%).
    before, callers = flagged(eager, held_out_day)
    after, _ = flagged(calibrated, held_out_day)
    assert callers >= 300  # 1% is 3 callers or more
    assert before > TARGET * callers
    assert after <= TARGET * callers + 1, (after, callers)


# -- the rules, on numbers ---------------------------------------------------------------

def test_a_ramp_moves_out_only_past_what_callers_do() -> None:
    signal = SignalConfig("reasoning_elicitation", 0.3, 0.2, 0.8)
    quiet = [0.0] * 95 + [0.1] * 5
    assert fit_ramp(signal, quiet, 0.01) == (0.2, 0.8)  # never more eager than the policy
    busy = [0.0] * 90 + [0.5] * 9 + [0.9]
    # 1 caller of 100 past low (half the target of 2%); full weight at twice low.
    assert fit_ramp(signal, busy, 0.02) == (0.5, 1.0)
    low, high = fit_ramp(signal, [5.0] * 100, 0.01)
    assert low == pytest.approx(0.2 + 2 * 0.6) and high == pytest.approx(2 * low)  # bounded
    off = SignalConfig("volume", 0.0, 300, 3000)
    assert fit_ramp(off, [10_000.0] * 100, 0.01) == (300, 3000)  # weight 0: left alone


def test_the_tier_is_fitted_with_headroom_and_the_tiers_above_keep_their_gaps() -> None:
    scores = [0.0] * 180 + [0.31] * 10 + [0.42] * 6 + [0.77] * 4
    score = fit_score(scores, 0.05, floor=0.25, ceiling=0.97)
    assert sum(s >= score for s in scores) <= 0.05 * 200 / HEADROOM
    assert score == 0.43
    assert fit_score([0.0] * 200, 0.05, floor=0.25, ceiling=0.97) == 0.25  # never lowered
    policy = load_policy({"tiers": {"watch": {"score": 0.3}, "suspicious": {"score": 0.5},
                                    "high": {"score": 0.7}, "blocked": {"score": 0.9}}})
    assert fit_tiers(policy, "suspicious", 0.6) == pytest.approx(
        {"watch": 0.3, "suspicious": 0.6, "high": 0.8, "blocked": 1.0})
    squeezed = fit_tiers(policy, "suspicious", 0.8)
    assert squeezed["watch"] == 0.3 and squeezed["suspicious"] == 0.8
    assert 0.8 < squeezed["high"] < squeezed["blocked"] <= 1.0


# -- what the command refuses ------------------------------------------------------------

def _traffic_line() -> bytes:
    return orjson.dumps({
        "ts": 1767225600.0, "path": "/v1/chat/completions", "headers": {"x-account-id": "a"},
        "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    }) + b"\n"


@pytest.mark.parametrize("case", [
    "missing traffic", "missing policy", "invalid policy", "no tiers", "risk off",
    "no such tier", "no model request", "unreadable traffic", "bad target",
])
def test_what_it_cannot_calibrate_is_one_line_and_exit_2(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy, traffic_file = tmp_path / "policy.yaml", tmp_path / "traffic.jsonl"
    policy.write_text(EXAMPLE.read_text())
    traffic_file.write_bytes(_traffic_line())
    extra: list[str] = []
    if case == "missing traffic":
        traffic_file = tmp_path / "nowhere.jsonl"
    elif case == "missing policy":
        policy = tmp_path / "nowhere.yaml"
    elif case == "invalid policy":
        policy.write_text("tiers: {watch: {score: 2}}\nrisk: {signals: {nope: {}}}\n")
    elif case == "no tiers":
        policy.write_text("upstream: http://127.0.0.1:8000\n")
    elif case == "risk off":
        policy.write_text("tiers: {suspicious: {score: 0.5}}\nrisk: {enabled: false}\n")
    elif case == "no such tier":
        extra = ["--tier", "nope"]
    elif case == "no model request":
        traffic_file.write_text('not json\n{"ts": 1, "path": "/healthz", "method": "GET"}\n')
    elif case == "unreadable traffic":
        traffic_file.write_bytes(b"\x1f\x8b\x08\x00 not gzip after all")
    elif case == "bad target":
        extra = ["--target-fpr", "1.5"]
    out = tmp_path / "out.yaml"
    code = main(["calibrate", "--policy", str(policy), str(traffic_file), "--out", str(out),
                 *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("guardgate calibrate: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and not out.exists()
