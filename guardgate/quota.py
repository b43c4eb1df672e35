"""Pipeline steps 6 and 10: reserve quota before forwarding, settle after.

Rates are metered by the `limits` library's strategies and storages. A
request reserves what it may cost (one request; for token quotas its input
estimate plus the worst case of its output: every answer it may be billed
for, each at its output limit) in every quota that applies, before it is
forwarded, so concurrent requests and long streams can never overshoot a
limit by more than what was honestly reserved. A request whose worst case
exceeds a limit outright is refused without being forwarded. When the answer is complete,
the reservation is settled against the real usage: the difference is
refunded or charged. Refunds need a counter that can go back, so token
quotas settle exactly on fixed windows; on sliding windows they only charge
more, never refund.

A fixed window starts at its first charge, and a charge remembers which
window it went to (`guardgate.store.windows`): a refund that arrives after
that window ended is dropped, so it never raises the allowance of the
window after; what an answer cost beyond its reservation is owed, charged
to the window open when it settles.

A tier's quota factor scales each limit's amount, never its counter, so a
caller moving to a stricter tier keeps what it has already spent.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from guardgate.apis.base import ModelCall
from guardgate.errors import RateLimited, StorageError
from guardgate.policy.model import Policy, QuotaConfig, Window
from guardgate.store import Store
from guardgate.store.limiter import STRATEGIES

_NAMESPACE = "guardgate"
_TOKENS = ("input_tokens", "output_tokens", "total_tokens")
# The tokens that frame each message (its role, separators) and prime the
# answer, billed by the chat APIs on top of the text (OpenAI counts 3 and 3).
_TOKENS_PER_TURN = 3
_TOKENS_PER_CALL = 3


@dataclass(frozen=True, slots=True)
class Subject:
    """Who a quota is counted for, one value per ``per:`` scope."""

    principal: str
    ip: str
    ip_prefix: str
    org: str | None

    def value(self, per: str) -> str | None:
        if per == "principal":
            return self.principal
        if per == "ip":
            return self.ip
        if per == "ip_prefix":
            return self.ip_prefix
        if per == "org":
            return self.org
        return "*"


@dataclass(frozen=True, slots=True)
class Demand:
    """What a request may cost: its estimated prompt and its reserved answer."""

    input_tokens: int = 0
    output_tokens: int = 0

    def cost(self, kind: str) -> int:
        if kind == "input_tokens":
            return self.input_tokens
        if kind == "output_tokens":
            return self.output_tokens
        if kind == "total_tokens":
            return self.input_tokens + self.output_tokens
        return 1


@dataclass(frozen=True, slots=True)
class Limit:
    """A window of a quota as `limits` strategies use it.

    The counter key names the quota and window, never the amount, so a
    scaled amount meters against the same counter."""

    key: str
    amount: int
    expiry: int
    own: bool = False  # counts one principal's usage

    def key_for(self, *identifiers: str) -> str:
        """The counter's key, with its hash tag: for a principal's own quota
        the principal, so that on a Redis Cluster its counters and slots
        share the slot of its risk state; for a shared one (an org, an
        address, everyone) the quota and scope, so that shared counters
        spread over the nodes."""
        return _tagged("/".join((self.key, *identifiers)), identifiers[-1], self.own)

    def get_expiry(self) -> int:
        return self.expiry


@dataclass(slots=True)
class Charge:
    quota: QuotaConfig
    window: Window
    limit: Limit
    scope: str
    cost: int
    used: int | None = None  # the counter after this charge, when the storage tells
    ends: float = 0.0        # fixed windows: when the window charged ends (names it)
    index: int = 0           # which of the quota's windows


@dataclass(slots=True)
class Reservation:
    """What one request holds until it is settled."""

    charges: list[Charge] = field(default_factory=list)
    slots: list[tuple[str, str]] = field(default_factory=list)
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    demand: Demand = Demand()
    settled: bool = False
    full: list[QuotaConfig] = field(default_factory=list)  # own slots `take_own` found full


class Quotas:
    """Every quota of a policy, over one store."""

    def __init__(self, policy: Policy, store: Store) -> None:
        self.policy = policy
        self.store = store
        self.rates = [q for q in policy.quotas if q.concurrency is None]
        self.concurrency = [q for q in policy.quotas if q.concurrency is not None]
        self.meters_tokens = any(q.cost in _TOKENS for q in self.rates)
        self._strategies = {name: store.limiter(name) for name in STRATEGIES}
        self._limits: dict[tuple[str, int, float], Limit] = {}

    def limit(self, quota: QuotaConfig, index: int, factor: float) -> Limit:
        key = (quota.name, index, factor)
        found = self._limits.get(key)
        if found is None:
            window = quota.windows[index]
            found = Limit(
                f"{_NAMESPACE}/{quota.name}/{window.seconds}",
                max(1, math.floor(window.amount * factor)),
                window.seconds,
                own=quota.per == "principal",
            )
            self._limits[key] = found
        return found

    async def usage(self, principal: str) -> list[dict[str, Any]]:
        """What ``principal`` has used of each per-principal rate quota, now."""
        out = []
        for quota in self.rates:
            if quota.per != "principal":
                continue
            for index, window in enumerate(quota.windows):
                limit = self.limit(quota, index, 1.0)
                if quota.strategy == "fixed-window":
                    used, _ = await self.store.windows.get(limit.key_for(principal))
                else:
                    stats = await self._strategies[quota.strategy].get_window_stats(
                        limit, principal)
                    used = limit.amount - stats.remaining
                out.append({"quota": quota.name, "window": window.text,
                            "used": max(0, used), "limit": limit.amount})
        return out

    async def take_own(self, subject: Subject, demand: Demand) -> Reservation:
        """Charge ``demand`` to the caller's own fixed windows and take its own
        slots before its tier (and so its quota factor) is known, so that on
        Redis they ride in the round trip of its risk assessment. Refuses
        nothing: `reserve`, given this reservation, compares the counts
        with the scaled limits (the counters do not depend on the factor)
        and finishes or undoes it."""
        held = Reservation(demand=demand)
        fixed = [c for c in self._charges(subject, demand, 1.0, check=False)
                 if c.quota.strategy == "fixed-window" and c.quota.per == "principal"]
        slots = [s for s in self._slots(subject, held) if s[0].per == "principal"]
        try:
            held.full = await self._take(held, fixed, slots, check=False)
        except BaseException:
            await self._undo_quietly(held)
            raise
        return held

    async def reserve(self, subject: Subject, demand: Demand, factor: float = 1.0,
                      taken: Reservation | None = None) -> Reservation:
        """Charge ``demand`` to every quota that applies, or raise RateLimited
        having charged nothing.

        Fixed windows and in-flight slots are taken together (`Store.reserve`:
        one round trip on Redis): first the caller's own (``per:
        principal``), then, only once those passed, the shared ones (an org,
        an address, everyone), so that requests refused by their own quota
        never charge what others share. Each group is checked in the
        policy's order; `moving-window` and `sliding-window-counter` quotas
        are charged one by one after. ``taken``: what `take_own` already
        charged for this request."""
        held = taken if taken is not None else Reservation(demand=demand)
        try:
            ordered = self._charges(subject, demand, factor)
            fixed = [c for c in ordered if c.quota.strategy == "fixed-window"]
            slots = self._slots(subject, held)
            if taken is None:
                await self._take(held, [c for c in fixed if c.quota.per == "principal"],
                                 [s for s in slots if s[0].per == "principal"])
            else:
                self._rescale(taken, ordered)
                self._refuse(taken, taken.charges, taken.full)
            await self._take(held, [c for c in fixed if c.quota.per != "principal"],
                             [s for s in slots if s[0].per != "principal"])
            for charge in ordered:
                if charge.quota.strategy != "fixed-window":
                    if not await self._hit(charge):
                        raise await self._refusal(charge)
                    held.charges.append(charge)
        except BaseException:
            await self._undo_quietly(held)
            raise
        place = {(c.quota.name, c.index): i for i, c in enumerate(ordered)}
        held.charges.sort(key=lambda c: place[(c.quota.name, c.index)])
        held.headers = self._headers(held, factor)  # in the policy's order
        return held

    def _charges(self, subject: Subject, demand: Demand, factor: float,
                 check: bool = True) -> list[Charge]:
        """Each rate quota window that applies to ``subject``, with its limit
        scaled by ``factor``; with ``check``, RateLimited for a demand that
        could never fit."""
        ordered: list[Charge] = []
        for quota in self.rates:
            scope = subject.value(quota.per)
            cost = demand.cost(quota.cost)
            if scope is None or cost <= 0:
                continue
            for index, window in enumerate(quota.windows):
                limit = self.limit(quota, index, factor)
                if check and cost > limit.amount:
                    raise _too_large(quota, window, limit, cost)
                ordered.append(Charge(quota, window, limit, scope, cost, index=index))
        return ordered

    def _slots(self, subject: Subject, held: Reservation) -> list[tuple[QuotaConfig, str, str]]:
        slots: list[tuple[QuotaConfig, str, str]] = []
        for quota in self.concurrency:
            scope = subject.value(quota.per)
            if scope is None or quota.concurrency is None:
                continue
            key = _tagged(f"{_NAMESPACE}/slots/{quota.name}/{scope}", scope,
                          quota.per == "principal")
            slots.append((quota, key, f"{id(held):x}.{time.time_ns():x}.{len(slots)}"))
        return slots

    def _rescale(self, held: Reservation, ordered: list[Charge]) -> None:
        """The early charges of ``held``, compared with the limits of the
        factor now known (same counters, scaled amounts)."""
        scaled = {(c.quota.name, c.index): c.limit for c in ordered}
        for charge in held.charges:
            charge.limit = scaled.get((charge.quota.name, charge.index), charge.limit)

    async def _take(self, held: Reservation, fixed: list[Charge],
                    slots: list[tuple[QuotaConfig, str, str]], check: bool = True
                    ) -> list[QuotaConfig]:
        """Charge ``fixed`` windows and take ``slots`` at once, into ``held``;
        the quotas whose slots were full. With ``check``, RateLimited for the
        first that does not fit, in the policy's order."""
        if not fixed and not slots:
            return []
        counted, taken = await self.store.reserve(
            [(_counter(c), c.limit.expiry, c.cost) for c in fixed],
            [(key, q.concurrency or 0, holder) for q, key, holder in slots])
        for charge, (used, ends) in zip(fixed, counted, strict=True):
            charge.used, charge.ends = used, ends
        held.charges.extend(fixed)  # counted even when refused: undone with the rest
        held.slots.extend((key, holder) for (_, key, holder), ok in zip(slots, taken, strict=True)
                          if ok)
        full = [quota for (quota, _, _), ok in zip(slots, taken, strict=True) if not ok]
        if check:
            self._refuse(held, fixed, full)
        return full

    def _refuse(self, held: Reservation, fixed: list[Charge], full: list[QuotaConfig]) -> None:
        """RateLimited for the first of ``fixed`` over its limit, else the first
        quota whose slots were ``full``."""
        for charge in fixed:
            if charge.used is not None and charge.used > charge.limit.amount:
                raise self._counted_refusal(charge)
        for quota in full:
            refused = RateLimited(
                "Too many requests in flight. Retry when one has finished.",
                reason=f"quota {quota.name}: {quota.concurrency} in flight",
                headers=_retry_after(1.0),
            )
            refused.quota = quota.name
            raise refused

    async def _undo_quietly(self, held: Reservation) -> None:
        try:
            await self._undo(held)
        except StorageError:
            pass  # the refusal (or failure) stands; the counters err high

    async def _undo(self, held: Reservation) -> None:
        """Take back a reservation that failed part way, at once: a counter
        left high would refuse other callers until a batch went out."""
        held.settled = True
        for charge in held.charges:
            if charge.quota.strategy == "fixed-window":
                await self.store.windows.settle(_counter(charge), charge.ends, -charge.cost,
                                                charge.limit.expiry)
        for key, holder in held.slots:
            await self.store.slots.release(key, holder)

    async def _hit(self, charge: Charge) -> bool:
        """Charge a `moving-window` or `sliding-window-counter` quota (fixed
        windows go through `Store.reserve`, see `_take`)."""
        allowed: bool = await self._strategies[charge.quota.strategy].hit(
            charge.limit, charge.scope, cost=charge.cost
        )
        return allowed

    async def _refusal(self, charge: Charge) -> RateLimited:
        if charge.used is not None:  # a fixed window: all is known
            return self._counted_refusal(charge)
        stats = await self._strategies[charge.quota.strategy].get_window_stats(
            charge.limit, charge.scope
        )
        return self._refused(charge, stats.remaining, max(0.0, stats.reset_time - time.time()))

    def _counted_refusal(self, charge: Charge) -> RateLimited:
        assert charge.used is not None
        return self._refused(charge, charge.limit.amount - charge.used,
                             max(0.0, charge.ends - time.time()))

    def _refused(self, charge: Charge, remaining: int, wait: float) -> RateLimited:
        tokens = charge.quota.cost in _TOKENS
        kind = "tokens" if tokens else "requests"
        limit = charge.limit.amount
        error = RateLimited(
            f"Rate limit reached for {kind} ({charge.quota.name}): limit {limit} per "
            f"{_duration(charge.window.seconds)}. Please try again in {_duration(wait)}.",
            reason=(
                f"quota {charge.quota.name} ({_applied(charge.window, limit)}) "
                f"refused cost {charge.cost}"
            ),
            headers=[
                *_retry_after(wait),
                (f"x-ratelimit-limit-{kind}".encode(), str(limit).encode()),
                (f"x-ratelimit-remaining-{kind}".encode(), str(max(0, remaining)).encode()),
                (f"x-ratelimit-reset-{kind}".encode(), _duration(wait).encode()),
                (b"ratelimit-policy", _policy_item(charge.quota, charge.window, limit)),
                (b"ratelimit", _state_item(charge.quota, charge.window, 0, wait)),
            ],
        )
        error.type = kind
        error.quota = charge.quota.name
        return error

    async def settle(self, held: Reservation, input_tokens: int, output_tokens: int) -> None:
        """Replace what was reserved by what was used, then release."""
        if held.settled:
            return
        counts: list[tuple[str, float, int, int]] = []
        if self.meters_tokens:
            actual = Demand(input_tokens, output_tokens)
            for charge in held.charges:
                if charge.quota.cost not in _TOKENS:
                    continue
                delta = actual.cost(charge.quota.cost) - charge.cost
                if delta == 0:
                    continue
                if charge.quota.strategy == "fixed-window":
                    counts.append((_counter(charge), charge.ends, delta, charge.limit.expiry))
                elif delta > 0:
                    try:
                        await self._strategies[charge.quota.strategy].hit(
                            charge.limit, charge.scope, cost=delta
                        )
                    except BaseException:
                        held.settled = True
                        await self.store.settlements.add(counts, held.slots)
                        raise
        held.settled = True
        await self.store.settlements.add(counts, held.slots)

    async def release(self, held: Reservation, *, refund: bool) -> None:
        """Give back in-flight slots, and with ``refund`` the charges too."""
        if held.settled:
            return
        held.settled = True
        counts = [
            (_counter(charge), charge.ends, -charge.cost, charge.limit.expiry)
            for charge in held.charges
            if refund and charge.quota.strategy == "fixed-window"
        ]
        await self.store.settlements.add(counts, held.slots)

    def _headers(self, held: Reservation, factor: float) -> list[tuple[bytes, bytes]]:
        headers: list[tuple[bytes, bytes]] = []
        seen: set[str] = set()
        policies: list[bytes] = []
        states: list[bytes] = []
        now = time.time()
        for charge in held.charges:
            limit = charge.limit.amount
            policies.append(_policy_item(charge.quota, charge.window, limit))
            remaining = None if charge.used is None else max(0, limit - charge.used)
            wait = max(0.0, charge.ends - now)
            if remaining is not None:
                states.append(_state_item(charge.quota, charge.window, remaining, wait))
            kind = "tokens" if charge.quota.cost in _TOKENS else "requests"
            if kind in seen:
                continue
            seen.add(kind)
            headers.append((f"x-ratelimit-limit-{kind}".encode(), str(limit).encode()))
            if remaining is not None:
                headers.append((f"x-ratelimit-remaining-{kind}".encode(), str(remaining).encode()))
                headers.append((f"x-ratelimit-reset-{kind}".encode(), _duration(wait).encode()))
        if policies:
            headers.append((b"ratelimit-policy", b", ".join(policies)))
        if states:
            headers.append((b"ratelimit", b", ".join(states)))
        return headers


