"""The compiled policy: frozen runtime objects the request path reads.

Nothing here parses text; `guardgate.policy.load` builds these once, after
validation, so the hot path never looks at raw dicts, strings to parse or
CIDRs to compile.

The field defaults below are the policy's defaults, written once: the
schema's sections take theirs from here (`default_of`), so a policy file
that leaves a key out, the JSON Schema that `guardgate schema` prints and a
`Policy()` built in code all agree.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from guardgate.apis import ADAPTERS
from guardgate.policy.catalogue import SIGNALS
from guardgate.policy.intel_config import IntelConfig

if TYPE_CHECKING:
    from guardgate.perturb.transforms import Transforms

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# The APIs a route can name: one per adapter of `guardgate.apis`.
API_NAMES: tuple[str, ...] = tuple(ADAPTERS)

# The implicit tier of callers below the lowest tier's score.
NORMAL = "normal"

Holds = Literal["key", "account"]

# Headers that carry an API key unless a policy says otherwise (``as:``).
KEY_HEADERS = frozenset({"x-api-key", "api-key"})
OnStorageError = Literal["open", "closed"]
Mode = Literal["enforce", "shadow"]


def default_of(config: type[Any], name: str) -> Any:
    """The default of field ``name`` of the dataclass ``config`` (one of this module's)."""
    spec = config.__dataclass_fields__[name]
    if spec.default is not dataclasses.MISSING:
        return spec.default
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    raise TypeError(f"{config.__name__}.{name} has no default")


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    url: str
    connect_timeout: float = 5.0
    read_timeout: float = 600.0
    max_connections: int = 1000  # pooled connections to the upstream, at most


@dataclass(frozen=True, slots=True)
class PrincipalSource:
    """One place to find the principal: a header, the bearer token, or the IP."""

    kind: Literal["header", "bearer", "ip"]
    header: str | None = None  # lower-case header name, for kind == "header"
    # For a header: "key" (an API key, hashed into key:...) or "account" (an
    # account id set by a trusted auth layer, acct:..., trusted proxies only).
    holds: Holds = "account"


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    principal: tuple[PrincipalSource, ...] = (
        PrincipalSource("bearer"),
        PrincipalSource("header", "x-api-key", "key"),
        PrincipalSource("header", "api-key", "key"),  # Azure OpenAI's
        PrincipalSource("ip"),
    )
    trusted_proxies: tuple[IPNetwork, ...] = ()
    ipv4_prefix: int = 24
    ipv6_prefix: int = 56
    # Trusted metadata headers (lower-case names), honoured only from trusted proxies.
    org_header: str | None = "x-org-id"
    created_header: str | None = "x-account-created"  # unix seconds or ISO 8601
    # The header the upstream authenticates callers by (lower-case), or "auto":
    # Authorization on OpenAI routes and pass-through, x-api-key on Anthropic routes.
    credential: str = "auto"


@dataclass(frozen=True, slots=True)
class Route:
    path: str
    api: str  # one of API_NAMES


# What a policy without ``routes`` serves: each API at its usual path.
DEFAULT_ROUTES = tuple(Route(adapter.path, adapter.name) for adapter in ADAPTERS.values())

UnknownPaths = Literal["pass", "meter", "deny"]


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    """How request paths are matched to routes."""

    case_sensitive: bool = False  # /V1/chat/completions is not /v1/chat/completions
    # What a POST gets on a path under a route's first segment (/v1/) that is no route.
    unknown: UnknownPaths = "meter"


QuotaScope = Literal["principal", "ip", "ip_prefix", "org", "global"]
QuotaCost = Literal["requests", "input_tokens", "output_tokens", "total_tokens"]
Strategy = Literal["fixed-window", "moving-window", "sliding-window-counter"]


@dataclass(frozen=True, slots=True)
class Window:
    """One rate of a quota: ``amount`` per ``seconds`` (from limits notation)."""

    amount: int
    seconds: int
    text: str  # as written, e.g. "600/minute"


@dataclass(frozen=True, slots=True)
class RampConfig:
    """New principals start at ``start`` of every quota, growing linearly to
    the full quota at ``full_after`` seconds of age."""

    start: float
    full_after: float


@dataclass(frozen=True, slots=True)
class QuotaConfig:
    name: str
    per: QuotaScope = "principal"
    windows: tuple[Window, ...] = ()  # rate quotas; empty for a concurrency quota
    cost: QuotaCost = "requests"
    concurrency: int | None = None    # in-flight requests, for a concurrency quota
    strategy: Strategy = "fixed-window"


@dataclass(frozen=True, slots=True)
class TierChallenge:
    """What a tier's challenge asks and what solving it buys."""

    difficulty: float
    requests: int          # requests a clearance buys
    output_tokens: int     # output tokens a clearance buys


@dataclass(frozen=True, slots=True)
class TierConfig:
    name: str
    score: float
    quota_factor: float = 1.0
    deny: bool = False
    challenge: TierChallenge | None = None
    degrade: Transforms | None = None
    mark: bool = False


@dataclass(frozen=True, slots=True)
class ChallengeConfig:
    secret: str
    key_id: str = "k1"
    previous: tuple[tuple[str, str], ...] = ()  # (key id, secret) still accepted
    ttl: float = 120.0
    difficulty: float = 18.0
    issue_limit: tuple[Window, ...] = (Window(30, 60, "30/minute"),)
    clearance_ttl: float = 900.0
    requests: int = 100
    output_tokens: int = 50000


@dataclass(frozen=True, slots=True)
class OverrideConfig:
    """Matches on exactly one of the four keys; then forces a tier, allows or denies."""

    api_key_sha256: str | None = None  # lower-case hex
    principal: str | None = None
    ip: IPNetwork | None = None
    org: str | None = None
    tier: str | None = None
    allow: bool = False
    deny: bool = False


@dataclass(frozen=True, slots=True)
class SignalConfig:
    """One risk signal's weight and ramp (see `guardgate.policy.catalogue`)."""

    name: str
    weight: float
    low: float
    high: float


def _default_signals() -> tuple[SignalConfig, ...]:
    return tuple(SignalConfig(s.name, s.weight, s.low, s.high) for s in SIGNALS)


@dataclass(frozen=True, slots=True)
class RiskConfig:
    enabled: bool = True              # scoring runs when tiers are defined and this is true
    half_life: float = 6 * 3600.0     # rolling per-account state halves in this time
    long_half_life: float = 3 * 86400.0  # the long-horizon counters (budget, baseline) halve in this
    window: float = 6 * 3600.0        # sliding window of distinct counts (clusters, templates)
    hysteresis: float = 0.05          # a caller leaves a tier only this far below its score
    member_score: float = 0.2         # own score that makes a caller a risky cluster member
    cluster_risk: tuple[float, float] = (0.25, 0.6)  # risky-member share ramp of cluster signals
    signals: tuple[SignalConfig, ...] = field(default_factory=_default_signals)
    max_callers: int = 20_000         # callers whose risk state memory storage keeps, at most
    # Extraction budget: a caller whose long-horizon request count (decayed
    # with long_half_life: a steady r a day holds r * long_half_life / ln 2
    # / 1 day, 4.3 r at 3 days) reaches ``budget`` is held in
    # ``budget_tier`` at least. None: no budget.
    budget: float | None = None
    budget_tier: str | None = None


@dataclass(frozen=True, slots=True)
class AdminConfig:
    token: str | None = None  # bearer token of the operator API; None disables it


@dataclass(frozen=True, slots=True)
class Policy:
    """A validated, compiled policy. Build it with `guardgate.load_policy`."""

    upstream: UpstreamConfig | None = None
    version: int = 1
    max_body: int = 8 * 1024 * 1024
    storage: str = "memory://"
    on_storage_error: OnStorageError = "open"
    mode: Mode = "enforce"
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    routes: tuple[Route, ...] = DEFAULT_ROUTES
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    quotas: tuple[QuotaConfig, ...] = ()
    default_max_tokens: int = 4096   # reserved when a request names no max_tokens
    new_principals: RampConfig | None = None
    tiers: tuple[TierConfig, ...] = ()  # ordered by score, lowest first
    overrides: tuple[OverrideConfig, ...] = ()
    risk: RiskConfig = field(default_factory=RiskConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    challenge: ChallengeConfig | None = None
    watermark_key: str | None = None
    intel: IntelConfig | None = None  # threat intelligence shared with peers
    watermark_groups: str = ""  # the private table's text (``watermark.groups``)
    source: str = "<policy>"
    digest: str = ""  # sha256 hex of the policy text, names the active version

