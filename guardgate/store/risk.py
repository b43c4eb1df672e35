"""Risk state: each caller's rolling counters and the cross-account clusters.

Two implementations with one behaviour: `MemoryRisk` in this process, and
`RedisRisk`, where every replica reads and writes the same state: on the
request's way in, ``lua/risk_observe.lua`` over the caller's own keys (one
hash slot) and the cluster counts as plain commands, in one pipeline; after
the answer, ``lua/risk_record.lua`` and the ranking and risky-member counts,
batched with the quota settlements. The arithmetic is written twice, here and in Lua, and kept
identical (Lua stores numbers with 17 significant digits, so they read back
as the same doubles), so that the same traffic gives the same scores on both.

Per caller, counters decay with the policy's half-life: requests, requests
asking for reasoning, harvest score, single-turn requests, tokens in and out
of answered requests. Distinct counts over a sliding window (of a sixth of
it per bucket) are exact for a caller's own templates and prompts (a sorted
set in Redis; in memory, up to 4,096 of each in the window), and for
clusters (accounts, and risky accounts: those whose own score reached the
policy's member score) counted with HyperLogLog in Redis, since a cluster
can hold millions: exact below 128 accounts, within about 1 % above; memory
counts them exactly up to 256, then with HyperLogLog too
(`guardgate.store.distinct`). Scores on the two agree to the last digit
while clusters stay below 128 accounts; above, cluster signals are usually
saturated already (their ramps end below 128 by default).

Memory is bounded (`MemoryRisk.bound`, the policy's ``risk.max_callers``):
past the cap the least risky callers are forgotten first, new callers whose
requests were never admitted and answered before any other. Redis keeps
every caller until its keys expire; the two agree on every caller memory
keeps.
"""

from __future__ import annotations

import heapq
import math
from array import array
from dataclasses import dataclass, field
from typing import Any, Protocol

from guardgate.policy.model import RiskConfig, default_of
from guardgate.store.distinct import BUCKETS, ClusterDistinct, Distinct
from guardgate.store.errors import guarded
from guardgate.store.ranked import Ranked
from guardgate.store.scripts import LuaScript

MAX_CALLERS: int = default_of(RiskConfig, "max_callers")
PREFIX = "guardgate/risk"
SCORES = PREFIX + ":scores"  # the riskiest callers, by last score
DAY = 86400.0

OBSERVE = LuaScript.named("risk_observe")
RECORD = LuaScript.named("risk_record")
CLUSTERS = LuaScript.named("risk_clusters")


