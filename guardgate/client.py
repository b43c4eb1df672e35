"""The client side of guardgate's challenges: an auth that solves them, for
any httpx or httpx2 client and so for the OpenAI and Anthropic SDKs::

    import httpx2
    from anthropic import Anthropic
    from openai import OpenAI
    from guardgate.client import ChallengeAuth

    gpt = OpenAI(http_client=httpx2.Client(auth=ChallengeAuth()))
    claude = Anthropic(http_client=httpx2.Client(auth=ChallengeAuth()))

When the gateway answers 401 with ``WWW-Authenticate: GuardGate-PoW``, the
request is sent again with ``GuardGate-Solution``; the clearance the answer
carries (``GuardGate-Clearance``) goes on every later request until the
gateway asks again.

One ``ChallengeAuth`` is both an ``httpx.Auth`` and an ``httpx2.Auth`` (when
httpx2 is installed): the two libraries drive an auth through the same
generator protocol and differ only in the base class their clients check.
It works with their sync and async clients alike (the async ones solve in a
worker thread, leaving the event loop free), and one object may serve
several clients, which then share its clearance.
"""

from __future__ import annotations

import re
import threading
from collections.abc import AsyncGenerator, Generator
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import httpx

from guardgate.challenge.puzzle import solve
from guardgate.challenge.tokens import TokenError, read_difficulty

if TYPE_CHECKING:
    from httpx2 import Auth as _Httpx2Auth
else:
    try:
        from httpx2 import Auth as _Httpx2Auth
    except ImportError:  # httpx2 is optional: without it the auth serves httpx
        _Httpx2Auth = object
    if _Httpx2Auth is httpx.Auth:  # httpx2.alias_httpx() made them one class
        _Httpx2Auth = object

__all__ = ["ChallengeAuth", "ChallengeTooHard", "solve"]

_CHALLENGE = re.compile(
    r'GuardGate-PoW\s+challenge="(?P<token>[A-Za-z0-9._-]+)"',
    re.IGNORECASE,
)

# The request and response of whichever library drives the flow: the flow
# reads only ``headers`` and ``status_code``, which both spell alike.
_Request = Any
_Response = Any


class ChallengeTooHard(Exception):
    """The gateway asked for more work than this client agreed to do."""


# The two bases type their flows with their own Request and Response, so the
# flows they define apart from the ones overridden here differ in type only.
class ChallengeAuth(httpx.Auth, _Httpx2Auth):  # type: ignore[misc]
    """Solves guardgate challenges and reuses the clearances they buy.

    ``max_difficulty`` bounds the work the client agrees to do (about
    2^difficulty hashes); ``attempts`` bounds how often one request may be
    challenged in a row.
    """

    requires_request_body = True  # a challenged request is sent again, body included

    def __init__(self, max_difficulty: float = 26, attempts: int = 3) -> None:
        self.max_difficulty = max_difficulty
        self.attempts = attempts
        self.clearance: str | None = None
        self._lock = threading.Lock()

    def _prepare(self, request: _Request) -> None:
        request.headers.pop("GuardGate-Solution", None)
        with self._lock:
            clearance = self.clearance
        if clearance:
            request.headers["GuardGate-Clearance"] = clearance

    def _remember(self, response: _Response) -> None:
        issued = response.headers.get("GuardGate-Clearance")
        if issued:
            with self._lock:
                self.clearance = issued

    def _challenge(self, response: _Response) -> tuple[str, float] | None:
        """The challenge in ``response`` to solve, if any; a clearance it
        carries is kept first."""
        self._remember(response)
        if response.status_code != 401:
            return None
        match = _CHALLENGE.search(response.headers.get("WWW-Authenticate", ""))
        if match is None:
            return None
        try:
            # The difficulty signed into the token, not the header's rounding of it.
            difficulty = read_difficulty(match["token"])
        except TokenError:
            return None  # not a challenge this client can read: the 401 stands
        if difficulty > self.max_difficulty:
            raise ChallengeTooHard(
                f"the gateway asks for difficulty {difficulty:g}, above {self.max_difficulty:g}"
            )
        with self._lock:
            self.clearance = None  # it no longer holds
        return match["token"], difficulty

    def _solved(self, request: _Request, solution: str) -> _Request:
        request.headers.pop("GuardGate-Clearance", None)
        request.headers["GuardGate-Solution"] = solution
        return request

    # The base classes read the body for ``requires_request_body`` in the
    # flows overridden here, so these read it themselves.

    def sync_auth_flow(self, request: _Request) -> Generator[_Request, _Response, None]:
        request.read()
        self._prepare(request)
        response = yield request
        for _ in range(self.attempts):
            challenge = self._challenge(response)
            if challenge is None:
                return
            response = yield self._solved(request, solve(*challenge))
        self._remember(response)

    async def async_auth_flow(self, request: _Request) -> AsyncGenerator[_Request, _Response]:
        await request.aread()
        self._prepare(request)
        response = yield request
        for _ in range(self.attempts):
            challenge = self._challenge(response)
            if challenge is None:
                return
            solution = await anyio.to_thread.run_sync(solve, *challenge)
            response = yield self._solved(request, solution)
        self._remember(response)
