"""The policy document as pydantic models: one class per section, unknown keys forbidden.

These models validate and convert units (durations to seconds, sizes to
bytes, CIDRs to networks); `guardgate.policy.compile` then turns them into
the frozen runtime objects of `guardgate.policy.model`. To add a section,
write a `Section` subclass and add one field to `PolicyDocument`; the JSON
Schema follows. Defaults are written once, on the dataclasses of `model.py`;
a section takes each from there (`default_of`), in the form a policy file
would write it (``5s``, ``8MiB``).
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
    ValidationInfo,
    field_validator,
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
from guardgate.policy.model import (
    DEFAULT_ROUTES,
    KEY_HEADERS,
    Holds,
    IdentityConfig,
    Mode,
    OnStorageError,
    Policy,
    PrincipalSource,
    RoutingConfig,
    UnknownPaths,
    UpstreamConfig,
    default_of,
)
from guardgate.policy.schema_challenge import (
    ChallengeSection,
    WatermarkSection,
    challenge_needs_secret,
    watermark_needs_key,
)
from guardgate.policy.schema_intel import IntelSection, intel_needs_tiers
from guardgate.policy.schema_quotas import QuotaSection, RampSection, duplicate_quota_names
from guardgate.policy.schema_risk import AdminSection, RiskSection
from guardgate.policy.schema_tiers import (
    OverrideSection,
    TierName,
    TierSection,
    equal_tier_scores,
    unknown_budget_tier,
    unknown_override_tiers,
)
from guardgate.policy.section import Section, as_written
from guardgate.policy.units import duration_text, size_text


class UpstreamSection(Section):
    """The model endpoint guardgate forwards to (omit it when mounted as middleware)."""

    url: HttpURL = Field(description="Base URL of the upstream, http:// or https://.")
    connect_timeout: PositiveDuration = Field(
        default=as_written(duration_text(default_of(UpstreamConfig, "connect_timeout"))),
        description="How long to wait for a connection to the upstream.",
    )
    read_timeout: PositiveDuration = Field(
        default=as_written(duration_text(default_of(UpstreamConfig, "read_timeout"))),
        description="How long to wait between two reads from the upstream.",
    )
    max_connections: int = Field(
        default=default_of(UpstreamConfig, "max_connections"),
        ge=1,
        description="Most pooled connections open to the upstream at once.",
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
    as_: Holds | None = Field(
        default=None,
        alias="as",
        description=(
            "What the header holds: key (an API key, hashed into key:...) or account (an "
            "account id set by a trusted auth layer, acct:..., honoured only from trusted "
            "proxies). Default: key for x-api-key and api-key, account for any other header."
        ),
    )

    @property
    def holds(self) -> Holds:
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

    ipv4: int = Field(
        default=default_of(IdentityConfig, "ipv4_prefix"),
        ge=0,
        le=32,
        description="Prefix length for IPv4 clients.",
    )
    ipv6: int = Field(
        default=default_of(IdentityConfig, "ipv6_prefix"),
        ge=0,
        le=128,
        description="Prefix length for IPv6 clients.",
    )


def _written_source(source: PrincipalSource) -> Literal["bearer", "ip"] | HeaderSource:
    if source.kind == "header":
        return HeaderSource.model_validate({"header": source.header, "as": source.holds})
    return source.kind


class IdentitySection(Section):
    """How a caller is identified."""

    principal: list[PrincipalItem] = Field(
        default=[_written_source(source) for source in default_of(IdentityConfig, "principal")],
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
        default=default_of(IdentityConfig, "org_header"),
        description=(
            "Header naming the caller's organisation (for per: org quotas and org overrides), "
            "honoured only from trusted proxies; null to disable."
        ),
    )
    created_header: HeaderName | None = Field(
        default=default_of(IdentityConfig, "created_header"),
        description=(
            "Header giving when the caller's account was created (unix seconds or ISO 8601), "
            "for new_principals; honoured only from trusted proxies; null to disable."
        ),
    )
    credential: HeaderName = Field(
        default=default_of(IdentityConfig, "credential"),
        description=(
            "The header the upstream authenticates callers by, or auto: Authorization on "
            "OpenAI routes (and pass-through), x-api-key on Anthropic routes. A request whose "
            "credential headers (a Bearer token, x-api-key, api-key, this one, key headers of "
            "principal) carry two different values is refused with 400."
        ),
    )

    @field_validator("credential")
    @classmethod
    def _credential_holds_a_key(cls, credential: str, info: ValidationInfo) -> str:
        for source in info.data.get("principal", ()):
            if isinstance(source, HeaderSource) and source.header == credential \
                    and source.holds == "account":
                raise PydanticCustomError(
                    "credential",
                    "{header} is read by principal as an account id, not a key",
                    {"header": credential, "hint": "drop its 'as: account', or name another"},
                )
        return credential


class RouteSection(Section):
    """A path served by a model API; every other path passes through untouched."""

    path: RoutePath = Field(
        description="Request path, e.g. /v1/chat/completions; matched as routing says."
    )
    api: ApiName = Field(description="The API family spoken on this path.")


def _duplicate_paths(routes: Any) -> list[Located]:
    return repeated(routes, "path", lambda _, at: f"duplicate route path (also routes[{at}])")


_DEFAULT_ROUTES = [RouteSection(path=route.path, api=route.api) for route in DEFAULT_ROUTES]


class RoutingSection(Section):
    """How request paths are matched to routes: on the path normalized (percent-decoding,
    merged slashes, dot segments, ``;`` parameters and a trailing slash dropped)."""

    case_sensitive: bool = Field(
        default=default_of(RoutingConfig, "case_sensitive"),
        description="Whether /V1/chat/completions differs from /v1/chat/completions.",
    )
    unknown: UnknownPaths = Field(
        default=default_of(RoutingConfig, "unknown"),
        description=(
            "What a POST gets on a path that is no route but lies under a route's first segment "
            "(/v1/) or ends as a route does (/chat/completions, Azure deployment paths): pass "
            "(forwarded untouched, but refused to a caller whose tier degrades or marks), meter "
            "(a JSON object body is a call of the API its ending names, else of the nearest "
            "route: metered and treated, scored when it carries a prompt) or deny (404)."
        ),
    )


class PolicyDocument(Section):
    """A guardgate policy, version 1."""

    model_config = ConfigDict(title="guardgate policy")

    version: Version = Field(
        default=default_of(Policy, "version"), description="Policy language version; must be 1."
    )
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
        default=as_written(size_text(default_of(Policy, "max_body"))),
        description="Largest request body accepted, e.g. 8MiB.",
    )
    storage: StorageURL = Field(
        default=default_of(Policy, "storage"),
        description=(
            "Where shared state lives: memory:// (this process), redis://, rediss://, "
            "redis+cluster://, redis+sentinel://host:port[,host:port]/service or unix://."
        ),
    )
    on_storage_error: OnStorageError = Field(
        default=default_of(Policy, "on_storage_error"),
        description="When storage fails: open lets traffic through, closed refuses with 503.",
    )
    mode: Mode = Field(
        default=default_of(Policy, "mode"),
        description="shadow decides and logs everything but enforces nothing.",
    )
    identity: IdentitySection = Field(
        default=IdentitySection(), description="How callers are identified."
    )
    routes: Annotated[list[RouteSection], raw_check(_duplicate_paths)] = Field(
        default=_DEFAULT_ROUTES,
        description="Model routes; every other path passes through untouched.",
    )
    routing: RoutingSection = Field(
        default=RoutingSection(), description="How request paths are matched to routes."
    )
    quotas: Annotated[list[QuotaSection], raw_check(duplicate_quota_names)] = Field(
        default=[], description="Quotas every model request is counted against, all enforced."
    )
    default_max_tokens: int = Field(
        default=default_of(Policy, "default_max_tokens"),
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
    intel: IntelSection | None = Field(
        default=None,
        description="Threat intelligence shared with other providers: what leaves, what comes in.",
    )

    @model_validator(mode="wrap")
    @classmethod
    def _cross_checks(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        return checked(
            data,
            handler,
            lambda doc: unknown_override_tiers(doc)
            + unknown_budget_tier(doc)
            + challenge_needs_secret(doc)
            + watermark_needs_key(doc)
            + intel_needs_tiers(doc),
        )
