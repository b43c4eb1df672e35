"""Pipeline step 3: assess a caller's distillation risk.

`RiskEngine.assess` turns one model request into features, counts them in
the caller's rolling state and clusters (one storage round trip), scores
the result and places the caller in a tier. `RiskEngine.record`, once the
answer is done, stores the tier and the explanation, feeds back the tokens
the answer cost and counts the caller among its clusters' risky members
when its own score reaches the policy's member score.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from guardgate.apis.base import ModelCall
from guardgate.identity import Identity
from guardgate.policy.model import NORMAL, Policy, TierConfig
from guardgate.risk.features import extract
from guardgate.risk.signals import BUDGET, Scored, Scorer
from guardgate.store.risk import Clock, Observation, Record, RiskStore


@dataclass(slots=True)
class Assessment:
    principal: str
    now: float
    score: float
    tier: str
    scored: Scored
    clusters: tuple[tuple[str, str], ...]
    risky: bool  # own score at or above the policy's member score
    rank: int = 0  # the tier's place: 0 normal, 1 the lowest tier, and up

    def record(self, tokens: tuple[int, int] | None) -> Record:
        return Record(self.principal, self.now, self.tier, self.risky,
                      self.scored.compact(self.tier, self.now), tokens, self.clusters,
                      self.score, self.rank)


class RiskEngine:
    def __init__(self, policy: Policy, state: RiskStore) -> None:
        self.state = state
        state.bound(policy.risk.max_callers)
        self.scorer = Scorer(policy.risk)
        self.clock = self.clock_of(policy)
        self._tiers: tuple[TierConfig, ...] = policy.tiers  # lowest score first
        self._rank = {tier.name: i for i, tier in enumerate(policy.tiers)}  # normal: -1
        self._hysteresis = policy.risk.hysteresis
        self._member_score = policy.risk.member_score
        self._budget = policy.risk.budget
        self._budget_tier = policy.risk.budget_tier or NORMAL
        kinds = self.scorer.cluster_kinds
        self._templates = "template" in kinds
        self._systems = "system" in kinds
        self._setups = "setup" in kinds
        self._prefixes = "prefix" in kinds
        self._agents = "agent" in kinds
        self._orgs = "org" in kinds

    @staticmethod
    def clock_of(policy: Policy) -> Clock:
        """The time constants of ``policy``'s risk state."""
        return Clock(policy.risk.half_life, policy.risk.window, policy.risk.long_half_life)

    def clusters_of(
        self, identity: Identity, bands: tuple[str, ...], system: str | None
    ) -> tuple[tuple[str, str], ...]:
        clusters: list[tuple[str, str]] = []
        if self._templates:
            clusters += (("template", band) for band in bands)
        if self._systems and system is not None:
            clusters.append(("system", system))
        if self._setups and system is not None:
            clusters.append(("setup", f"{system}@{identity.ip_prefix}"))
        if self._prefixes:
            clusters.append(("prefix", identity.ip_prefix))
        if self._agents and identity.user_agent:
            clusters.append(("agent", f"{zlib.crc32(identity.user_agent.encode()):08x}"))
        if self._orgs and identity.org:
            clusters.append(("org", identity.org))
        return tuple(clusters)

    def observation(self, identity: Identity, call: ModelCall, now: float) -> Observation:
        features = extract(call)
        return Observation(
            principal=identity.principal,
            now=now,
            reasoning=features.reasoning,
            harvest=features.harvest,
            single=1.0 if features.single_turn else 0.0,
            template=features.template,
            prompt=features.prompt,
            clusters=self.clusters_of(identity, features.bands, features.system),
        )

    async def assess(self, identity: Identity, call: ModelCall, now: float) -> Assessment:
        obs = self.observation(identity, call, now)
        snapshot = await self.state.observe(obs)
        scored = self.scorer.score(snapshot, now, identity.created)
        tier = self.tier_for(scored.score, snapshot.tier)
        budget = self._budget
        if budget is not None and snapshot.long_n >= budget:
            # Past its extraction budget: held in the budget's tier at least.
            scored.signals.append((BUDGET, snapshot.long_n, 0.0))
            if self._rank.get(tier, -1) < self._rank[self._budget_tier]:
                tier = self._budget_tier
        return Assessment(identity.principal, now, scored.score, tier, scored, obs.clusters,
                          scored.own >= self._member_score, self._rank.get(tier, -1) + 1)

    async def tier_of(self, principal: str) -> str:
        """The tier ``principal`` is in, without observing anything."""
        state = await self.state.peek(principal)
        tier = state.get("tier") if state else None
        return tier if tier in self._rank else NORMAL

    async def record(self, assessment: Assessment, tokens: tuple[int, int] | None) -> None:
        await self.state.record(assessment.record(tokens))

    def tier_for(self, score: float, previous: str) -> str:
        """The tier for ``score``, given the tier the caller was in: a caller
        moves up as soon as its score reaches a tier, and down only once its
        score is `hysteresis` below the tier it is in (so it does not flap
        at a boundary)."""
        reached = -1
        for i, tier in enumerate(self._tiers):
            if score >= tier.score:
                reached = i
        held = self._rank.get(previous, -1)
        if reached >= held:
            return self._tiers[reached].name if reached >= 0 else NORMAL
        # Moving down: to the highest tier at or below the one held that the
        # score is still within `hysteresis` of.
        for i in range(held, reached, -1):
            if score >= self._tiers[i].score - self._hysteresis:
                return self._tiers[i].name
        return self._tiers[reached].name if reached >= 0 else NORMAL
