"""Distinct members over a sliding window: exact while small, a HyperLogLog
per bucket past `EXACT`, of a fixed size whatever the count."""

from __future__ import annotations

import itertools

from guardgate.store.distinct import BUCKETS, ClusterDistinct, Distinct


def test_small_windows_count_exactly_and_slide() -> None:
    window = ClusterDistinct()
    for i in range(210):
        window.add(f"acct:{i}", 100 + i // 70)  # buckets 100, 101, 102: 70 each
    assert window.count(102) == 210 and window.sketch is None
    window.add("acct:0", 103)  # seen again later: counted once, kept longer
    assert window.count(103) == 210
    # Buckets 100..102 leave the window one by one; acct:0 stays with 103.
    assert window.count(100 + BUCKETS) == 210 - 69
    assert window.count(102 + BUCKETS) == 1
    assert window.weight == 1


def test_a_window_past_its_exact_size_estimates_in_fixed_memory() -> None:
    window = ClusterDistinct()
    for i in range(ClusterDistinct.EXACT):
        window.add(f"acct:{i}", 7)
    assert window.sketch is None and window.count(7) == ClusterDistinct.EXACT
    counts = [window.add(f"acct:{i}", 7 + i // 20_000) for i in range(60_000)]
    assert window.sketch is not None
    assert window.weight == ClusterDistinct.SKETCH_WEIGHT  # whatever the count
    assert abs(counts[-1] - 60_000) < 0.04 * 60_000
    assert all(b >= a - 0.02 * a for a, b in itertools.pairwise(counts))
    # Re-adding members already counted barely moves the estimate.
    again = [window.add(f"acct:{i}", 9) for i in range(0, 60_000, 7)][-1]
    assert abs(again - counts[-1]) < 0.01 * 60_000


def test_a_sketch_slides_with_its_window_and_turns_exact_when_empty() -> None:
    window = ClusterDistinct()
    for i in range(20_000):
        window.add(f"old:{i}", 10)
    for i in range(3_000):
        window.add(f"new:{i}", 12)
    assert abs(window.count(12) - 23_000) < 0.04 * 23_000
    # Bucket 10 leaves: only the 3,000 of bucket 12 remain.
    assert abs(window.count(10 + BUCKETS) - 3_000) < 0.04 * 3_000
    assert window.count(12 + BUCKETS) == 0
    assert window.sketch is None and window.weight == 0
    assert window.add("again", 20) == 1


def test_the_estimate_is_the_same_in_every_process() -> None:
    first, second = ClusterDistinct(), ClusterDistinct()
    for i in range(5_000):
        first.add(f"key:{i:016x}", 3)
    for i in reversed(range(5_000)):
        second.add(f"key:{i:016x}", 3)
    # Unsalted hashing: the same members give the same registers, in any order
    # (str hashes are salted per process; an estimate must not depend on it).
    assert first.count(3) == second.count(3)
    assert first.sketch is not None and second.sketch is not None
    assert first.sketch.union == second.sketch.union


def test_a_callers_own_windows_stay_exact_much_longer() -> None:
    window = Distinct()
    for i in range(3_000):
        window.add(f"{i:08x}", 1)
    assert window.sketch is None and window.count(1) == 3_000
