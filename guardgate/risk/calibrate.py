"""Fit a policy's signal ramps and tier scores to the operator's own traffic:
``guardgate calibrate``.

The traffic (a recorded day, or what the gateway saw in shadow mode, in the
format `guardgate replay` reads) is taken as mostly benign. It is replayed
three times, each time on memory state of its own:

1. through the policy as written, watching every assessment: each caller's
   largest raw value of every signal over the day (for a cluster signal, the
   largest cluster of that kind the caller was in) and the highest tier it
   reached;
2. through the policy with the fitted ramps: each caller's highest score;
3. through the calibrated policy: the share of callers reaching each tier,
   which is what the report states (a measurement, not a prediction).

The rules, with a the target share (``--target-fpr``), N the callers the
engine assessed and HEADROOM = 2: only half the target is spent on the
calibration day, since another day from another mix of callers is not this
one.

- A policy that already meets the target with headroom on this traffic (at
  most a/2 of its callers reach the target tier) keeps its ramps.
- Otherwise each signal's ``low`` becomes the value that at most
  floor(a * N / 2) callers exceed (the benign tail, nearly its maximum), but
  never less than the policy's ``low`` and never more than the policy's
  ``low`` plus twice its ramp width (calibration does not turn a signal
  off). Its ``high`` becomes the largest of the policy's ``high``, the new
  ``low`` plus half the policy's ramp width, and twice the new ``low``: what
  this deployment's own callers reach is no evidence, and only a caller
  twice as far out gets the signal's full weight (which keeps a day where
  more callers do it, or do more of it, below the tiers). Weights are kept;
  a signal weighted 0 is left as it is, and so is one that no caller of the
  traffic had any value of (its evidence is missing: no usage, no org).
- The target tier (``suspicious``) gets the lowest score, on a 0.01 grid,
  that at most floor(a * N / 2) callers reach with the fitted ramps, and
  never less than its score in the policy. The tiers above it move up by as
  much, keeping their order and gaps (squeezed below 1 if they must be);
  the tiers below it keep their scores.

Calibration therefore never makes a policy more eager than the operator
wrote it: a ramp only moves out, a tier only up. The price is recall: a
signal this deployment's callers trip on their own stops telling them from
a campaign that trips it no harder, which the report shows signal by signal.

`guardgate.replay` imports the risk package, so the replay is passed in
(`Replayer`, `guardgate.replay.Replay` in the command).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import yaml

from guardgate.errors import PolicyError
from guardgate.policy import load_policy_text
from guardgate.policy.model import Policy, SignalConfig

if TYPE_CHECKING:
    from guardgate.apis.base import ModelCall
    from guardgate.identity import Identity
    from guardgate.risk.engine import Assessment, RiskEngine

# Only this share of the target is spent on the calibration day itself.
HEADROOM = 2.0
# Tier scores are written on this grid.
GRID = 0.01
QUANTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("max", 1.0))


class CalibrationError(Exception):
    """Calibration cannot start or finish; the message is one line for the operator."""


class Counts(Protocol):
    @property
    def requests(self) -> int: ...
    @property
    def decided(self) -> int: ...


class Replayer(Protocol):
    """What calibration needs of a replay (`guardgate.replay.Replay`)."""

    @property
    def engine(self) -> RiskEngine | None: ...
    @property
    def summary(self) -> Counts: ...
    async def decide(self, record: Any) -> dict[str, Any] | None: ...


# A fresh pass over the traffic records, given what the pass is for.
Records = Callable[[str], Iterable[Any]]


@dataclass(slots=True)
class Observed:
    """One replay, caller by caller."""

    requests: int = 0
    decided: int = 0
    reached: dict[str, int] = field(default_factory=dict)   # principal: tier rank (0 normal)
    values: dict[str, dict[str, float]] = field(default_factory=dict)  # largest raw values
    scores: dict[str, float] = field(default_factory=dict)  # highest score
    contributing: dict[str, set[str]] = field(default_factory=dict)  # signal: callers

    def note(self, assessment: Assessment) -> None:
        principal = assessment.principal
        values = self.values.setdefault(principal, {})
        scored = assessment.scored
        for name, raw, part in scored.signals:
            values[name] = max(values.get(name, raw), raw)
            if part > 0:
                self.contributing.setdefault(name, set()).add(principal)
        for cluster in scored.clusters:
            name, accounts = f"{cluster[0]}_cluster", float(cluster[2])
            values[name] = max(values.get(name, accounts), accounts)
        self.scores[principal] = max(self.scores.get(principal, 0.0), assessment.score)

    def share_reaching(self, rank: int) -> float:
        if not self.reached:
            return 0.0
        return sum(1 for r in self.reached.values() if r >= rank) / len(self.reached)

    def share_contributing(self, name: str) -> float:
        return len(self.contributing.get(name, ())) / max(len(self.values), 1)


async def observe(replay: Replayer, policy: Policy, records: Iterable[Any]) -> Observed:
    """Replays ``records``, noting every assessment the replay's engine makes."""
    engine = replay.engine
    if engine is None:
        raise CalibrationError("the policy scores nobody (no tiers, or risk.enabled: false)")
    seen = Observed()
    assess = engine.assess

    async def noted(identity: Identity, call: ModelCall, now: float) -> Assessment:
        assessment = await assess(identity, call, now)
        seen.note(assessment)
        return assessment

    setattr(engine, "assess", noted)  # noqa: B010 - the replay's own engine, watched
    rank = {tier.name: i for i, tier in enumerate(policy.tiers, 1)}
    for record in records:
        line = await replay.decide(record)
        if line is not None:
            principal = line["principal"]
            seen.reached[principal] = max(seen.reached.get(principal, 0),
                                          rank.get(line["tier"], 0))
    seen.requests, seen.decided = replay.summary.requests, replay.summary.decided
    return seen


