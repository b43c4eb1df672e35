"""One request's state as it moves down the pipeline.

Each step reads what the steps before it wrote here and adds its own part:
identify the caller, read the call, the ticket admission issued, the answer's
path back, the upstream's status and what reached the client. Nothing on it
is shared between requests.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from guardgate.types import Body, Scope, Send

if TYPE_CHECKING:
    from guardgate.admit import Ticket
    from guardgate.apis.base import Adapter, ModelCall
    from guardgate.identity import Identity
    from guardgate.upstream import Forwarder


class Exchange:
    """What the steps of one request learn about it; never shared."""

    __slots__ = (
        "adapter",
        "answered",
        "began",
        "body",
        "bytes_in",
        "bytes_out",
        "call",
        "client_send",
        "complete",
        "deferred",
        "error",
        "gone",
        "headers",
        "identity",
        "meter",
        "reached",
        "refusal",
        "request_id",
        "scope",
        "send",
        "started",
        "status",
        "ticket",
        "unrouted",
        "upstream",
        "upstream_latency",
        "wrapped",
    )

    def __init__(self, request_id: bytes, send: Send, scope: Scope | None = None,
                 headers: dict[bytes, bytes] | None = None) -> None:
        self.request_id = request_id
        self.send = send  # the answer's way to the client, wrapped by the steps that read it
        self.client_send = send  # the client itself, past every wrapper
        self.scope: Scope = scope if scope is not None else {}
        self.headers: dict[bytes, bytes] = headers if headers is not None else {}
        self.began = time.perf_counter()
        self.identity: Identity | None = None
        self.adapter: Adapter | None = None  # a model route's API, None for pass-through
        self.unrouted = False  # not scored: a path that is no route, or a deferred answer
        self.deferred = False  # asks for an answer kept upstream (a stored one, a batch)
        self.body: Body = b""
        self.bytes_in = 0
        self.call: ModelCall | None = None
        self.ticket: Ticket | None = None
        self.upstream: Forwarder | None = None
        self.meter: Any | None = None  # reads the answer's usage
        self.wrapped = False   # the answer path adds the quota and clearance headers
        self.status = 0
        self.bytes_out = 0
        self.started = False   # the response start went to the client
        self.answered = False  # the upstream's own response started
        self.complete = False  # the last body message went to the client
        self.gone = False      # the client disconnected and the exchange was cancelled
        self.reached = True    # the upstream may have seen the request
        self.upstream_latency: float | None = None
        self.error: str | None = None  # private: what went wrong, for the log line
        self.refusal: str | None = None  # the gateway's refusal: throttle, block, challenge

    async def reply(
        self,
        status: int,
        body: bytes,
        headers: list[tuple[bytes, bytes]] | None = None,
        content_type: bytes = b"application/json",
        *,
        direct: bool = False,
    ) -> None:
        """Answer with a body of the gateway's own; ``direct``: straight to the
        client, past the answer path's wrappers."""
        send = self.client_send if direct else self.send
        all_headers = [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", self.request_id),
            *(headers or ()),
        ]
        self.status = status
        self.started = True
        await send({"type": "http.response.start", "status": status, "headers": all_headers})
        self.bytes_out += len(body)
        self.complete = True
        await send({"type": "http.response.body", "body": body})

    def drop_header(self, name: bytes) -> None:
        """The request goes upstream without header ``name``."""
        headers = self.scope["headers"]
        if any(k == name for k, _ in headers):
            self.scope = {**self.scope, "headers": [(k, v) for k, v in headers if k != name]}

    @property
    def action(self) -> str | None:
        """What was done with the request, as logs name it."""
        if self.refusal is not None:
            return self.refusal
        ticket = self.ticket
        if ticket is None:
            return None
        if ticket.would is not None:
            return "would_" + ticket.would
        return ticket.decision.action

    def summary(self, version: str, took: float) -> dict[str, Any]:
        """The access log line's fields."""
        ticket = self.ticket
        identity = self.identity
        latency = self.upstream_latency
        return {
            "request_id": self.request_id.decode("latin-1"),
            "method": self.scope.get("method"),
            "path": self.scope.get("path"),
            "status": self.status,
            "principal": identity.principal if identity is not None else None,
            "client_ip": identity.client_ip if identity is not None else None,
            "api": self.adapter.name if self.adapter is not None else None,
            "latency_ms": round(took * 1000, 3),
            "upstream_ms": None if latency is None else round(latency * 1000, 3),
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "tier": ticket.decision.tier if ticket is not None else None,
            "action": self.action,
            "score": ticket.score if ticket is not None else None,
            "challenge": (
                ticket.passed.outcome if ticket is not None and ticket.passed else None
            ),
            "reasons": ticket.reasons if ticket is not None and not ticket.decision.allow
            else None,
            "error": self.error,
            "policy": version,
        }
