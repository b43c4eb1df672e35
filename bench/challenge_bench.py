"""What challenges cost: the client's solve time by difficulty, and the
server's verification per solution.

- Solve: `guardgate.client` solving fresh challenges (the Python solver,
  one core), several per difficulty; the median and the spread. Work is
  random: a solve takes 2^difficulty hashes on average, with a geometric
  spread, so medians come out a little below the mean.
- Verify: per solution on the server, in this process: checking the token
  (decode, HMAC) and the work (one SHA-256); and the whole redemption on
  memory (that, plus the single-use record, minting and metering the
  clearance).

    python bench/challenge_bench.py [--runs 7] [--difficulties 16,20,22]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from guardgate.challenge import puzzle
from guardgate.challenge.gate import ChallengeGate
from guardgate.challenge.tokens import Binding, Challenge, Signer, new_id
from guardgate.metrics import Metrics
from guardgate.policy.model import ChallengeConfig
from guardgate.store import open_store

SECRET = "bench-challenge-secret-0123456789"
BINDING = Binding("key:0123456789abcdef", "203.0.113.0/24", "0123456789abcdef")


def fresh(signer: Signer, difficulty: float) -> str:
    now = time.time()
    return signer.challenge(
        Challenge("k1", new_id(), now, now + 600, difficulty, BINDING, 100, 50000))


def solve_times(difficulty: float, runs: int) -> list[float]:
    signer = Signer("k1", SECRET)
    times = []
    for _ in range(runs):
        token = fresh(signer, difficulty)
        began = time.perf_counter()
        puzzle.solve(token, difficulty)
        times.append(time.perf_counter() - began)
    return times


def verify_cost(count: int = 2000) -> tuple[float, float]:
    """Microseconds per solution: checking it, and redeeming it on memory."""
    signer = Signer("k1", SECRET)
    solutions = [puzzle.solve(fresh(signer, 8), 8) for _ in range(count)]
    began = time.perf_counter()
    for solution in solutions:
        token, _ = puzzle.split(solution)
        challenge = signer.open_challenge(token)
        assert puzzle.has_work(solution, challenge.difficulty)
    check = (time.perf_counter() - began) / count * 1e6

    gate = ChallengeGate(ChallengeConfig(SECRET), open_store("memory://"), Metrics())

    async def redeem_all() -> float:
        began = time.perf_counter()
        for solution in solutions:
            await gate.redeem(solution, BINDING, time.time())
        return (time.perf_counter() - began) / count * 1e6

    return check, asyncio.run(redeem_all())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--difficulties", default="16,20,22")
    args = parser.parse_args()
    rows = {}
    for difficulty in [float(d) for d in args.difficulties.split(",")]:
        times = solve_times(difficulty, args.runs)
        rows[difficulty] = times
        print(f"difficulty {difficulty:g}: " + ", ".join(f"{t:.2f}" for t in times) + " s",
              file=sys.stderr)
    check, redeem = verify_cost()
    print("| difficulty | expected hashes | solve time, median | fastest | slowest |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for difficulty, times in rows.items():
        print(f"| {difficulty:g} | 2^{difficulty:g} = {2 ** difficulty:,.0f} | "
              f"{statistics.median(times):.2f} s | {min(times):.2f} s | {max(times):.2f} s |")
    print(f"\nServer, per solution: checking it {check:.1f} µs; redeeming it on memory "
          f"(check, single-use record, clearance minted and metered) {redeem:.1f} µs")
    print(json.dumps({"solve_median_seconds": {f"{d:g}": round(statistics.median(t), 3)
                                               for d, t in rows.items()},
                      "verify_us": round(check, 1), "redeem_memory_us": round(redeem, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