# -- the rules ---------------------------------------------------------------------------

def allowed(share: float, callers: int) -> int:
    """How many of ``callers`` a share allows (rounded down)."""
    return math.floor(share * callers + 1e-9)


def exceeded_by(values: list[float], count: int) -> float:
    """The smallest value that at most ``count`` of ``values`` exceed."""
    ordered = sorted(values)
    if count >= len(ordered):
        return 0.0
    return ordered[len(ordered) - 1 - count]


def quantile(values: list[float], p: float) -> float:
    """Nearest rank: the smallest value with at least ``p`` of ``values`` at or below it."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered), max(1, math.ceil(p * len(ordered)))) - 1]


def _up(value: float) -> float:
    """``value`` rounded up to 4 significant digits, for a readable policy."""
    if value <= 0:
        return value
    step = 10.0 ** (math.floor(math.log10(value)) - 3)
    return float(f"{math.ceil(value / step - 1e-6) * step:.4g}")


def fit_ramp(signal: SignalConfig, values: list[float], share: float) -> tuple[float, float]:
    """The fitted (low, high) of ``signal`` given the callers' largest ``values``
    and the target ``share``."""
    if signal.weight <= 0:
        return signal.low, signal.high
    width = signal.high - signal.low
    bound = exceeded_by(values, allowed(share / HEADROOM, len(values)))
    if bound <= signal.low:
        return signal.low, signal.high
    low = min(_up(bound), signal.low + 2 * width)
    return low, max(signal.high, _up(max(low + width / 2, 2 * low)))


def fit_score(scores: list[float], share: float, floor: float, ceiling: float) -> float:
    """The lowest score on the grid that at most ``share / HEADROOM`` of
    callers reach, within [floor, ceiling]."""
    count = allowed(share / HEADROOM, len(scores))
    ordered = sorted(scores, reverse=True)
    needed = 0.0
    if count < len(ordered):
        needed = (math.floor(ordered[count] / GRID + 1e-6) + 1) * GRID
    return round(min(max(needed, floor), ceiling), 4)


def fit_tiers(policy: Policy, target: str, score: float) -> dict[str, float]:
    """Every tier's score once ``target`` is at ``score`` (see the module's rules)."""
    names = [tier.name for tier in policy.tiers]
    old = {tier.name: tier.score for tier in policy.tiers}
    at = names.index(target)
    fitted = {name: old[name] for name in names[:at]}
    fitted[target] = score
    above = names[at + 1:]
    if not above:
        return fitted
    delta = score - old[target]
    top = old[above[-1]]
    squeeze = 1.0
    if top + delta > 1.0:
        squeeze = (1.0 - score) / (top - old[target])
    previous = score
    for name in above:
        moved = score + (old[name] - old[target]) * squeeze
        previous = max(round(moved, 4), round(previous + GRID / 10, 4))
        fitted[name] = previous
    return fitted


def highest_target(policy: Policy, target: str) -> float:
    """The highest score ``target`` can take with the tiers above it still below 1."""
    names = [tier.name for tier in policy.tiers]
    return round(1.0 - GRID * (len(names) - 1 - names.index(target)), 4)


# -- the calibration ---------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SignalFit:
    name: str
    weight: float
    low: float
    high: float
    fitted_low: float
    fitted_high: float
    quantiles: dict[str, float]
    contributing_before: float  # share of callers it contributed anything to
    contributing_after: float
    observed: bool  # some caller had a value above 0: the traffic carries its evidence


@dataclass(frozen=True, slots=True)
class TierFit:
    name: str
    score: float
    fitted_score: float
    reached_before: float  # share of callers reaching this tier or a higher one
    reached_after: float


@dataclass(frozen=True, slots=True)
class Calibration:
    text: str  # the calibrated policy, YAML
    policy: Policy
    target_fpr: float
    tier: str
    requests: int
    decided: int
    callers: int
    signals: tuple[SignalFit, ...]
    tiers: tuple[TierFit, ...]
    ramps_kept: bool  # the policy met the target with headroom: its ramps are as written

    @property
    def flagged_before(self) -> float:
        return next(t.reached_before for t in self.tiers if t.name == self.tier)

    @property
    def flagged_after(self) -> float:
        return next(t.reached_after for t in self.tiers if t.name == self.tier)

    @property
    def met(self) -> bool:
        return self.flagged_after <= self.target_fpr

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "decided": self.decided,
            "callers": self.callers,
            "target_fpr": self.target_fpr,
            "tier": self.tier,
            "flagged_before": round(self.flagged_before, 6),
            "flagged_after": round(self.flagged_after, 6),
            "met": self.met,
            "ramps_kept": self.ramps_kept,
            "signals": [
                {"name": s.name, "weight": s.weight, "low": s.low, "high": s.high,
                 "fitted_low": s.fitted_low, "fitted_high": s.fitted_high,
                 **{k: round(v, 6) for k, v in s.quantiles.items()},
                 "contributing_before": round(s.contributing_before, 6),
                 "contributing_after": round(s.contributing_after, 6),
                 "observed": s.observed}
                for s in self.signals
            ],
            "tiers": [
                {"name": t.name, "score": t.score, "fitted_score": t.fitted_score,
                 "reached_before": round(t.reached_before, 6),
                 "reached_after": round(t.reached_after, 6)}
                for t in self.tiers
            ],
        }

    def report(self) -> str:
        one = 1 / max(self.callers, 1)
        head = (f"{self.requests} requests, {self.decided} decided, {self.callers} callers; "
                f"target: at most {self.target_fpr:.2%} of callers reach {self.tier} "
                f"(one caller is {one:.2%})")
        columns = (f"{'signal':<24}{'weight':>7}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}"
                   f"{'low -> fitted':>22}{'high -> fitted':>22}{'contributing':>18}")
        lines = [head, "", columns]
        for s in self.signals:
            q = s.quantiles
            lines.append(
                f"{s.name:<24}{s.weight:>7.2f}{q['p50']:>9.4g}{q['p90']:>9.4g}{q['p99']:>9.4g}"
                f"{q['max']:>9.4g}{f'{s.low:g} -> {s.fitted_low:g}':>22}"
                f"{f'{s.high:g} -> {s.fitted_high:g}':>22}"
                f"{f'{s.contributing_before:.1%} -> {s.contributing_after:.1%}':>18}"
            )
        lines += ["", f"{'tier':<14}{'score -> fitted':>18}{'reached before':>16}{'after':>9}"]
        for t in self.tiers:
            lines.append(f"{t.name:<14}{f'{t.score:g} -> {t.fitted_score:g}':>18}"
                         f"{t.reached_before:>16.2%}{t.reached_after:>9.2%}")
        verdict = "met" if self.met else "NOT met"
        summary = (f"{self.tier} or above: {self.flagged_before:.2%} of callers before, "
                   f"{self.flagged_after:.2%} after (target {self.target_fpr:.2%}): {verdict}")
        lines += ["", summary]
        if self.ramps_kept:
            lines.append(f"ramps as written: at most {self.target_fpr / HEADROOM:.2%} of "
                         f"callers reached {self.tier} with them")
        unseen = [s.name for s in self.signals if s.weight > 0 and not s.observed]
        if unseen and not self.ramps_kept:
            lines.append("not calibrated, no caller had a value (the traffic lacks their "
                         "evidence): " + ", ".join(unseen))
        if allowed(self.target_fpr, self.callers) < 1:
            lines.append(f"note: {self.callers} callers cannot resolve a share of "
                         f"{self.target_fpr:.2%}: no caller at all is allowed to reach "
                         f"{self.tier}; calibrate on more traffic")
        return "\n".join(lines)


def read_document(path: str) -> dict[str, Any]:
    """The policy file as written (``${NAME}`` references kept), to rewrite."""
    try:
        with open(path, encoding="utf-8") as f:
            document = yaml.safe_load(f)
    except OSError as exc:
        raise CalibrationError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CalibrationError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(document, dict):
        raise CalibrationError(f"{path}: a policy is a mapping of sections")
    return document


def check(policy: Policy, target_fpr: float, tier: str) -> None:
    """Raises `CalibrationError` when ``policy`` cannot be calibrated to ``tier``."""
    if not 0 < target_fpr < 1:
        raise CalibrationError(f"--target-fpr must be a share between 0 and 1, not {target_fpr}")
    if not policy.tiers:
        raise CalibrationError("the policy defines no tiers: nothing to calibrate")
    if not policy.risk.enabled:
        raise CalibrationError("the policy turns risk scoring off (risk.enabled: false)")
    names = [t.name for t in policy.tiers]
    if tier not in names:
        raise CalibrationError(
            f"the policy has no tier '{tier}' (tiers: {', '.join(names)}); name one with --tier"
        )


def rewritten(document: dict[str, Any], signals: dict[str, tuple[float, float, float]],
              scores: dict[str, float]) -> dict[str, Any]:
    """``document`` with ``risk.signals`` and the tiers' scores replaced."""
    out = dict(document)
    risk = dict(out.get("risk") or {})
    risk["signals"] = {name: {"weight": w, "low": low, "high": high}
                       for name, (w, low, high) in signals.items()}
    out["risk"] = risk
    tiers = dict(out.get("tiers") or {})
    for name, score in scores.items():
        tiers[name] = {**(tiers.get(name) or {}), "score": score}
    out["tiers"] = tiers
    return out