def _tagged(key: str, scope: str, own: bool) -> str:
    """``key`` with a hash tag: ``{scope}`` for a principal's own (the tag of
    its risk keys), the whole key otherwise."""
    if own:
        return key[:len(key) - len(scope)] + "{" + scope + "}"
    return "{" + key + "}"


def _counter(charge: Charge) -> str:
    return charge.limit.key_for(charge.scope)


def _too_large(quota: QuotaConfig, window: Window, limit: Limit, cost: int) -> RateLimited:
    """A request that could never fit: retrying will not help, so no Retry-After."""
    kind = "tokens" if quota.cost in _TOKENS else "requests"
    error = RateLimited(
        f"Request too large for {kind} ({quota.name}): limit {limit.amount} per "
        f"{_duration(window.seconds)}, requested {cost}. Reduce max_tokens, the number of "
        "answers (n, best_of, prompts) or the input.",
        reason=f"quota {quota.name} ({_applied(window, limit.amount)}) can never fit cost {cost}",
        headers=[
            (b"x-should-retry", b"false"),
            (f"x-ratelimit-limit-{kind}".encode(), str(limit.amount).encode()),
            (b"ratelimit-policy", _policy_item(quota, window, limit.amount)),
        ],
    )
    error.type = kind
    error.quota = quota.name
    return error


