"""The compiled policy: frozen runtime objects the request path reads.

Nothing here parses text; `guardgate.policy.load` builds these once, after
validation, so the hot path never looks at raw dicts, strings to parse or
CIDRs to compile.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

API_NAMES = ("openai.chat", "openai.completions", "openai.responses", "anthropic.messages")


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


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    principal: tuple[PrincipalSource, ...] = (
        PrincipalSource("bearer"),
        PrincipalSource("header", "x-api-key"),
        PrincipalSource("ip"),
    )
    trusted_proxies: tuple[IPNetwork, ...] = ()
    ipv4_prefix: int = 24
    ipv6_prefix: int = 56


@dataclass(frozen=True, slots=True)
class Route:
    path: str
    api: str  # one of API_NAMES


@dataclass(frozen=True, slots=True)
class Policy:
    """A validated, compiled policy. Build it with `guardgate.load_policy`."""

    upstream: UpstreamConfig | None = None
    version: int = 1
    max_body: int = 8 * 1024 * 1024
    storage: str = "memory://"
    on_storage_error: Literal["open", "closed"] = "open"
    mode: Literal["enforce", "shadow"] = "enforce"
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    routes: tuple[Route, ...] = (
        Route("/v1/chat/completions", "openai.chat"),
        Route("/v1/completions", "openai.completions"),
        Route("/v1/responses", "openai.responses"),
        Route("/v1/messages", "anthropic.messages"),
    )
    source: str = "<policy>"
    digest: str = ""  # sha256 hex of the policy text, names the active version

