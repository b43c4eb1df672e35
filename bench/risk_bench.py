"""What risk assessment costs: CPU per request on memory, Redis round trips
per request, and ``guardgate replay`` throughput.

- CPU: a simulated day (`bench/simulate.py`) goes through the risk engine on
  memory; each request's assessment (features, state update, score, tier)
  and its record after the answer are timed, parsing and identification
  aside. Median and tail, in microseconds.
- Round trips: a gateway in this process with risk scoring on Redis (no
  quotas), in front of the toy upstream; writes to a Redis connection are
  counted (a pipeline is one), one client at a time, then 32 at once.
- Replay: ``guardgate replay`` on the simulated day written as JSON lines,
  end to end (reading, deciding, writing decisions).

    python bench/risk_bench.py [--scale 0.3] [--redis URL]

Round trips are counted on a redis-server of the benchmark's own (started
on a free port), or on ``--redis``, which is used as it is, never emptied.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.quota_bench import count_round_trips
from bench.simulate import traffic
from guardgate import load_policy
from guardgate.replay import Replay

POLICY = ROOT / "examples" / "policies" / "risk.yaml"


async def cpu_per_assessment(records: list[dict[str, Any]]) -> list[float]:
    """Microseconds per request spent assessing and recording."""
    replay = Replay(load_policy(POLICY))
    engine = replay.engine
    assert engine is not None
    timings = []
    clock = time.perf_counter_ns
    for record in records:
        headers = {k.lower().encode(): str(v).encode() for k, v in record["headers"].items()}
        identity = replay.identifier.identify({"client": (record["client_ip"], 0)}, headers,
                                              trusted=True)
        call = replay.adapters[record["path"]].parse(orjson.dumps(record["body"]))
        usage = record["usage"]
        began = clock()
        assessment = await engine.assess(identity, call, record["ts"])
        await engine.record(assessment, (usage["input_tokens"], usage["output_tokens"]))
        timings.append((clock() - began) / 1000)
    return timings


def replay_throughput(records: list[dict[str, Any]]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "traffic.jsonl"
        path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
        out = Path(tmp) / "decisions.jsonl"
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "guardgate.cli", "replay", "--policy", str(POLICY),
                        str(path), "--out", str(out)], check=True, capture_output=True)
        return len(records) / (time.perf_counter() - began)


def round_trips(redis_url: str, records: list[dict[str, Any]]) -> tuple[float, float]:
    import yaml

    from guardgate.logs import configure_logging
    from guardgate.toy import create_toy_app
    from tests.servers import serve_in_thread

    configure_logging("warning")  # no request lines in the figures
    policy = Path(tempfile.mkstemp(suffix=".yaml")[1])
    document = yaml.safe_load(POLICY.read_text())
    document["storage"] = redis_url
    # Risk only: the quotas' own round trips are measured by quota_bench.
    del document["quotas"]
    bodies = [r["body"] for r in records[:200]]
    with serve_in_thread(create_toy_app()) as toy:
        document["upstream"] = toy
        policy.write_text(yaml.safe_dump(document))
        return count_round_trips(toy, redis_url, requests=320, policy=policy, bodies=bodies)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scale", type=float, default=0.3)
    parser.add_argument("--redis", help="a Redis to count round trips on (default: its own)")
    args = parser.parse_args()
    records, _ = traffic(args.seed, args.scale)

    timings = asyncio.run(cpu_per_assessment(records))
    timings.sort()
    cpu = {
        "median_us": round(statistics.median(timings), 1),
        "p90_us": round(timings[int(0.9 * len(timings))], 1),
        "p99_us": round(timings[int(0.99 * len(timings))], 1),
    }
    rate = replay_throughput(records)
    from tests.servers import redis_for_bench

    with redis_for_bench(args.redis) as url:
        trips = round_trips(url, records)

    print(f"{len(records)} simulated requests (seed {args.seed}, scale {args.scale})\n")
    print("| measure | figure |")
    print("| --- | ---: |")
    print(f"| assessment CPU per request, memory, median | {cpu['median_us']} µs |")
    print(f"| assessment CPU per request, memory, p90 / p99 | {cpu['p90_us']} / "
          f"{cpu['p99_us']} µs |")
    print(f"| Redis round trips per request, one client at a time | {trips[0]:.2f} |")
    print(f"| Redis round trips per request, 32 clients at once | {trips[1]:.2f} |")
    print(f"| guardgate replay, end to end | {rate:,.0f} requests/s |")
    print(json.dumps({"cpu": cpu, "redis_round_trips": trips, "replay_per_second": round(rate)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
