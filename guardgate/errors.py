"""guardgate's exceptions.

    GuardGateError
    ├── PolicyError          a policy file failed to load; carries every problem
    ├── RequestError         the client's request is refused; rendered in the API's error shape
    │   ├── BadRequest           400
    │   ├── Challenged           401  the caller's tier asks for proof of work
    │   ├── Denied               403  an override or tier denies the caller
    │   ├── NotFound             404  a POST under a model prefix that is no route, denied
    │   ├── BodyTooLarge         413
    │   ├── RateLimited          429  a quota has no room
    │   ├── StorageUnavailable   503  storage down and on_storage_error: closed
    │   └── UpstreamError        the model endpoint failed us
    │       ├── UpstreamUnavailable  502
    │       └── UpstreamTimeout      504
    └── StorageError         the state backend (memory or Redis) failed

Every error that reaches a client has a public message (what the client
sees) and may have a private reason (what the log line says). Foreign
exceptions (aiohttp, redis, limits, YAML) are translated where they enter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class GuardGateError(Exception):
    """Base class of every error guardgate raises."""


@dataclass(frozen=True, slots=True)
class PolicyProblem:
    """One problem in a policy file: where it is, what is wrong, and a hint."""

    where: str
    message: str
    line: int | None = None
    column: int | None = None
    hint: str | None = None

    def __str__(self) -> str:
        place = self.where or "<policy>"
        if self.line is not None:
            place = f"line {self.line}, column {self.column or 1}: {place}"
        text = f"{place}: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text


class PolicyError(GuardGateError):
    """A policy could not be loaded. ``problems`` lists every problem found."""

    def __init__(self, problems: list[PolicyProblem], source: str = "<policy>") -> None:
        self.problems = problems
        self.source = source
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{lines}")


class RequestError(GuardGateError):
    """A request refused by the gateway itself.

    ``message`` is public and goes to the client; ``reason`` is private and
    goes to the log only.
    """

    status = 400
    type = "invalid_request_error"
    code: str | None = None
    action: str | None = None  # the gateway's refusal, as logs name it

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or []
        self.extra = extra  # more public fields for the error object (a challenge)


class BadRequest(RequestError):
    status = 400
    code = "invalid_request"


class NotFound(RequestError):
    status = 404
    code = "unknown_url"


class BodyTooLarge(RequestError):
    status = 413
    code = "request_too_large"


class Challenged(RequestError):
    """401: solve the challenge in ``extra`` (and ``WWW-Authenticate``) and
    send the request again. ``reason`` says privately why (none held, or
    which check a solution or clearance failed)."""

    status = 401
    type = "authentication_error"
    code = "challenge_required"
    action = "challenge"


class Denied(RequestError):
    status = 403
    type = "permission_error"
    code = "access_denied"
    action = "block"


class RateLimited(RequestError):
    """429: a quota has no room for this request. ``type`` says which kind
    ("requests" or "tokens"), as the OpenAI API does."""

    status = 429
    type = "requests"
    code = "rate_limit_exceeded"
    action = "throttle"
    quota = "unknown"  # the refusing quota's name, for metrics; never shown to the client


class StorageUnavailable(RequestError):
    status = 503
    type = "service_unavailable"
    code = "storage_unavailable"


class UpstreamError(RequestError):
    status = 502
    type = "upstream_error"
    code = "upstream_unavailable"


class UpstreamUnavailable(UpstreamError):
    status = 502
    code = "upstream_unavailable"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


class StorageError(GuardGateError):
    """The state backend failed (connection refused, timeout, script error)."""
