"""Steps 3, 4, 6 and 10: assess and decide what to do with a caller, reserve
its quota, and after the answer settle what it really cost and feed it back
into the caller's risk state. Storage failures go to `StorageFaults`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from guardgate.apis.base import ModelCall
from guardgate.challenge.gate import CLEARANCE, Passed
from guardgate.decide import Decider, Decision
from guardgate.errors import Denied, RateLimited
from guardgate.exchange import Exchange
from guardgate.faults import StorageFaults
from guardgate.identity import Identity
from guardgate.metrics import Metrics
from guardgate.policy.model import Policy
from guardgate.quota import Demand, Quotas, Reservation, Subject, estimate_input
from guardgate.risk.engine import Assessment, RiskEngine
from guardgate.store import StorageError, Store

if TYPE_CHECKING:
    from guardgate.treatment import Treatment


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

    @property
    def score(self) -> float | None:
        return None if self.assessment is None else round(self.assessment.score, 4)

    @property
    def observed(self) -> bool:
        """Its answer is read: for quota settlement, the risk state or a clearance."""
        return (self.reservation is not None or self.assessment is not None
                or self.passed is not None)

    @property
    def clearance(self) -> list[tuple[bytes, bytes]]:
        """The clearance a solution bought, handed back with the answer."""
        passed = self.passed
        if passed is None or not passed.token:
            return []
        return [(CLEARANCE, passed.token.encode("ascii"))]

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """What the answer carries for the caller: rate-limit fields and a clearance."""
        headers = self.reservation.headers if self.reservation is not None else []
        return [*headers, *self.clearance]


class Admission:
    def __init__(self, policy: Policy, store: Store, metrics: Metrics, faults: StorageFaults,
                 treatments: Mapping[str, Treatment] | None = None) -> None:
        self.policy = policy
        self.store = store
        self.metrics = metrics
        self.faults = faults
        self.decider = Decider(policy, treatments)
        self.quotas = Quotas(policy, store) if policy.quotas else None
        self.shadow = policy.mode == "shadow"
        self._ramp = policy.new_principals
        self._first_seen = store.first_seen() if self._ramp is not None else None
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
        """What ``call`` may cost at worst: its input, and every answer it may
        be billed for (prompts times n or best_of) at its output limit. Token
        quotas reserve it, and so does a clearance's output-token budget."""
        if call is None:
            return Demand()
        output = (call.max_tokens or self.policy.default_max_tokens) * call.answers
        return Demand(estimate_input(call), output)

    async def assess(self, ex: Exchange) -> None:
        """Steps 3 and 4: the ticket of the request, what is done with it."""
        assert ex.identity is not None
        ex.ticket = await self._ticket(ex.identity, ex.call, observed=not ex.unrouted)

    async def _ticket(self, identity: Identity, call: ModelCall | None, *,
                      observed: bool = True) -> Ticket:
        """Overrides first, then the risk engine's tier. A request on a path
        that is no route (an embeddings call, say, read by the nearest API's
        parser) says nothing of its caller: it gets the tier its caller is
        in, and is not scored."""
        decision = await self._runtime_override(identity)
        if decision is None:
            decision = self.decider.override(identity)
        if decision is not None:
            self.metrics.count_decision(decision.tier, decision.action)
            return Ticket(decision)
        if self.risk is None or (call is None and observed):
            return Ticket(self.decider.normal)
        try:
            if not observed or call is None:
                decision = self.decider.for_tier(await self.risk.tier_of(identity.principal))
                self.metrics.count_decision(decision.tier, decision.action)
                return Ticket(decision)
            assessment, taken = await self._assess_and_take(identity, call)
        except StorageError as exc:
            self.faults.failed("assess", exc)
            self.faults.refuse_if_closed(exc)
            return Ticket(self.decider.normal)
        decision = self.decider.for_tier(assessment.tier)
        self.metrics.count_decision(decision.tier, decision.action)
        return Ticket(decision, assessment, reservation=taken)

    async def _assess_and_take(self, identity: Identity, call: ModelCall
                               ) -> tuple[Assessment, Reservation | None]:
        """The request's assessment and, with quotas, what its own fixed
        windows and slots hold (`Quotas.take_own`), taken at the same time:
        on Redis, both in one round trip. What was taken is checked against
        the tier's quota factor in `admit`, and released if the request
        goes no further."""
        assert self.risk is not None
        now = time.time()
        if self.quotas is None:
            return await self.risk.assess(identity, call, now), None
        subject = _subject(identity)
        taking = self.quotas.take_own(subject, self.demand(call))
        if not self.store.remote:
            taken = await taking
            try:
                return await self.risk.assess(identity, call, now), self._opened(taken)
            except BaseException:
                await self.quotas.release(taken, refund=True)
                raise
        early = asyncio.ensure_future(taking)  # its scripts join the assessment's
        try:
            assessment = await self.risk.assess(identity, call, now)
        except BaseException:
            await self._abandon(early)
            raise
        try:
            taken = await early
        except StorageError as exc:
            self.faults.failed("reserve", exc)
            self.faults.refuse_if_closed(exc)
            return assessment, None
        return assessment, self._opened(taken)

    def _opened(self, held: Reservation) -> Reservation:
        self.metrics.reservations_open.inc()
        return held

    async def _abandon(self, early: asyncio.Future[Reservation]) -> None:
        """What was taken for a request whose assessment failed, given back."""
        try:
            taken = await early
        except (StorageError, asyncio.CancelledError):
            return  # nothing held: a failed take undoes itself
        await self._release(taken)

    async def _runtime_override(self, identity: Identity) -> Decision | None:
        try:
            actions = await self.overrides.all()
        except StorageError as exc:
            self.faults.failed("overrides", exc)
            return None
        action = actions.get(identity.principal) if actions else None
        return self.decider.runtime(action) if action is not None else None

    async def admit(self, ex: Exchange) -> None:
        """Step 6: refuse a denied caller, reserve the quotas of the others.
        Raises `Denied` or `RateLimited` (not in shadow mode)."""
        ticket, identity, call = ex.ticket, ex.identity, ex.call
        assert ticket is not None and identity is not None
        decision = ticket.decision
        # What the assessment took early is finished here, or given back.
        taken, ticket.reservation = ticket.reservation, None
        if decision.deny or self.quotas is None or decision.allow:
            if taken is not None:
                await self._give_back(taken)
            if decision.deny:
                ticket.refused = True
                if not self.shadow:
                    raise Denied("Access to this API has been denied.", reason=decision.reason)
                ticket.would = "block"
            return
        try:
            factor = decision.quota_factor * await self._age_factor(identity)
            ticket.reservation = await self.quotas.reserve(
                _subject(identity), self.demand(call), factor, taken=taken)
        except RateLimited as refused:
            self._closed(taken)
            self.metrics.quota_decisions.labels(refused.quota, "refused").inc()
            ticket.refused = True
            if not self.shadow:
                raise
            ticket.would = "throttle"
        except StorageError as exc:
            self._closed(taken)
            self.faults.failed("reserve", exc)
            self.faults.refuse_if_closed(exc)
        else:
            if taken is None:
                self.metrics.reservations_open.inc()
            for charge in ticket.reservation.charges:
                self.metrics.quota_decisions.labels(charge.quota.name, "allowed").inc()

    def _closed(self, taken: Reservation | None) -> None:
        if taken is not None:  # undone by the refusal
            self.metrics.reservations_open.dec()

    async def _give_back(self, taken: Reservation) -> None:
        try:
            await self._release(taken)
        finally:
            self.metrics.reservations_open.dec()

    async def _release(self, taken: Reservation) -> None:
        """What was taken early, refunded: the request goes no further."""
        assert self.quotas is not None
        try:
            await self.quotas.release(taken, refund=True)
        except StorageError as exc:
            self.faults.failed("settle", exc)

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

    async def settle(self, ex: Exchange) -> None:
        """Step 10: the reservation and the risk state, once the answer ended."""
        ticket = ex.ticket
        if ticket is None or (ticket.reservation is None and ticket.assessment is None):
            return  # nothing reserved, nothing to learn
        await self._settle(ticket, ex.answered, ex.meter, reached=ex.reached, call=ex.call,
                           status=ex.status, bounded=not ex.unrouted)

    async def _settle(
        self,
        ticket: Ticket,
        answered: bool,
        meter: Any | None,
        *,
        reached: bool = True,
        call: ModelCall | None = None,
        status: int = 200,
        bounded: bool = True,
    ) -> None:
        """Settle against the real usage once the upstream answered. A request
        that never reached the upstream is refunded; one that reached it but
        got no answer (timeout, client gone) keeps what it reserved. The risk
        state learns the tier and, for an answer the caller was allowed, its
        token counts: in shadow mode a request that would have been refused
        counts as refused, so shadow and enforce keep the same state.
        ``bounded``: the call is a model call of its API, so an answer
        without usage costs what it reserved (not one on an unknown path,
        an embeddings call read by a chat parser)."""
        held, ticket.reservation = ticket.reservation, None  # settled once, whatever happens
        used = measured = None
        try:
            if answered and meter is not None:
                reserved = held.demand.output_tokens if held is not None and bounded else 0
                used = _tokens(meter, call, reserved, 200 <= status < 300)
                # The risk state learns what the answer was (the upstream's
                # count, or the text's size), never what was reserved for it.
                measured = (used[0], meter.measured_output())
            if ticket.assessment is not None and self.risk is not None:
                allowed = status < 400 and not ticket.refused
                try:
                    await self.risk.record(ticket.assessment, measured if allowed else None)
                except StorageError as exc:
                    self.faults.failed("record", exc)
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
        except StorageError as exc:
            self.faults.failed("settle", exc)
        finally:
            self.metrics.reservations_open.dec()


def _tokens(meter: Any, call: ModelCall | None, reserved: int, ok: bool) -> tuple[int, int]:
    """The answer's (input, output) tokens: the upstream's counts, or what
    was reserved and estimated (`Meter.billed_output`)."""
    used_in = meter.input_tokens
    if used_in is None:
        used_in = estimate_input(call) if call is not None else 0
    return used_in, meter.billed_output(reserved, ok)


def _subject(identity: Identity) -> Subject:
    return Subject(identity.principal, identity.client_ip, identity.ip_prefix, identity.org)