@dataclass(frozen=True, slots=True)
class Clock:
    """The time constants of one policy's risk state."""

    half_life: float
    window: float
    long_half_life: float = 3 * DAY

    @property
    def bucket_seconds(self) -> float:
        return self.window / BUCKETS

    def bucket(self, now: float) -> int:
        return int(now // self.bucket_seconds)

    @property
    def bucket_ttl(self) -> int:
        return math.ceil(self.window + self.bucket_seconds)

    @property
    def state_ttl(self) -> int:
        # Long enough for counters to fade to nothing, for a day of hours,
        # and for a caller's baseline to outlast a few quiet days.
        return math.ceil(max(10 * self.half_life, 2 * DAY, 3 * self.long_half_life))


@dataclass(frozen=True, slots=True)
class Observation:
    """One request, as the risk state takes it in."""

    principal: str
    now: float
    reasoning: float
    harvest: float
    single: float
    template: str
    prompt: str
    clusters: tuple[tuple[str, str], ...]  # (kind, value): template band, prefix, agent, org


@dataclass(slots=True)
class Snapshot:
    """The caller's state right after the request was counted."""

    n: float           # decayed requests
    reasoning: float   # decayed requests asking for reasoning
    harvest: float     # decayed harvest score
    single: float      # decayed single-turn requests
    input_tokens: float
    output_tokens: float
    answered: float    # decayed answered requests (token counts fed back)
    first: float       # first seen (unix seconds)
    gaps: float        # gaps between requests seen
    gap_mean: float    # running mean of log(gap)
    gap_var: float     # running variance of log(gap)
    tier: str          # tier the caller was left in ("" when none yet)
    requests: int      # requests in the window
    templates: int     # distinct skeletons in the window
    prompts: int       # distinct prompts in the window
    hours: int         # hours of the last 24 with a request
    clusters: list[tuple[str, str, int, int]]  # kind, value, accounts, risky accounts
    long_n: float = 0.0          # requests, decayed with the long half-life
    long_reasoning: float = 0.0  # requests asking for reasoning, the same
    days: float = 0.0            # distinct days with a request, since first seen


@dataclass(frozen=True, slots=True)
class Record:
    """What is written after the answer."""

    principal: str
    now: float
    tier: str
    risky: bool  # the caller's own score makes it a risky member of its clusters
    explanation: bytes
    tokens: tuple[int, int] | None  # (input, output) of the answer, None when not answered
    clusters: tuple[tuple[str, str], ...]
    score: float = 0.0
    rank: int = 0  # the tier's place: 0 normal, 1 the lowest tier, and up


RANKED = 10_000  # callers kept in the ranking by score


# What `RiskStore.peek` returns of a caller: unix seconds first and last
# seen, the decayed request count and its time, the tier, the explanation.
PEEKED = ("first", "seen", "n", "t", "tier", "last")


class RiskStore(Protocol):
    async def observe(self, obs: Observation) -> Snapshot: ...
    async def record(self, record: Record) -> None: ...
    async def peek(self, principal: str) -> dict[str, str] | None: ...
    async def top(self, count: int) -> list[tuple[str, float]]:
        """The ``count`` callers with the highest last score, highest first."""

    async def forget(self, principal: str) -> None:
        """Drop a caller's state: counters, tier, explanation, rank."""

    def bound(self, max_callers: int) -> None:
        """Keep the state of at most ``max_callers`` callers in this process
        (Redis keeps its own, each key expiring)."""


# --- memory ------------------------------------------------------------------

# What the memory state may hold besides its callers, per caller it may
# track, in units of about 100 bytes: members of the callers' own windows
# (distinct skeletons and prompts, request buckets), and cluster windows
# (each its members, and `WINDOW_WEIGHT` for itself). Past either budget,
# the least risky callers, or the smallest and stalest clusters, are
# forgotten first. All told, a caller slot costs at most `CALLER_BYTES`
# (tests/risk/test_memory_bound.py measures the worst cases).
HELD_PER_CALLER = 32
CLUSTERED_PER_CALLER = 16
WINDOW_WEIGHT = 5
CALLER_BYTES = 8 * 1024

# Callers are forgotten by rank, lowest first, each rank in the order its
# callers were last seen. Rank 0: callers on probation, none of whose
# requests was yet admitted and answered (new keys that are refused,
# throttled or never answered stay there). Then, tier by tier from normal
# up, one rank per tenth of the last score.
_TENTHS = 10


def _caller_rank(tier: int, score: float) -> int:
    return 1 + tier * _TENTHS + min(_TENTHS - 1, max(0, int(score * _TENTHS)))


_NO_HOURS = bytes(24 * 8)  # 24 doubles of 0.0


@dataclass(slots=True)
class _Caller:
    t: float
    first: float
    seen: float | None = None
    n: float = 0.0
    rs: float = 0.0
    hv: float = 0.0
    st: float = 0.0
    inp: float = 0.0
    out: float = 0.0
    ans: float = 0.0
    gc: float = 0.0
    gm: float = 0.0
    gv: float = 0.0
    tier: str = ""
    last: bytes = b""
    rank: int = 0
    ln: float = 0.0   # long-horizon requests
    lr: float = 0.0   # long-horizon reasoning asks
    dc: float = 0.0   # days with a request
    dl: float = -1.0  # the last such day (unix days)
    # The last request in each hour of the day: 24 doubles, not 24 objects.
    hours: array[float] = field(default_factory=lambda: array("d", _NO_HOURS))
    requests: dict[int, int] = field(default_factory=dict)  # requests per bucket
    templates: Distinct = field(default_factory=Distinct)
    prompts: Distinct = field(default_factory=Distinct)

    @property
    def held(self) -> int:
        return len(self.requests) + self.templates.weight + self.prompts.weight


class _Cluster(ClusterDistinct):
    """A cluster's window, ranked by the accounts it holds (a power of two
    a rank): the smallest go first, the big ones that make a signal last."""

    __slots__ = ("rank",)

    def __init__(self) -> None:
        super().__init__()
        self.rank = 0

    @property
    def size_rank(self) -> int:
        return self.weight.bit_length()


class MemoryRisk:
    """Risk state in this process, in bounded memory: at most `max_callers`
    callers (`bound`), the least risky forgotten first and never one in a
    tier while one in a lower tier can go, with windows of distinct members
    within a budget per caller. Each request also drops a few callers and
    cluster windows that have expired, so memory follows the traffic
    without a pause to sweep."""

    # Every `_PRUNE_EVERY` requests, up to `_PRUNE_STEP` expired entries of
    # each kind are dropped (one rank of each, in turn).
    _PRUNE_EVERY = 8
    _PRUNE_STEP = 16

    def __init__(self, clock: Clock, max_callers: int = MAX_CALLERS) -> None:
        self.clock = clock
        self._callers: Ranked[_Caller] = Ranked()
        self._windows: Ranked[_Cluster] = Ranked()
        self._scores: dict[str, float] = {}
        self._held = 0        # members of the callers' own windows
        self._clustered = 0   # weight of the cluster windows
        self._ttl = clock.state_ttl
        self._requests = 0
        self._bucket = 0
        self.bound(max_callers)

    def bound(self, max_callers: int) -> None:
        """Track at most ``max_callers`` callers, and the windows that go
        with them; the next request forgets any beyond."""
        self.max_callers = max_callers
        self._max_held = max_callers * HELD_PER_CALLER
        self._max_clustered = max_callers * CLUSTERED_PER_CALLER

    def __len__(self) -> int:
        return len(self._callers)

    async def observe(self, obs: Observation) -> Snapshot:
        return self.observe_now(obs)

    def observe_now(self, obs: Observation) -> Snapshot:
        clock = self.clock
        real_now = obs.now
        caller = self._caller(obs.principal, real_now)
        held = caller.held
        now = real_now
        decay = 1.0
        if now > caller.t:
            decay = 2 ** (-(now - caller.t) / clock.half_life)
        else:
            now = caller.t
        long = 1.0
        if decay != 1.0:
            long = 2 ** (-(now - caller.t) / clock.long_half_life)
        caller.ln = caller.ln * long + 1
        caller.lr = caller.lr * long + obs.reasoning
        day = float(int(now // DAY))
        if day > caller.dl:
            caller.dc += 1
            caller.dl = day
        caller.n = caller.n * decay + 1
        caller.rs = caller.rs * decay + obs.reasoning
        caller.hv = caller.hv * decay + obs.harvest
        caller.st = caller.st * decay + obs.single
        caller.inp = caller.inp * decay
        caller.out = caller.out * decay
        caller.ans = caller.ans * decay
        if caller.seen is not None:
            gap = math.log(max(real_now - caller.seen, 0) + 0.01)
            caller.gc = caller.gc + 1
            alpha = max(0.05, 1 / caller.gc)
            delta = gap - caller.gm
            caller.gm = caller.gm + alpha * delta
            caller.gv = (1 - alpha) * (caller.gv + alpha * delta * delta)
        caller.t = now
        caller.seen = real_now  # stored as sent, in full
        caller.hours[int(now // 3600) % 24] = now
        hours = sum(1 for mark in caller.hours if mark > now - DAY)

        bucket = clock.bucket(real_now)
        if bucket == self._bucket:
            bucket = self._bucket  # one int object in every window, not one per request
        else:
            self._bucket = bucket
        counts = caller.requests
        counts[bucket] = counts.get(bucket, 0) + 1
        for old in [b for b in counts if b <= bucket - BUCKETS]:
            del counts[old]
        templates = caller.templates.add(obs.template, bucket)
        prompts = caller.prompts.add(obs.prompt, bucket)
        self._held += caller.held - held
        clusters = []
        windows = self._windows
        for kind, value in obs.clusters:
            name = f"{kind}:{value}"
            accounts = self._add(windows, "c:" + name, obs.principal, bucket)
            risky = windows.get("r:" + name)
            counted = 0 if risky is None else self._count(windows, "r:" + name, risky, bucket)
            clusters.append((kind, value, accounts, min(counted, accounts)))
        self._requests += 1
        if self._requests % self._PRUNE_EVERY == 0:
            self._prune(real_now, bucket)
        if self._over(self.max_callers + 1):
            self._trim(self.max_callers + 1)
        return Snapshot(
            n=caller.n, reasoning=caller.rs, harvest=caller.hv, single=caller.st,
            input_tokens=caller.inp, output_tokens=caller.out, answered=caller.ans,
            first=caller.first, gaps=caller.gc, gap_mean=caller.gm, gap_var=caller.gv,
            tier=caller.tier,
            # As Redis sums its window's keys: buckets ahead of this request's
            # (another replica's clock running ahead) are not in its window.
            requests=sum(n for b, n in counts.items() if b <= bucket), templates=templates,
            prompts=prompts, hours=hours, clusters=clusters,
            long_n=caller.ln, long_reasoning=caller.lr, days=caller.dc,
        )

    def _caller(self, principal: str, now: float) -> _Caller:
        """The caller's state, new when it has none (or only an expired one,
        as Redis lets it expire). A new caller starts on probation, one
        beyond the cap at most (`_trim`): once its request is recorded, the
        least risky caller goes, and that is the new one unless it ranks
        above another."""
        callers = self._callers
        caller = callers.get(principal)
        if caller is not None:
            if (caller.seen or now) >= now - self._ttl:
                callers.touch(principal, caller)
                return caller
            self._drop(principal)
        caller = _Caller(t=now, first=now)
        callers.put(principal, caller, 0)
        return caller

    def _drop(self, principal: str) -> None:
        self._held -= self._callers.drop(principal).held
        self._scores.pop(principal, None)

    def _add(self, windows: Ranked[_Cluster], key: str, member: str, bucket: int) -> int:
        """Count ``member`` in cluster window ``key``; the accounts in it."""
        window = windows.get(key)
        if window is None:
            window = _Cluster()
            windows.put(key, window, 0)
            self._clustered += WINDOW_WEIGHT
        else:
            windows.touch(key, window)
        weight = window.weight
        count = window.add(member, bucket)
        if window.weight != weight:
            self._resized(windows, key, window, weight)
        return count

    def _count(self, windows: Ranked[_Cluster], key: str, window: _Cluster, bucket: int) -> int:
        weight = window.weight
        count = window.count(bucket)
        if window.weight != weight:
            self._resized(windows, key, window, weight)
        return count

    def _resized(self, windows: Ranked[_Cluster], key: str, window: _Cluster,
                 weight: int) -> None:
        self._clustered += window.weight - weight
        if window.size_rank != window.rank:
            windows.put(key, window, window.size_rank)

    async def record(self, record: Record) -> None:
        self.record_now(record)

    def record_now(self, record: Record) -> None:
        caller = self._callers.get(record.principal)
        if caller is not None:
            scores = self._scores
            scores[record.principal] = record.score
            if len(scores) > RANKED * 1.2:
                kept = heapq.nlargest(RANKED, scores.items(), key=lambda item: item[1])
                self._scores = dict(kept)
            caller.tier = record.tier
            # orjson's bytes keep a buffer of 4 KiB whatever their length:
            # the copy holds only what was written.
            caller.last = bytes(memoryview(record.explanation))
            if record.tokens is not None:
                self._feed(caller, record.now, record.tokens)
            if record.tokens is not None or caller.rank or record.rank:
                # Admitted and answered, or in a tier: off probation.
                rank = _caller_rank(record.rank, record.score)
                if rank != caller.rank:
                    self._callers.put(record.principal, caller, rank)
        if record.risky:
            bucket = self.clock.bucket(record.now)
            if bucket == self._bucket:
                bucket = self._bucket
            for kind, value in record.clusters:
                self._add(self._windows, f"r:{kind}:{value}", record.principal, bucket)
        if self._over(self.max_callers):
            self._trim(self.max_callers)

    def _feed(self, caller: _Caller, now: float, tokens: tuple[int, int]) -> None:
        """An answer's token counts, into the caller's decayed counters."""
        decay = long = 1.0
        if now > caller.t:
            decay = 2 ** (-(now - caller.t) / self.clock.half_life)
            long = 2 ** (-(now - caller.t) / self.clock.long_half_life)
        else:
            now = caller.t
        caller.t = now
        caller.ln = caller.ln * long
        caller.lr = caller.lr * long
        caller.n = caller.n * decay
        caller.rs = caller.rs * decay
        caller.hv = caller.hv * decay
        caller.st = caller.st * decay
        caller.inp = caller.inp * decay + tokens[0]
        caller.out = caller.out * decay + tokens[1]
        caller.ans = caller.ans * decay + 1

    def _over(self, kept: int) -> bool:
        return (len(self._callers) > kept or self._held > self._max_held
                or self._clustered > self._max_clustered)

    def _trim(self, kept: int) -> None:
        """Forget what is beyond the budgets (``kept`` callers, and the
        windows'): the least risky callers, the smallest and stalest
        clusters."""
        callers = self._callers
        while len(callers) > kept or self._held > self._max_held:
            lowest = callers.lowest()
            if lowest is None:
                break
            self._drop(lowest[0])
        windows = self._windows
        while self._clustered > self._max_clustered:
            lowest_window = windows.lowest()
            if lowest_window is None:
                break
            self._clustered -= windows.drop(lowest_window[0]).weight + WINDOW_WEIGHT

    async def top(self, count: int) -> list[tuple[str, float]]:
        return heapq.nlargest(count, self._scores.items(), key=lambda item: item[1])

    async def forget(self, principal: str) -> None:
        if principal in self._callers:
            self._drop(principal)
        self._scores.pop(principal, None)

    async def peek(self, principal: str) -> dict[str, str] | None:
        caller = self._callers.get(principal)
        if caller is None:
            return None
        return {
            "first": repr(caller.first), "seen": repr(caller.seen), "n": repr(caller.n),
            "t": repr(caller.t), "tier": caller.tier, "last": caller.last.decode(),
        }

    def _prune(self, now: float, bucket: int) -> None:
        stale = now - self._ttl
        for caller in self._callers.sweep(lambda c: (c.seen or 0.0) < stale, self._PRUNE_STEP):
            self._held -= caller.held
        oldest = bucket - BUCKETS + 1
        for window in self._windows.sweep(lambda w: w.stale(oldest), self._PRUNE_STEP):
            self._clustered -= window.weight + WINDOW_WEIGHT


# --- Redis -------------------------------------------------------------------


def caller_keys(principal: str) -> str:
    """The stem of a caller's keys: all of them in the caller's hash slot."""
    return f"{PREFIX}{{{principal}}}"


def cluster_key(kind: str, value: str, risky: bool = False) -> str:
    """The stem of a cluster's per-bucket counters (of accounts, or of risky
    accounts), each cluster in a hash slot of its own."""
    return f"{PREFIX}:{'r' if risky else 'c'}{{{kind}:{value}}}"


@guarded
class RedisRisk:
    """Risk state in Redis, shared by every replica.

    A caller's keys share its hash slot and are touched by one script; each
    cluster's counters sit in a slot of their own and are counted with plain
    commands in the same pipeline: one round trip on a single Redis, one per
    node, sent together, on a Redis Cluster."""

    def __init__(self, client: Any, clock: Clock, settlements: Any,
                 sharded: bool = False) -> None:
        self._client = client
        self.clock = clock
        self._settlements = settlements
        # On a Redis Cluster each cluster's counters are counted by a call of
        # their own (their hash slot); on one Redis, all in one call.
        self._sharded = sharded

    def bound(self, max_callers: int) -> None:
        pass  # nothing of a caller's is kept in this process

    def _window(self, stem: str, bucket: int) -> list[str]:
        return [f"{stem}:{b}" for b in range(bucket - BUCKETS + 1, bucket + 1)]

    async def observe(self, obs: Observation) -> Snapshot:
        clock = self.clock
        bucket = clock.bucket(obs.now)
        stem = caller_keys(obs.principal)
        keys = [f"{stem}:p", f"{stem}:wt", f"{stem}:wp", *self._window(f"{stem}:wr", bucket)]
        args: list[Any] = [
            repr(obs.now), repr(clock.half_life), bucket, BUCKETS, clock.bucket_ttl,
            clock.state_ttl, repr(obs.reasoning), repr(obs.harvest), repr(obs.single),
            obs.template, obs.prompt, repr(clock.long_half_life),
        ]
        counted = [[*self._window(cluster_key(kind, value), bucket),
                    *self._window(cluster_key(kind, value, risky=True), bucket)]
                   for kind, value in obs.clusters]
        groups = counted if self._sharded or not counted else [
            [key for group in counted for key in group]]
        extra = [obs.principal, BUCKETS, clock.bucket_ttl]
        calls = [(OBSERVE, keys, args), *((CLUSTERS, group, extra) for group in groups)]
        # With what else is asked in this turn (the request's reservation),
        # and what waits to be settled: one round trip.
        results = await self._settlements.run(calls)
        for result in results:
            if isinstance(result, Exception):
                raise result
        raw = results[0]
        sizes = [int(n) for reply in results[1:] for n in reply]
        v = [x.decode() if isinstance(x, bytes) else str(x) for x in raw]
        clusters: list[tuple[str, str, int, int]] = []
        for i, (kind, value) in enumerate(obs.clusters):
            accounts, held = sizes[2 * i], sizes[2 * i + 1]
            clusters.append((kind, value, accounts, min(held, accounts)))
        return Snapshot(
            n=float(v[0]), reasoning=float(v[1]), harvest=float(v[2]), single=float(v[3]),
            input_tokens=float(v[4]), output_tokens=float(v[5]), answered=float(v[6]),
            first=float(v[7]), gaps=float(v[8]), gap_mean=float(v[9]), gap_var=float(v[10]),
            tier=v[11], requests=int(float(v[12])), templates=int(float(v[13])),
            prompts=int(float(v[14])), hours=int(float(v[15])), clusters=clusters,
            long_n=float(v[16]), long_reasoning=float(v[17]), days=float(v[18]),
        )

    async def record(self, record: Record) -> None:
        clock = self.clock
        args: list[Any] = [
            repr(record.now), repr(clock.half_life), record.tier, record.explanation,
            "" if record.tokens is None else record.tokens[0],
            "" if record.tokens is None else record.tokens[1],
            repr(clock.long_half_life),
        ]
        commands: list[tuple[Any, ...]] = [
            ("ZADD", SCORES, repr(record.score), record.principal),
            ("ZREMRANGEBYRANK", SCORES, 0, -RANKED - 1),
        ]
        if record.risky:
            bucket = clock.bucket(record.now)
            for kind, value in record.clusters:
                risky = f"{cluster_key(kind, value, True)}:{bucket}"
                commands += [("PFADD", risky, record.principal),
                             ("EXPIRE", risky, clock.bucket_ttl)]
        await self._settlements.add_call(RECORD, [f"{caller_keys(record.principal)}:p"], args,
                                         commands)

    async def top(self, count: int) -> list[tuple[str, float]]:
        ranked = await self._client.zrevrange(SCORES, 0, count - 1, withscores=True)
        return [(p.decode(), float(s)) for p, s in ranked]

    async def forget(self, principal: str) -> None:
        stem = caller_keys(principal)
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.delete(f"{stem}:p", f"{stem}:wt", f"{stem}:wp")
            pipe.zrem(SCORES, principal)
            await pipe.execute()

    async def peek(self, principal: str) -> dict[str, str] | None:
        raw = await self._client.hmget(f"{caller_keys(principal)}:p", *PEEKED)
        if raw[0] is None:
            return None
        return {k: (v or b"").decode() for k, v in zip(PEEKED, raw, strict=True)}
