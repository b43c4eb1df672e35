"""A hostile caller against the gateway's memory: 20,000 new API keys, then
20,000 more (`bench/memory_bench.py`, in a process of its own so that its
resident memory is the gateway's). Memory stays under the bound the
operations guide documents and stops growing once the risk state is full,
new keys whose requests are refused grow nothing, and the flood does not
make the gateway forget the callers it blocked."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEYS = 20_000


def test_a_flood_of_new_keys_leaves_memory_under_the_documented_bound() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "memory_bench.py"), "--keys", str(KEYS), "--json"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.splitlines()[-1])
    rss = result["rss_mib"]
    # Every request was answered as the policy says: the first wave and half
    # of the second served, the rest of the second refused by the quota.
    statuses = result["statuses"]
    assert statuses["429"] == KEYS // 2
    assert statuses["200"] >= KEYS + KEYS // 2
    # The risk state is full after the first wave (20,000 callers, its
    # default), so the second adds callers only in place of others: memory
    # stays where it was (before: about 7 KiB more a key, without end).
    assert result["second_kib_per_key"] < 0.5, rss
    # About 2.4 KiB a caller until it is full (docs/operations.md, memory),
    # and all of it under the documented bound of the risk state, plus what
    # does not grow with callers (identities remembered, pools, buffers).
    assert result["first_kib_per_key"] < 3.5, rss
    assert rss["after_second"] - rss["start"] < result["documented_mib"] + 16, rss
    assert result["tracked"]["after_second"] <= result["max_callers"] == 20_000
    # The flood did not make the gateway forget whom it blocks.
    assert result["risky"]["refused_after"] == result["risky"]["callers"] == 20


def test_the_documented_bound_is_the_one_the_code_keeps() -> None:
    from guardgate.policy.model import RiskConfig, default_of
    from guardgate.store.risk import CALLER_BYTES

    guide = (ROOT / "docs" / "operations.md").read_text()
    cap = default_of(RiskConfig, "max_callers")
    assert f"| `risk.max_callers` callers, {cap:,} by default |" in guide
    assert f"at most {CALLER_BYTES // 1024} KiB a caller slot" in guide
    assert f"at most {math.ceil(cap * CALLER_BYTES / 1024**2)} MiB with the default" in guide
