"""A feed made from one deployment's caught attackers, in force at another
deployment (another randomized world: its own ordinary callers, networks
and accounts; campaigns with the same tooling), changes none of the ordinary
callers that reach suspicious, and catches its hydra accounts sooner. The detection benchmark's
worlds, small (bench/intel_bench.py runs them at full size)."""

from __future__ import annotations

import json

from bench.intel_bench import POLICY, run_world, source_bundle


def test_a_peers_feed_flags_no_ordinary_caller_and_catches_hydras_sooner() -> None:
    source = source_bundle(101, 0.1, 2, POLICY)
    assert source["indicators"] >= 3
    assert source["dropped"].get("shared_with_ordinary_callers", 0) > 0
    result = run_world((474354, 0.1, 2, str(POLICY), json.dumps(source["bundle"]).encode()))
    report = result["report"]
    assert report["benign"]["accounts"] > 100
    assert report["benign"]["flagged_changed"] == 0  # not one reaches suspicious otherwise
    assert report["benign"]["moved"] <= report["benign"]["accounts"] // 100
    hydra = report["hydra"]
    assert hydra["flagged_with"] >= hydra["flagged_without"]
    assert hydra["before_with"] < hydra["before_without"]
