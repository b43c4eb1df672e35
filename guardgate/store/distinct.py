"""Distinct members over a sliding window of buckets, in bounded memory.

`Distinct` counts exactly while it holds at most its class's `EXACT`
members: each member with the newest bucket it was seen in, oldest first,
as the Redis side's sorted sets count a caller's own templates and prompts.
Past that it turns into one HyperLogLog per bucket, the window's count the
estimate of their union, as Redis counts cluster accounts (PFADD into the
bucket's, PFCOUNT over the window's): a fixed size whatever the count
(4 KiB a bucket), within about 1.6 % (one standard error). A window whose
buckets have all expired is exact again.
"""

from __future__ import annotations

import hashlib
import math

BUCKETS = 6

_P = 12
_M = 1 << _P
_RANK_BITS = 64 - _P
_ALPHA = 0.7213 / (1 + 1.079 / _M)
_POW = tuple(2.0**-r for r in range(_RANK_BITS + 2))


def _hash(member: str) -> int:
    # Keyed by nothing, so the same traffic gives the same estimate in every
    # process (Python's own str hash is salted per process).
    return int.from_bytes(hashlib.blake2b(member.encode(), digest_size=8).digest(), "little")


class _Sketch:
    """A HyperLogLog per bucket, and their union with its running sum."""

    __slots__ = ("buckets", "inverse", "union", "zeros")

    def __init__(self) -> None:
        self.buckets: dict[int, bytearray] = {}
        self.union = bytearray(_M)
        self.inverse = float(_M)  # sum of 2^-register over the union
        self.zeros = _M           # registers of the union still 0

    def add(self, member: str, bucket: int) -> None:
        h = _hash(member)
        j = h >> _RANK_BITS
        rank = _RANK_BITS - (h & ((1 << _RANK_BITS) - 1)).bit_length() + 1
        registers = self.buckets.get(bucket)
        if registers is None:
            registers = self.buckets[bucket] = bytearray(_M)
        if rank <= registers[j]:
            return
        registers[j] = rank
        held = self.union[j]
        if rank > held:
            self.union[j] = rank
            self.inverse += _POW[rank] - _POW[held]
            if held == 0:
                self.zeros -= 1

    def expire(self, oldest: int) -> None:
        """Drop the buckets before ``oldest``, and rebuild the union without them."""
        expired = [b for b in self.buckets if b < oldest]
        if not expired:
            return
        for b in expired:
            del self.buckets[b]
        union = bytearray(_M)
        for registers in self.buckets.values():
            union = bytearray(map(max, union, registers))
        self.union = union
        self.inverse = math.fsum(_POW[r] for r in union)
        self.zeros = union.count(0)

    def estimate(self) -> int:
        if self.zeros == _M:
            return 0
        raw = _ALPHA * _M * _M / self.inverse
        if raw <= 2.5 * _M and self.zeros:
            return round(_M * math.log(_M / self.zeros))  # linear counting, for small counts
        return round(raw)


class Distinct:
    """Distinct members over the last `BUCKETS` buckets."""

    EXACT = 4096  # members counted exactly; past it, the sketch
    # What the sketch weighs in members held exactly (about 100 bytes each,
    # with the dictionary's own): its buckets and their union, 4 KiB each.
    SKETCH_WEIGHT = (BUCKETS + 1) * _M // 100

    __slots__ = ("members", "sketch", "weight")

    def __init__(self) -> None:
        # A plain dict, in insertion order: half the memory of an
        # OrderedDict, and a member moves to the end by going out and in.
        self.members: dict[str, int] = {}
        self.sketch: _Sketch | None = None
        self.weight = 0  # what it holds, in members held exactly

    def add(self, member: str, bucket: int) -> int:
        """Count ``member`` in ``bucket``; the window's distinct members."""
        sketch = self.sketch
        if sketch is not None:
            sketch.add(member, bucket)
            return self.count(bucket)
        members = self.members
        held = members.get(member)
        if held is None and len(members) >= self.EXACT and self.count(bucket) >= self.EXACT:
            self._sketched().add(member, bucket)
            return self.count(bucket)
        if held is None:
            members[member] = bucket
            self.weight += 1
        elif bucket > held:
            del members[member]
            members[member] = bucket
        return self.count(bucket)

    def count(self, bucket: int) -> int:
        oldest = bucket - BUCKETS + 1
        sketch = self.sketch
        if sketch is not None:
            sketch.expire(oldest)
            if sketch.buckets:
                return sketch.estimate()
            self.sketch = None
            self.weight = 0
        members = self.members
        while members:
            first = next(iter(members))
            if members[first] >= oldest:
                break
            del members[first]
            self.weight -= 1
        return len(members)

    def stale(self, oldest: int) -> bool:
        """Whether nothing was counted in ``oldest`` or after."""
        if self.sketch is not None:
            return max(self.sketch.buckets, default=oldest - 1) < oldest
        members = self.members
        return not members or next(reversed(members.values())) < oldest

    def _sketched(self) -> _Sketch:
        sketch = self.sketch = _Sketch()
        for member, bucket in self.members.items():
            sketch.add(member, bucket)
        self.members = {}
        self.weight = self.SKETCH_WEIGHT
        return sketch


class ClusterDistinct(Distinct):
    """Accounts of a cluster: a cluster can hold millions, so the sketch
    takes over early (Redis's own estimate is exact only below 128)."""

    EXACT = 256


__all__ = ["BUCKETS", "ClusterDistinct", "Distinct"]
