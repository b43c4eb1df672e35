"""The ``risk`` and ``admin`` sections of the policy.

``risk.signals`` maps a signal name (see `guardgate.policy.catalogue`) to its
weight and ramp; a signal left out keeps its defaults.
"""

from __future__ import annotations

import difflib
from typing import Any, Self

from pydantic import Field, ModelWrapValidatorHandler, model_validator

from guardgate.policy.catalogue import BY_NAME, SIGNALS
from guardgate.policy.fields import Located, PositiveDuration, checked
from guardgate.policy.model import RiskConfig, default_of
from guardgate.policy.section import Section, as_written
from guardgate.policy.units import duration_text

_CLUSTER_RISK: tuple[float, float] = default_of(RiskConfig, "cluster_risk")


class SignalSection(Section):
    """A signal's weight and the ramp that maps its raw value to [0, 1]."""

    weight: float | None = Field(
        default=None, ge=0, le=1, description="Contribution at full strength; 0 turns it off."
    )
    low: float | None = Field(default=None, ge=0, description="Raw value mapped to 0.")
    high: float | None = Field(default=None, ge=0, description="Raw value mapped to 1.")


def _ramp_order(data: Any) -> list[Located]:
    if not isinstance(data, dict):
        return []
    problems: list[Located] = []
    for name, section in data.items():
        if name not in BY_NAME or not isinstance(section, dict):
            continue
        default = BY_NAME[name]
        low, high = section.get("low", default.low), section.get("high", default.high)
        if isinstance(low, int | float) and isinstance(high, int | float) and high <= low:
            problems.append(((name, "high"), f"high must be above low ({low})"))
    return problems


def _unknown_signals(data: Any) -> list[Located]:
    if not isinstance(data, dict):
        return []
    problems: list[Located] = []
    for name in data:
        if name in BY_NAME:
            continue
        close = difflib.get_close_matches(str(name), BY_NAME, n=1)
        hint = f"did you mean '{close[0]}'?" if close else "known: " + ", ".join(BY_NAME)
        problems.append(((name,), f"unknown signal '{name}' ({hint})"))
    return problems


class ClusterRiskSection(Section):
    """Which share of a cluster's accounts must be risky for the cluster to count."""

    low: float = Field(default=_CLUSTER_RISK[0], ge=0, le=1, description="Risky share mapped to 0.")
    high: float = Field(
        default=_CLUSTER_RISK[1], ge=0, le=1, description="Risky share mapped to 1."
    )


class BudgetSection(Section):
    """The long-horizon extraction budget."""

    requests: float = Field(
        gt=0,
        description=(
            "Requests in the long-horizon count (decayed with long_half_life: a fresh account "
            "gets this many, then a steady r a day holds about r * long_half_life / ln 2)."
        ),
    )
    tier: str = Field(description="The tier a caller past the budget is held in, at least.")


class RiskSection(Section):
    """How the risk score is computed (signals, decay, windows)."""

    enabled: bool = Field(
        default=default_of(RiskConfig, "enabled"),
        description="Score callers (when tiers are defined); false turns it off.",
    )
    half_life: PositiveDuration = Field(
        default=as_written(duration_text(default_of(RiskConfig, "half_life"))),
        description="Per-account rolling state halves in this time, so behaviour fades.",
    )
    long_half_life: PositiveDuration = Field(
        default=as_written(duration_text(default_of(RiskConfig, "long_half_life"))),
        description=(
            "Long-horizon counters halve in this time: the extraction budget and a caller's "
            "baseline, which a burst is judged against."
        ),
    )
    budget: BudgetSection | None = Field(
        default=None,
        description=(
            "Extraction budget: a caller whose long-horizon request count reaches `requests` is "
            "held in `tier` at least, however its score reads: what one account can take "
            "untreated, and so what an extraction campaign must pay in accounts."
        ),
    )
    window: PositiveDuration = Field(
        default=as_written(duration_text(default_of(RiskConfig, "window"))),
        description="Sliding window of distinct counts: cluster sizes, templates per account.",
    )
    hysteresis: float = Field(
        default=default_of(RiskConfig, "hysteresis"),
        ge=0,
        le=0.5,
        description="A caller leaves a tier only once its score is this far below the tier's.",
    )
    member_score: float = Field(
        default=default_of(RiskConfig, "member_score"),
        ge=0,
        le=1,
        description=(
            "Own score (without cluster signals) at which a caller counts as a risky member "
            "of its clusters."
        ),
    )
    cluster_risk: ClusterRiskSection = Field(
        default=ClusterRiskSection(),
        description=(
            "Ramp over the share of a cluster's accounts that are risky members; it weights "
            "every cluster signal."
        ),
    )
    signals: dict[str, SignalSection] = Field(
        default={},
        json_schema_extra={
            "propertyNames": {"enum": [signal.name for signal in SIGNALS]},
        },
        description="Per-signal weight, low and high; a signal left out keeps its defaults.",
    )
    max_callers: int = Field(
        default=default_of(RiskConfig, "max_callers"),
        ge=100,
        description=(
            "With memory storage, the most callers whose risk state is kept; past it the "
            "least risky are forgotten first, never one in a tier while a lower one can go."
        ),
    )

    @model_validator(mode="wrap")
    @classmethod
    def _rules(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        def check(value: Any) -> list[Located]:
            signals = value.get("signals") if isinstance(value, dict) else None
            return [
                (("signals", *path), message)
                for path, message in _unknown_signals(signals) + _ramp_order(signals)
            ]

        return checked(data, handler, check)


class AdminSection(Section):
    """The operator API under /_guardgate/ (account inspection)."""

    token: str = Field(
        min_length=16,
        description="Bearer token of the operator API, at least 16 characters; use ${ENV}.",
    )
