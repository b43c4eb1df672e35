"""Soak: a `guardgate serve` process under sustained mixed load, watched.

Traffic, from concurrent clients: normal callers (JSON and streamed),
greedy callers that run into their quota (429), challenged callers (half
solve the proof of work with ChallengeAuth and spend clearances, half never
do, are refused with 401 and then 429 once challenges stop being issued to
them) and marked callers (degraded and watermarked answers), against the
toy upstream, with Redis as storage and the risk engine scoring everyone
(it moves callers that send templated prompts at volume into the marked
tier too). Every 5 seconds the
gateway's resident memory and open file descriptors are read from /proc.

At the end: memory growth after warm-up (the first quarter of the run),
descriptors at the end against after warm-up, and the books: requests sent
against requests counted by the gateway's metrics and request log lines
written; quota reservations still open; in-flight slots still held.

    python3 bench/soak.py [--duration 180] [--clients 16] [--json]

Runs its own redis-server on a free port, or uses ``--redis`` as it is
(never emptied: counts of slots and reservations then include what was there).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import redis
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.proxy_bench import free_port, process
from guardgate.client import ChallengeAuth
from tests.servers import redis_for_bench

CLASSES = {"normal": 0.6, "greedy": 0.15, "challenged": 0.15, "marked": 0.1}
# Callers per class: the normal ones stay well inside their quota, the two
# greedy ones take a sixth of the load each and run past it.
CALLERS = {"normal": 64, "greedy": 2, "challenged": 8, "marked": 8}


def keys(kind: str, count: int) -> list[str]:
    return [f"sk-soak-{kind}-{i}" for i in range(count)]


def policy(upstream: str, storage: str) -> dict[str, Any]:
    def digest(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    return {
        "upstream": upstream,
        "storage": storage,
        "quotas": [
            {"name": "rpm", "limit": "600/minute"},
            {"name": "tpm", "limit": "200000/minute", "cost": "total_tokens"},
            {"name": "parallel", "concurrency": 8},
        ],
        "tiers": {
            "suspicious": {"score": 0.5, "challenge": {"difficulty": 8}},
            "marked": {"score": 0.8, "mark": True, "degrade": ["drop_logprobs"]},
        },
        "overrides": (
            [{"api_key_sha256": digest(k), "tier": "suspicious"}
             for k in keys("challenged", CALLERS["challenged"])]
            + [{"api_key_sha256": digest(k), "tier": "marked"}
               for k in keys("marked", CALLERS["marked"])]
        ),
        "challenge": {"secret": "soak-challenge-secret-0123456789",
                      "clearance": {"budget": {"requests": 20, "output_tokens": 100000}}},
        "watermark": {"key": "soak-watermark-key-0123456789"},
    }


def body(rng: random.Random) -> dict[str, Any]:
    stream = rng.random() < 0.5
    out: dict[str, Any] = {
        "model": "toy-1", "max_tokens": rng.choice([16, 64, 128]),
        "messages": [{"role": "user", "content": f"Explain topic {rng.randrange(1000)}."}],
    }
    if stream:
        out["stream"] = True
    if rng.random() < 0.2:
        out["logprobs"] = True
    return out


class Load:
    def __init__(self, base: str, seed: int) -> None:
        self.base = base
        self.rng = random.Random(seed)
        self.sent = 0
        self.statuses: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()

    async def client(self, stop: float, index: int) -> None:
        rng = random.Random(index)
        async def count(request: httpx.Request) -> None:
            self.sent += 1  # every request on the wire, a solution's resend included

        hooks = {"request": [count]}
        solver = httpx.AsyncClient(base_url=self.base, auth=ChallengeAuth(), timeout=30,
                                   event_hooks=hooks)
        plain = httpx.AsyncClient(base_url=self.base, timeout=30, event_hooks=hooks)
        async with solver, plain:
            while time.monotonic() < stop:
                kind = rng.choices(list(CLASSES), weights=list(CLASSES.values()))[0]
                key = rng.choice(keys(kind, CALLERS[kind]))
                client = plain
                if kind == "challenged" and int(key.rsplit("-", 1)[1]) % 2 == 0:
                    client = solver  # the even ones solve; the odd ones never do
                try:
                    response = await client.post(
                        "/v1/chat/completions", json=body(rng),
                        headers={"authorization": f"Bearer {key}"})
                    self.statuses[f"{kind} {response.status_code}"] += 1
                    if response.status_code >= 500:
                        self.errors[f"{response.status_code}"] += 1
                except httpx.HTTPError as exc:
                    self.errors[type(exc).__name__] += 1
                if kind == "greedy":
                    continue  # as fast as it can
                await asyncio.sleep(rng.uniform(0, 0.02))


def sample(pid: int) -> tuple[int, int]:
    """(resident bytes, open descriptors) of ``pid``."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    return rss * 1024, len(os.listdir(f"/proc/{pid}/fd"))


