"""Challenge redemptions and clearance meters, in memory or in Redis.

- A challenge is redeemed once: the first redemption of its id wins,
  atomically (``SET NX`` in Redis), on every replica.
- A clearance's budget is metered by id, as quotas are: each request it
  pays for spends one request and reserves its answer's worst case of output
  tokens, both at once and only when both fit; the answer then settles the
  reservation to the tokens it really had. Concurrent requests on one
  clearance cannot pass on the same remainder: spend stays within the
  budget, whatever the burst.
- Each principal has an epoch, written into the clearances it gets; raising
  the epoch revokes all of them at once.

Keys carry the principal as their hash tag, so a script's keys share a slot
in a Redis Cluster.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Any, Literal, Protocol

from guardgate.store.errors import guarded
from guardgate.store.scripts import LuaScript

REDEEM = LuaScript.named("clearance_redeem")
SPEND = LuaScript.named("clearance_spend")
CHARGE = LuaScript.named("clearance_charge")
EPOCH_TTL = 30 * 86400  # far longer than any clearance lives

Spent = Literal["ok", "spent", "revoked"]


def _keys(principal: str) -> str:
    return "{guardgate/clear:" + principal + "}"


class Clearances(Protocol):
    async def redeem(self, principal: str, challenge_id: str, keep: float) -> int | None:
        """The principal's epoch when ``challenge_id`` is redeemed now, None when
        it was redeemed before."""

    async def spend(self, principal: str, clearance_id: str, epoch: int, requests: int,
                    output_tokens: int, keep: float, *, count: int = 1, reserve: int = 0,
                    opening: bool = False) -> Spent:
        """Spend ``count`` requests of a clearance and reserve ``reserve``
        output tokens, when both fit its budget (``requests``,
        ``output_tokens``); nothing is spent when they do not. Its meter is
        created only when ``opening`` (at redemption); a missing meter is a
        spent one."""

    async def charge(self, principal: str, clearance_id: str, output_tokens: int) -> None:
        """Add ``output_tokens`` to a clearance's meter: an answer's tokens
        less what its request reserved, negative for a refund."""

    async def revoke(self, principal: str) -> int:
        """Revoke every clearance of ``principal``; its new epoch."""

    async def epoch(self, principal: str) -> int:
        """The principal's epoch: clearances issued before it was raised are void."""


class MemoryClearances:
    """In this process; expired records are dropped as new ones come."""

    def __init__(self) -> None:
        self._redeemed: OrderedDict[str, float] = OrderedDict()  # id -> kept until
        self._meters: OrderedDict[str, list[float]] = OrderedDict()  # id -> [until, r, t]
        self._epochs: dict[str, int] = {}

    @staticmethod
    def _expire(records: OrderedDict[str, Any], now: float, until: Any) -> None:
        while records:
            first = next(iter(records))
            if until(records[first]) > now:
                break
            del records[first]

    async def redeem(self, principal: str, challenge_id: str, keep: float) -> int | None:
        now = time.monotonic()
        self._expire(self._redeemed, now, lambda until: until)
        key = f"{principal}\0{challenge_id}"
        if key in self._redeemed:
            return None
        self._redeemed[key] = now + keep
        return self._epochs.get(principal, 0)

    async def spend(self, principal: str, clearance_id: str, epoch: int, requests: int,
                    output_tokens: int, keep: float, *, count: int = 1, reserve: int = 0,
                    opening: bool = False) -> Spent:
        if self._epochs.get(principal, 0) != epoch:
            return "revoked"
        now = time.monotonic()
        self._expire(self._meters, now, lambda meter: meter[0])
        meter = self._meters.get(clearance_id)
        if meter is None:
            if not opening:
                return "spent"
            meter = self._meters[clearance_id] = [now + keep, 0, 0]
        # Checked and taken with no await between: atomic in this process.
        tokens = meter[2]
        if meter[1] + count > requests or tokens >= output_tokens \
                or tokens + reserve > output_tokens:
            return "spent"
        meter[1] += count
        meter[2] += reserve
        return "ok"

    async def charge(self, principal: str, clearance_id: str, output_tokens: int) -> None:
        meter = self._meters.get(clearance_id)
        if meter is not None:
            meter[2] += output_tokens

    async def epoch(self, principal: str) -> int:
        return self._epochs.get(principal, 0)

    async def revoke(self, principal: str) -> int:
        self._epochs[principal] = self._epochs.get(principal, 0) + 1
        return self._epochs[principal]


@guarded
class RedisClearances:
    def __init__(self, client: Any, settlements: Any) -> None:
        self._client = client
        self._settlements = settlements

    async def redeem(self, principal: str, challenge_id: str, keep: float) -> int | None:
        tag = _keys(principal)
        epoch = await REDEEM.run(self._client, [f"{tag}:used:{challenge_id}", f"{tag}:epoch"],
                                 [max(1, math.ceil(keep))])
        return None if int(epoch) < 0 else int(epoch)

    async def spend(self, principal: str, clearance_id: str, epoch: int, requests: int,
                    output_tokens: int, keep: float, *, count: int = 1, reserve: int = 0,
                    opening: bool = False) -> Spent:
        tag = _keys(principal)
        result = await SPEND.run(
            self._client, [f"{tag}:k:{clearance_id}", f"{tag}:epoch"],
            [epoch, requests, output_tokens, max(1, math.ceil(keep)), count,
             "1" if opening else "", reserve],
        )
        return "ok" if int(result) == 1 else "spent" if int(result) == 0 else "revoked"

    async def charge(self, principal: str, clearance_id: str, output_tokens: int) -> None:
        await self._settlements.add_call(CHARGE, [f"{_keys(principal)}:k:{clearance_id}"],
                                         [output_tokens])

    async def epoch(self, principal: str) -> int:
        return int(await self._client.get(f"{_keys(principal)}:epoch") or 0)

    async def revoke(self, principal: str) -> int:
        key = f"{_keys(principal)}:epoch"
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, EPOCH_TTL)
            epoch, _ = await pipe.execute()
        return int(epoch)
