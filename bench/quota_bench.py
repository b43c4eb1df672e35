"""What quota enforcement costs: throughput with quotas off and on, on memory
and on Redis, in one run; and the Redis round trips a request makes.

Three quotas per principal: requests (rpm), total tokens (tpm, reserved
before forwarding and settled after) and in-flight requests (parallel). The
limits are far above what the run sends, so every request is admitted and
the figures are the cost of the normal path.

    apt-get install -y nginx-light wrk redis-server
    python bench/quota_bench.py [--duration 8] [--rounds 3] [--redis URL]

Redis: a redis-server of its own on a free port, or ``--redis``, used as it
is (never emptied).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.proxy_bench import (
    CHAT_BODY,
    WRK_POST,
    free_port,
    median_rates,
    nginx,
)

QUOTAS = """
quotas:
  - {name: rpm, limit: 100000000/minute}
  - {name: tpm, limit: 100000000000/minute, cost: total_tokens}
  - {name: parallel, concurrency: 1000}
"""


def policy_file(upstream: str, storage: str, quotas: bool) -> Path:
    path = Path(tempfile.mkstemp(suffix=".yaml")[1])
    path.write_text(f"upstream: {upstream}\nstorage: {storage}\n" + (QUOTAS if quotas else ""))
    return path


def count_round_trips(upstream: str, redis_url: str, requests: int = 640,
                      concurrency: int = 32, policy: Path | None = None,
                      bodies: list[dict[str, object]] | None = None,
                      keys: int = 1) -> tuple[float, float]:
    """Redis round trips per request (writes to a Redis connection; a pipeline
    is one), counted inside a gateway in this process: one client at a time,
    then ``concurrency`` clients at once. ``policy`` defaults to the three
    quotas on ``redis_url``; ``bodies`` (sent in turn) to one chat request;
    ``keys``: API keys the requests take in turn."""
    import httpx
    from redis.asyncio import connection

    from guardgate import GuardGate
    from tests.servers import serve_in_thread

    writes = 0
    original = connection.AbstractConnection.send_packed_command

    async def counting(self: object, *args: object, **kwargs: object) -> object:
        nonlocal writes
        writes += 1
        return await original(self, *args, **kwargs)  # type: ignore[arg-type]

    sent = bodies or [json.loads(CHAT_BODY)]
    headers = [{"authorization": f"Bearer sk-bench-{i}" if keys > 1 else "Bearer sk-bench"}
               for i in range(keys)]

    async def load(base: str, total: int, parallel: int) -> None:
        async with httpx.AsyncClient(base_url=base) as client:
            async def worker(count: int) -> None:
                for i in range(count):
                    await client.post("/v1/chat/completions", json=sent[i % len(sent)],
                                      headers=headers[i % keys])
            await asyncio.gather(*[worker(total // parallel) for _ in range(parallel)])
        await asyncio.sleep(0.2)  # settlements land after the answers

    gate = GuardGate(policy=policy or policy_file(upstream, redis_url, True))
    connection.AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
    try:
        with serve_in_thread(gate) as base:
            asyncio.run(load(base, concurrency * 4, concurrency))  # connect, load scripts
            figures = []
            for parallel in (1, concurrency):
                writes = 0
                asyncio.run(load(base, requests, parallel))
                figures.append(writes / requests)
    finally:
        connection.AbstractConnection.send_packed_command = original  # type: ignore[method-assign]
    return figures[0], figures[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--redis", help="a Redis to use (default: a redis-server of its own)")
    args = parser.parse_args()
    from tests.servers import redis_for_bench

    with redis_for_bench(args.redis) as url:
        return run(args, url)


def run(args: argparse.Namespace, redis_url: str) -> int:
    upstream_port = free_port()
    upstream = f"http://127.0.0.1:{upstream_port}"
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(WRK_POST.format(body=json.dumps(CHAT_BODY)))
    variants = {
        "quotas off": policy_file(upstream, "memory://", False),
        "quotas on, memory": policy_file(upstream, "memory://", True),
        "quotas on, redis": policy_file(upstream, redis_url, True),
    }
    path = "/v1/chat/completions"
    commands = {name: [sys.executable, "-m", "guardgate.cli", "serve", "--policy", str(policy)]
                for name, policy in variants.items()}
    with nginx(upstream_port):
        trips = count_round_trips(upstream, redis_url)
        med = median_rates(commands, args.rounds, path, args.duration, args.connections, script,
                           warm_up=1)
    print(f"\nPOST {path}, {args.connections} connections, one worker, "
          f"median of {args.rounds} x {args.duration}s\n")
    print("| policy | req/s | vs quotas off |")
    print("| --- | ---: | ---: |")
    for name, value in med.items():
        print(f"| {name} | {value:.0f} | {value / med['quotas off']:.2f} |")
    print(f"\nRedis round trips per request (3 quotas): {trips[0]:.2f} with one client at a "
          f"time, {trips[1]:.2f} with {args.connections} at once")
    print(json.dumps({**{k: round(v) for k, v in med.items()}, "redis_round_trips": trips}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
