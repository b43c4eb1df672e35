"""The caught ledger: fingerprints of the callers caught for distillation.

The risk state keeps a caller's last explanation and forgets a caller its
memory bound or its keys' expiry drops; what a campaign showed over its
whole run (every skeleton, network and client string its accounts used
while they were in a tier) is kept nowhere else. The ledger keeps it, per
fingerprint, for callers at the intel section's ``min_tier`` or above:

- when it was first and last caught, and last caught in each tier;
- the cluster's accounts and risky accounts (own score at the member score)
  in the risk window that held the most accounts: how specific the
  fingerprint is to the campaign;
- a sketch of the caught principals (the `SKETCH` smallest of their hashes),
  which estimates how many accounts carried it and links the fingerprints
  one campaign's accounts share; the principals themselves are not kept;
- the signals that put them in their tier, and the raw values of the
  signals that describe demand (reasoning asked for, harvest, output
  ratio, timing), summed.

Bounded: at most ``size`` fingerprints (the least recently caught go
first), each kept ``ttl`` after it was last caught. On Redis, a fingerprint
is a hash and a sorted set in one hash slot (``guardgate/intel{kind:value}``)
updated by ``lua/intel_ledger.lua``, with the index of fingerprints (a sorted
set by last caught) updated by plain commands: all of it batched with the
request's settlement, no round trip of its own.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol

from guardgate.store.errors import guarded
from guardgate.store.scripts import LuaScript

SKETCH = 16          # principal hashes kept per fingerprint
HASH_BITS = 52       # exact as a double, as Redis scores are
PREFIX = "guardgate/intel"
INDEX = PREFIX + ":ledger"
LEDGER = LuaScript.named("intel_ledger")


def principal_hash(principal: str) -> int:
    digest = hashlib.blake2b(principal.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & ((1 << HASH_BITS) - 1)


@dataclass(frozen=True, slots=True)
class Caught:
    """One request of a caller in a tier at or above the ledger's."""

    principal: str
    now: float
    tier: str
    clusters: tuple[tuple[str, str, int, int], ...]  # kind, value, accounts, risky accounts
    signals: tuple[str, ...] = ()                    # the strongest signals that fired
    demand: tuple[tuple[str, float], ...] = ()       # demand signals' raw values


@dataclass(slots=True)
class LedgerEntry:
    """What the ledger knows of one fingerprint."""

    kind: str
    value: str
    first: float
    last: float
    accounts: int = 0
    risky: int = 0
    requests: int = 0
    tiers: dict[str, float] = field(default_factory=dict)   # tier -> last caught in it
    sketch: list[int] = field(default_factory=list)          # ascending principal hashes
    signals: dict[str, int] = field(default_factory=dict)
    demand: dict[str, float] = field(default_factory=dict)   # sums of raw values

    @property
    def caught(self) -> float:
        """Distinct caught accounts: exact below `SKETCH`, estimated above
        from the sketch's largest hash."""
        if len(self.sketch) < SKETCH:
            return float(len(self.sketch))
        return (SKETCH - 1) / ((self.sketch[-1] + 1) / (1 << HASH_BITS))

    def add(self, caught: Caught, accounts: int, risky: int) -> None:
        now = caught.now
        self.first = min(self.first, now)
        self.last = max(self.last, now)
        if accounts >= self.accounts:
            self.accounts, self.risky = accounts, risky
        self.tiers[caught.tier] = max(self.tiers.get(caught.tier, 0.0), now)
        self.requests += 1
        hashed = principal_hash(caught.principal)
        if hashed not in self.sketch:
            self.sketch = sorted([*self.sketch, hashed])[:SKETCH]
        for name in caught.signals:
            self.signals[name] = self.signals.get(name, 0) + 1
        for name, value in caught.demand:
            self.demand[name] = self.demand.get(name, 0.0) + value


class CaughtLedger(Protocol):
    def bound(self, size: int, ttl: float) -> None:
        """Keep at most ``size`` fingerprints, each ``ttl`` seconds after last caught."""

    async def note(self, caught: Caught) -> None:
        """Count one caught request in each of its fingerprints."""

    async def entries(self, since: float, now: float) -> list[LedgerEntry]:
        """Every fingerprint last caught at ``since`` or after."""