def metrics(base: str) -> dict[str, float]:
    text = httpx.get(base + "/_guardgate/metrics").text
    found: dict[str, float] = Counter()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in ("guardgate_requests_total", "guardgate_reservations_open",
                          "guardgate_upstream_failures_total", "guardgate_marked_answers_total",
                          "guardgate_challenges_solved_total"):
                found[s.name] += s.value
    return dict(found)


async def drive(base: str, pid: int, duration: float, clients: int) -> dict[str, Any]:
    load = Load(base, 1)
    stop = time.monotonic() + duration
    began = time.monotonic()
    samples: list[tuple[float, int, int]] = []
    tasks = [asyncio.create_task(load.client(stop, i)) for i in range(clients)]
    while time.monotonic() < stop:
        rss, fds = sample(pid)
        samples.append((round(time.monotonic() - began, 1), rss, fds))
        await asyncio.sleep(min(5.0, max(0.0, stop - time.monotonic())))
    await asyncio.gather(*tasks)
    await asyncio.sleep(2)  # settlements and log lines land
    rss, fds = sample(pid)
    samples.append((round(time.monotonic() - began, 1), rss, fds))
    return {"load": load, "samples": samples}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of load")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument("--redis", help="a Redis to use (default: a redis-server of its own)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON only")
    args = parser.parse_args()
    # Stopped from outside, the gateway and the upstream (in sessions of
    # their own) are stopped too: the context managers below run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    with redis_for_bench(args.redis) as url:
        return soak(args, url)


def soak(args: argparse.Namespace, url: str) -> int:
    store = redis.Redis.from_url(url)
    work = Path(tempfile.mkdtemp(prefix="guardgate-soak-"))
    toy_port, port = free_port(), free_port()
    toy = f"http://127.0.0.1:{toy_port}"
    base = f"http://127.0.0.1:{port}"
    (work / "policy.yaml").write_text(yaml.safe_dump(policy(toy, url)))
    log = work / "gateway.log"
    with process([sys.executable, "-m", "uvicorn", "--factory", "guardgate.toy:create_toy_app",
                  "--port", str(toy_port), "--log-level", "warning"], toy_port), \
         process([sys.executable, "-m", "guardgate.cli", "serve", "--policy",
                  str(work / "policy.yaml"), "--port", str(port)], port, log=log) as gateway:
        run = asyncio.run(drive(base, gateway.pid, args.duration, args.clients))
        counted = metrics(base)
        slots = sum(int(store.zcount(k, time.time() * 1000, "+inf"))
                    for k in store.scan_iter(match="*guardgate/slots/*"))
    load: Load = run["load"]
    samples: list[tuple[float, int, int]] = run["samples"]
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    logged = sum(1 for line in lines if line.get("event") == "request"
                 and line.get("path") == "/v1/chat/completions")
    warm = next(s for s in samples if s[0] >= args.duration / 4)
    after = [s for s in samples if s[0] >= warm[0]]
    report = {
        "duration_s": args.duration,
        "clients": args.clients,
        "requests_sent": load.sent,
        "requests_counted": int(counted.get("guardgate_requests_total", 0)),
        "request_lines_logged": logged,
        "statuses": dict(sorted(load.statuses.items())),
        "client_errors": dict(load.errors),
        "reservations_open": counted.get("guardgate_reservations_open", 0),
        "slots_held": slots,
        "marked_answers": counted.get("guardgate_marked_answers_total", 0),
        "challenges_solved": counted.get("guardgate_challenges_solved_total", 0),
        "rss_after_warmup_mb": round(warm[1] / 2**20, 1),
        "rss_peak_after_warmup_mb": round(max(s[1] for s in after) / 2**20, 1),
        "rss_end_mb": round(samples[-1][1] / 2**20, 1),
        "rss_growth_after_warmup": round(max(s[1] for s in after) / warm[1] - 1, 4),
        "fds_after_warmup": warm[2],
        "fds_end": samples[-1][2],
        "fds_max": max(s[2] for s in samples),
        "samples": [(t, round(r / 2**20, 1), f) for t, r, f in samples],
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=2))
        print("\n| t (s) | RSS (MiB) | open fds |\n| ---: | ---: | ---: |")
        for t, r, f in report["samples"]:
            print(f"| {t} | {r} | {f} |")
    ok = (report["requests_sent"] == report["requests_counted"] == report["request_lines_logged"]
          and report["reservations_open"] == 0 and slots == 0 and not load.errors)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
