"""The policy document as pydantic models: one class per section, unknown keys forbidden.

These models validate and convert units (durations to seconds, sizes to
bytes, CIDRs to networks); `guardgate.policy.compile` then turns them into
the frozen runtime objects of `guardgate.policy.model`. To add a section,
write a `Section` subclass and add one field to `PolicyDocument`; the JSON
Schema follows. Defaults here must agree with the dataclass defaults in
`model.py` (a test holds them together).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    ModelWrapValidatorHandler,
    Tag,
    model_validator,
)
from pydantic_core import PydanticCustomError

from guardgate.policy.fields import (
    ApiName,
    HeaderName,
    HttpURL,
    Located,
    Network,
    PositiveDuration,
    RoutePath,
    Size,
    StorageURL,
    Version,
    checked,
    raw_check,
    repeated,
)
from guardgate.policy.schema_challenge import (
    ChallengeSection,
    WatermarkSection,
    challenge_needs_secret,
    watermark_needs_key,
)
from guardgate.policy.schema_quotas import QuotaSection, RampSection, duplicate_quota_names
from guardgate.policy.schema_risk import AdminSection, RiskSection
from guardgate.policy.schema_tiers import (
    OverrideSection,
    TierName,
    TierSection,
    equal_tier_scores,
    unknown_override_tiers,
)
from guardgate.policy.section import Section, as_written

# Headers that carry an API key unless a policy says otherwise (``as:``).
KEY_HEADERS = frozenset({"x-api-key", "api-key"})


class UpstreamSection(Section):
    """The model endpoint guardgate forwards to (omit it when mounted as middleware)."""

    url: HttpURL = Field(description="Base URL of the upstream, http:// or https://.")
    connect_timeout: PositiveDuration = Field(
        default=as_written("5s"), description="How long to wait for a connection to the upstream."
    )
    read_timeout: PositiveDuration = Field(
        default=as_written("600s"),
        description="How long to wait between two reads from the upstream.",
    )
    max_connections: int = Field(
        default=1000, ge=1, description="Most pooled connections open to the upstream at once."
    )


def _upstream_shorthand(value: Any) -> Any:
    if isinstance(value, str):
        return {"url": value}
    if value is None or isinstance(value, dict):
        return value
    raise PydanticCustomError(
        "upstream", "expected a URL like http://127.0.0.1:8000, or a mapping with url"
    )


class HeaderSource(Section):
    """Take the principal from a request header: an API key, or an account id."""

    header: HeaderName = Field(description="Header name, case-insensitive.")
    as_: Literal["key", "account"] | None = Field(
        default=None,
        alias="as",
        description=(
            "What the header holds: key (an API key, hashed into key:...) or account (an "
            "account id set by a trusted auth layer, acct:..., honoured only from trusted "
            "proxies). Default: key for x-api-key and api-key, account for any other header."
        ),
    )

    @property
    def holds(self) -> Literal["key", "account"]:
        if self.as_ is not None:
            return self.as_
        return "key" if self.header in KEY_HEADERS else "account"

    @model_validator(mode="after")
    def _settle_holds(self) -> Self:
        self.as_ = self.holds  # so the JSON Schema's default shows what it is
        return self


def _principal_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "keyword" if value in ("bearer", "ip") else None
    if isinstance(value, dict | HeaderSource):
        return "header-source"
    return None


PrincipalItem = Annotated[
    Annotated[Literal["bearer", "ip"], Tag("keyword")]
    | Annotated[HeaderSource, Tag("header-source")],
    Discriminator(
        _principal_kind,
        custom_error_type="principal_source",
        custom_error_message="expected bearer, ip or {header: NAME}",
    ),
]


class IpPrefix(Section):
    """Prefix lengths that group client addresses into networks."""

    ipv4: int = Field(default=24, ge=0, le=32, description="Prefix length for IPv4 clients.")
    ipv6: int = Field(default=56, ge=0, le=128, description="Prefix length for IPv6 clients.")


class IdentitySection(Section):
    """How a caller is identified."""

    principal: list[PrincipalItem] = Field(
        default=["bearer", HeaderSource(header="x-api-key"), "ip"],
        min_length=1,
        description=(
            "Where to find the principal, tried in order, the first present wins: "
            "bearer (Authorization: Bearer <key>), {header: NAME}, or ip."
        ),
    )
    trusted_proxies: list[Network] = Field(
        default=[],
        description="Peers (IPs or CIDRs) whose forwarding and account headers are believed.",
    )
    ip_prefix: IpPrefix = Field(
        default=IpPrefix(), description="Prefix lengths for grouping client IPs."
    )
    org_header: HeaderName | None = Field(
        default="x-org-id",
        description=(
            "Header naming the caller's organisation (for per: org quotas and org overrides), "
            "honoured only from trusted proxies; null to disable."
        ),
    )
    created_header: HeaderName | None = Field(
        default="x-account-created",
        description=(
            "Header giving when the caller's account was created (unix seconds or ISO 8601), "
            "for new_principals; honoured only from trusted proxies; null to disable."
        ),
    )


class RouteSection(Section):
    """A path served by a model API; every other path passes through untouched."""

    path: RoutePath = Field(description="Exact request path, e.g. /v1/chat/completions.")
    api: ApiName = Field(description="The API family spoken on this path.")


def _duplicate_paths(routes: Any) -> list[Located]:
    return repeated(routes, "path", lambda _, at: f"duplicate route path (also routes[{at}])")


_DEFAULT_ROUTES = [
    RouteSection(path="/v1/chat/completions", api="openai.chat"),
    RouteSection(path="/v1/completions", api="openai.completions"),
    RouteSection(path="/v1/responses", api="openai.responses"),
    RouteSection(path="/v1/messages", api="anthropic.messages"),
]


class PolicyDocument(Section):
    """A guardgate policy, version 1."""

    model_config = ConfigDict(title="guardgate policy")

    version: Version = Field(default=1, description="Policy language version; must be 1.")
    upstream: Annotated[
        UpstreamSection | None,
        BeforeValidator(
            _upstream_shorthand, json_schema_input_type=HttpURL | UpstreamSection | None
        ),
    ] = Field(
        default=None,
        description="The upstream model API, as a URL or a mapping. Omit in middleware mode.",
    )
    max_body: Size = Field(
        default=as_written("8MiB"), description="Largest request body accepted, e.g. 8MiB."
    )
    storage: StorageURL = Field(
        default="memory://",
        description=(
            "Where shared state lives: memory:// (this process), redis://, rediss://, "
            "redis+cluster:// or unix://."
        ),
    )
    on_storage_error: Literal["open", "closed"] = Field(
        default="open",
        description="When storage fails: open lets traffic through, closed refuses with 503.",
    )
    mode: Literal["enforce", "shadow"] = Field(
        default="enforce", description="shadow decides and logs everything but enforces nothing."
    )
    identity: IdentitySection = Field(
        default=IdentitySection(), description="How callers are identified."
    )
    routes: Annotated[list[RouteSection], raw_check(_duplicate_paths)] = Field(
        default=_DEFAULT_ROUTES,
        description="Model routes; every other path passes through untouched.",
    )
    quotas: Annotated[list[QuotaSection], raw_check(duplicate_quota_names)] = Field(
        default=[], description="Quotas every model request is counted against, all enforced."
    )
    default_max_tokens: int = Field(
        default=4096,
        ge=1,
        description="Tokens a token quota reserves for a request that names no max_tokens.",
    )
    new_principals: RampSection | None = Field(
        default=None,
        description="Scale quotas down for new principals, growing to the full quotas with age.",
    )
    tiers: Annotated[dict[TierName, TierSection], raw_check(equal_tier_scores)] = Field(
        default={},
        json_schema_extra={"additionalProperties": False},
        description=(
            "Treatment tiers by name, entered when a caller's risk score reaches the tier's "
            "score; below the lowest tier a caller is normal."
        ),
    )
    overrides: list[OverrideSection] = Field(
        default=[],
        description="Callers treated by name (a tier, allow or deny), checked before scoring.",
    )
    risk: RiskSection = Field(
        default=RiskSection(), description="How callers are scored for distillation risk."
    )
    admin: AdminSection | None = Field(
        default=None, description="The operator API; omitted, it is disabled."
    )
    challenge: ChallengeSection | None = Field(
        default=None,
        description="Proof-of-work challenges, for tiers with challenge; needs a secret.",
    )
    watermark: WatermarkSection | None = Field(
        default=None, description="The watermark key, for tiers with mark or coarsen_logprobs."
    )

    @model_validator(mode="wrap")
    @classmethod
    def _cross_checks(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        return checked(
            data,
            handler,
            lambda doc: unknown_override_tiers(doc)
            + challenge_needs_secret(doc)
            + watermark_needs_key(doc),
        )
