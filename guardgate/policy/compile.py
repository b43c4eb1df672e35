"""Compile a validated document into the frozen runtime objects of `model.py`."""

from __future__ import annotations

from guardgate.policy.catalogue import SIGNALS
from guardgate.policy.model import (
    AdminConfig,
    ChallengeConfig,
    IdentityConfig,
    OverrideConfig,
    Policy,
    PrincipalSource,
    QuotaConfig,
    RampConfig,
    RiskConfig,
    Route,
    RoutingConfig,
    SignalConfig,
    TierChallenge,
    TierConfig,
    UpstreamConfig,
    default_of,
)
from guardgate.policy.schema import HeaderSource, IdentitySection, PolicyDocument, UpstreamSection
from guardgate.policy.schema_challenge import ChallengeSection, TierChallengeSection
from guardgate.policy.schema_intel import compile_intel
from guardgate.policy.schema_quotas import QuotaSection, RampSection
from guardgate.policy.schema_risk import AdminSection, RiskSection
from guardgate.policy.schema_tiers import OverrideSection, TierSection

# What a clearance buys when neither the tier nor the challenge section says.
_REQUESTS: int = default_of(ChallengeConfig, "requests")
_OUTPUT_TOKENS: int = default_of(ChallengeConfig, "output_tokens")


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
        routing=RoutingConfig(document.routing.case_sensitive, document.routing.unknown),
        quotas=tuple(_quota(quota) for quota in document.quotas),
        default_max_tokens=document.default_max_tokens,
        new_principals=_ramp(document.new_principals),
        tiers=_tiers(document.tiers, document.challenge),
        overrides=tuple(_override(override) for override in document.overrides),
        risk=_risk(document.risk),
        admin=_admin(document.admin),
        challenge=_challenge(document.challenge),
        watermark_key=document.watermark.key if document.watermark is not None else None,
        intel=compile_intel(document.intel, [(n, t.score) for n, t in document.tiers.items()]),
        watermark_groups=_private_groups(document),
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
        PrincipalSource("header", item.header, item.holds)
        if isinstance(item, HeaderSource)
        else PrincipalSource(item)
        for item in section.principal
    )
    return IdentityConfig(
        principal=principal,
        trusted_proxies=tuple(section.trusted_proxies),
        ipv4_prefix=section.ip_prefix.ipv4,
        ipv6_prefix=section.ip_prefix.ipv6,
        org_header=section.org_header,
        created_header=section.created_header,
        credential=section.credential,
    )


def _quota(section: QuotaSection) -> QuotaConfig:
    return QuotaConfig(
        name=section.name,
        per=section.per,
        windows=section.limit or (),
        cost=section.cost,
        concurrency=section.concurrency,
        strategy=section.strategy,
    )


def _ramp(section: RampSection | None) -> RampConfig | None:
    if section is None:
        return None
    return RampConfig(start=section.start, full_after=section.full_after)


def _tiers(
    sections: dict[str, TierSection], challenge: ChallengeSection | None
) -> tuple[TierConfig, ...]:
    tiers = (
        TierConfig(
            name,
            tier.score,
            quota_factor=tier.quota_factor,
            deny=tier.deny,
            challenge=_tier_challenge(tier.challenge, challenge),
            degrade=tier.degrade or None,  # validated into Transforms; none is None
            mark=tier.mark,
        )
        for name, tier in sections.items()
    )
    return tuple(sorted(tiers, key=lambda tier: tier.score))


def _tier_challenge(
    section: TierChallengeSection | None, defaults: ChallengeSection | None
) -> TierChallenge | None:
    if section is None or defaults is None:
        return None
    budget = section.budget
    base = defaults.clearance.budget
    return TierChallenge(
        difficulty=section.difficulty if section.difficulty is not None else defaults.difficulty,
        requests=(budget.requests if budget and budget.requests else base.requests) or _REQUESTS,
        output_tokens=(
            budget.output_tokens if budget and budget.output_tokens else base.output_tokens
        ) or _OUTPUT_TOKENS,
    )


def _challenge(section: ChallengeSection | None) -> ChallengeConfig | None:
    if section is None:
        return None
    return ChallengeConfig(
        secret=section.secret,
        key_id=section.key_id,
        previous=tuple((p.key_id, p.secret) for p in section.previous),
        ttl=section.ttl,
        difficulty=section.difficulty,
        issue_limit=section.issue_limit,
        clearance_ttl=section.clearance.ttl,
        requests=section.clearance.budget.requests or _REQUESTS,
        output_tokens=section.clearance.budget.output_tokens or _OUTPUT_TOKENS,
    )


def _override(section: OverrideSection) -> OverrideConfig:
    return OverrideConfig(
        api_key_sha256=section.api_key_sha256,
        principal=section.principal,
        ip=section.ip,
        org=section.org,
        tier=section.tier,
        allow=section.allow,
        deny=section.deny,
    )


def _risk(section: RiskSection) -> RiskConfig:
    signals = []
    for signal in SIGNALS:
        given = section.signals.get(signal.name)
        signals.append(
            SignalConfig(
                signal.name,
                signal.weight if given is None or given.weight is None else given.weight,
                signal.low if given is None or given.low is None else given.low,
                signal.high if given is None or given.high is None else given.high,
            )
        )
    return RiskConfig(
        enabled=section.enabled,
        half_life=section.half_life,
        long_half_life=section.long_half_life,
        window=section.window,
        hysteresis=section.hysteresis,
        member_score=section.member_score,
        cluster_risk=(section.cluster_risk.low, section.cluster_risk.high),
        signals=tuple(signals),
        max_callers=section.max_callers,
        budget=None if section.budget is None else section.budget.requests,
        budget_tier=None if section.budget is None else section.budget.tier,
    )


def _admin(section: AdminSection | None) -> AdminConfig:
    return AdminConfig(token=section.token if section is not None else None)


def _private_groups(document: PolicyDocument) -> str:
    """The text of the private watermark groups, read once at load."""
    if document.watermark is None or document.watermark.groups is None:
        return ""
    with open(document.watermark.groups, encoding="utf-8") as private:
        return private.read()
