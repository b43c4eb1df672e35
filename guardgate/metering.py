"""The response side of quotas: rate-limit headers on the way out, and the
answer's token usage read as it streams past (pipeline steps 9 and 10)."""

from __future__ import annotations

from typing import Any

from guardgate.types import Message, Send


class MeteredSend:
    """Wraps ``send``: adds headers to the response start and feeds every
    body chunk through a usage meter, which may drop the usage event the
    gateway asked for on the client's behalf."""

    __slots__ = ("_headers", "_rewrites", "_send", "meter")

    def __init__(self, send: Send, headers: list[tuple[bytes, bytes]], meter: Any | None,
                 rewrites: bool) -> None:
        self._send = send
        self._headers = headers
        self.meter = meter
        self._rewrites = rewrites  # the body may change: its length is no longer known

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            # The gateway's rate-limit fields replace the upstream's own, and
            # a body that may change loses its length.
            replaced = {k for k, _ in self._headers}
            if self._rewrites:
                replaced.add(b"content-length")
            headers = [(k, v) for k, v in message.get("headers") or [] if k not in replaced]
            message["headers"] = [*headers, *self._headers]
        elif message["type"] == "http.response.body" and self.meter is not None:
            body = self.meter.feed(message.get("body", b""))
            if not message.get("more_body", False):
                body += self.meter.finish()
            message = {**message, "body": body}
        await self._send(message)
