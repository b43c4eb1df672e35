"""Risk state: each caller's rolling counters and the cross-account clusters.

Two implementations with one behaviour: `MemoryRisk` in this process, and
`RedisRisk`, where every replica reads and writes the same state through two
Lua scripts (``lua/risk_observe.lua`` on the request's way in, one round
trip; ``lua/risk_record.lua`` after the answer, batched with the quota
settlements). The arithmetic is written twice, here and in Lua, and kept
identical (Lua stores numbers with 17 significant digits, so they read back
as the same doubles), so that the same traffic gives the same scores on both.

Per caller, counters decay with the policy's half-life: requests, requests
asking for reasoning, harvest score, single-turn requests, tokens in and out
of answered requests. Distinct counts over a sliding window (of a sixth of
it per bucket) are exact for a caller's own templates and prompts (a sorted
set in Redis), and for clusters (accounts, and risky accounts: those whose
own score reached the policy's member score) counted with HyperLogLog in
Redis, since a cluster can hold millions: exact below 128 accounts, within
about 1 % above, where memory counts exactly. Scores on the two agree to
the last digit while clusters stay below 128 accounts; above, cluster
signals are usually saturated already (their ramps end below 128 by
default).
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol

from guardgate.store.scripts import LuaScript

BUCKETS = 6
PREFIX = "{guardgate/risk}"
DAY = 86400.0

OBSERVE = LuaScript.named("risk_observe")
RECORD = LuaScript.named("risk_record")


@dataclass(frozen=True, slots=True)
class Clock:
    """The time constants of one policy's risk state."""

    half_life: float
    window: float

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
        # Long enough for counters to fade to nothing, and for a day of hours.
        return math.ceil(max(10 * self.half_life, 2 * DAY))


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


# --- memory ------------------------------------------------------------------


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
    hours: dict[int, float] = field(default_factory=dict)


class _Window:
    """Distinct members per key over the last `BUCKETS` buckets: each
    member's newest bucket, oldest first."""

    __slots__ = ("members",)

    def __init__(self) -> None:
        self.members: OrderedDict[str, int] = OrderedDict()

    def add(self, member: str, bucket: int) -> int:
        members = self.members
        held = members.get(member)
        if held is None or bucket > held:
            members[member] = bucket
            members.move_to_end(member)
        return self.count(bucket)

    def count(self, bucket: int) -> int:
        members = self.members
        oldest = bucket - BUCKETS + 1
        while members:
            first = next(iter(members))
            if members[first] >= oldest:
                break
            del members[first]
        return len(members)


class MemoryRisk:
    """Risk state in this process. Callers and windows are kept in the order
    they were last touched; each request drops the few stalest ones that
    have expired, so memory follows the traffic without a pause to sweep."""

    _PRUNE_STEP = 2  # entries checked for expiry per request, per kind

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._callers: OrderedDict[str, _Caller] = OrderedDict()
        self._windows: OrderedDict[str, _Window] = OrderedDict()
        self._requests: dict[str, dict[int, int]] = {}
        self._scores: dict[str, float] = {}

    async def observe(self, obs: Observation) -> Snapshot:
        return self.observe_now(obs)

    def observe_now(self, obs: Observation) -> Snapshot:
        clock = self.clock
        real_now = obs.now
        caller = self._callers.get(obs.principal)
        if caller is None:
            caller = self._callers[obs.principal] = _Caller(t=real_now, first=real_now)
        else:
            self._callers.move_to_end(obs.principal)
        now = real_now
        decay = 1.0
        if now > caller.t:
            decay = 2 ** (-(now - caller.t) / clock.half_life)
        else:
            now = caller.t
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
        hours = sum(1 for mark in caller.hours.values() if mark > now - DAY)

        bucket = clock.bucket(real_now)
        counts = self._requests.setdefault(obs.principal, {})
        counts[bucket] = counts.get(bucket, 0) + 1
        for old in [b for b in counts if b <= bucket - BUCKETS]:
            del counts[old]
        templates = self._add("wt:" + obs.principal, obs.template, bucket)
        prompts = self._add("wp:" + obs.principal, obs.prompt, bucket)
        clusters = []
        for kind, value in obs.clusters:
            name = f"{kind}:{value}"
            accounts = self._add("c:" + name, obs.principal, bucket)
            risky = self._windows.get("r:" + name)
            counted = risky.count(bucket) if risky is not None else 0
            clusters.append((kind, value, accounts, min(counted, accounts)))
        self._prune(real_now, bucket)
        return Snapshot(
            n=caller.n, reasoning=caller.rs, harvest=caller.hv, single=caller.st,
            input_tokens=caller.inp, output_tokens=caller.out, answered=caller.ans,
            first=caller.first, gaps=caller.gc, gap_mean=caller.gm, gap_var=caller.gv,
            tier=caller.tier,
            # As Redis sums its window's keys: buckets ahead of this request's
            # (another replica's clock running ahead) are not in its window.
            requests=sum(n for b, n in counts.items() if b <= bucket), templates=templates,
            prompts=prompts, hours=hours, clusters=clusters,
        )

    def _add(self, key: str, member: str, bucket: int) -> int:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window()
        else:
            self._windows.move_to_end(key)
        return window.add(member, bucket)

    async def record(self, record: Record) -> None:
        self.record_now(record)

    def record_now(self, record: Record) -> None:
        scores = self._scores
        scores[record.principal] = record.score
        if len(scores) > RANKED * 1.2:
            kept = heapq.nlargest(RANKED, scores.items(), key=lambda item: item[1])
            self._scores = dict(kept)
        caller = self._callers.get(record.principal)
        if caller is not None:
            caller.tier = record.tier
            caller.last = record.explanation
            if record.tokens is not None:
                now = record.now
                decay = 1.0
                if now > caller.t:
                    decay = 2 ** (-(now - caller.t) / self.clock.half_life)
                else:
                    now = caller.t
                caller.t = now
                caller.n = caller.n * decay
                caller.rs = caller.rs * decay
                caller.hv = caller.hv * decay
                caller.st = caller.st * decay
                caller.inp = caller.inp * decay + record.tokens[0]
                caller.out = caller.out * decay + record.tokens[1]
                caller.ans = caller.ans * decay + 1
        if record.risky:
            bucket = self.clock.bucket(record.now)
            for kind, value in record.clusters:
                self._add(f"r:{kind}:{value}", record.principal, bucket)

    async def top(self, count: int) -> list[tuple[str, float]]:
        return heapq.nlargest(count, self._scores.items(), key=lambda item: item[1])

    async def forget(self, principal: str) -> None:
        self._callers.pop(principal, None)
        self._requests.pop(principal, None)
        self._scores.pop(principal, None)
        self._windows.pop("wt:" + principal, None)
        self._windows.pop("wp:" + principal, None)

    async def peek(self, principal: str) -> dict[str, str] | None:
        caller = self._callers.get(principal)
        if caller is None:
            return None
        return {
            "first": repr(caller.first), "seen": repr(caller.seen), "n": repr(caller.n),
            "t": repr(caller.t), "tier": caller.tier, "last": caller.last.decode(),
        }

    def _prune(self, now: float, bucket: int) -> None:
        callers = self._callers
        stale = now - self.clock.state_ttl
        for _ in range(self._PRUNE_STEP):
            principal = next(iter(callers))
            if (callers[principal].seen or 0.0) >= stale:
                break
            del callers[principal]
            self._requests.pop(principal, None)
        windows = self._windows
        oldest = bucket - BUCKETS + 1
        for _ in range(self._PRUNE_STEP):
            if not windows:
                break
            key = next(iter(windows))
            members = windows[key].members
            if members and next(reversed(members.values())) >= oldest:
                break
            del windows[key]


