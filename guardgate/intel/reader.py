"""From a STIX 2.1 bundle (or a TAXII envelope) to the indicators in force.

Every object must parse with ``stix2`` as STIX 2.1: a feed carrying one
that does not is refused whole (`FeedError`), and its last good indicators
stay in force. Of the indicators, those guardgate can match are kept:
its own (by its extension, or by its pattern) and any single network or
address (``[ipv4-addr:value ISSUBSET '198.51.100.0/24']``, from any
producer). An indicator is skipped, and counted by why, when it is revoked,
expired, carries no confidence or less than the policy's
``intel.signal.min_confidence``, names a kind the policy does not match
(``intel.match``), is salted with a salt this deployment does not hold, or
has a pattern guardgate does not read. A feed whose every indicator has
expired changes nothing either (`FeedError` ``expired``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
import stix2  # type: ignore[import-untyped]
from stix2.exceptions import STIXError  # type: ignore[import-untyped]

from guardgate.intel.fingerprints import Network, network_of, salt_id
from guardgate.intel.index import Indicator
from guardgate.intel.stix import EXTENSION_ID, read_pattern, unix
from guardgate.policy.intel_config import KINDS

REASONS = ("unreachable", "malformed", "expired")

MAX_VALUE = 128            # characters of an indicator's value, at most
MAX_VALID = 30 * 86400.0   # an indicator is in force this long after its modified, at most
MAX_INDICATORS = 20_000    # indicators kept per feed; the rest are skipped (too_many)
MAX_OBJECTS = 100_000      # objects in one bundle or one poll, at most
BROADEST = {4: 16, 6: 32}  # the broadest network an indicator may name, by IP version


class FeedError(Exception):
    """A feed's content, refused whole: ``reason`` is one of `REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(slots=True)
class Reading:
    """What one read of a feed holds."""

    indicators: dict[str, tuple[float, Indicator]] = field(default_factory=dict)
    campaigns: dict[str, str] = field(default_factory=dict)  # campaign id -> name
    skipped: Counter[str] = field(default_factory=Counter)   # reason -> indicators
    objects: int = 0
    revoked: set[str] = field(default_factory=set)  # indicators withdrawn by their producer

    def summary(self) -> dict[str, Any]:
        kinds = Counter(indicator.kind for _, indicator in self.indicators.values())
        return {"objects": self.objects, "indicators": len(self.indicators),
                "by_kind": dict(sorted(kinds.items())), "campaigns": len(self.campaigns),
                "skipped": dict(sorted(self.skipped.items()))}


@dataclass(frozen=True, slots=True)
class Terms:
    """What this deployment accepts: its salt, the kinds it matches, the
    confidence it needs (0 to 100)."""

    salt: str | None = None
    kinds: tuple[str, ...] = KINDS
    min_confidence: int = 0


def objects_of(data: Any) -> list[Any]:
    """The objects of a bundle or of a TAXII envelope."""
    if isinstance(data, bytes | str):
        try:
            data = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise FeedError("malformed", f"not JSON ({exc})") from None
    if not isinstance(data, dict) or not (data.get("type") == "bundle" or (
            "type" not in data and ("objects" in data or "more" in data))):
        raise FeedError("malformed", "not a STIX bundle (a JSON object of type bundle)")
    objects = data.get("objects", [])
    if not isinstance(objects, list):
        raise FeedError("malformed", "the bundle's objects are not a list")
    if len(objects) > MAX_OBJECTS:
        raise FeedError("malformed", f"more than {MAX_OBJECTS} objects")
    return objects


