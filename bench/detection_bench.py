"""Detection benchmark: randomized worlds replayed through a policy; the
worst world is the result.

Draws ``--worlds`` worlds (`bench/worlds.py`; their seeds derived from
``--seed``), simulates each over ``--days`` days with benign callers and
classic and adaptive attackers in the same traffic, replays it through the
policy exactly as ``guardgate replay`` does, and reports per population the
worst world:

- benign populations: the share of accounts reaching ``suspicious`` or above
  (target at most 0.5 %, for all benign accounts together and for each
  population); batch jobs: the highest tier any reached (at most ``watch``);
- attack populations: recall, the share of accounts reaching ``suspicious``
  or above (at least 95 % for harvesters, logprob miners, reasoning
  extractors and hydras, 80 % for the stealthy hydra and the adaptive
  campaigns), and the share of their requests answered pristine: in a tier
  that neither degrades, marks nor denies (at most 10 %);
- attacker cost: how many accounts an informed adversary needs for 16
  million pristine answers in 30 days under the policy (at least 24,000):
  see `attacker_cost`.

    python bench/detection_bench.py [--worlds 20] [--seed 7] [--days 3] [--jobs 2]
    python bench/detection_bench.py --world 123456   # one world, by its seed
    python bench/detection_bench.py --classic --seed 7   # the classic single day
    python bench/detection_bench.py --intel bundle.json  # a peer's feed in force

Prints a table and a JSON line; ``--check`` exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.simulate import START, traffic
from bench.worlds import ADAPTIVE, CEILING_RPM, CEILING_TPM, World
from bench.worlds import ATTACKS as WORLD_ATTACKS
from bench.worlds import BENIGN as WORLD_BENIGN
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
# Worlds: recall targets per attack population, and the other targets.
WORLD_TARGETS = {
    **{population: 0.95 for population in ("harvester", "logprob_miner",
                                            "reasoning_extractor", "hydra")},
    **{population: 0.80 for population in ("stealthy_hydra", *ADAPTIVE)},
}
BENIGN_FLAGGED = 0.005    # benign accounts reaching suspicious or above, at most
PRISTINE = 0.10           # attacker requests answered pristine, at most
CAMPAIGN_ANSWERS = 16e6   # what a campaign wants ...
CAMPAIGN_DAYS = 30        # ... and in how long
COST_TARGET = 24_000      # accounts the 2026 campaigns actually used
DAY = 86400.0


async def replay(records: list[dict[str, Any]], policy_path: Path,
                 intel: bytes | None = None) -> tuple[list[dict[str, Any]], float]:
    """``intel``: a STIX bundle whose indicators are in force (`guardgate intel`)."""
    engine = Replay(load_policy(policy_path), intel=[("feed", intel)] if intel else None)
    began = time.perf_counter()
    decisions = []
    for record in records:
        line = await engine.decide(record)
        if line is not None:
            decisions.append(line)
    return decisions, time.perf_counter() - began


def untreated(policy_path: Path) -> tuple[list[str], set[str]]:
    """The policy's tiers, and those whose answers leave untouched (no
    degrade, no mark, no denial: normal, and tiers that only throttle or
    challenge; a challenge solved buys pristine answers)."""
    tiers = load_policy(policy_path).tiers
    return [t.name for t in tiers], {"normal", *(
        t.name for t in tiers if t.degrade is None and not t.mark and not t.deny)}


def evaluate(decisions: list[dict[str, Any]], populations: dict[str, str],
             tiers: list[str], pristine_tiers: set[str] | None = None) -> dict[str, Any]:
    rank = {name: i for i, name in enumerate(["normal", *tiers])}
    if pristine_tiers is None:
        pristine_tiers = {name for name, i in rank.items() if i <= rank.get("watch", 0)}
    protective = rank[PROTECTIVE]
    highest: dict[str, int] = defaultdict(int)
    seen: dict[str, int] = defaultdict(int)
    first_caught: dict[str, int] = {}
    caught_at: dict[str, float] = {}
    joined: dict[str, float] = {}
    untouched: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    # Per account and day of the horizon: [requests, answered pristine].
    daily: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for line in decisions:
        principal = line["principal"]
        level = rank[line["tier"]]
        day = daily[principal][int((line["ts"] - START) // DAY)]
        day[0] += 1
        untouched_answer = line["tier"] in pristine_tiers
        day[1] += untouched_answer
        seen[principal] += 1
        joined.setdefault(principal, line["ts"])
        highest[principal] = max(highest[principal], level)
        population = populations.get(principal, "unknown")
        counts = untouched[population]
        counts[1] += 1
        if untouched_answer:
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
            "requests": untouched[population][1],
            "yields": yields([daily[p] for p in principals]),
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


def yields(days: list[dict[int, list[int]]]) -> dict[str, list[float]]:
    """Pristine answers on each account's last day of traffic (after all the
    history it had), grouped by how many requests it sent that day in
    powers of two: ``{"2^k": [accounts, mean requests, mean pristine]}``."""
    bins: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for account in days:
        requests, answered = account[max(account)]
        bins[int(math.log2(max(1, requests)))].append((requests, answered))
    return {
        f"2^{k}": [len(rows), statistics.fmean(r for r, _ in rows),
                   statistics.fmean(a for _, a in rows)]
        for k, rows in sorted(bins.items())
    }


def attacker_cost(report: dict[str, Any], attacks: tuple[str, ...]) -> dict[str, Any]:
    """Accounts an informed adversary needs for `CAMPAIGN_ANSWERS` pristine
    answers in `CAMPAIGN_DAYS` days.

    Each attack population's accounts are grouped by the rate they sent at
    on their last day of traffic (powers of two); a group's yield is its
    mean pristine answers (in a tier that neither degrades, marks nor
    denies) on that day, after every earlier day of history (aged
    sleepers: the harvest day; multi-day campaigns: their last day). The
    adversary picks the best group of at least two accounts, the stealthiest
    rate that stays untreated; its yield,
    capped by the policy's quota ceiling for a day, gives
    ``CAMPAIGN_ANSWERS / (CAMPAIGN_DAYS * yield)`` accounts."""
    ceiling = min(CEILING_RPM, CEILING_TPM / 1600) * 1440
    best: tuple[float, str, str, float] = (0.0, "-", "-", 0.0)
    for population in attacks:
        entry = report.get(population)
        if entry is None:
            continue
        for band, (accounts, requests, answered) in entry["yields"].items():
            if accounts >= 2 and answered > best[0]:
                best = (answered, population, band, requests)
    answered = min(best[0], ceiling)
    needed = math.inf if answered <= 0 else math.ceil(
        CAMPAIGN_ANSWERS / (CAMPAIGN_DAYS * answered))
    return {"accounts_needed": needed, "pristine_per_account_day": round(answered, 1),
            "population": best[1], "band": best[2], "requests_per_day": round(best[3], 1)}


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


def classic(args: argparse.Namespace) -> int:
    """The classic simulated day (`bench.simulate`), one seed."""
    records, populations = traffic(args.seed, args.scale)
    decisions, seconds = asyncio.run(replay(records, args.policy, _intel(args)))
    tiers, pristine = untreated(args.policy)
    report = evaluate(decisions, populations, tiers, pristine)

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
    for entry in report.values():
        entry.pop("yields", None)
    misses = check(report)
    print()
    print("targets: " + ("all met" if not misses else "; ".join(misses)))
    print(json.dumps({"seed": args.seed, "requests": len(records),
                      "requests_per_second": round(len(records) / seconds),
                      "report": report, "misses": misses}))
    return 1 if args.check and misses else 0


def _intel(args: argparse.Namespace) -> bytes | None:
    return Path(args.intel).read_bytes() if args.intel else None


def run_world(job: tuple[int, float, int, str, bytes | None]) -> dict[str, Any]:
    """One world: drawn from its seed, simulated, replayed and evaluated."""
    seed, scale, days, policy, intel = job
    began = time.perf_counter()
    world = World.draw(random.Random(seed))
    records, populations = traffic(seed, scale, world, days)
    simulated = time.perf_counter() - began
    decisions, seconds = asyncio.run(replay(records, Path(policy), intel))
    tiers, pristine = untreated(Path(policy))
    report = evaluate(decisions, populations, tiers, pristine)
    benign = [report[p] for p in WORLD_BENIGN if p in report]
    flagged = sum(e["recall"] * e["accounts"] for e in benign)
    accounts = sum(e["accounts"] for e in benign)
    return {
        "seed": seed, "world": world.describe(), "requests": len(records),
        "accounts": len(populations), "simulated_s": round(simulated, 1),
        "replayed_s": round(seconds, 1), "benign_flagged": flagged / max(1, accounts),
        "benign_accounts": accounts, "report": report,
        "cost": attacker_cost(report, WORLD_ATTACKS),
    }


def worst(results: list[dict[str, Any]], tiers: list[str]) -> dict[str, Any]:
    """Per population, the worst world for the defender."""
    rank = {name: i for i, name in enumerate(["normal", *tiers])}
    table: dict[str, Any] = {}
    for population in (*WORLD_BENIGN, *WORLD_ATTACKS):
        rows = [(r["seed"], r["report"][population]) for r in results
                if population in r["report"]]
        if not rows:
            continue
        if population in WORLD_BENIGN:
            seed, entry = max(rows, key=lambda row: row[1]["recall"])
            top_seed, top = max(rows, key=lambda row: rank[row[1]["max_tier"]])
            table[population] = {
                "flagged": entry["recall"], "world": seed,
                "flagged_median": statistics.median(e["recall"] for _, e in rows),
                "accounts": [min(e["accounts"] for _, e in rows),
                             max(e["accounts"] for _, e in rows)],
                "max_tier": top["max_tier"], "max_tier_world": top_seed,
            }
        else:
            seed, entry = min(rows, key=lambda row: row[1]["recall"])
            pseed, pentry = max(rows, key=lambda row: row[1]["untouched_share"])
            table[population] = {
                "recall": entry["recall"], "world": seed,
                "recall_median": statistics.median(e["recall"] for _, e in rows),
                "pristine": pentry["untouched_share"], "pristine_world": pseed,
                "pristine_median": statistics.median(e["untouched_share"] for _, e in rows),
                "accounts": [min(e["accounts"] for _, e in rows),
                             max(e["accounts"] for _, e in rows)],
            }
    flagged = max(results, key=lambda r: r["benign_flagged"])
    table["benign"] = {"flagged": flagged["benign_flagged"], "world": flagged["seed"],
                       "flagged_median": statistics.median(r["benign_flagged"] for r in results)}
    cheapest = min(results, key=lambda r: r["cost"]["accounts_needed"])
    table["cost"] = {**cheapest["cost"], "world": cheapest["seed"],
                     "median": statistics.median(r["cost"]["accounts_needed"] for r in results)}
    return table


def world_misses(table: dict[str, Any]) -> list[str]:
    misses = []
    if table["benign"]["flagged"] > BENIGN_FLAGGED:
        misses.append(f"benign flagged {table['benign']['flagged']:.4f} "
                      f"(world {table['benign']['world']})")
    for population in WORLD_BENIGN:
        entry = table.get(population)
        if entry is None:
            continue
        if population == "batch":
            if entry["max_tier"] not in ("normal", "watch"):
                misses.append(f"batch reached {entry['max_tier']} "
                              f"(world {entry['max_tier_world']})")
        elif entry["flagged"] > BENIGN_FLAGGED:
            misses.append(f"{population} flagged {entry['flagged']:.4f} "
                          f"(world {entry['world']})")
    for population, target in WORLD_TARGETS.items():
        entry = table.get(population)
        if entry is None:
            continue
        if entry["recall"] < target:
            misses.append(f"{population} recall {entry['recall']:.3f} < {target} "
                          f"(world {entry['world']})")
        if entry["pristine"] > PRISTINE:
            misses.append(f"{population} pristine {entry['pristine']:.3f} > {PRISTINE} "
                          f"(world {entry['pristine_world']})")
    if table["cost"]["accounts_needed"] < COST_TARGET:
        misses.append(f"attacker cost {table['cost']['accounts_needed']} accounts < "
                      f"{COST_TARGET} (world {table['cost']['world']})")
    return misses


def print_table(table: dict[str, Any], results: list[dict[str, Any]]) -> None:
    print(f"{'population':<20}{'accounts':>11}{'worst':>9}{'median':>9}{'target':>9}"
          f"{'pristine':>10}{'median':>9}  worst world")
    for population in (*WORLD_BENIGN, "benign"):
        entry = table.get(population)
        if entry is None:
            continue
        span = "" if population == "benign" else "{}-{}".format(*entry["accounts"])
        extra = f"  max tier {entry['max_tier']}" if population == "batch" else ""
        print(f"{population:<20}{span:>11}{entry['flagged']:>9.2%}"
              f"{entry['flagged_median']:>9.2%}{'<=0.5%':>9}{'':>10}{'':>9}  "
              f"{entry['world']}{extra}")
    for population in WORLD_ATTACKS:
        entry = table.get(population)
        if entry is None:
            continue
        span = "{}-{}".format(*entry["accounts"])
        target = f">={WORLD_TARGETS[population]:.0%}"
        print(f"{population:<20}{span:>11}{entry['recall']:>9.1%}{entry['recall_median']:>9.1%}"
              f"{target:>9}{entry['pristine']:>10.1%}{entry['pristine_median']:>9.1%}  "
              f"{entry['world']} / {entry['pristine_world']}")
    cost = table["cost"]
    print(f"\nattacker cost (worst world {cost['world']}): {cost['accounts_needed']:,} accounts "
          f"for {CAMPAIGN_ANSWERS:,.0f} pristine answers in {CAMPAIGN_DAYS} days "
          f"(target >= {COST_TARGET:,}; median over worlds {cost['median']:,.0f}):\n"
          f"  {cost['population']} accounts sending {cost['requests_per_day']:,.0f} requests on "
          f"their last day (band {cost['band']}) got {cost['pristine_per_account_day']:,.1f} "
          f"answers pristine each;\n  {CAMPAIGN_ANSWERS:,.0f} / ({CAMPAIGN_DAYS} x "
          f"{cost['pristine_per_account_day']:,.1f}) = {cost['accounts_needed']:,} accounts")
    print("\nworlds:")
    for r in results:
        print(f"  {r['seed']}: {r['requests']:,} requests, {r['accounts']:,} accounts, "
              f"simulated {r['simulated_s']} s, replayed {r['replayed_s']} s; {r['world']}")


def worlds(args: argparse.Namespace) -> int:
    if args.world is not None:
        seeds = [args.world]
    else:
        rnd = random.Random(args.seed)
        seeds = [rnd.randrange(10**6) for _ in range(args.worlds)]
    jobs = [(seed, args.scale, args.days, str(args.policy), _intel(args)) for seed in seeds]
    began = time.perf_counter()
    if args.jobs > 1 and len(jobs) > 1:
        with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
            results = list(pool.imap(run_world, jobs))
    else:
        results = [run_world(job) for job in jobs]
    elapsed = time.perf_counter() - began
    tiers = [tier.name for tier in load_policy(args.policy).tiers]
    table = worst(results, tiers)
    requests = sum(r["requests"] for r in results)
    print(f"{len(results)} worlds of {args.days} days (seed {args.seed}, scale {args.scale}): "
          f"{requests:,} requests in {elapsed:.0f} s with {args.jobs} processes\n")
    print_table(table, results)
    misses = world_misses(table)
    print()
    print("targets: " + ("all met" if not misses else "; ".join(misses)))
    if args.json:
        Path(args.json).write_text(json.dumps({"seeds": seeds, "results": results},
                                              default=str))
    print(json.dumps({"seed": args.seed, "worlds": len(results), "days": args.days,
                      "worst": table, "misses": misses}, default=str))
    return 1 if args.check and misses else 0


def main() -> int:
    parser = argparse.ArgumentParser(description="Detection benchmark on randomized worlds.")
    parser.add_argument("--worlds", type=int, default=20, help="worlds drawn (default 20)")
    parser.add_argument("--seed", type=int, default=7, help="seed the worlds' seeds come from")
    parser.add_argument("--days", type=int, default=3, help="days simulated per world")
    parser.add_argument("--scale", type=float, default=1.0, help="population sizes times this")
    parser.add_argument("--jobs", type=int, default=2, help="worlds run at once (processes)")
    parser.add_argument("--world", type=int, default=None, help="run one world, by its seed")
    parser.add_argument("--policy", type=Path, default=POLICY)
    parser.add_argument("--classic", action="store_true",
                        help="the classic single simulated day instead of worlds")
    parser.add_argument("--json", default=None, help="write every world's report here")
    parser.add_argument("--intel", default=None, metavar="BUNDLE",
                        help="a STIX 2.1 bundle (guardgate intel export) in force as a feed")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    return classic(args) if args.classic else worlds(args)


if __name__ == "__main__":
    raise SystemExit(main())
