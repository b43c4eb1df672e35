"""From a caller's state to a score in [0, 1], signal by signal.

Each signal's raw value goes through its ramp and is multiplied by its
weight; the contributions add up, capped at 1. The caller's own score leaves
out the cluster signals: a caller whose own score reaches the policy's
member score counts as a risky member of its clusters, and a cluster signal
is weighted by the share of risky members in the cluster. So a cluster is
only as risky as its members are on their own, members cannot raise each
other through the cluster alone, and a few heavy attackers mixing into a
popular prompt do not make it risky for everyone else.

Shares (of requests asking for reasoning, of harvest, of single turns) are
taken over the caller's requests plus `PRIOR` requests that did none of it,
so one request alone does not make a share of 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from guardgate.policy.catalogue import CLUSTER_KINDS
from guardgate.policy.model import RiskConfig, SignalConfig
from guardgate.store.risk import DAY, Snapshot

_CLUSTER_SIGNAL = {kind: f"{kind}_cluster" for kind in CLUSTER_KINDS}
# Clusters that are evidence by their size alone, whatever their members' own risk
# (and imported indicators that count for established callers too).
COORDINATION = frozenset({"setup"})
# Not a signal: the explanation's line for a caller held by its extraction budget.
BUDGET = "extraction_budget"
# Matches with indicators imported from peers (`guardgate.intel`), weighted
# by the policy's ``intel.signal``; outside the caller's own score, as the
# cluster signals are.
SHARED_INTEL = "shared_intel"
PRIOR = 2.0
# Days with a request (today included) before a caller has a baseline to burst from.
BASELINE_DAYS = 3
WEEK = 7 * DAY


def established(s: Snapshot, now: float, created: float | None) -> bool:
    """An established account (a week old by the trusted header, or active
    on two days or more without one) is no fresh sybil: what it shares with
    others is what unrelated callers share."""
    return (now - created >= WEEK) if created is not None else s.days >= 2


def ramp(value: float, low: float, high: float) -> float:
    if value <= low:
        return 0.0
    if value >= high:
        return 1.0
    return (value - low) / (high - low)


@dataclass(frozen=True, slots=True)
class Scored:
    score: float
    own: float
    # Every signal with a weight: (name, raw value, contribution), largest first.
    signals: list[tuple[str, float, float]]
    # The caller's clusters: (kind, key, accounts, risky accounts, contribution).
    clusters: list[tuple[str, str, int, int, float]]
    # Imported indicators matched: (indicator id, kind, value, strength, feed, campaign).
    intel: list[tuple[str, str, str, float, str, str | None]] = field(default_factory=list)

    def top(self, count: int = 3) -> list[str]:
        """The strongest signals that contributed, and the extraction budget
        when it holds the caller in its tier."""
        top = [name for name, _, contribution in self.signals[:count] if contribution > 0]
        if self.signals and self.signals[-1][0] == BUDGET:
            top.append(BUDGET)
        return top

    def compact(self, tier: str, now: float) -> bytes:
        """What the state keeps of this assessment, cheap to write on every
        request; `explained` turns it into the operator's explanation."""
        if self.intel:
            return orjson.dumps((self.score, self.own, tier, now, self.signals, self.clusters,
                                 self.intel))
        return orjson.dumps((self.score, self.own, tier, now, self.signals, self.clusters))

    def with_intel(self, raw: float, part: float,
                   matched: list[tuple[str, str, str, float, str, str | None]]) -> Scored:
        """This assessment with the `SHARED_INTEL` signal added."""
        signals = sorted([*self.signals, (SHARED_INTEL, raw, part)], key=lambda item: -item[2])
        return replace(self, score=min(1.0, self.score + part), signals=signals, intel=matched)

    def explanation(self, tier: str, now: float) -> dict[str, Any]:
        return explained(self.compact(tier, now))


