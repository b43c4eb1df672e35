"""The ``intel`` section: threat intelligence shared with other providers.

What may leave (``share``, ``salt``, ``prefix``), when a fingerprint is
specific enough to leave (``min_tier``, ``min_accounts``, ``min_share``),
where imported indicators come from (``feeds``), where ``guardgate intel
push`` publishes (``publish``), and what a match is worth (``signal``).
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

from guardgate.policy.fields import HttpURL, Located, PositiveDuration, raw_check, repeated
from guardgate.policy.intel_config import (
    KINDS,
    FeedConfig,
    IntelConfig,
    IntelSignalConfig,
    PublishConfig,
)
from guardgate.policy.model import default_of
from guardgate.policy.section import Section, as_written
from guardgate.policy.units import duration_text

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$"
MIN_POLL = 10.0  # a TAXII collection is polled at most this often


def _unknown_kind(value: Any) -> str | None:
    """What is wrong with ``value`` as a kind of fingerprint; None when nothing."""
    if isinstance(value, str) and value in KINDS:
        return None
    if value == "org":
        return ("an org is an id of this deployment's customers: it never leaves, and a "
                "peer's would mean nothing here")
    close = difflib.get_close_matches(str(value), KINDS, n=1)
    hint = f"did you mean '{close[0]}'?" if close else "known: " + ", ".join(KINDS)
    return f"unknown kind '{value}' ({hint})"


Kind = Annotated[str, WithJsonSchema({"enum": list(KINDS)})]


def _kinds(value: Any) -> list[Located]:
    if not isinstance(value, list):
        return []
    return [((index,), message) for index, item in enumerate(value)
            if (message := _unknown_kind(item)) is not None]


def _taxii_url(value: str) -> str:
    if "/collections/" not in urlsplit(value).path:
        raise PydanticCustomError(
            "taxii", "expected a TAXII 2.1 collection URL, "
            "e.g. https://taxii.example.org/api1/collections/COLLECTION-ID/")
    return value if value.endswith("/") else value + "/"


TaxiiURL = Annotated[HttpURL, AfterValidator(_taxii_url)]


class PrefixSection(Section):
    """How specific a network that leaves may be: longer prefixes are cut to these."""

    ipv4: int = Field(default=default_of(IntelConfig, "ipv4_prefix"), ge=8, le=32,
                      description="Prefix length of IPv4 networks shared, at most.")
    ipv6: int = Field(default=default_of(IntelConfig, "ipv6_prefix"), ge=16, le=128,
                      description="Prefix length of IPv6 networks shared, at most.")


class LedgerSection(Section):
    """The caught ledger: fingerprints of callers that reached ``min_tier``."""

    size: int = Field(default=default_of(IntelConfig, "ledger_size"), ge=100,
                      description="Fingerprints kept, at most (the least recently caught go).")
    ttl: PositiveDuration = Field(
        default=as_written(duration_text(default_of(IntelConfig, "ledger_ttl"))),
        description="How long a fingerprint is kept after a caller carrying it was last caught.",
    )


class Credentials(Section):
    """Basic credentials for a TAXII server (write them as ${ENV} references)."""

    user: str | None = Field(default=None, min_length=1, description="TAXII user name.")
    password: str | None = Field(default=None, min_length=1, description="TAXII password.")

    @model_validator(mode="after")
    def _both_or_neither(self) -> Self:
        if (self.user is None) != (self.password is None):
            raise PydanticCustomError("credentials", "give user and password together")
        return self


class FeedSection(Credentials):
    """One source of imported indicators: a STIX 2.1 bundle file or a TAXII 2.1 collection."""

    name: str | None = Field(
        default=None, pattern=NAME_PATTERN,
        description="How logs, metrics and the operator API name the feed; default: the "
                    "file's name, or the collection's host and id.",
    )
    file: str | None = Field(default=None, min_length=1,
                             description="A STIX 2.1 bundle file, read again when it changes.")
    taxii: TaxiiURL | None = Field(
        default=None, description="A TAXII 2.1 collection URL, polled every `every`.")
    every: PositiveDuration = Field(
        default=as_written(duration_text(default_of(FeedConfig, "every"))),
        description="How often a TAXII collection is polled (10s at least); a file is "
                    "checked for changes every few seconds.",
    )
    timeout: PositiveDuration = Field(
        default=as_written(duration_text(default_of(FeedConfig, "timeout"))),
        description="One request to the collection, at most.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if self.file is not None and self.taxii is not None:
            raise PydanticCustomError("feed", "a feed is a file or a taxii collection, not both")
        if self.file is None and self.taxii is None:
            raise PydanticCustomError("feed", "a feed needs a file or a taxii collection URL")
        if self.taxii is not None and self.every < MIN_POLL:
            raise PydanticCustomError("feed", "every must be 10s or more")
        return self

    @property
    def feed_name(self) -> str:
        if self.name is not None:
            return self.name
        if self.file is not None:
            return self.file.rstrip("/").rpartition("/")[2] or self.file
        parts = urlsplit(self.taxii or "")
        collection = parts.path.rstrip("/").rpartition("/")[2]
        return f"{parts.hostname}/{collection}"


class PublishSection(Credentials):
    """The TAXII 2.1 collection `guardgate intel push` publishes to."""

    taxii: TaxiiURL = Field(description="The collection's URL.")
    timeout: PositiveDuration = Field(
        default=as_written(duration_text(default_of(PublishConfig, "timeout"))),
        description="How long a push may take, at most.",
    )


class SignalSection(Section):
    """The shared_intel risk signal: what a match with an imported indicator adds."""

    weight: float = Field(
        default=default_of(IntelSignalConfig, "weight"), ge=0, le=1,
        description="Contribution of a full-confidence match; 0 turns the signal off.",
    )
    half_life: PositiveDuration = Field(
        default=as_written(duration_text(default_of(IntelSignalConfig, "half_life"))),
        description="An indicator's confidence halves this long after its campaign was last seen.",
    )
    min_confidence: int = Field(
        default=default_of(IntelSignalConfig, "min_confidence"), ge=0, le=100,
        description="Imported indicators below this confidence (0 to 100) are not used.",
    )


def _feed_names(feeds: Any) -> list[Located]:
    if not isinstance(feeds, list):
        return []
    named = [
        {"name": item.get("name") or item.get("file") or item.get("taxii")}
        if isinstance(item, dict) else None
        for item in feeds
    ]
    return [((index, "name"), message) for (index, _), message in
            repeated(named, "name", lambda _, at: f"two feeds with one name (also feeds[{at}])")]


class IntelSection(Section):
    """Threat intelligence shared with other providers: what leaves, what comes in."""

    name: str = Field(
        default=default_of(IntelConfig, "name"), pattern=NAME_PATTERN,
        description="Who publishes: the identity named in exported bundles.",
    )
    share: Annotated[list[Kind], raw_check(_kinds)] = Field(
        default=list(default_of(IntelConfig, "share")),
        description="Kinds of fingerprint that may leave in exported bundles.",
    )
    match: Annotated[list[Kind], raw_check(_kinds)] = Field(
        default=list(default_of(IntelConfig, "match")),
        description="Kinds of imported indicator matched against callers.",
    )
    salt: str | None = Field(
        default=None, min_length=16,
        description="A secret shared by a closed group of peers: every value leaves as a keyed "
                    "digest that only peers holding the salt can match (write ${ENV}).",
    )
    prefix: PrefixSection = Field(default=PrefixSection(),
                                  description="How specific a shared network may be.")
    min_tier: str | None = Field(
        default=None,
        description="Callers at this tier or above are recorded and exported; default the "
                    "lowest tier scoring 0.5 or more.",
    )
    min_accounts: int = Field(
        default=default_of(IntelConfig, "min_accounts"), ge=1,
        description="Caught accounts a fingerprint needs before it may leave.",
    )
    min_share: float = Field(
        default=default_of(IntelConfig, "min_share"), ge=0, le=1,
        description="Share of the fingerprint's accounts risky on their own, at least: a "
                    "fingerprint of many ordinary callers never leaves.",
    )
    valid_for: PositiveDuration = Field(
        default=as_written(duration_text(default_of(IntelConfig, "valid_for"))),
        description="An exported indicator is valid this long after its campaign was last seen.",
    )
    ledger: LedgerSection = Field(default=LedgerSection(),
                                  description="The caught ledger's bounds.")
    feeds: Annotated[list[FeedSection], raw_check(_feed_names)] = Field(
        default=[], description="Where imported indicators come from.")
    publish: PublishSection | None = Field(
        default=None, description="The TAXII collection guardgate intel push publishes to.")
    signal: SignalSection = Field(default=SignalSection(),
                                  description="What a match with an imported indicator adds.")


def intel_needs_tiers(document: Any) -> list[Located]:
    """The intel section records and matches through risk scoring: it needs
    tiers, and its ``min_tier`` one of them."""
    if not isinstance(document, dict) or not isinstance(document.get("intel"), dict):
        return []
    tiers = document.get("tiers")
    if tiers is not None and not isinstance(tiers, dict):
        return []  # a broken tiers section is reported on its own
    names = set(tiers or ())
    intel = document["intel"]
    if not names:
        return [(("intel",), "intel needs risk scoring: define tiers")]
    tier = intel.get("min_tier")
    if isinstance(tier, str) and tier not in names:
        defined = ", ".join(sorted(names))
        return [(("intel", "min_tier"),
                 f"unknown tier '{tier}': define it under tiers (defined: {defined})")]
    return []


def default_min_tier(tiers: list[tuple[str, float]]) -> str | None:
    """The tier recorded and exported from when ``min_tier`` is not given:
    the lowest scoring 0.5 or more, else the highest."""
    ordered = sorted(tiers, key=lambda tier: tier[1])
    for name, score in ordered:
        if score >= 0.5:
            return name
    return ordered[-1][0] if ordered else None


def compile_intel(section: IntelSection | None, tiers: list[tuple[str, float]]
                  ) -> IntelConfig | None:
    """The runtime `IntelConfig` of a valid section."""
    if section is None:
        return None
    feeds = tuple(
        FeedConfig(feed.feed_name, feed.file, feed.taxii, feed.user, feed.password,
                   feed.every, feed.timeout)
        for feed in section.feeds
    )
    publish = None
    if section.publish is not None:
        given = section.publish
        publish = PublishConfig(given.taxii, given.user, given.password, given.timeout)
    return IntelConfig(
        name=section.name,
        share=tuple(dict.fromkeys(section.share)),
        match=tuple(dict.fromkeys(section.match)),
        salt=section.salt,
        ipv4_prefix=section.prefix.ipv4,
        ipv6_prefix=section.prefix.ipv6,
        min_tier=section.min_tier or default_min_tier(tiers),
        min_accounts=section.min_accounts,
        min_share=section.min_share,
        valid_for=section.valid_for,
        ledger_size=section.ledger.size,
        ledger_ttl=section.ledger.ttl,
        feeds=feeds,
        publish=publish,
        signal=IntelSignalConfig(section.signal.weight, section.signal.half_life,
                                 section.signal.min_confidence),
    )
