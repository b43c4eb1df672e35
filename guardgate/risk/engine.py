"""Pipeline step 3: assess a caller's distillation risk.

`RiskEngine.assess` turns one model request into features, counts them in
the caller's rolling state and clusters (one storage round trip), scores
the result and places the caller in a tier. `RiskEngine.record`, once the
answer is done, stores the tier and the explanation, feeds back the tokens
the answer cost and counts the caller among its clusters' risky members
when its own score reaches the policy's member score.

With the policy's ``intel`` section, the runtime hands the engine the
imported indicators (`use_intel`): each assessment looks the request's
fingerprints up in them (dictionaries built when a feed changes, no
storage) and adds the ``shared_intel`` signal for a match; and each record
of a caller at the section's ``min_tier`` or above goes to the caught
ledger, whose fingerprints ``guardgate intel export`` shares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from guardgate.apis.base import ModelCall
from guardgate.identity import Identity
from guardgate.intel.fingerprints import agent_digest
from guardgate.intel.index import Indicator, IntelIndex, Match
from guardgate.policy.intel_config import IntelConfig
from guardgate.policy.model import NORMAL, Policy, TierConfig
from guardgate.risk.features import Features, extract
from guardgate.risk.signals import BUDGET, COORDINATION, Scored, Scorer, established
from guardgate.store.ledger import Caught, CaughtLedger
from guardgate.store.risk import Clock, Observation, Record, RiskStore, Snapshot

# A caller's requests go to the caught ledger at most once in this many seconds.
NOTE_EVERY = 10.0
# Own signals whose raw values describe a campaign's demand in what it exports.
DEMAND = ("reasoning_elicitation", "logprob_harvest", "output_ratio", "single_turn",
          "timing_regularity", "hours_active", "template_reuse", "topic_sweep")
_NOTED_MAX = 100_000
SHOWN = 64  # characters of an indicator's value (and campaign) in an explanation
# A fingerprint this deployment sees from at least EVERYDAY_ACCOUNTS of its
# own accounts in the cluster window, less than EVERYDAY_RISKY of them
# risky, is its everyday one (a popular SDK's client string, a carrier's
# network): an imported indicator for it counts for nobody here.
EVERYDAY_ACCOUNTS = 50
EVERYDAY_RISKY = 0.25
# A setup counts for an established caller only when its network is this narrow at least.
SETUP_NARROWEST = {4: 24, 6: 48}


class IntelSource(Protocol):
    """The imported indicators in force, and who they matched."""

    index: IntelIndex

    def matched(self, principal: str, matches: list[Match], now: float) -> None: ...


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
        self.intel: IntelSource | None = None
        self.ledger: CaughtLedger | None = None
        self._intel_weight = 0.0
        self._ledger_rank = 0
        self._shared: frozenset[str] = frozenset()
        self._noted: dict[str, float] = {}

    def use_intel(self, config: IntelConfig, source: IntelSource | None,
                  ledger: CaughtLedger | None) -> None:
        """Match requests against ``source``'s indicators; record callers at
        ``config.min_tier`` or above in ``ledger``."""
        self.intel = source if config.signal.weight > 0 else None
        self._intel_weight = config.signal.weight
        self.ledger = ledger
        self._ledger_rank = self._rank.get(config.min_tier or "", len(self._rank)) + 1
        self._shared = frozenset(config.share)

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
            clusters.append(("agent", agent_digest(identity.user_agent)))
        if self._orgs and identity.org:
            clusters.append(("org", identity.org))
        return tuple(clusters)

    def observation(self, identity: Identity, call: ModelCall, now: float) -> Observation:
        return self._observation(identity, extract(call), now)

    def _observation(self, identity: Identity, features: Features, now: float) -> Observation:
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
        features = extract(call)
        obs = self._observation(identity, features, now)
        snapshot = await self.state.observe(obs)
        scored = self.scorer.score(snapshot, now, identity.created)
        intel = self.intel
        if intel is not None and intel.index.size:
            scored = self._with_intel(intel, identity, features, scored, now, snapshot)
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
        if self.ledger is not None and assessment.rank >= self._ledger_rank:
            caught = self._caught(assessment)
            if caught is not None:
                await self.ledger.note(caught)

    def _with_intel(self, intel: IntelSource, identity: Identity, features: Features,
                    scored: Scored, now: float, snapshot: Snapshot) -> Scored:
        """``scored`` with the shared_intel signal when the request matches
        imported indicators: the strongest match of each kind of
        fingerprint, combined as independent evidence (one minus the
        product of their complements), times the signal's weight. As with
        clusters, an established caller gets nothing from what
        it shares with others, but a setup (a system prompt from a network
        of /24 for IPv4, /48 for IPv6, or narrower). A kind of fingerprint
        the caller shares with many of this deployment's own callers, few of
        them risky (see `_everyday`), counts for nobody: a
        peer's indicator cannot turn this deployment's everyday client
        string, system prompt or network into evidence. Only the strongest
        match of each kind is recorded and explained."""
        matches = intel.index.match(features.bands, features.system, identity.user_agent,
                                    identity.client_ip, now)
        if not matches:
            return scored
        settled = established(snapshot, now, identity.created)
        everyday = _everyday(snapshot.clusters)
        best: dict[str, Match] = {}     # the strongest match of each kind: recorded
        counted: dict[str, float] = {}  # the strongest of each kind that counts
        for indicator, strength in matches:
            kind = indicator.kind
            if strength > best.get(kind, (indicator, 0.0))[1]:
                best[kind] = (indicator, strength)
            if (settled and not _coordinated(indicator)) or kind in everyday:
                continue
            if strength > counted.get(kind, 0.0):
                counted[kind] = strength
        missed = 1.0
        for strength in counted.values():
            missed *= 1.0 - strength
        recorded = sorted(best.values(), key=lambda m: -m[1])
        intel.matched(identity.principal, recorded, now)
        matched = [(i.id, i.kind, i.value[:SHOWN], round(s, 4), i.feed,
                    None if i.campaign is None else i.campaign[:SHOWN]) for i, s in recorded]
        return scored.with_intel(1.0 - missed, self._intel_weight * (1.0 - missed), matched)

    def _caught(self, assessment: Assessment) -> Caught | None:
        """What the caught ledger takes of ``assessment``: its shareable
        fingerprints with their clusters' counts, the signals that fired,
        the demand it showed; None within `NOTE_EVERY` of the caller's last."""
        noted = self._noted
        last = noted.get(assessment.principal)
        if last is not None and 0 <= assessment.now - last < NOTE_EVERY:
            return None
        if len(noted) >= _NOTED_MAX:
            noted.clear()
        noted[assessment.principal] = assessment.now
        scored = assessment.scored
        clusters = tuple((kind, key, accounts, risky)
                         for kind, key, accounts, risky, _ in scored.clusters
                         if kind in self._shared)
        if not clusters:
            return None
        demand = tuple((name, raw) for name, raw, _ in scored.signals if name in DEMAND)
        return Caught(assessment.principal, assessment.now, assessment.tier, clusters,
                      tuple(scored.top()), demand)

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


def _coordinated(indicator: Indicator) -> bool:
    """Whether a match with ``indicator`` counts for an established caller: a
    setup whose network is narrow enough to name one operator's machines."""
    net = indicator.network
    return indicator.kind in COORDINATION and net is not None \
        and net.length >= SETUP_NARROWEST[net.version]


def _everyday(clusters: list[tuple[str, str, int, int]]) -> frozenset[str]:
    """The kinds of fingerprint among a caller's ``clusters`` (kind, value,
    accounts, risky accounts) that are everyday ones at this deployment."""
    return frozenset(kind for kind, _, accounts, risky in clusters
                     if accounts >= EVERYDAY_ACCOUNTS and risky < EVERYDAY_RISKY * accounts)
