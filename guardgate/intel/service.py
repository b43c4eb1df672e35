"""What the operator API and the command line do with intelligence: export
what the caught ledger holds, show the feeds and what they matched, load
an operator's bundle."""

from __future__ import annotations

import time
from typing import Any

from guardgate.intel.export import Export, build
from guardgate.intel.feeds import IntelFeeds
from guardgate.policy.intel_config import IntelConfig
from guardgate.policy.model import Policy
from guardgate.store.ledger import CaughtLedger

DEFAULT_SINCE = 86400.0


class IntelError(ValueError):
    """An export asked for something the policy cannot give (an unknown tier, say)."""


class IntelService:
    """One policy's intelligence: its config, its feeds, its caught ledger."""

    def __init__(self, policy: Policy, feeds: IntelFeeds, ledger: CaughtLedger) -> None:
        assert policy.intel is not None
        self.policy = policy
        self.config: IntelConfig = policy.intel
        self.feeds = feeds
        self.ledger = ledger

    async def export(self, since: float, min_tier: str | None = None,
                     now: float | None = None) -> Export:
        """What was caught at ``min_tier`` (default the policy's) or above
        since ``since`` (unix seconds), as a STIX 2.1 bundle."""
        return await export(self.policy, self.ledger, since, min_tier,
                            time.time() if now is None else now)

    def status(self) -> dict[str, Any]:
        return {"min_tier": self.config.min_tier, "share": list(self.config.share),
                "match": list(self.config.match), "salted": self.config.salt is not None,
                **self.feeds.status()}


async def export(policy: Policy, ledger: CaughtLedger, since: float, min_tier: str | None,
                 now: float) -> Export:
    config = policy.intel
    if config is None:
        raise IntelError("the policy has no intel section")
    tiers = [tier.name for tier in policy.tiers]
    tier = min_tier or config.min_tier or ""
    if tier not in tiers:
        raise IntelError(f"unknown tier '{tier}' (tiers: {', '.join(tiers) or 'none'})")
    entries = await ledger.entries(since, now)
    return build(entries, config, tiers, tier, since)
