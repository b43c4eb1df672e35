"""What a tier does to a request it lets through (pipeline steps 7 and 9):
its perturbation (degrade transforms, the watermark) and the upstream it is
rerouted to, compiled once per tier when the policy loads; and the step that
puts a request on its answer's path back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from guardgate.answer import answer_path
from guardgate.errors import Denied
from guardgate.exchange import Exchange
from guardgate.metrics import Metrics
from guardgate.perturb.send import Perturbation
from guardgate.perturb.watermark import Key
from guardgate.perturb.watermark.table import Vocabulary
from guardgate.policy.model import Policy, UpstreamConfig
from guardgate.upstream import HttpUpstream


@dataclass(frozen=True, slots=True)
class Treatment:
    """One tier's treatment of what it lets through."""

    perturbation: Perturbation
    upstream: HttpUpstream | None = None  # the tier's answers come from here instead


def treatments(policy: Policy, pools: Mapping[str, HttpUpstream] | None = None
               ) -> dict[str, Treatment]:
    """Each treating tier's `Treatment`, by tier name. ``pools``: reroute
    upstreams of the policy before, kept where their settings did not change."""
    secret = (policy.watermark_key or "").encode()
    key = Key(secret, Vocabulary(policy.watermark_groups)) if policy.watermark_key else None
    out = {}
    opened: dict[str, HttpUpstream] = {}  # one pool per URL, whichever tiers share it
    for tier in policy.tiers:
        if tier.degrade is None and not tier.mark:
            continue
        upstream = None
        url = tier.degrade.reroute if tier.degrade is not None else None
        if url:
            upstream = opened.get(url)
            if upstream is None:
                config = replace_url(policy.upstream, url)
                kept = (pools or {}).get(url)
                upstream = kept if kept is not None and kept.config == config \
                    else HttpUpstream(config)
                opened[url] = upstream
        perturbation = Perturbation(tier.degrade, key if tier.mark else None, secret)
        out[tier.name] = Treatment(perturbation, upstream)
    return out


def replace_url(config: UpstreamConfig | None, url: str) -> UpstreamConfig:
    """The policy's upstream settings (timeouts, pool) for another URL."""
    return replace(config, url=url) if config is not None else UpstreamConfig(url)


def treat(ex: Exchange, *, shadow: bool, meter_tokens: bool, metrics: Metrics) -> None:
    """Steps 7 and 9: the request body rewritten, the answer's path through
    the meter and the tier's perturbation, the upstream a tier reroutes to.
    In shadow mode the treatment is only logged."""
    ticket = ex.ticket
    assert ticket is not None
    decision = ticket.decision
    if decision.treatment is not None and not shadow and _untreatable(ex):
        raise Denied("This request is not available to this account.",
                     reason=f"untreatable request refused to tier {decision.tier}")
    treatment = decision.treatment if ex.call is not None and not decision.deny else None
    if treatment is not None and shadow:
        ticket.would = ticket.would or ("degrade" if decision.degrade else "mark")
        treatment = None
    if treatment is not None and treatment.upstream is not None:
        ex.upstream = treatment.upstream
    if not ticket.observed and treatment is None:
        return  # nothing to read or change: the answer passes as it comes
    ex.wrapped = True
    ex.body, ex.send, ex.meter = answer_path(
        ex.call, ex.body, ex.send, headers=ticket.headers, meter_tokens=meter_tokens,
        perturbation=treatment.perturbation if treatment is not None else None, metrics=metrics,
        exchange=ex,
    )
    if ex.meter is not None:
        # Usage is read from the answer's bytes: ask for them uncompressed.
        ex.drop_header(b"accept-encoding")


def _untreatable(ex: Exchange) -> bool:
    """Its answer is one treatment cannot reach: kept upstream (read back by
    id, out of a batch, after a background run: any ``background`` but
    false or null), or a POST to a path that is no model route (a server's
    native endpoint, ``/completion``, ``/api/generate``, answers what the
    gateway cannot read)."""
    if ex.deferred:
        return True
    if ex.call is None:
        return ex.adapter is None and ex.scope.get("method", "").upper() == "POST"
    return ex.call.body.get("background") not in (None, False)
