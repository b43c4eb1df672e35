"""The compiled ``intel`` section: threat intelligence shared with peers.

Frozen runtime objects, as in `guardgate.policy.model` (which holds the
policy's `Policy.intel`); their field defaults are the section's defaults.
What each key means: docs/intel.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The fingerprints that may leave and be matched: a prompt skeleton's MinHash
# band, a system prompt's digest, a system prompt from a network, a network,
# a client string's digest. An org is an id local to one deployment: never.
KINDS: tuple[str, ...] = ("template", "system", "setup", "prefix", "agent")


@dataclass(frozen=True, slots=True)
class FeedConfig:
    """Where imported indicators come from: a bundle file or a TAXII 2.1 collection."""

    name: str
    file: str | None = None
    taxii: str | None = None       # the collection's URL
    user: str | None = None
    password: str | None = None
    every: float = 300.0           # how often a TAXII collection is polled
    timeout: float = 10.0          # one request to the collection, at most


@dataclass(frozen=True, slots=True)
class PublishConfig:
    """The TAXII 2.1 collection ``guardgate intel push`` publishes to."""

    taxii: str
    user: str | None = None
    password: str | None = None
    timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class IntelSignalConfig:
    """The ``shared_intel`` risk signal."""

    weight: float = 0.4            # contribution of a full-confidence match
    half_life: float = 3 * 86400.0  # an indicator's confidence halves this long after last seen
    min_confidence: int = 20       # indicators below this confidence (0-100) are not used


@dataclass(frozen=True, slots=True)
class IntelConfig:
    name: str = "guardgate"        # who publishes: the identity named in exported bundles
    share: tuple[str, ...] = KINDS  # kinds of fingerprint that may leave
    match: tuple[str, ...] = KINDS  # kinds of imported indicator matched against callers
    salt: str | None = None        # keyed digests, matched only by peers holding the salt
    ipv4_prefix: int = 24          # networks leave at most this specific
    ipv6_prefix: int = 48
    # Callers at this tier or above are recorded in the caught ledger and
    # exported; None until compiled: the lowest tier scoring 0.5 or more.
    min_tier: str | None = None
    min_accounts: int = 3          # caught accounts a fingerprint needs to leave
    min_share: float = 0.75        # share of its accounts risky on their own, at least
    valid_for: float = 7 * 86400.0  # an exported indicator is valid this long after last seen
    ledger_size: int = 20_000      # fingerprints the caught ledger keeps, at most
    ledger_ttl: float = 7 * 86400.0  # and for how long after last caught
    feeds: tuple[FeedConfig, ...] = ()
    publish: PublishConfig | None = None
    signal: IntelSignalConfig = field(default_factory=IntelSignalConfig)