class MemoryLedger:
    """The ledger in this process."""

    def __init__(self, size: int = 20_000, ttl: float = 7 * 86400.0) -> None:
        self._entries: OrderedDict[str, LedgerEntry] = OrderedDict()
        self.bound(size, ttl)

    def bound(self, size: int, ttl: float) -> None:
        self.size, self.ttl = size, ttl

    def __len__(self) -> int:
        return len(self._entries)

    async def note(self, caught: Caught) -> None:
        entries = self._entries
        for kind, value, accounts, risky in caught.clusters:
            key = f"{kind}:{value}"
            entry = entries.get(key)
            if entry is None:
                entry = entries[key] = LedgerEntry(kind, value, caught.now, caught.now)
            else:
                entries.move_to_end(key)
            entry.add(caught, accounts, risky)
        while len(entries) > self.size:
            entries.popitem(last=False)
        # The least recently caught come first: drop the expired among them.
        stale = caught.now - self.ttl
        while entries:
            oldest = next(iter(entries.values()))
            if oldest.last >= stale:
                break
            entries.popitem(last=False)

    async def entries(self, since: float, now: float) -> list[LedgerEntry]:
        floor = max(since, now - self.ttl)
        return [entry for entry in self._entries.values() if entry.last >= floor]


def entry_keys(kind: str, value: str) -> tuple[str, str]:
    """A fingerprint's hash and sketch, in one hash slot."""
    stem = f"{PREFIX}{{{kind}:{value}}}"
    return f"{stem}:h", f"{stem}:k"


@guarded
class RedisLedger:
    """The ledger in Redis, shared by every replica."""

    def __init__(self, client: Any, settlements: Any, size: int = 20_000,
                 ttl: float = 7 * 86400.0) -> None:
        self._client = client
        self._settlements = settlements
        self.bound(size, ttl)

    def bound(self, size: int, ttl: float) -> None:
        self.size, self.ttl = size, ttl

    async def note(self, caught: Caught) -> None:
        ttl = max(1, int(self.ttl))
        hashed = principal_hash(caught.principal)
        tail: list[Any] = [len(caught.signals), *caught.signals, len(caught.demand)]
        for name, amount in caught.demand:
            tail += [name, repr(amount)]
        last = len(caught.clusters) - 1
        for i, (kind, value, accounts, risky) in enumerate(caught.clusters):
            args: list[Any] = [repr(caught.now), caught.tier, accounts, risky, hashed, SKETCH,
                               ttl, *tail]
            commands: list[tuple[Any, ...]] = [
                ("ZADD", INDEX, repr(caught.now), f"{kind}:{value}")]
            if i == last:
                commands += [("ZREMRANGEBYSCORE", INDEX, "-inf", repr(caught.now - self.ttl)),
                             ("ZREMRANGEBYRANK", INDEX, 0, -self.size - 1)]
            await self._settlements.add_call(LEDGER, list(entry_keys(kind, value)), args,
                                             commands)

    async def entries(self, since: float, now: float) -> list[LedgerEntry]:
        floor = max(since, now - self.ttl)
        members = await self._client.zrangebyscore(INDEX, repr(floor), "+inf")
        names = [m.decode() if isinstance(m, bytes) else str(m) for m in members]
        if not names:
            return []
        async with self._client.pipeline(transaction=False) as pipe:
            for name in names:
                kind, _, value = name.partition(":")
                hash_key, sketch_key = entry_keys(kind, value)
                pipe.hgetall(hash_key)
                pipe.zrange(sketch_key, 0, -1)
            replies = await pipe.execute()
        found = []
        for i, name in enumerate(names):
            kind, _, value = name.partition(":")
            entry = _entry(kind, value, replies[2 * i], replies[2 * i + 1])
            if entry is not None and entry.last >= floor:
                found.append(entry)
        return found


def _entry(kind: str, value: str, raw: dict[Any, Any], sketch: list[Any]) -> LedgerEntry | None:
    fields = {_text(k): _text(v) for k, v in raw.items()}
    if "last" not in fields:
        return None  # expired between the index and the read
    entry = LedgerEntry(kind, value, float(fields.get("first", fields["last"])),
                        float(fields["last"]), int(fields.get("accounts", 0)),
                        int(fields.get("risky", 0)), int(fields.get("requests", 0)))
    for name, text in fields.items():
        prefix, _, rest = name.partition(":")
        if prefix == "t" and rest:
            entry.tiers[rest] = float(text)
        elif prefix == "s" and rest:
            entry.signals[rest] = int(text)
        elif prefix == "d" and rest:
            entry.demand[rest] = float(text)
    entry.sketch = sorted(int(float(_text(member))) for member in sketch)
    return entry


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


__all__ = ["SKETCH", "Caught", "CaughtLedger", "LedgerEntry", "MemoryLedger", "RedisLedger"]