def _applied(window: Window, limit: int) -> str:
    """The rate a refusal applied, as the policy writes rates: a tier's
    quota factor (or a new principal's ramp) scales the written one."""
    if limit == window.amount:
        return window.text
    scaled = re.sub(r"^\s*\d+", str(limit), window.text, count=1)
    return f"{scaled}, scaled from {window.text}"


def _policy_name(quota: QuotaConfig, window: Window) -> str:
    if len(quota.windows) > 1:
        return f"{quota.name}-{window.seconds}"
    return quota.name


def _policy_item(quota: QuotaConfig, window: Window, limit: int) -> bytes:
    unit = ';qu="tokens"' if quota.cost in _TOKENS else ""
    return f'"{_policy_name(quota, window)}";q={limit};w={window.seconds}{unit}'.encode()


def _state_item(quota: QuotaConfig, window: Window, remaining: int, wait: float | None) -> bytes:
    reset = "" if wait is None else f";t={math.ceil(wait)}"
    return f'"{_policy_name(quota, window)}";r={remaining}{reset}'.encode()


def _retry_after(wait: float) -> list[tuple[bytes, bytes]]:
    seconds = max(1, math.ceil(wait))
    return [
        (b"retry-after", str(seconds).encode()),
        (b"retry-after-ms", str(max(1, math.ceil(wait * 1000))).encode()),
    ]


def _duration(seconds: float) -> str:
    """Durations as OpenAI writes them: ``20ms``, ``1s``, ``6m0s``, ``1h2m3s``."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def estimate_input(call: ModelCall) -> int:
    """The input ``call`` is billed for, estimated without a tokenizer: about
    four characters a token over all it sends the model to read (system,
    prompt, tool definitions and calls), one token per token id, and the
    framing of every message or prompt."""
    chars = len(call.prompt) + len(call.system or "") + call.extra_input
    framing = _TOKENS_PER_TURN * call.turns + _TOKENS_PER_CALL
    return math.ceil(chars / 4) + call.token_ids + framing
