"""Pipeline step 5: the challenge gate.

For a caller whose tier asks for a challenge, a request passes when it
carries a clearance that still holds (``GuardGate-Clearance`` header, or the
browser cookie), or a solution to a challenge issued to this caller
(``GuardGate-Solution: <challenge>.<nonce>``), redeemed once. Anything else
gets a fresh challenge: 401 with ``WWW-Authenticate: GuardGate-PoW``, and the
challenge in the error body. Every way of failing (a forged, tampered,
expired, replayed or under-worked solution, a spent or revoked clearance)
gets the same answer; only the log and the metrics say which check failed.

A clearance's output tokens are metered as quotas are: a request it pays for
reserves its answer's worst case (what `Admission.demand` reserves) before it
is forwarded, and the answer settles the reservation to what it really had.
The budget in force is the lower of the one signed into the clearance and
the one the current policy gives the caller's tier, so a reload that lowers
a budget reaches clearances already issued.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING, Any

from limits import parse_many

from guardgate.challenge import puzzle
from guardgate.challenge.tokens import (
    Binding,
    Challenge,
    Clearance,
    Signer,
    TokenError,
    agent_hash,
    new_id,
)
from guardgate.errors import Challenged, RateLimited
from guardgate.exchange import Exchange
from guardgate.faults import StorageFaults
from guardgate.identity import Identity
from guardgate.metrics import Metrics
from guardgate.policy.model import ChallengeConfig, TierChallenge
from guardgate.store import StorageError, Store

if TYPE_CHECKING:
    from guardgate.apis.base import ModelCall
    from guardgate.quota import Demand

SOLUTION = b"guardgate-solution"
CLEARANCE = b"guardgate-clearance"
COOKIES = ("__Host-guardgate", "guardgate")  # over TLS (or loopback), and plain HTTP

_SKEW = 60.0  # seconds records outlive what they guard, for replicas' clocks
REQUIRED = "Solve the challenge and send the request again."
FAILED = "The challenge was not passed. Solve the new challenge and send the request again."


@dataclass(slots=True)
class Passed:
    """A request the gate let through, and the clearance paying for it."""

    clearance: Clearance
    token: str | None  # a clearance issued now, to hand back; None when one was presented
    outcome: str       # "cleared" (a clearance held) or "solved"
    reserved: int = 0  # output tokens reserved on the clearance, until the answer settles


class ChallengeGate:
    def __init__(self, config: ChallengeConfig, store: Store, metrics: Metrics,
                 demand: Callable[[ModelCall | None], Demand] | None = None) -> None:
        """``demand``: what a model call may cost (`Admission.demand`); its
        output tokens are reserved on the clearance that pays for the call."""
        self.config = config
        self._demand = demand
        self.signer = Signer(config.key_id, config.secret, config.previous)
        self.clearances = store.clearances()
        self.metrics = metrics
        self._limiter = store.limiter("fixed-window")
        self._issue_limits = parse_many(";".join(w.text for w in config.issue_limit))

    async def screen(self, ex: Exchange, faults: StorageFaults, *, shadow: bool) -> None:
        """Step 5, for a caller whose tier asks for a challenge: it passes on
        a clearance or a solution, or `Challenged` is raised. With the
        storage down, ``on_storage_error`` decides: open lets the request
        through unchallenged, closed refuses it."""
        ticket = ex.ticket
        assert ticket is not None and ex.identity is not None
        decision = ticket.decision
        if decision.challenge is None or decision.deny:
            return
        if shadow:
            ticket.would = "challenge"
            return
        try:
            ticket.passed = await self.check(ex.headers, ex.identity, decision.challenge,
                                             self.worst_case(ex))
        except StorageError as exc:
            faults.failed("challenge", exc)
            faults.refuse_if_closed(exc)

    def worst_case(self, ex: Exchange) -> int:
        """The most output tokens a request's answer may have, reserved on
        its clearance; none for a request that is no model call. (A policy
        with challenges reads every model call: see `Runtime.compile`.)"""
        if ex.call is None or self._demand is None:
            return 0
        return self._demand(ex.call).output_tokens

    async def settle(self, ex: Exchange, faults: StorageFaults) -> None:
        """Step 10: the clearance that paid for a request is charged its
        answer's output tokens, and refunded the rest of what it reserved
        (all of it when the request was never forwarded: no answer was read)."""
        passed = ex.ticket.passed if ex.ticket is not None else None
        if passed is None:
            return
        meter = ex.meter
        used = 0
        if meter is not None:
            bound = 0 if ex.unrouted else self.worst_case(ex)
            used = meter.billed_output(bound, 200 <= ex.status < 300)
        try:
            await self.charge(passed, used)
        except StorageError as exc:
            faults.failed("charge", exc)

    @staticmethod
    def binding(identity: Identity) -> Binding:
        return Binding(identity.principal, identity.ip_prefix, agent_hash(identity.user_agent))

    async def check(self, headers: dict[bytes, bytes], identity: Identity,
                    tier: TierChallenge, reserve: int = 0) -> Passed:
        """Let the request through, reserving ``reserve`` output tokens on
        the clearance that pays for it, or raise `Challenged` (or
        `RateLimited` when this caller has been issued too many challenges,
        or when no clearance of its tier could pay for the request)."""
        if reserve > tier.output_tokens:
            raise too_large(tier, reserve)
        binding = self.binding(identity)
        now = time.time()
        failure: str | None = None
        presented = headers.get(CLEARANCE) or cookie(headers.get(b"cookie"), COOKIES)
        if presented:
            try:
                return await self._cleared(presented.decode("latin-1"), binding, now, tier,
                                           reserve)
            except TokenError as err:
                failure = "clearance " + err.reason
        solution = headers.get(SOLUTION)
        if solution:
            try:
                clearance, token = await self.redeem(solution.decode("latin-1"), binding, now,
                                                     tier=tier, reserve=reserve)
                return Passed(clearance, token, "solved", reserve)
            except TokenError as err:
                failure = err.reason
        raise await self.challenge(binding, tier, now, failure)

    async def _cleared(self, token: str, binding: Binding, now: float,
                       tier: TierChallenge, reserve: int) -> Passed:
        clearance = self.signer.open_clearance(token)
        if clearance.expires <= now:
            raise TokenError("expired")
        if clearance.binding != binding:
            raise TokenError("wrong_binding")
        if clearance.difficulty < tier.difficulty:
            # Bought in an easier tier than the caller is in now: pay again.
            raise TokenError("too_easy")
        # A reload's lower budget holds for clearances issued before it.
        spent = await self.clearances.spend(
            binding.principal, clearance.id, clearance.epoch,
            min(clearance.requests, tier.requests),
            min(clearance.output_tokens, tier.output_tokens),
            clearance.expires - now + _SKEW, reserve=reserve,
        )
        if spent != "ok":
            if spent == "spent":
                self.metrics.clearances_spent.inc()
            raise TokenError(spent)
        return Passed(clearance, None, "cleared", reserve)

    async def redeem(self, solution: str, binding: Binding, now: float,
                     *, paying: bool = True, tier: TierChallenge | None = None,
                     reserve: int = 0) -> tuple[Clearance, str]:
        """A new clearance (and its token) for a solution, once; `TokenError`
        names the check that failed. ``paying``: the request carrying the
        solution is the clearance's first, reserving ``reserve`` output
        tokens (not so for the browser page's redemption, which is no model
        request)."""
        try:
            try:
                token, _ = puzzle.split(solution)
            except ValueError:
                raise TokenError("malformed") from None
            challenge = self.signer.open_challenge(token)
            if challenge.expires <= now:
                raise TokenError("expired")
            if challenge.binding != binding:
                raise TokenError("wrong_binding")
            if tier is not None and challenge.difficulty < tier.difficulty:
                raise TokenError("too_easy")  # issued before the caller's tier rose
            if not puzzle.has_work(solution, challenge.difficulty):
                raise TokenError("insufficient_work")
            # Kept well past the challenge's expiry, so that a replica whose
            # clock lags cannot see it unexpired and unredeemed.
            epoch = await self.clearances.redeem(binding.principal, challenge.id,
                                                 challenge.expires - now + _SKEW)
            if epoch is None:
                raise TokenError("replay")
        except TokenError as err:
            self.metrics.challenges_failed.labels(err.reason).inc()
            raise
        requests, output_tokens = challenge.requests, challenge.output_tokens
        if tier is not None:  # issued before a reload lowered the tier's budget
            requests, output_tokens = min(requests, tier.requests), \
                min(output_tokens, tier.output_tokens)
        clearance = Clearance(
            self.signer.key_id, new_id(), now, now + self.config.clearance_ttl, binding, epoch,
            requests, output_tokens, challenge.difficulty,
        )
        opened = await self.clearances.spend(
            binding.principal, clearance.id, epoch, clearance.requests, clearance.output_tokens,
            self.config.clearance_ttl + _SKEW, count=1 if paying else 0,
            reserve=reserve if paying else 0, opening=True,
        )
        if opened != "ok":  # revoked between redemption and now, or a budget too small
            raise TokenError(opened)
        self.metrics.challenges_solved.inc()
        self.metrics.solve_seconds.observe(max(0.0, now - challenge.issued))
        return clearance, self.signer.clearance(clearance)

    async def challenge(self, binding: Binding, tier: TierChallenge, now: float,
                        failure: str | None) -> Challenged | RateLimited:
        """A fresh challenge for ``binding``, unless too many were issued."""
        for item in self._issue_limits:
            for scope in (binding.principal, binding.prefix):
                if not await self._limiter.hit(item, "guardgate", "challenge", scope):
                    return RateLimited(
                        "Too many challenges requested. Please retry later.",
                        reason=f"challenge issue limit {item} for {scope}",
                        headers=[(b"retry-after", str(item.get_expiry()).encode())],
                    )
        challenge = Challenge(
            self.signer.key_id, new_id(), now, now + self.config.ttl, tier.difficulty, binding,
            tier.requests, tier.output_tokens,
        )
        token = self.signer.challenge(challenge)
        self.metrics.challenges_issued.inc()
        header = (f'GuardGate-PoW challenge="{token}", algorithm="sha256", '
                  f'difficulty="{tier.difficulty:g}"')
        return Challenged(
            REQUIRED if failure is None else FAILED,
            reason=f"challenge failed: {failure}" if failure else "challenge required",
            headers=[
                (b"www-authenticate", header.encode("ascii")),
                (b"x-should-retry", b"false"),
                (b"cache-control", b"no-store"),
            ],
            extra={"challenge": describe(token, challenge)},
        )

    async def charge(self, passed: Passed, output_tokens: int) -> None:
        """Settle the reservation of the clearance that paid for an answer to
        the answer's output tokens; once, whatever happens after."""
        difference, passed.reserved = output_tokens - passed.reserved, 0
        if difference:
            await self.clearances.charge(passed.clearance.binding.principal,
                                         passed.clearance.id, difference)


