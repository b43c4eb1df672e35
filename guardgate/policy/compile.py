"""Compile a validated document into the frozen runtime objects of `model.py`."""

from __future__ import annotations

from guardgate.policy.model import (
    IdentityConfig,
    Policy,
    PrincipalSource,
    Route,
    UpstreamConfig,
)
from guardgate.policy.schema import HeaderSource, IdentitySection, PolicyDocument, UpstreamSection


def compile_policy(document: PolicyDocument, *, source: str, digest: str) -> Policy:
    """Build the `Policy` the request path reads; ``document`` is already valid."""
    return Policy(
        upstream=_upstream(document.upstream),
        version=document.version,
        max_body=document.max_body,
        storage=document.storage,
        on_storage_error=document.on_storage_error,
        mode=document.mode,
        identity=_identity(document.identity),
        routes=tuple(Route(route.path, route.api) for route in document.routes),
        source=source,
        digest=digest,
    )


def _upstream(section: UpstreamSection | None) -> UpstreamConfig | None:
    if section is None:
        return None
    return UpstreamConfig(
        url=section.url,
        connect_timeout=section.connect_timeout,
        read_timeout=section.read_timeout,
        max_connections=section.max_connections,
    )


def _identity(section: IdentitySection) -> IdentityConfig:
    principal = tuple(
        PrincipalSource("header", item.header)
        if isinstance(item, HeaderSource)
        else PrincipalSource(item)
        for item in section.principal
    )
    return IdentityConfig(
        principal=principal,
        trusted_proxies=tuple(section.trusted_proxies),
        ipv4_prefix=section.ip_prefix.ipv4,
        ipv6_prefix=section.ip_prefix.ipv6,
    )
