"""What the request path reads, compiled once per policy: every step's
runtime object, built from the frozen policy when it loads or reloads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from guardgate.admit import Admission
from guardgate.challenge.gate import ChallengeGate
from guardgate.disconnect import DisconnectWatch
from guardgate.exchange import Exchange
from guardgate.faults import StorageFaults
from guardgate.identity import Identifier
from guardgate.intel.feeds import IntelFeeds
from guardgate.intel.service import IntelService
from guardgate.metrics import Metrics
from guardgate.policy.model import Policy
from guardgate.route import Router
from guardgate.store import Store
from guardgate.treatment import treatments
from guardgate.upstream import Forwarding, HttpUpstream


@dataclass(frozen=True, slots=True)
class Runtime:
    policy: Policy
    identifier: Identifier        # step 1
    router: Router                # step 2
    admission: Admission          # steps 3, 4, 6, 10
    gate: ChallengeGate | None    # step 5, when the policy has challenges
    forwarding: Forwarding        # step 8: what of a request goes upstream
    faults: StorageFaults
    reroutes: Mapping[str, HttpUpstream]  # the upstreams tiers reroute to, by URL
    version: str  # the policy's version as logs and metrics name it
    intel: IntelService | None = None  # with the policy's intel section and risk scoring

    @classmethod
    def compile(cls, policy: Policy, store: Store, metrics: Metrics, watch: DisconnectWatch,
                pools: Mapping[str, HttpUpstream] | None = None,
                feeds: IntelFeeds | None = None) -> Runtime:
        """``pools``: the reroute upstreams of the policy before, kept where
        their settings did not change; ``feeds``: the gateway's intelligence
        feeds, configured with this policy."""
        faults = StorageFaults(policy.on_storage_error, policy.mode == "shadow", metrics)
        by_tier = treatments(policy, pools)
        admission = Admission(policy, store, metrics, faults, by_tier)
        gate = ChallengeGate(policy.challenge, store, metrics, admission.demand) \
            if policy.challenge else None
        # A step that reads the call: token quotas, the risk engine, a tier's
        # treatment, a clearance's output-token budget.
        parse_calls = (admission.meters_tokens or admission.risk is not None or bool(by_tier)
                       or gate is not None)
        reroutes = {t.upstream.config.url: t.upstream
                    for t in by_tier.values() if t.upstream is not None}
        intel = None
        if policy.intel is not None and admission.risk is not None:
            ledger = store.caught_ledger()
            ledger.bound(policy.intel.ledger_size, policy.intel.ledger_ttl)
            feeds = feeds if feeds is not None else IntelFeeds(metrics)
            admission.risk.use_intel(policy.intel, feeds, ledger)
            intel = IntelService(policy, feeds, ledger)
        return cls(policy, Identifier(policy.identity), Router(policy, parse_calls=parse_calls),
                   admission, gate, Forwarding(policy.identity, watch), faults, reroutes,
                   policy.digest[:12], intel)

    async def settle(self, ex: Exchange) -> None:
        """Step 10: the reservation, the risk state and the clearance's meter;
        the clearance's reservation is settled even when the rest failed."""
        try:
            await self.admission.settle(ex)
        finally:
            if self.gate is not None:
                await self.gate.settle(ex, self.faults)
