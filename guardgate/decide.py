"""Pipeline step 4: from who is calling to what the gateway does about it.

Overrides are checked first, in order; the first that matches forces a
tier, always allows or always denies. Without one the caller is in the tier
the risk engine put it in by score, or normal when nothing is scored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING

from guardgate.identity import Identity
from guardgate.perturb.transforms import Transforms
from guardgate.policy.model import OverrideConfig, Policy, TierChallenge

if TYPE_CHECKING:
    from guardgate.treatment import Treatment

NORMAL = "normal"


@dataclass(frozen=True, slots=True)
class Decision:
    tier: str = NORMAL
    quota_factor: float = 1.0
    allow: bool = False  # never treated: no quotas, nothing changed
    deny: bool = False
    reason: str = ""     # private: what decided it, for the log line only
    challenge: TierChallenge | None = None  # proof of work asked before passing
    degrade: Transforms | None = None      # transforms of the request and the answer
    mark: bool = False                     # watermark the answer
    treatment: Treatment | None = None     # what degrade and mark compile to

    @property
    def action(self) -> str:
        """The strongest treatment: block, challenge, degrade, mark, throttle or allow."""
        if self.deny:
            return "block"
        if self.challenge is not None:
            return "challenge"
        if self.degrade is not None:
            return "degrade"
        if self.mark:
            return "mark"
        if self.quota_factor < 1.0:
            return "throttle"
        return "allow"


class Decider:
    def __init__(self, policy: Policy, treatments: Mapping[str, Treatment] | None = None
                 ) -> None:
        self._overrides = policy.overrides
        # Without quotas a tier's quota factor scales nothing: its callers
        # are allowed, and logged so.
        scales = bool(policy.quotas)
        self._by_tier = {
            tier.name: Decision(
                tier.name,
                tier.quota_factor if scales else 1.0,
                deny=tier.deny,
                reason=f"tier {tier.name}",
                challenge=tier.challenge,
                degrade=tier.degrade,
                mark=tier.mark,
                treatment=(treatments or {}).get(tier.name),
            )
            for tier in policy.tiers
        }
        self.normal = Decision()
        self._decisions = [self._decision(i, o) for i, o in enumerate(policy.overrides)]
        # Overrides set at runtime: {"allow": true}, {"deny": true}, {"tier": NAME}.
        reason = "runtime override"
        self._runtime_flags = {"allow": Decision(allow=True, reason=reason),
                               "deny": Decision(deny=True, reason=reason)}
        self._runtime_tiers = {name: replace(decision, reason=reason)
                               for name, decision in self._by_tier.items()}
        self._in_network = lru_cache(maxsize=65536)(self._match_ip)

    def _decision(self, index: int, override: OverrideConfig) -> Decision:
        reason = f"override #{index + 1}"
        if override.allow:
            return Decision(allow=True, reason=reason)
        if override.deny:
            return Decision(deny=True, reason=reason)
        base = self._by_tier[override.tier] if override.tier else self.normal
        return replace(base, reason=reason)

    def _match_ip(self, address: str, index: int) -> bool:
        network = self._overrides[index].ip
        try:
            return network is not None and ipaddress.ip_address(address) in network
        except ValueError:
            return False

    def decide(self, identity: Identity) -> Decision:
        return self.override(identity) or self.normal

    @property
    def tiers(self) -> list[str]:
        return list(self._by_tier)

    def runtime(self, action: dict[str, object]) -> Decision | None:
        """The decision an override set at runtime makes: ``{"allow": true}``,
        ``{"deny": true}`` or ``{"tier": NAME}`` naming a tier of this policy;
        None for anything else."""
        if len(action) != 1:
            return None
        ((kind, value),) = action.items()
        if kind == "tier":
            return self._runtime_tiers.get(value) if isinstance(value, str) else None
        return self._runtime_flags.get(kind) if value is True else None

    def for_tier(self, tier: str) -> Decision:
        """What the policy does with a caller the risk engine put in ``tier``."""
        return self._by_tier.get(tier, self.normal)

    def override(self, identity: Identity) -> Decision | None:
        """The first override matching ``identity``, if any."""
        for index, override in enumerate(self._overrides):
            if (
                (override.api_key_sha256 is not None and override.api_key_sha256 == identity.key_sha256)
                or (override.principal is not None and override.principal == identity.principal)
                or (override.ip is not None and self._in_network(identity.client_ip, index))
                or (override.org is not None and override.org == identity.org)
            ):
                return self._decisions[index]
        return None