def _compiled(text: str, source: str) -> Policy:
    try:
        return load_policy_text(text, source=source, env=os.environ)
    except PolicyError as err:  # a fitted value the schema refuses: a bug here
        raise CalibrationError(f"the calibrated policy is invalid: {err.problems[0]}") from None


async def calibrate(
    policy: Policy,
    document: dict[str, Any],
    records: Records,
    replay: Callable[[Policy], Replayer],
    *,
    target_fpr: float = 0.005,
    tier: str = "suspicious",
    header: str = "",
) -> Calibration:
    """Fits ``policy`` (written as ``document``) to the traffic ``records``
    gives on every pass; see the module's rules."""
    check(policy, target_fpr, tier)
    before = await observe(replay(policy), policy, records("1/3 observe"))
    if not before.values:
        raise CalibrationError("no model request in the traffic was scored: nothing to fit")
    callers = list(before.values.values())
    target_rank = [t.name for t in policy.tiers].index(tier) + 1
    # A policy that already meets the target with headroom keeps its ramps.
    kept = before.share_reaching(target_rank) <= target_fpr / HEADROOM
    ramps: dict[str, tuple[float, float, float]] = {}
    for signal in policy.risk.signals:
        values = [own.get(signal.name, 0.0) for own in callers]
        low, high = (signal.low, signal.high) if kept else fit_ramp(signal, values, target_fpr)
        ramps[signal.name] = (signal.weight, low, high)
    old_scores = {t.name: t.score for t in policy.tiers}
    middle = before
    if not kept:
        text = yaml.safe_dump(rewritten(document, ramps, old_scores), sort_keys=False,
                              allow_unicode=True)
        ramped = _compiled(text, policy.source)
        middle = await observe(replay(ramped), ramped, records("2/3 fit tiers"))
    floor = old_scores[tier]
    score = fit_score(list(middle.scores.values()), target_fpr, floor,
                      max(floor, highest_target(policy, tier)))
    scores = fit_tiers(policy, tier, score)
    text = header + yaml.safe_dump(rewritten(document, ramps, scores), sort_keys=False,
                                   allow_unicode=True)
    fitted = _compiled(text, policy.source)
    unchanged = kept and scores == old_scores
    after = before if unchanged else await observe(replay(fitted), fitted, records("3/3 verify"))
    signals = tuple(
        SignalFit(
            s.name, s.weight, s.low, s.high, ramps[s.name][1], ramps[s.name][2],
            {key: quantile([own.get(s.name, 0.0) for own in callers], p)
             for key, p in QUANTILES},
            before.share_contributing(s.name), after.share_contributing(s.name),
            any(own.get(s.name, 0.0) > 0 for own in callers),
        )
        for s in policy.risk.signals
    )
    tiers = tuple(
        TierFit(t.name, t.score, scores[t.name], before.share_reaching(rank),
                after.share_reaching(rank))
        for rank, t in enumerate(policy.tiers, 1)
    )
    return Calibration(text, fitted, target_fpr, tier, before.requests, before.decided,
                       len(before.reached), signals, tiers, kept)


__all__ = ["Calibration", "CalibrationError", "Replayer", "calibrate",
           "read_document"]
