"""What a flood of new API keys costs in memory: the resident memory (RSS)
of a gateway on memory storage, risk scoring on, while ``--keys`` distinct
keys send one request each, then as many more.

    python bench/memory_bench.py [--keys 20000] [--max-callers N] [--json]

The gateway runs as middleware around a trivial upstream (an ASGI app that
answers every call with a small chat completion) and is driven in this
process, without sockets, so what grows is the gateway's own state. The
policy has two tiers (``watch``, and ``blocked``, which denies) and one
quota per client IP of ``keys / 2`` an hour.

1. Warm-up: a few hundred requests, then the first RSS reading.
2. ``--risky`` callers mine logprobs until the policy blocks them.
3. First wave: ``--keys`` new keys, one request each, from four addresses
   (all answered).
4. Second wave: ``--keys`` more, from one address: the first half are
   answered, the rest refused by the quota (429), so new keys whose
   requests are admitted and new keys whose requests are refused are both
   in it.
5. Each risky caller sends one more request: a flood must not make the
   gateway forget who it blocked, so every one must still be refused (403).

Figures: RSS at the start and after each wave (after a garbage
collection), growth per key, the callers the risk state tracks, and the
bound the operations guide documents: ``risk.max_callers`` times
`guardgate.store.risk.CALLER_BYTES`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from guardgate import GuardGate
from guardgate.policy.model import RiskConfig, default_of
from guardgate.store.risk import CALLER_BYTES
from guardgate.types import Message, Receive, Scope, Send

ANSWER = orjson.dumps({
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1733480000, "model": "m",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "Done."}}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14},
})
MINING = {"logprobs": True, "top_logprobs": 20, "max_tokens": 1, "temperature": 0}
MiB = 1024 * 1024


async def upstream(scope: Scope, receive: Receive, send: Send) -> None:
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": ANSWER})


def policy(keys: int, max_callers: int | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "tiers": {"watch": {"score": 0.3, "quota_factor": 0.5},
                  "blocked": {"score": 0.5, "deny": True}},
        "quotas": [{"name": "per-ip", "per": "ip", "limit": f"{keys // 2}/hour"}],
    }
    if max_callers is not None:
        doc["risk"] = {"max_callers": max_callers}
    return doc


class Driver:
    """Sends requests straight into the gateway's ASGI callable."""

    def __init__(self, gate: GuardGate) -> None:
        self.gate = gate
        self.statuses: Counter[int] = Counter()

    async def call(self, key: str, text: str, address: str, **params: Any) -> int:
        body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": text}],
                             **params})
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> Message:
            if messages:
                return messages.pop()
            await asyncio.sleep(3600)  # the client stays until the answer is sent
            return {"type": "http.disconnect"}

        status = 0

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        scope: Scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": "/v1/chat/completions",
            "raw_path": b"/v1/chat/completions", "query_string": b"", "root_path": "",
            "headers": [(b"host", b"gateway"), (b"content-type", b"application/json"),
                        (b"authorization", b"Bearer " + key.encode()),
                        (b"user-agent", b"memory-bench/1")],
            "client": (address, 40000), "server": ("127.0.0.1", 8080),
        }
        await self.gate(scope, receive, send)
        self.statuses[status] += 1
        return status


def rss_mib() -> float:
    gc.collect()
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def flood(keys: int, max_callers: int | None, risky: int) -> dict[str, Any]:
    gate = GuardGate(upstream, policy=policy(keys, max_callers))
    drive = Driver(gate)
    risk = gate.runtime.admission.risk
    assert risk is not None
    state: Any = risk.state
    began = time.perf_counter()
    for i in range(300):
        await drive.call(f"warm-{i}", f"Summarise warm-up note {i}.", "10.0.9.1")
    start = rss_mib()

    miners = [f"sk-risky-{i:04d}" for i in range(risky)]
    for i, key in enumerate(miners):
        for n in range(40):
            if await drive.call(key, f"Rate item {i} {n}.", "10.0.8.1", **MINING) == 403:
                break

    for i in range(keys):
        await drive.call(f"sk-first-{i:08d}", f"Summarise document {i} in one line.",
                         f"10.0.1.{i % 4 + 1}")
    first = rss_mib()
    tracked_first = len(state)

    for i in range(keys):
        await drive.call(f"sk-second-{i:08d}", f"Summarise report {i} in one line.", "10.0.2.1")
    second = rss_mib()

    after = [await drive.call(key, "Rate one more item.", "10.0.8.1", **MINING)
             for key in miners]
    seconds = time.perf_counter() - began
    await gate.aclose()
    cap = default_of(RiskConfig, "max_callers") if max_callers is None else max_callers
    return {
        "keys": keys,
        "max_callers": cap,
        "rss_mib": {"start": round(start, 1), "after_first": round(first, 1),
                    "after_second": round(second, 1)},
        "first_kib_per_key": round((first - start) * 1024 / keys, 2),
        "second_kib_per_key": round((second - first) * 1024 / keys, 2),
        "documented_mib": round(cap * CALLER_BYTES / MiB, 1),
        "tracked": {"after_first": tracked_first, "after_second": len(state)},
        "risky": {"callers": risky, "refused_after": after.count(403)},
        "statuses": {str(k): v for k, v in sorted(drive.statuses.items())},
        "seconds": round(seconds, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=20_000, help="new keys in each wave")
    parser.add_argument("--max-callers", type=int, default=None,
                        help="risk.max_callers (default: the policy's default)")
    parser.add_argument("--risky", type=int, default=20, help="callers blocked before the flood")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    args = parser.parse_args()
    from guardgate.logs import configure_logging

    configure_logging("warning")  # no request lines in the figures
    result = asyncio.run(flood(args.keys, args.max_callers, args.risky))
    if args.json:
        print(json.dumps(result))
        return 0
    rss = result["rss_mib"]
    print(f"{args.keys:,} new keys, then {args.keys:,} more; risk.max_callers "
          f"{result['max_callers']:,}\n")
    print("| measure | figure |")
    print("| --- | ---: |")
    print(f"| RSS at the start | {rss['start']} MiB |")
    print(f"| RSS after the first wave | {rss['after_first']} MiB "
          f"({result['first_kib_per_key']} KiB a key) |")
    print(f"| RSS after the second wave | {rss['after_second']} MiB "
          f"({result['second_kib_per_key']} KiB a key) |")
    print(f"| callers tracked after each wave | {result['tracked']['after_first']:,} / "
          f"{result['tracked']['after_second']:,} |")
    print(f"| blocked callers still refused after the flood | "
          f"{result['risky']['refused_after']} of {result['risky']['callers']} |")
    print(f"| documented bound of the risk state | {result['documented_mib']} MiB |")
    print(f"| statuses | {result['statuses']} |")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
