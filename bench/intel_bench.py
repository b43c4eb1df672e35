"""Shared intelligence benchmark: a feed made from one deployment's caught
attackers, in force at other deployments.

Provider A is a randomized world (`bench/worlds.py`, seed ``--source``):
simulated, replayed through the policy with the caught ledger on, and what
it caught at ``suspicious`` or above exported as `guardgate intel export`
does. Each provider B is another world (``--worlds`` of them, seeds from
``--seed``): its own accounts, networks and ordinary callers, attacked by
campaigns run with the same tooling (the simulator's harvesting templates).
B's traffic is replayed twice, without the feed and with it, and compared:

- ordinary callers (casual, student, developer, app, batch): which reach
  ``suspicious`` or above (the feed must change none of them), and how many
  reach another highest tier at all (``moved``: a ``watch`` is a watermark,
  nothing a caller sees);
- attackers: the share reaching ``suspicious``, and for the hydra
  campaigns the median number of requests an account sends before it is
  first at ``suspicious`` (the feed should catch them on arrival).

    python3 bench/intel_bench.py --source 101 --worlds 5 --seed 11 --jobs 2
    python3 bench/intel_bench.py --source 101 --worlds 1 --scale 0.2 --out bundle.json

Prints a table and a JSON line; ``--check`` exits 1 when the feed changed
which ordinary callers reach ``suspicious`` or caught no hydra account sooner.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.simulate import traffic
from bench.worlds import ATTACKS, BENIGN, World
from guardgate import load_policy
from guardgate.intel.export import build
from guardgate.policy.intel_config import IntelConfig
from guardgate.policy.model import Policy
from guardgate.policy.schema_intel import default_min_tier
from guardgate.replay import Replay

POLICY = ROOT / "examples" / "policies" / "risk.yaml"
PROTECTIVE = "suspicious"
HYDRAS = ("hydra", "stealthy_hydra", "system_channel")


def with_intel(path: Path) -> Policy:
    """The policy at ``path``, with the intel section's defaults if it has none."""
    policy = load_policy(path)
    if policy.intel is not None:
        return policy
    tiers = [(tier.name, tier.score) for tier in policy.tiers]
    return replace(policy, intel=IntelConfig(min_tier=default_min_tier(tiers)))


async def _replay(policy: Policy, records: list[dict[str, Any]],
                  intel: list[tuple[str, bytes]] | None) -> tuple[Replay, list[dict[str, Any]]]:
    replay = Replay(policy, intel=intel)
    decisions = []
    for record in records:
        line = await replay.decide(record)
        if line is not None:
            decisions.append(line)
    return replay, decisions


def world(seed: int, scale: float, days: int) -> tuple[list[dict[str, Any]], dict[str, str]]:
    return traffic(seed, scale, World.draw(random.Random(seed)), days)


def source_bundle(seed: int, scale: float, days: int, policy_path: Path) -> dict[str, Any]:
    """What provider A (world ``seed``) caught and exports."""
    policy = with_intel(policy_path)
    records, _ = world(seed, scale, days)
    replay, _ = asyncio.run(_replay(policy, records, None))
    config = policy.intel
    assert config is not None
    now = records[-1]["ts"]
    entries = asyncio.run(replay.ledger.entries(0, now))
    tiers = [tier.name for tier in policy.tiers]
    exported = build(entries, config, tiers, config.min_tier or PROTECTIVE, 0)
    return {"bundle": exported.bundle, "campaigns": exported.campaigns,
            "indicators": exported.indicators, "considered": exported.considered,
            "dropped": exported.dropped}


def summary(decisions: list[dict[str, Any]], populations: dict[str, str],
            tiers: list[str]) -> dict[str, Any]:
    """Per account: highest tier and the number of its first request at
    `PROTECTIVE` or above."""
    rank = {name: i for i, name in enumerate(["normal", *tiers])}
    highest: dict[str, int] = {}
    count: dict[str, int] = {}
    first: dict[str, int] = {}
    for line in decisions:
        principal = line["principal"]
        count[principal] = count.get(principal, 0) + 1
        level = rank[line["tier"]]
        highest[principal] = max(highest.get(principal, 0), level)
        if level >= rank[PROTECTIVE] and principal not in first:
            first[principal] = count[principal]
    return {"highest": highest, "first": first, "count": count,
            "protective": rank[PROTECTIVE], "populations": populations}


