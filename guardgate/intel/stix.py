"""guardgate's STIX 2.1 conventions: its extension and its patterns.

Every indicator guardgate exports names its fingerprint twice: in a STIX
pattern (``[ipv4-addr:value ISSUBSET '203.0.113.0/24']`` for a network,
which any STIX tool reads; ``[x-guardgate-fingerprint:kind = 'template' AND
x-guardgate-fingerprint:value = '0.5c1d9e2a']`` for the others), and in the
property extension defined here (`EXTENSION_ID`), which carries what the
pattern cannot: the kind, the value, the network's version and length, the
salt's id, the counts behind the confidence, the tiers reached and the
signals that fired. Campaigns and observed data carry the campaign's
summary in the same extension. Its definition is docs/intel.md (bundles do
not carry the extension-definition object: the reference TAXII server,
medallion, cannot serve an object with a ``version`` property).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

EXTENSION_ID = "extension-definition--ef614bb4-c9ca-473a-94cb-734fe0ed2956"
FINGERPRINT = "x-guardgate-fingerprint"


def timestamp(unix: float) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


def stamp(seconds: float) -> str:
    """A STIX timestamp's text (UTC, milliseconds)."""
    moment = timestamp(seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def unix(value: Any) -> float | None:
    """Seconds since the epoch of a STIX timestamp (text or datetime); None if unreadable."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return None


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def pattern(kind: str, value: str, network_version: int | None, salted: bool) -> str:
    """The STIX pattern of one exported fingerprint."""
    if kind == "prefix" and not salted and network_version is not None:
        return f"[ipv{network_version}-addr:value ISSUBSET {_quoted(value)}]"
    return (f"[{FINGERPRINT}:kind = {_quoted(kind)} AND "
            f"{FINGERPRINT}:value = {_quoted(value)}]")


_ADDRESS = re.compile(r"^\[(ipv4|ipv6)-addr:value\s*(?:=|ISSUBSET)\s*'([^'\\]+)'\]$")
_OWN = re.compile(
    rf"^\[{FINGERPRINT}:kind\s*=\s*'([a-z]+)'\s+AND\s+{FINGERPRINT}:value\s*=\s*'([^'\\]+)'\]$")


def read_pattern(text: str) -> tuple[str, str] | None:
    """(kind, value) of a pattern guardgate can match without its extension:
    one of its own, or one network or address; None for any other."""
    text = text.strip()
    own = _OWN.match(text)
    if own is not None:
        return own.group(1), own.group(2)
    address = _ADDRESS.match(text)
    if address is not None:
        return "prefix", address.group(2)
    return None