def explained(compact: bytes) -> dict[str, Any]:
    """The explanation of an assessment kept as `Scored.compact` wrote it."""
    score, own, tier, now, signals, clusters, *more = orjson.loads(compact)
    found: dict[str, Any] = {
        "score": round(score, 4),
        "own_score": round(own, 4),
        "tier": tier,
        "at": round(now, 3),
        "signals": [
            {"name": name, "value": round(raw, 4), "contribution": round(part, 4)}
            for name, raw, part in signals
        ],
        "clusters": [
            {"kind": kind, "key": key, "accounts": accounts, "risky_accounts": risky,
             "contribution": round(part, 4)}
            for kind, key, accounts, risky, part in clusters
        ],
    }
    if more:
        found["intel"] = [
            {"indicator": indicator, "kind": kind, "value": value, "strength": strength,
             "feed": feed, "campaign": campaign}
            for indicator, kind, value, strength, feed, campaign in more[0]
        ]
    return found


class Scorer:
    def __init__(self, config: RiskConfig) -> None:
        self._signals: dict[str, SignalConfig] = {s.name: s for s in config.signals}
        # A steady rate holds counts in the ratio of the half-lives.
        self._steady = config.long_half_life / config.half_life
        self._risk_low, self._risk_high = config.cluster_risk
        # Signals weighted 0 are not computed, and their clusters not kept.
        self.cluster_kinds = tuple(
            kind for kind in CLUSTER_KINDS if self._signals[_CLUSTER_SIGNAL[kind]].weight > 0
        )

    def raw(self, s: Snapshot, now: float, created: float | None) -> dict[str, float]:
        """Each own (not cluster) signal's raw value."""
        n = s.n + PRIOR
        # Age only from the trusted creation header: missing, it is neutral.
        age = None if created is None else max(0.0, now - created)
        youth = 1.0 if age is None else 2.0 if age < DAY else 1.5 if age < WEEK else 1.0
        reuse = 1 - s.templates / s.requests if s.requests >= 10 else 0.0
        burst = 0.0
        # A baseline is two earlier days at least: against one, a job that
        # runs every night looks like a burst on its second night.
        if s.days >= BASELINE_DAYS and s.long_n > 0:
            burst = max(0.0, s.n * self._steady / s.long_n - 1) * min(1.0, s.n / 500)
        return {
            "reasoning_elicitation": s.reasoning / n,
            "logprob_harvest": s.harvest / n,
            "account_youth": 0.0 if age is None else max(0.0, 1 - age / WEEK),
            "volume": s.n * youth,
            "burst": burst,
            "timing_regularity": max(0.0, 1 - math.sqrt(s.gap_var)) if s.gaps >= 20 else 0.0,
            "hours_active": float(s.hours),
            "template_reuse": reuse,
            "topic_sweep": reuse * s.prompts / s.requests if s.requests >= 10 else 0.0,
            "output_ratio": (
                s.output_tokens / max(s.input_tokens, 1.0) if s.answered >= 5 else 0.0
            ),
            "single_turn": s.single / n if s.n >= 10 else 0.0,
        }

    def score(self, s: Snapshot, now: float, created: float | None) -> Scored:
        signals: list[tuple[str, float, float]] = []
        own = 0.0
        for name, value in self.raw(s, now, created).items():
            config = self._signals[name]
            if config.weight > 0:
                part = config.weight * ramp(value, config.low, config.high)
                own += part
                signals.append((name, value, part))
        own = min(1.0, own)
        strongest: dict[str, tuple[str, str, int, int, float]] = {}
        clusters = []
        for kind, key, accounts, risky in s.clusters:
            config = self._signals[_CLUSTER_SIGNAL[kind]]
            part = config.weight * ramp(accounts, config.low, config.high)
            if kind not in COORDINATION:
                part *= ramp(risky / accounts, self._risk_low, self._risk_high)
            entry = (kind, key, accounts, risky, part)
            clusters.append(entry)
            held = strongest.get(kind)
            if held is None or part > held[4]:
                strongest[kind] = entry
        total = own
        settled = established(s, now, created)
        for kind, (_, _, accounts, _, part) in strongest.items():
            if settled and kind not in COORDINATION:
                part = 0.0
            total += part
            signals.append((_CLUSTER_SIGNAL[kind], float(accounts), part))
        signals.sort(key=lambda item: -item[2])
        return Scored(min(1.0, total), own, signals, clusters)


__all__ = ["COORDINATION", "SHARED_INTEL", "Scored", "Scorer", "established", "ramp"]
