"""Detection benchmark: a simulated day replayed through a policy.

Generates one seeded day of traffic (`bench/simulate.py`), replays it through
the policy exactly as ``guardgate replay`` does, and reports per population:

- the share of accounts whose highest tier reached each tier;
- recall: the share of accounts reaching ``suspicious`` or above;
- requests before the first protective tier (``suspicious`` or above);
- the share of requests answered untouched (tier normal or watch);
- for hydra members that join once their network has been caught, how many
  of their requests pass before they are caught themselves.

    python bench/detection_bench.py [--seed 7] [--scale 1.0] [--policy FILE]

Prints a table and a JSON line; ``--check`` exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.simulate import traffic
from guardgate import load_policy
from guardgate.replay import Replay

POLICY = ROOT / "examples" / "policies" / "risk.yaml"
BENIGN = ("casual", "developer", "batch")
ATTACKS = ("harvester", "logprob_miner", "reasoning_extractor", "hydra", "stealthy_hydra")
# Recall targets (share of accounts reaching suspicious or above).
TARGETS = {
    "harvester": 0.95, "logprob_miner": 0.95, "reasoning_extractor": 0.95, "hydra": 0.95,
    "stealthy_hydra": 0.80,
}
PROTECTIVE = "suspicious"


async def replay(records: list[dict[str, Any]], policy_path: Path) -> tuple[list[dict[str, Any]], float]:
    engine = Replay(load_policy(policy_path))
    began = time.perf_counter()
    decisions = []
    for record in records:
        line = await engine.decide(record)
        if line is not None:
            decisions.append(line)
    return decisions, time.perf_counter() - began


def evaluate(decisions: list[dict[str, Any]], populations: dict[str, str],
             tiers: list[str]) -> dict[str, Any]:
    rank = {name: i for i, name in enumerate(["normal", *tiers])}
    protective = rank[PROTECTIVE]
    highest: dict[str, int] = defaultdict(int)
    seen: dict[str, int] = defaultdict(int)
    first_caught: dict[str, int] = {}
    caught_at: dict[str, float] = {}
    joined: dict[str, float] = {}
    untouched: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for line in decisions:
        principal = line["principal"]
        level = rank[line["tier"]]
        seen[principal] += 1
        joined.setdefault(principal, line["ts"])
        highest[principal] = max(highest[principal], level)
        population = populations.get(principal, "unknown")
        counts = untouched[population]
        counts[1] += 1
        if level <= rank.get("watch", 0):
            counts[0] += 1
        if level >= protective and principal not in first_caught:
            first_caught[principal] = seen[principal]
            caught_at[principal] = line["ts"]

    members: dict[str, list[str]] = defaultdict(list)
    for principal, population in populations.items():
        if principal in seen:
            members[population].append(principal)

    report: dict[str, Any] = {}
    for population, principals in members.items():
        total = len(principals)
        reached = {
            tier: sum(1 for p in principals if highest[p] >= rank[tier]) / total
            for tier in tiers
        }
        before = [first_caught[p] - 1 for p in principals if p in first_caught]
        entry = {
            "accounts": total,
            "reached": reached,
            "recall": reached[PROTECTIVE],
            "max_tier": ["normal", *tiers][max(highest[p] for p in principals)],
            "requests_before_protection_median": statistics.median(before) if before else None,
            "untouched_share": untouched[population][0] / max(1, untouched[population][1]),
        }
        if population in ("hydra", "stealthy_hydra"):
            # The network is visible once one of its members has been caught;
            # members joining after that should be caught within 10 requests.
            network_caught = min((caught_at[p] for p in principals if p in caught_at),
                                 default=None)
            late = [p for p in principals
                    if network_caught is not None and joined[p] > network_caught]
            within = [p for p in late if p in first_caught and first_caught[p] <= 10]
            entry["late_joiners"] = len(late)
            entry["late_caught_within_10"] = len(within) / len(late) if late else None
        report[population] = entry
    return report


def check(report: dict[str, Any]) -> list[str]:
    misses = []
    for population, target in TARGETS.items():
        if population in report and report[population]["recall"] < target:
            misses.append(f"{population} recall {report[population]['recall']:.3f} < {target}")
    for population in ("hydra",):
        share = report.get(population, {}).get("late_caught_within_10")
        if share is not None and share < 0.95:
            misses.append(f"{population} late joiners caught within 10 requests: {share:.3f}")
    for population in ("casual", "developer"):
        if population in report and report[population]["recall"] > 0.005:
            misses.append(f"{population} false positives {report[population]['recall']:.4f}")
    batch = report.get("batch")
    if batch is not None and batch["max_tier"] not in ("normal", "watch"):
        misses.append(f"batch reached {batch['max_tier']}")
    return misses


def main() -> int:
    parser = argparse.ArgumentParser(description="Detection benchmark on a simulated day.")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--policy", type=Path, default=POLICY)
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()

    records, populations = traffic(args.seed, args.scale)
    decisions, seconds = asyncio.run(replay(records, args.policy))
    tiers = [tier.name for tier in load_policy(args.policy).tiers]
    report = evaluate(decisions, populations, tiers)

    print(f"seed {args.seed}: {len(records)} requests, {len(populations)} accounts, "
          f"replayed in {seconds:.1f} s ({len(records) / seconds:,.0f} requests/s)\n")
    header = f"{'population':<21}{'accounts':>9}" + "".join(f"{t:>12}" for t in tiers)
    header += f"{'untouched':>11}{'req. before':>12}{'late<=10':>10}"
    print(header)
    for population in (*BENIGN, *ATTACKS):
        entry = report.get(population)
        if entry is None:
            continue
        row = f"{population:<21}{entry['accounts']:>9}"
        row += "".join(f"{entry['reached'][t]:>12.1%}" for t in tiers)
        row += f"{entry['untouched_share']:>11.1%}"
        before = entry["requests_before_protection_median"]
        row += f"{'-' if before is None else before:>12}"
        late = entry.get("late_caught_within_10")
        row += f"{'' if late is None else f'{late:.1%}':>10}"
        print(row)
    misses = check(report)
    print()
    print("targets: " + ("all met" if not misses else "; ".join(misses)))
    print(json.dumps({"seed": args.seed, "requests": len(records),
                      "requests_per_second": round(len(records) / seconds),
                      "report": report, "misses": misses}))
    return 1 if args.check and misses else 0


if __name__ == "__main__":
    raise SystemExit(main())
