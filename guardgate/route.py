"""Step 2, route: which API a request is, and its body read (bounded) and
parsed once into a `ModelCall` by that API's adapter. Anything else passes
through, its body relayed as it arrives.
"""

from __future__ import annotations

from collections.abc import Mapping

from guardgate.apis import ADAPTERS, Adapter
from guardgate.apis.base import decode
from guardgate.body import read_body
from guardgate.exchange import Exchange
from guardgate.policy.model import Policy
from guardgate.types import Receive


class Router:
    """The policy's model routes, compiled once."""

    def __init__(self, policy: Policy, *, parse_calls: bool) -> None:
        self.adapters: Mapping[str, Adapter] = {
            route.path: ADAPTERS[route.api] for route in policy.routes
        }
        self.max_body = policy.max_body
        # Some step of this policy reads the `ModelCall`. When none does, a
        # model route's body is only checked to be a JSON object.
        self.parse_calls = parse_calls

    def route(self, ex: Exchange) -> None:
        """The request's API. Model APIs are POSTs; other methods on their
        paths pass through."""
        if ex.scope["method"] == "POST":
            ex.adapter = self.adapters.get(ex.scope["path"])

    async def read(self, ex: Exchange, receive: Receive) -> None:
        """The body, whole for a model call (and parsed), streamed otherwise."""
        adapter = ex.adapter
        body = await read_body(receive, ex.headers, self.max_body, buffer=adapter is not None)
        ex.body = body
        if not isinstance(body, bytes):
            return
        ex.bytes_in = len(body)
        if adapter is None:
            return
        if self.parse_calls:
            ex.call = adapter.parse(body)
        else:
            decode(body)
