"""The reroute transform: the tier's requests go to another upstream (a
slower or smaller model, a honeypot). The gateway reads it as data, through
the tier's treatment, and keeps one connection pool per URL."""

from __future__ import annotations

from pydantic import Field

from guardgate.perturb.degrade import Transform, Url, registered

__all__ = ["Reroute"]


@registered(order=90)
class Reroute(Transform):
    """Send this tier's requests to another upstream, with the policy's upstream settings."""

    reroute: Url = Field(description="The upstream's URL (http:// or https://).")
