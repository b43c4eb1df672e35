"""The ``challenge`` section, and the ``challenge`` key of a tier.

A tier with ``challenge`` asks its callers for proof of work before their
requests pass; the section holds what every challenge shares: the signing
secret (one for all replicas), lifetimes, the default difficulty and the
clearance a solution buys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from guardgate.policy.fields import Located, PositiveDuration, Rates
from guardgate.policy.model import ChallengeConfig, default_of
from guardgate.policy.schema_degrade import keyed_transforms
from guardgate.policy.section import Section, as_written
from guardgate.policy.units import duration_text

KEY_ID_PATTERN = r"^[A-Za-z0-9_-]{1,16}$"



class BudgetSection(Section):
    """What one clearance buys before its holder is challenged again."""

    requests: int | None = Field(default=None, ge=1, description="Requests per clearance.")
    output_tokens: int | None = Field(
        default=None, ge=1, description="Output tokens per clearance (counted from answers)."
    )


class ClearanceSection(Section):
    """The pass a solved challenge buys."""

    ttl: PositiveDuration = Field(
        default=as_written(duration_text(default_of(ChallengeConfig, "clearance_ttl"))),
        description="How long a clearance is valid.",
    )
    budget: BudgetSection = Field(
        default=BudgetSection(
            requests=default_of(ChallengeConfig, "requests"),
            output_tokens=default_of(ChallengeConfig, "output_tokens"),
        ),
        description="Requests and output tokens a clearance buys.",
    )


class PreviousSecret(Section):
    """A secret being rotated out: tokens it signed are still accepted."""

    key_id: str = Field(pattern=KEY_ID_PATTERN, description="The key id it was used under.")
    secret: str = Field(min_length=16, description="The old secret.")


class ChallengeSection(Section):
    """Proof-of-work challenges for tiers that ask for them."""

    secret: str = Field(
        min_length=16,
        description=(
            "HMAC-SHA256 key signing challenges and clearances, the same on every replica; "
            "at least 16 characters; write ${GUARDGATE_SECRET}."
        ),
    )
    key_id: str = Field(
        default=default_of(ChallengeConfig, "key_id"),
        pattern=KEY_ID_PATTERN,
        description="Names the secret in every token, so a new secret can be rolled out.",
    )
    previous: list[PreviousSecret] = Field(
        default=[], description="Older secrets still accepted while a rotation rolls out."
    )
    ttl: PositiveDuration = Field(
        default=as_written(duration_text(default_of(ChallengeConfig, "ttl"))),
        description="How long a challenge can be redeemed.",
    )
    difficulty: float = Field(
        default=default_of(ChallengeConfig, "difficulty"),
        ge=1,
        le=32,
        description="Default puzzle difficulty: about 2^difficulty SHA-256 hashes to solve.",
    )
    issue_limit: Rates = Field(
        default=as_written(
            ";".join(window.text for window in default_of(ChallengeConfig, "issue_limit"))
        ),
        description="Challenges issued per principal and per IP prefix, at most.",
    )
    clearance: ClearanceSection = Field(
        default=ClearanceSection(),
        description="How long the clearance a solution buys lasts, and its budget.",
    )


class TierChallengeSection(Section):
    """A tier's challenge: harder puzzles and smaller budgets for riskier tiers."""

    difficulty: float | None = Field(
        default=None, ge=1, le=32, description="Puzzle difficulty; default challenge.difficulty."
    )
    budget: BudgetSection | None = Field(
        default=None, description="Clearance budget; keys left out take challenge.clearance's."
    )


class WatermarkSection(Section):
    """The watermark key, for tiers with mark (and keyed logprob coarsening)."""

    key: str = Field(
        min_length=16,
        description="Secret key of the watermark, at least 16 characters; keep it to detect "
        "the mark later (write ${GUARDGATE_WATERMARK_KEY}).",
    )
    groups: str | None = Field(
        default=None,
        description="A private table of synonym groups marked besides the shipped ones "
        "(`guardgate watermark keygen` writes one), kept out of the image like the key: "
        "an adversary holding the package cannot enumerate its slots. Path to the file, "
        "absolute or from the working directory; keep it with the key to detect the mark.",
    )

    @field_validator("groups")
    @classmethod
    def _groups_readable(cls, path: str | None) -> str | None:
        if path is None:
            return None
        from guardgate.perturb.watermark.table import check_private

        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read the private groups {path!r}: {exc}") from None
        problems = check_private(text)
        if problems:
            raise ValueError(f"{path}: " + "; ".join(problems[:5]))
        return path


def watermark_needs_key(document: Any) -> list[Located]:
    """Tiers that mark answers or coarsen logprobs need the ``watermark`` key."""
    if not isinstance(document, dict) or document.get("watermark") is not None:
        return []
    tiers = document.get("tiers")
    if not isinstance(tiers, dict):
        return []
    problems: list[Located] = []
    for name, tier in tiers.items():
        if not isinstance(tier, dict):
            continue
        if tier.get("mark") is True:
            problems.append((("tiers", name, "mark"), "mark needs the watermark section's key"))
        problems += keyed_transforms(name, tier.get("degrade"))
    return problems


def challenge_needs_secret(document: Any) -> list[Located]:
    """Tiers asking for a challenge need the ``challenge`` section (its secret)."""
    if not isinstance(document, dict) or document.get("challenge") is not None:
        return []
    tiers = document.get("tiers")
    if not isinstance(tiers, dict):
        return []
    return [
        (("tiers", name, "challenge"), "a challenge needs the challenge section with its secret")
        for name, tier in tiers.items()
        if isinstance(tier, dict) and tier.get("challenge") is not None
    ]