# --- Redis -------------------------------------------------------------------


class RedisRisk:
    """Risk state in Redis, shared by every replica."""

    def __init__(self, client: Any, clock: Clock, settlements: Any) -> None:
        self._client = client
        self.clock = clock
        self._settlements = settlements

    async def observe(self, obs: Observation) -> Snapshot:
        clock = self.clock
        args: list[Any] = [
            PREFIX, repr(obs.now), repr(clock.half_life), clock.bucket(obs.now), BUCKETS,
            clock.bucket_ttl, clock.state_ttl, obs.principal, repr(obs.reasoning),
            repr(obs.harvest), repr(obs.single), obs.template, obs.prompt,
        ]
        for kind, value in obs.clusters:
            args += (kind, value)
        raw = await OBSERVE.run(self._client, [], args)
        v = [x.decode() if isinstance(x, bytes) else str(x) for x in raw]
        clusters = [
            (kind, value, int(float(v[16 + 2 * i])), int(float(v[17 + 2 * i])))
            for i, (kind, value) in enumerate(obs.clusters)
        ]
        return Snapshot(
            n=float(v[0]), reasoning=float(v[1]), harvest=float(v[2]), single=float(v[3]),
            input_tokens=float(v[4]), output_tokens=float(v[5]), answered=float(v[6]),
            first=float(v[7]), gaps=float(v[8]), gap_mean=float(v[9]), gap_var=float(v[10]),
            tier=v[11], requests=int(float(v[12])), templates=int(float(v[13])),
            prompts=int(float(v[14])), hours=int(float(v[15])), clusters=clusters,
        )

    async def record(self, record: Record) -> None:
        clock = self.clock
        args: list[Any] = [
            PREFIX, repr(record.now), repr(clock.half_life), clock.bucket(record.now),
            clock.bucket_ttl, "1" if record.risky else "", record.principal, record.tier,
            record.explanation,
            "" if record.tokens is None else record.tokens[0],
            "" if record.tokens is None else record.tokens[1],
            repr(record.score),
        ]
        for kind, value in record.clusters:
            args += (kind, value)
        await self._settlements.add_call(RECORD, [], args)

    async def top(self, count: int) -> list[tuple[str, float]]:
        ranked = await self._client.zrevrange(f"{PREFIX}:scores", 0, count - 1, withscores=True)
        return [(p.decode(), float(s)) for p, s in ranked]

    async def forget(self, principal: str) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.delete(f"{PREFIX}:p:{principal}", f"{PREFIX}:wt:{principal}",
                        f"{PREFIX}:wp:{principal}")
            pipe.zrem(f"{PREFIX}:scores", principal)
            await pipe.execute()

    async def peek(self, principal: str) -> dict[str, str] | None:
        raw = await self._client.hmget(f"{PREFIX}:p:{principal}", *PEEKED)
        if raw[0] is None:
            return None
        return {k: (v or b"").decode() for k, v in zip(PEEKED, raw, strict=True)}