def compare(without: dict[str, Any], fed: dict[str, Any]) -> dict[str, Any]:
    populations: dict[str, str] = without["populations"]
    members: dict[str, list[str]] = {}
    for principal, population in populations.items():
        if principal in without["highest"]:
            members.setdefault(population, []).append(principal)
    protective = without["protective"]
    report: dict[str, Any] = {}
    for population, principals in sorted(members.items()):
        entry: dict[str, Any] = {"accounts": len(principals)}
        for name, run in (("without", without), ("with", fed)):
            entry[f"flagged_{name}"] = sum(run["highest"][p] >= protective for p in principals)
            before = [run["first"].get(p, run["count"][p] + 1) - 1 for p in principals]
            entry[f"before_{name}"] = statistics.median(before)
        entry["moved"] = sum(without["highest"][p] != fed["highest"][p] for p in principals)
        entry["flagged_changed"] = sum(
            (without["highest"][p] >= protective) != (fed["highest"][p] >= protective)
            for p in principals)
        report[population] = entry
    benign = [report[p] for p in BENIGN if p in report]
    report["benign"] = {
        "accounts": sum(e["accounts"] for e in benign),
        "flagged_without": sum(e["flagged_without"] for e in benign),
        "flagged_with": sum(e["flagged_with"] for e in benign),
        "moved": sum(e["moved"] for e in benign),
        "flagged_changed": sum(e["flagged_changed"] for e in benign),
    }
    return report


def run_world(job: tuple[int, float, int, str, bytes]) -> dict[str, Any]:
    seed, scale, days, policy_path, bundle = job
    policy = with_intel(Path(policy_path))
    tiers = [tier.name for tier in policy.tiers]
    began = time.perf_counter()
    records, populations = world(seed, scale, days)
    _, plain = asyncio.run(_replay(policy, records, None))
    replay, fed = asyncio.run(_replay(policy, records, [("peer", bundle)]))
    matched = len(replay.feeds.status()["matched"])
    report = compare(summary(plain, populations, tiers), summary(fed, populations, tiers))
    return {"seed": seed, "requests": len(records), "seconds": round(time.perf_counter() - began),
            "indicators_matched": matched, "report": report}


def misses(results: list[dict[str, Any]]) -> list[str]:
    found = []
    for result in results:
        benign = result["report"]["benign"]
        if benign["flagged_changed"]:
            found.append(f"world {result['seed']}: the feed changed which ordinary callers "
                         f"reach {PROTECTIVE} ({benign['flagged_changed']} accounts)")
    sooner = [r for r in results if "hydra" in r["report"]
              and r["report"]["hydra"]["before_with"] < r["report"]["hydra"]["before_without"]]
    if not sooner:
        found.append("no world's hydra accounts were caught sooner with the feed")
    return found


def show(source: dict[str, Any], results: list[dict[str, Any]]) -> None:
    print(f"provider A exports {source['campaigns']} campaign(s), {source['indicators']} "
          f"indicator(s) of {source['considered']} fingerprints caught "
          f"(kept home: {source['dropped']})\n")
    print(f"{'world':>8} {'population':<20}{'accounts':>9}{'flagged':>16}{'moved':>7}"
          f"{'req. before':>16}")
    for result in results:
        for population, entry in result["report"].items():
            if population not in (*BENIGN, *ATTACKS, "benign"):
                continue
            flagged = f"{entry['flagged_without']} -> {entry['flagged_with']}"
            before = (f"{entry['before_without']:g} -> {entry['before_with']:g}"
                      if "before_with" in entry else "")
            print(f"{result['seed']:>8} {population:<20}{entry['accounts']:>9}{flagged:>16}"
                  f"{entry['moved']:>7}{before:>16}")
        print()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=int, default=101, help="provider A's world seed")
    parser.add_argument("--worlds", type=int, default=5, help="provider B worlds (default 5)")
    parser.add_argument("--seed", type=int, default=11, help="seed B's world seeds come from")
    parser.add_argument("--scale", type=float, default=1.0, help="population sizes times this")
    parser.add_argument("--days", type=int, default=3, help="days simulated per world")
    parser.add_argument("--jobs", type=int, default=2, help="worlds run at once (processes)")
    parser.add_argument("--policy", type=Path, default=POLICY)
    parser.add_argument("--out", default=None, help="write A's bundle here")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when the feed changed which ordinary callers reach "
                             "suspicious")
    args = parser.parse_args()
    began = time.perf_counter()
    source = source_bundle(args.source, args.scale, args.days, args.policy)
    bundle = json.dumps(source.pop("bundle")).encode()
    if args.out:
        Path(args.out).write_bytes(bundle)
    rnd = random.Random(args.seed)
    seeds = [rnd.randrange(10**6) for _ in range(args.worlds)]
    jobs = [(seed, args.scale, args.days, str(args.policy), bundle) for seed in seeds
            if seed != args.source]
    if args.jobs > 1 and len(jobs) > 1:
        with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
            results = list(pool.imap(run_world, jobs))
    else:
        results = [run_world(job) for job in jobs]
    show(source, results)
    found = misses(results)
    print(f"{len(results)} worlds in {time.perf_counter() - began:.0f} s; targets: "
          + ("all met" if not found else "; ".join(found)))
    print(json.dumps({"source": args.source, "seed": args.seed, "scale": args.scale,
                      "days": args.days, "export": source, "worlds": results, "misses": found}))
    return 1 if args.check and found else 0


if __name__ == "__main__":
    raise SystemExit(main())
