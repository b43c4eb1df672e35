"""The policy document as pydantic models: one class per section, unknown keys forbidden.

These models validate and convert units (durations to seconds, sizes to
bytes, CIDRs to networks); `guardgate.policy.compile` then turns them into
the frozen runtime objects of `guardgate.policy.model`. To add a section,
write a `Section` subclass and add one field to `PolicyDocument`; the JSON
Schema follows. Defaults here must agree with the dataclass defaults in
`model.py` (a test holds them together).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag
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
    raw_check,
)


def as_written(text: str) -> Any:
    """A default written the way a policy file would say it (``"5s"``, ``"8MiB"``).

    Sections validate their defaults, so this is parsed like input, and the
    JSON Schema shows editors the readable form.
    """
    return text


class Section(BaseModel):
    """Base of every section: unknown keys are errors, defaults are validated too."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


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
    """Take the principal from a request header (honoured only from a trusted proxy)."""

    header: HeaderName = Field(description="Header name, case-insensitive.")


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


class RouteSection(Section):
    """A path served by a model API; every other path passes through untouched."""

    path: RoutePath = Field(description="Exact request path, e.g. /v1/chat/completions.")
    api: ApiName = Field(description="The API family spoken on this path.")


def _duplicate_paths(routes: Any) -> list[Located]:
    first: dict[str, int] = {}
    duplicates: list[Located] = []
    for index, route in enumerate(routes if isinstance(routes, list) else []):
        path = route.get("path") if isinstance(route, dict) else None
        if not isinstance(path, str):
            continue
        if path in first:
            duplicates.append(
                ((index, "path"), f"duplicate route path (also routes[{first[path]}])")
            )
        else:
            first[path] = index
    return duplicates


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
