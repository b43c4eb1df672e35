"""The tarpit transform: each answer of the tier takes longer to arrive.

It slows a harvester without failing a single request: a JSON answer waits
the whole delay before it starts, a stream spreads it over its first events,
so it starts at once (no client timeout trips) and still ends late. It is
the last step on the answer's way out: it paces what the chain sends.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

from pydantic import Field

from guardgate.perturb.degrade import Seconds, Transform, registered
from guardgate.types import Message

__all__ = ["TARPIT_STEPS", "Tarpit", "TarpitDelay"]

TARPIT_STEPS = 20  # a stream's delay is spread over its first events, this many at most

_BOUNDARY = re.compile(rb"\n\r?\n")


@registered(order=80)
class TarpitDelay(Transform):
    """Add this delay to each answer."""

    tarpit: Seconds = Field(description="The delay added to each answer.")


class Tarpit:
    """Spends the tarpit delay on one response; await `pause` before sending each message."""

    __slots__ = ("_json", "_sleep", "_step", "_steps")

    def __init__(
        self,
        seconds: float,
        streaming: bool,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._json = None if streaming else seconds
        self._step = seconds / TARPIT_STEPS
        self._steps = TARPIT_STEPS if streaming else 0
        self._sleep = sleep

    async def pause(self, message: Message) -> None:
        kind = message.get("type")
        if self._json is not None:
            if kind == "http.response.start":
                seconds, self._json = self._json, None
                await self._sleep(seconds)
            return
        if not self._steps or kind != "http.response.body":
            return
        body = message.get("body") or b""
        if not body:
            return
        steps = min(self._steps, max(1, len(_BOUNDARY.findall(body))))
        self._steps -= steps
        await self._sleep(self._step * steps)
