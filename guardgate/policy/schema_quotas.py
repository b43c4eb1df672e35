"""The quota sections of the policy: ``quotas`` and ``new_principals``.

A quota is either a rate (``limit``, in limits notation) or a concurrency cap;
which keys go together is checked on the data as written, so a rule broken
in one quota is reported alongside a typo in another.
"""

from __future__ import annotations

from typing import Annotated, Any, Self, get_args

from pydantic import ConfigDict, Field, ModelWrapValidatorHandler, model_validator

from guardgate.policy.fields import (
    Located,
    PositiveDuration,
    Rates,
    checked,
    matches,
    misspells,
    repeated,
    string_schema,
)
from guardgate.policy.model import QuotaConfig, QuotaCost, QuotaScope, Strategy, default_of
from guardgate.policy.section import Section

QUOTA_NAME_PATTERN = r"^[a-z0-9_-]{1,64}$"
TOKEN_COSTS = tuple(cost for cost in get_args(QuotaCost) if cost.endswith("_tokens"))

QuotaName = Annotated[
    str,
    matches(QUOTA_NAME_PATTERN, "a quota name is 1 to 64 of a-z, 0-9, '_' and '-'"),
    string_schema(QUOTA_NAME_PATTERN),
]
_NO_REFUND = (
    "moving-window cannot take a token cost: token reservations must be refundable "
    "(the unused part of max_tokens is given back) and a moving window cannot refund; "
    "use fixed-window or sliding-window-counter"
)


def _quota_rules(data: Any) -> list[Located]:
    if not isinstance(data, dict):
        return []
    rate, concurrency = "limit" in data, "concurrency" in data
    if rate and concurrency:
        return [(("concurrency",), "a quota has either limit or concurrency, not both")]
    if not rate and not concurrency:
        if misspells(data, ("limit", "concurrency"), frozenset(QuotaSection.model_fields)):
            return []
        return [((), "a quota needs limit (a rate like 600/minute) or concurrency")]
    if concurrency:
        return [
            ((key,), f"'{key}' applies to rate quotas only, not to a concurrency quota")
            for key in ("cost", "strategy")
            if key in data
        ]
    if data.get("strategy") == "moving-window" and data.get("cost") in TOKEN_COSTS:
        return [(("strategy",), _NO_REFUND)]
    return []


class QuotaSection(Section):
    """One quota: a rate (limit) or a cap on in-flight requests (concurrency), per caller."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["limit"]},
                {
                    "required": ["concurrency"],
                    "not": {"anyOf": [{"required": ["cost"]}, {"required": ["strategy"]}]},
                },
            ],
            "if": {
                "required": ["strategy"],
                "properties": {"strategy": {"const": "moving-window"}},
            },
            "then": {"properties": {"cost": {"const": "requests"}}},
        }
    )

    name: QuotaName = Field(
        description="Unique name of the quota, as it appears in logs, metrics and headers."
    )
    per: QuotaScope = Field(
        default=default_of(QuotaConfig, "per"),
        description=(
            "Whose usage is counted together: each principal, client IP, IP network "
            "(identity.ip_prefix), organisation (identity.org_header), or everyone at once."
        ),
    )
    limit: Rates | None = Field(
        default=None,
        description=(
            "The rate, in limits notation: 600/minute, or several windows joined by ';' "
            "(10/minute;100/hour), all enforced. Give limit or concurrency, not both."
        ),
    )
    concurrency: int | None = Field(
        default=None,
        ge=1,
        description="Most requests in flight at once; a stream counts until it ends.",
    )
    cost: QuotaCost = Field(
        default=default_of(QuotaConfig, "cost"),
        description=(
            "What a request uses of a rate quota: 1 (requests) or its tokens; token costs "
            "reserve max_tokens (or default_max_tokens) up front and settle on the answer."
        ),
    )
    strategy: Strategy = Field(
        default=default_of(QuotaConfig, "strategy"),
        description=(
            "The limits strategy counting a rate quota. moving-window cannot refund, so it "
            "takes only cost: requests."
        ),
    )

    @model_validator(mode="wrap")
    @classmethod
    def _rules(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        return checked(data, handler, _quota_rules)


def duplicate_quota_names(quotas: Any) -> list[Located]:
    return repeated(
        quotas, "name", lambda name, at: f"duplicate quota name '{name}' (also quotas[{at}])"
    )


class RampSection(Section):
    """New principals get a fraction of every quota, growing to the whole as they age."""

    start: float = Field(
        gt=0, le=1, description="Fraction of every quota a brand-new principal gets, in (0, 1]."
    )
    full_after: PositiveDuration = Field(
        description="Age at which a principal gets its full quotas (linear ramp), e.g. 7d."
    )
