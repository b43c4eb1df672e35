"""The treatment sections of the policy: ``tiers`` and ``overrides``.

Callers whose risk score reaches a tier's score are treated as that tier
says; below the lowest tier they are "normal". Overrides pin a caller to a
tier, or allow or deny it outright, before any scoring. Later sections add
keys to `TierSection` (a field each) and to `TierConfig`.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from guardgate.policy.fields import (
    Located,
    Network,
    checked,
    matches,
    misspells,
    string_schema,
)
from guardgate.policy.model import NORMAL, OverrideConfig, TierConfig, default_of
from guardgate.policy.schema_challenge import TierChallengeSection
from guardgate.policy.schema_degrade import DEGRADE_HELP, DegradeList
from guardgate.policy.section import Section

TIER_NAME_PATTERN = r"^[a-z][a-z0-9_-]*$"
KEY_DIGEST_PATTERN = r"^[0-9a-fA-F]{64}$"
PRINCIPAL_PATTERN = r"^(key:[0-9a-fA-F]{16}|acct:.{1,128}|ip:[0-9A-Fa-f.:]+)$"
MATCHERS = ("api_key_sha256", "principal", "ip", "org")
ACTIONS = ("tier", "allow", "deny")
_TIER_NAME = re.compile(TIER_NAME_PATTERN)


def _tier_name(value: str) -> str:
    if value == NORMAL:
        raise PydanticCustomError(
            "tier", f"'{NORMAL}' is the implicit tier below the lowest score; choose another name"
        )
    if _TIER_NAME.fullmatch(value) is None:
        raise PydanticCustomError(
            "tier", "a tier name starts with a-z and has only a-z, 0-9, '_' and '-'"
        )
    return value


def _principal_id(value: str) -> str:
    kind, _, rest = value.partition(":")
    if kind == "key" and re.fullmatch(r"[0-9a-fA-F]{16}", rest):
        return "key:" + rest.lower()
    if kind == "acct" and 0 < len(rest) <= 128:
        return value
    if kind == "ip":
        try:
            return "ip:" + str(ipaddress.ip_address(rest))
        except ValueError:
            pass
    raise PydanticCustomError(
        "principal",
        "expected a principal id: key:<16 hex digits>, acct:<account id> or ip:<address>",
    )


TierName = Annotated[
    str,
    AfterValidator(_tier_name),
    WithJsonSchema({"type": "string", "pattern": TIER_NAME_PATTERN, "not": {"const": NORMAL}}),
]
TierRef = Annotated[
    str,
    matches(TIER_NAME_PATTERN, "expected the name of a tier defined under tiers"),
    string_schema(TIER_NAME_PATTERN),
]
KeyDigest = Annotated[
    str,
    matches(KEY_DIGEST_PATTERN, "expected the SHA-256 of the API key: 64 hex digits"),
    AfterValidator(str.lower),
    string_schema(KEY_DIGEST_PATTERN),
]
PrincipalId = Annotated[
    str,
    AfterValidator(_principal_id),
    string_schema(PRINCIPAL_PATTERN, examples=["key:1a2b3c4d5e6f7a8b", "acct:team-42"]),
]


def _only_true(value: bool) -> bool:
    if value is not True:
        raise PydanticCustomError("flag", "write true, or leave the key out")
    return value


OnlyTrue = Annotated[bool, AfterValidator(_only_true), WithJsonSchema({"const": True})]


class TierSection(Section):
    """How callers whose risk score reaches ``score`` are treated."""

    score: float = Field(
        ge=0, le=1, description="Lowest risk score (0 to 1) that puts a caller in this tier."
    )
    quota_factor: float = Field(
        default=default_of(TierConfig, "quota_factor"),
        gt=0,
        le=1,
        description="Every quota is scaled by this factor (in (0, 1]) for callers in this tier.",
    )
    deny: bool = Field(
        default=default_of(TierConfig, "deny"),
        description="Refuse every request from this tier (403).",
    )
    degrade: DegradeList | None = Field(default=None, description=DEGRADE_HELP)
    mark: OnlyTrue = Field(
        default=default_of(TierConfig, "mark"),
        validate_default=False,
        description="true: watermark this tier's answers with the watermark key.",
    )
    challenge: TierChallengeSection | None = Field(
        default=None,
        description=(
            "Ask this tier's callers for proof of work: {difficulty, budget}, or {} for the "
            "challenge section's defaults."
        ),
    )


def equal_tier_scores(tiers: Any) -> list[Located]:
    first: dict[float, str] = {}
    equal: list[Located] = []
    for name, tier in tiers.items() if isinstance(tiers, dict) else ():
        score = tier.get("score") if isinstance(tier, dict) else None
        if not isinstance(score, int | float) or isinstance(score, bool):
            continue
        if score in first:
            message = f"tier '{first[score]}' has the same score; tiers need distinct scores"
            equal.append(((name, "score"), message))
        else:
            first[score] = name
    return equal


def _one_of(data: dict[str, Any], keys: tuple[str, ...], what: str) -> list[Located]:
    given = [key for key in keys if key in data]
    if not given:
        if misspells(data, keys, frozenset(MATCHERS + ACTIONS)):
            return []
        return [((), f"an override needs {what}")]
    return [((key,), f"an override takes only one of {what}") for key in given[1:]]


def _override_rules(data: Any) -> list[Located]:
    if not isinstance(data, dict):
        return []
    return [
        *_one_of(data, MATCHERS, "api_key_sha256, principal, ip or org (what it matches)"),
        *_one_of(data, ACTIONS, "tier, allow: true or deny: true (what it does)"),
    ]


def _exactly_one(keys: tuple[str, ...]) -> dict[str, Any]:
    return {"oneOf": [{"required": [key]} for key in keys]}


class OverrideSection(Section):
    """A caller treated by name, before scoring: one matcher, one action."""

    model_config = ConfigDict(
        json_schema_extra={"allOf": [_exactly_one(MATCHERS), _exactly_one(ACTIONS)]}
    )

    api_key_sha256: KeyDigest | None = Field(
        default=None, description="Matches the API key whose SHA-256 is this (64 hex digits)."
    )
    principal: PrincipalId | None = Field(
        default=None,
        description="Matches a principal id: key:<16 hex>, acct:<account id> or ip:<address>.",
    )
    ip: Network | None = Field(
        default=None, description="Matches client IPs in this network (an address or a CIDR)."
    )
    org: str | None = Field(
        default=None, min_length=1, description="Matches callers of this organisation."
    )
    tier: TierRef | None = Field(
        default=None, description="Treat the caller as this tier (one defined under tiers)."
    )
    allow: OnlyTrue = Field(
        default=default_of(OverrideConfig, "allow"),
        validate_default=False,
        description="true: never treat the caller, whatever its risk score.",
    )
    deny: OnlyTrue = Field(
        default=default_of(OverrideConfig, "deny"),
        validate_default=False,
        description="true: refuse every request (403).",
    )

    @model_validator(mode="wrap")
    @classmethod
    def _rules(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        return checked(data, handler, _override_rules)


def unknown_budget_tier(document: Any) -> list[Located]:
    """A risk budget naming a tier that ``tiers`` does not define."""
    if not isinstance(document, dict):
        return []
    risk, tiers = document.get("risk"), document.get("tiers")
    budget = risk.get("budget") if isinstance(risk, dict) else None
    tier = budget.get("tier") if isinstance(budget, dict) else None
    if not isinstance(tier, str) or (tiers is not None and not isinstance(tiers, dict)):
        return []
    names = set(tiers or ())
    if tier in names:
        return []
    defined = ", ".join(sorted(names)) or "none"
    return [(("risk", "budget", "tier"),
             f"unknown tier '{tier}': define it under tiers (defined: {defined})")]


def unknown_override_tiers(document: Any) -> list[Located]:
    """Overrides naming a tier that ``tiers`` does not define (``document`` as written)."""
    if not isinstance(document, dict):
        return []
    tiers = document.get("tiers")
    overrides = document.get("overrides")
    if (tiers is not None and not isinstance(tiers, dict)) or not isinstance(overrides, list):
        return []  # a broken tiers section is reported on its own
    names = set(tiers or ())
    defined = ", ".join(sorted(names)) or "none"
    unknown: list[Located] = []
    for index, override in enumerate(overrides):
        tier = override.get("tier") if isinstance(override, dict) else None
        if not isinstance(tier, str) or tier in names or not _TIER_NAME.fullmatch(tier):
            continue
        if tier == NORMAL:
            message = f"tier '{NORMAL}' cannot be forced: use allow: true to never treat a caller"
        else:
            message = f"unknown tier '{tier}': define it under tiers (defined: {defined})"
        unknown.append((("overrides", index, "tier"), message))
    return unknown
