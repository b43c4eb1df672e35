"""The client side of guardgate's challenges: an ``httpx.Auth`` that solves
them, for any httpx client and so for the OpenAI SDK::

    import httpx
    from openai import OpenAI
    from guardgate.client import ChallengeAuth

    client = OpenAI(http_client=httpx.Client(auth=ChallengeAuth()))

When the gateway answers 401 with ``WWW-Authenticate: GuardGate-PoW``, the
request is sent again with ``GuardGate-Solution``; the clearance the answer
carries (``GuardGate-Clearance``) goes on every later request until the
gateway asks again. Works with ``httpx.Client`` and ``httpx.AsyncClient``
(the async client solves in a worker thread, leaving the event loop free).
"""

from __future__ import annotations

import re
import threading
from collections.abc import AsyncGenerator, Generator

import anyio.to_thread
import httpx

from guardgate.challenge.puzzle import solve
from guardgate.challenge.tokens import TokenError, read_difficulty

__all__ = ["ChallengeAuth", "ChallengeTooHard", "solve"]

_CHALLENGE = re.compile(
    r'GuardGate-PoW\s+challenge="(?P<token>[A-Za-z0-9._-]+)"',
    re.IGNORECASE,
)


class ChallengeTooHard(Exception):
    """The gateway asked for more work than this client agreed to do."""


class ChallengeAuth(httpx.Auth):
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

    def _prepare(self, request: httpx.Request) -> None:
        request.headers.pop("GuardGate-Solution", None)
        with self._lock:
            clearance = self.clearance
        if clearance:
            request.headers["GuardGate-Clearance"] = clearance

    def _remember(self, response: httpx.Response) -> None:
        issued = response.headers.get("GuardGate-Clearance")
        if issued:
            with self._lock:
                self.clearance = issued

    def _challenge(self, response: httpx.Response) -> tuple[str, float] | None:
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

    def _solved(self, request: httpx.Request, solution: str) -> httpx.Request:
        request.headers.pop("GuardGate-Clearance", None)
        request.headers["GuardGate-Solution"] = solution
        return request

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        self._prepare(request)
        response = yield request
        for _ in range(self.attempts):
            challenge = self._challenge(response)
            if challenge is None:
                return
            response = yield self._solved(request, solve(*challenge))
        self._remember(response)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        self._prepare(request)
        response = yield request
        for _ in range(self.attempts):
            challenge = self._challenge(response)
            if challenge is None:
                return
            solution = await anyio.to_thread.run_sync(solve, *challenge)
            response = yield self._solved(request, solution)
        self._remember(response)
