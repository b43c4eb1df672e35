"""Steps 3, 4 and 6 together: assess and decide what to do with a caller,
reserve its quota, and after the answer settle what it really cost and feed
it back into the caller's risk state.

What a storage failure means is the policy's call (``on_storage_error``):
``open`` lets the request through unmetered, ``closed`` refuses it with 503.
Either way the failure is logged and counted, and the next request tries
the storage again, so the gateway recovers by itself when it returns.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from guardgate.apis.base import ModelCall
from guardgate.challenge.gate import Passed
from guardgate.decide import Decider, Decision
from guardgate.errors import Denied, RateLimited, StorageUnavailable
from guardgate.identity import Identity
from guardgate.logs import get_logger
from guardgate.metrics import Metrics
from guardgate.policy.model import Policy
from guardgate.quota import Demand, Quotas, Reservation, Subject, estimate_tokens
from guardgate.risk.engine import Assessment, RiskEngine
from guardgate.store import STORAGE_ERRORS, FirstSeen, Store

log = get_logger("guardgate")


@dataclass(slots=True)
class Ticket:
    """What admission decided for one request."""

    decision: Decision
    assessment: Assessment | None = None
    reservation: Reservation | None = None
    would: str | None = None  # in shadow mode: the refusal that was not enforced
    refused: bool = False     # refused (or, in shadow mode, would have been)
    passed: Passed | None = None  # the challenge gate let it through on a clearance

    @property
    def reasons(self) -> list[str]:
        """Why the caller is treated so, for logs: the override, or the top signals."""
        if self.assessment is None:
            return [self.decision.reason] if self.decision.reason else []
        return self.assessment.scored.top()


class Admission:
    def __init__(self, policy: Policy, store: Store, metrics: Metrics) -> None:
        self.policy = policy
        self.store = store
        self.metrics = metrics
        self.decider = Decider(policy)
        self.quotas = Quotas(policy, store) if policy.quotas else None
        self.shadow = policy.mode == "shadow"
        self._ramp = policy.new_principals
        self._first_seen = FirstSeen(store) if self._ramp is not None else None
        self.overrides = store.overrides()
        self.risk: RiskEngine | None = None
        if policy.tiers and policy.risk.enabled:
            self.risk = RiskEngine(policy, store.risk_state(RiskEngine.clock_of(policy)))
        # A policy with nothing to decide or meter admits every request the
        # same way; the request path then skips admission altogether.
        # (Overrides can be set at runtime only through the operator API.)
        self.idle = (
            self.quotas is None
            and not policy.overrides
            and self.risk is None
            and policy.admin.token is None
        )
        self.admitted = Ticket(self.decider.normal)

    @property
    def meters_tokens(self) -> bool:
        return self.quotas is not None and self.quotas.meters_tokens

    def demand(self, call: ModelCall | None) -> Demand:
        if call is None or not self.meters_tokens:
            return Demand()
        output = (call.max_tokens or self.policy.default_max_tokens) * max(1, call.n)
        return Demand(estimate_tokens((call.system, call.prompt)), output)

    async def assess(self, identity: Identity, call: ModelCall | None) -> Ticket:
        """Steps 3 and 4: overrides first, then the risk engine's tier."""
        decision = await self._runtime_override(identity)
        if decision is None:
            decision = self.decider.override(identity)
        if decision is not None:
            self.metrics.count_decision(decision.tier, decision.action)
            return Ticket(decision)
        if self.risk is None or call is None:
            return Ticket(self.decider.normal)
        try:
            assessment = await self.risk.assess(identity, call, time.time())
        except STORAGE_ERRORS as exc:
            self.storage_failed("assess", exc)
            self.refuse_if_closed(exc)
            return Ticket(self.decider.normal)
        decision = self.decider.for_tier(assessment.tier)
        self.metrics.count_decision(decision.tier, decision.action)
        return Ticket(decision, assessment)

    async def _runtime_override(self, identity: Identity) -> Decision | None:
        try:
            actions = await self.overrides.all()
        except STORAGE_ERRORS as exc:
            self.storage_failed("overrides", exc)
            return None
        action = actions.get(identity.principal) if actions else None
        return self.decider.runtime(action) if action is not None else None

    def refuse_if_closed(self, exc: BaseException) -> None:
        if self.policy.on_storage_error == "closed" and not self.shadow:
            raise StorageUnavailable(
                "The service is temporarily unavailable. Please retry shortly.",
                reason=f"storage unavailable: {exc!r}",
                headers=[(b"retry-after", b"1")],
            ) from None

    async def admit(self, ticket: Ticket, identity: Identity, call: ModelCall | None) -> None:
        """Step 6: refuse a denied caller, reserve the quotas of the others.
        Raises `Denied` or `RateLimited` (not in shadow mode)."""
        decision = ticket.decision
        if decision.deny:
            ticket.refused = True
            if not self.shadow:
                raise Denied("Access to this API has been denied.", reason=decision.reason)
            ticket.would = "block"
            return
        if self.quotas is None or decision.allow:
            return
        subject = Subject(identity.principal, identity.client_ip, identity.ip_prefix, identity.org)
        try:
            factor = decision.quota_factor * await self._age_factor(identity)
            ticket.reservation = await self.quotas.reserve(subject, self.demand(call), factor)
        except RateLimited as refused:
            self.metrics.quota_decisions.labels(refused.quota, "refused").inc()
            ticket.refused = True
            if not self.shadow:
                raise
            ticket.would = "throttle"
        except STORAGE_ERRORS as exc:
            self.storage_failed("reserve", exc)
            self.refuse_if_closed(exc)
        else:
            self.metrics.reservations_open.inc()
            for charge in ticket.reservation.charges:
                self.metrics.quota_decisions.labels(charge.quota.name, "allowed").inc()

    async def _age_factor(self, identity: Identity) -> float:
        if self._ramp is None or self._first_seen is None:
            return 1.0
        now = time.time()
        born = identity.created
        if born is None:
            born = await self._first_seen.get(identity.principal, now)
        age = max(0.0, now - born)
        if age >= self._ramp.full_after:
            return 1.0
        # Steps of a tenth keep the set of scaled limits small.
        share = self._ramp.start + (1 - self._ramp.start) * age / self._ramp.full_after
        return max(self._ramp.start, int(share * 10) / 10)

    async def settle(
        self,
        ticket: Ticket,
        answered: bool,
        meter: Any | None,
        *,
        reached: bool = True,
        call: ModelCall | None = None,
        status: int = 200,
    ) -> None:
        """Settle against the real usage once the upstream answered. A request
        that never reached the upstream is refunded; one that reached it but
        got no answer (timeout, client gone) keeps what it reserved. The risk
        state learns the tier and, for an answer the caller was allowed, its
        token counts: in shadow mode a request that would have been refused
        counts as refused, so shadow and enforce keep the same state."""
        held, ticket.reservation = ticket.reservation, None  # settled once, whatever happens
        used = None
        try:
            used = _tokens(meter, call) if answered and meter is not None else None
            if ticket.assessment is not None and self.risk is not None:
                allowed = status < 400 and not ticket.refused
                try:
                    await self.risk.record(ticket.assessment, used if allowed else None)
                except STORAGE_ERRORS as exc:
                    self.storage_failed("record", exc)
        finally:
            if held is not None:
                await self._settle_quotas(held, answered, used, reached)

    async def _settle_quotas(self, held: Reservation, answered: bool,
                             used: tuple[int, int] | None, reached: bool) -> None:
        """The reservation settled or released, even when the request was
        cancelled while its risk state was being recorded. ``used``: the
        answer's metered tokens, None when it was not metered."""
        assert self.quotas is not None  # a reservation comes from the quotas
        try:
            if not answered:
                await self.quotas.release(held, refund=not reached)
                return
            if used is None:
                used = held.demand.input_tokens, held.demand.output_tokens
            await self.quotas.settle(held, *used)
        except STORAGE_ERRORS as exc:
            self.storage_failed("settle", exc)
        finally:
            self.metrics.reservations_open.dec()

    def storage_failed(self, operation: str, exc: BaseException) -> None:
        self.metrics.storage_errors.labels(operation).inc()
        log.warning("storage error", operation=operation, error=repr(exc),
                    on_storage_error=self.policy.on_storage_error)


def _tokens(meter: Any, call: ModelCall | None) -> tuple[int, int]:
    """The answer's (input, output) tokens: the upstream's counts, or estimates."""
    used_in = meter.input_tokens
    if used_in is None:
        used_in = estimate_tokens((call.system, call.prompt)) if call is not None else 0
    used_out = meter.output_tokens
    if used_out is None:
        used_out = meter.estimated_output_tokens()
    return used_in, used_out
