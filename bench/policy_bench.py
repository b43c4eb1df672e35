"""What a real policy costs: throughput of one guardgate worker running a
full policy in shadow mode (every request identified, scored, reserved in
three quotas, settled and forwarded), on memory, on Redis and on a Redis
Cluster, against the bare pure-ASGI aiohttp pass-through
(`bench/baseline_proxy.py`) and guardgate with no policy (what the policy
itself costs is the difference), all in one run; and the Redis round trips a
request makes before it is forwarded, counted on the connections.

The load: wrk with 32 connections, 1,000 API keys each asking questions of
its own, against nginx answering a fixed chat completion.

    apt-get install -y nginx-light wrk redis-server
    python bench/policy_bench.py [--duration 8] [--rounds 3]

Redis and the cluster are the benchmark's own (free ports, nothing on disk).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.proxy_bench import free_port, median_rates, nginx
from bench.quota_bench import count_round_trips

KEYS = 1000
POLICY = """\
upstream: {upstream}
storage: {storage}
mode: shadow
quotas:
  - {{name: rpm, limit: 100000000/minute}}
  - {{name: tpm, limit: 100000000000/minute, cost: total_tokens}}
  - {{name: parallel, concurrency: 1000}}
tiers:
  watch: {{score: 0.3, quota_factor: 0.5}}
  suspicious: {{score: 0.5, quota_factor: 0.25, challenge: {{}}}}
  high: {{score: 0.7, quota_factor: 0.1, degrade: [drop_logprobs, drop_reasoning]}}
  blocked: {{score: 0.9, deny: true}}
challenge: {{secret: bench-challenge-secret-0123456789}}
"""

# Each request from one of KEYS keys, with a question of its own.
WRK_KEYS = """
local counter = 0
local thread_seed = 0
setup = function(thread)
  thread_seed = thread_seed + 1
  thread:set("seed", thread_seed)
end
init = function(args)
  counter = (seed or 1) * 7919
end
request = function()
  counter = counter + 1
  local key = counter % {keys}
  local body = string.format(
    '{{"model":"toy-1","max_tokens":64,"messages":[{{"role":"user",' ..
    '"content":"Caller %d asks question %d: what is the capital of region %d?"}}]}}',
    key, counter, counter % 97)
  return wrk.format("POST", nil, {{["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer sk-bench-" .. key}}, body)
end
"""
UVICORN = ["--log-level", "warning", "--no-access-log", "--loop", "uvloop", "--http", "httptools"]


def policy_file(upstream: str, storage: str) -> Path:
    path = Path(tempfile.mkstemp(suffix=".yaml")[1])
    path.write_text(POLICY.format(upstream=upstream, storage=storage))
    return path


@contextlib.contextmanager
def stores() -> Iterator[dict[str, str]]:
    """The storages to compare: memory, a Redis and a Redis Cluster of the
    benchmark's own."""
    from tests.servers import own_redis, own_redis_cluster

    port = free_port()
    with own_redis(port), own_redis_cluster() as cluster:
        yield {"memory": "memory://", "redis": f"redis://127.0.0.1:{port}/0",
               "cluster": cluster.url}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    for tool in ("nginx", "wrk", "redis-server"):
        if shutil.which(tool) is None:
            print(f"{tool} not found: apt-get install -y nginx-light wrk redis-server",
                  file=sys.stderr)
            return 2
    upstream_port = free_port()
    upstream = f"http://127.0.0.1:{upstream_port}"
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(WRK_KEYS.format(keys=KEYS))
    path = "/v1/chat/completions"
    with nginx(upstream_port), stores() as urls:
        policies = {name: policy_file(upstream, url) for name, url in urls.items()}
        bodies = [{"model": "toy-1", "max_tokens": 64, "messages": [
            {"role": "user", "content": f"Caller {i} asks: what is the capital of region {i}?"}]}
            for i in range(KEYS)]
        trips = {name: count_round_trips(upstream, urls[name], policy=policies[name],
                                         bodies=bodies, keys=KEYS)
                 for name in ("redis", "cluster")}
        passing = Path(tempfile.mkstemp(suffix=".yaml")[1])
        passing.write_text(f"upstream: {upstream}\n")
        commands = {
            "bare": [sys.executable, "-m", "uvicorn", "bench.baseline_proxy:app", *UVICORN],
            "no policy": [sys.executable, "-m", "guardgate.cli", "serve", "--policy",
                          str(passing)],
            **{name: [sys.executable, "-m", "guardgate.cli", "serve", "--policy", str(p)]
               for name, p in policies.items()},
        }
        med = median_rates(commands, args.rounds, path, args.duration, args.connections,
                           script, env={"UPSTREAM": upstream})
    print(f"\nPOST {path}: full policy in shadow mode, {KEYS:,} keys, {args.connections} "
          f"connections, one worker, median of {args.rounds} x {args.duration}s\n")
    print("| target | req/s | vs bare pass-through |")
    print("| --- | ---: | ---: |")
    for name, value in med.items():
        print(f"| {name} | {value:.0f} | {value / med['bare']:.2f} |")
    print("\nRedis round trips per request (writes on the connections; a pipeline is one):")
    for name, (one, many) in trips.items():
        print(f"  {name}: {one:.2f} with one client at a time, {many:.2f} with "
              f"{args.connections} at once")
    print(json.dumps({"rps": {k: round(v) for k, v in med.items()},
                      "ratio": {k: round(v / med["bare"], 3) for k, v in med.items()},
                      "round_trips": trips}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