def parsed(objects: list[Any]) -> list[Any]:
    """Each object as ``stix2`` parses it as STIX 2.1; `FeedError` at the first that does not."""
    result = []
    for index, obj in enumerate(objects):
        named = (f"{obj.get('type')} {obj.get('id')}" if isinstance(obj, dict)
                 else "not an object")
        try:
            if not isinstance(obj, dict) or obj.get("spec_version", "2.1") != "2.1":
                raise ValueError("not a STIX 2.1 object")
            result.append(stix2.parse(obj, allow_custom=True, version="2.1"))
        except (STIXError, ValueError, TypeError, KeyError, AttributeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise FeedError("malformed", f"object {index} ({named}) is not valid STIX 2.1: "
                                         f"{first[:200]}") from None
    return result


def read(data: Any, feed: str, now: float, terms: Terms = Terms()) -> Reading:
    """The indicators in force in ``data`` (bundle or envelope, as text or parsed)."""
    objects = parsed(objects_of(data))
    reading = Reading(objects=len(objects))
    indicates: dict[str, str] = {}
    for obj in objects:
        if obj.type == "campaign":
            reading.campaigns[obj.id] = obj.name
        elif obj.type == "relationship" and obj.relationship_type == "indicates" \
                and obj.target_ref.startswith("campaign--"):
            indicates[obj.source_ref] = obj.target_ref
    for obj in objects:
        if obj.type != "indicator":
            continue
        found = _indicator(obj, feed, now, terms)
        if isinstance(found, str):
            reading.skipped[found] += 1
            if found == "revoked":
                reading.revoked.add(obj.id)
            continue
        campaign = indicates.get(obj.id)
        if campaign is not None:
            found = _named(found, reading.campaigns.get(campaign, campaign))
        modified = unix(obj.modified) or 0.0
        held = reading.indicators.get(obj.id)
        if held is None and len(reading.indicators) >= MAX_INDICATORS:
            reading.skipped["too_many"] += 1
            continue
        if held is None or held[0] <= modified:
            reading.indicators[obj.id] = (modified, found)
    if not reading.indicators and reading.skipped["expired"]:
        raise FeedError("expired", f"all of its {reading.skipped['expired']} indicators have "
                                   "expired")
    return reading


def _named(indicator: Indicator, campaign: str) -> Indicator:
    return Indicator(indicator.id, indicator.feed, indicator.kind, indicator.value,
                     indicator.confidence, indicator.last_seen, indicator.valid_until,
                     indicator.network, indicator.salted, campaign[:MAX_VALUE])


def _indicator(obj: Any, feed: str, now: float, terms: Terms) -> Indicator | str:
    """The indicator, or why it is skipped."""
    if getattr(obj, "revoked", False):
        return "revoked"
    # No clock (a replay reads at 0): the indicator's own modified stands in for now.
    modified = unix(obj.modified) or now
    clock = now if now > 0 else modified
    ceiling = min(modified, clock) + MAX_VALID
    until = unix(getattr(obj, "valid_until", None))
    until = ceiling if until is None else min(until, ceiling)
    if until <= now:
        return "expired"
    extension = (getattr(obj, "extensions", None) or {}).get(EXTENSION_ID)
    named = _fingerprint(obj, extension)
    if named is None:
        return "not_understood"
    kind, value = named
    if len(value) > MAX_VALUE:
        return "too_long"
    if kind not in terms.kinds:
        return "kind_not_matched"
    given = extension.get("salt_id") if isinstance(extension, dict) else None
    salted = given is not None
    if salted and (terms.salt is None or salt_id(terms.salt) != given):
        return "other_salt"
    network = _network(kind, value, extension, salted)
    if kind in ("prefix", "setup"):
        if network is None:
            return "not_understood"
        if network.length < BROADEST[network.version]:
            return "too_broad"
        if not salted:  # the normalized network, not the text as given
            value = network.text if kind == "prefix" else \
                f"{value.partition('@')[0]}@{network.text}"
    confidence = getattr(obj, "confidence", None)
    if confidence is None:
        return "no_confidence"
    if confidence < terms.min_confidence or confidence <= 0:
        return "low_confidence"
    seen = unix(extension.get("last_seen")) if isinstance(extension, dict) else None
    last_seen = min(seen or modified, clock)
    return Indicator(obj.id, feed, kind, value, confidence / 100, last_seen, until, network,
                     salted)


def _fingerprint(obj: Any, extension: Any) -> tuple[str, str] | None:
    if isinstance(extension, dict):
        kind, value = extension.get("kind"), extension.get("value")
        if isinstance(kind, str) and isinstance(value, str) and kind in KINDS and value:
            return kind, value
        return None
    if getattr(obj, "pattern_type", None) != "stix":
        return None
    found = read_pattern(str(obj.pattern))
    if found is None or found[0] not in KINDS:
        return None
    return found


def _network(kind: str, value: str, extension: Any, salted: bool) -> Network | None:
    if kind not in ("prefix", "setup"):
        return None
    if salted:
        shape = extension.get("network") if isinstance(extension, dict) else None
        if not isinstance(shape, dict):
            return None
        version, length = shape.get("version"), shape.get("length")
        if version not in (4, 6) or not isinstance(length, int):
            return None
        if not 0 <= length <= (32 if version == 4 else 128):
            return None
        return Network(version, length, 0)
    system, _, cidr = value.partition("@") if kind == "setup" else ("", "", value)
    if "%" in cidr or (kind == "setup" and not system):
        return None
    return network_of(cidr)