def too_large(tier: TierChallenge, reserve: int) -> RateLimited:
    """A request no clearance could pay for: solving again will not help, so
    the caller is told what would fit rather than challenged in a loop."""
    error = RateLimited(
        f"Request too large for a clearance: it allows {tier.output_tokens} output tokens, "
        f"requested {reserve}. Reduce max_tokens or the number of answers (n, best_of, "
        "prompts).",
        reason=f"clearance budget ({tier.output_tokens} output tokens) can never fit {reserve}",
        headers=[(b"x-should-retry", b"false")],
    )
    error.type = "tokens"
    return error


def describe(token: str, challenge: Challenge) -> dict[str, Any]:
    """The challenge as the error body and the browser page give it."""
    return {
        "token": token,
        "algorithm": "sha256",
        "difficulty": challenge.difficulty,
        "target": f"{puzzle.target(challenge.difficulty):064x}",
        "expires_at": round(challenge.expires, 3),
        "solution_header": "GuardGate-Solution",
        "solution_format": "<token>.<nonce>: SHA-256 of it below target",
    }


def cookie(header: bytes | None, names: tuple[str, ...]) -> bytes | None:
    """The value of the first of ``names`` the Cookie header sets, if any."""
    if not header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header.decode("latin-1"))
    except CookieError:
        return None
    for name in names:
        if name in jar:
            return jar[name].value.encode("latin-1")
    return None
