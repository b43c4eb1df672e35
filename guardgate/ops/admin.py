"""The operator API under ``/_guardgate/``, behind the policy's ``admin.token``.

``GET /_guardgate/accounts/{principal}`` explains a caller: its score, tier,
each signal's contribution and the clusters it belongs to, as of its last
assessed request, with its decayed request count as of now.

``POST /_guardgate/accounts/{principal}/revoke`` revokes every clearance the
caller holds (on every replica); its next request is challenged again.

``GET /_guardgate/accounts`` lists the callers with the highest scores (up
to 50), with their tiers; ``DELETE /_guardgate/accounts/{principal}`` resets
a caller: its risk state is forgotten and its clearances revoked.

``GET /_guardgate/intel`` and its neighbours show and move threat
intelligence shared with peers (`guardgate.ops.intel`).

``GET /_guardgate/overrides`` lists the overrides set at runtime;
``PUT /_guardgate/overrides/{principal}`` with ``{"tier": NAME}``,
``{"allow": true}`` or ``{"deny": true}`` sets one, ``DELETE`` removes it.
They are shared by every replica (through Redis) and checked before the
policy's own overrides.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

import orjson

from guardgate.apis import openai_error_body
from guardgate.decide import Decider
from guardgate.intel.service import IntelService
from guardgate.ops import intel as intel_ops
from guardgate.quota import Quotas
from guardgate.risk.engine import RiskEngine
from guardgate.risk.signals import explained
from guardgate.store import StorageError
from guardgate.store.clearances import Clearances
from guardgate.store.overrides import RuntimeOverrides
from guardgate.store.risk import RiskStore

_UNAUTHORIZED = [(b"www-authenticate", b'Bearer realm="guardgate"'), (b"cache-control", b"no-store")]


class Reply:
    """What the operator API answers: status, JSON body, extra headers."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None):
        self.status = status
        self.body = body
        self.headers = headers or []


def _error(status: int, message: str, code: str, headers: list[tuple[bytes, bytes]] | None = None
           ) -> Reply:
    kind = "authentication_error" if status == 401 else "invalid_request_error"
    return Reply(status, openai_error_body(status, message, kind, code), headers)


class Operator:
    def __init__(self, token: str | None, risk: RiskEngine | None,
                 clearances: Clearances | None, overrides: RuntimeOverrides,
                 decider: Decider, quotas: Quotas | None = None,
                 intel: IntelService | None = None) -> None:
        self._quotas = quotas
        self._intel = intel
        self._token = token.encode() if token is not None else None
        self._risk = risk
        self._clearances = clearances
        self._overrides = overrides
        self._decider = decider

    def authorized(self, headers: list[tuple[bytes, bytes]]) -> bool:
        if self._token is None:
            return False
        given = b""
        for name, value in headers:
            if name == b"authorization":
                scheme, _, credentials = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    given = credentials.strip()
                break
        return hmac.compare_digest(given, self._token)

    async def handle(self, path: str, method: str, headers: list[tuple[bytes, bytes]],
                     body: bytes = b"", query: bytes = b"") -> Reply:
        """Answer ``path`` (below /_guardgate/) for an operator."""
        if self._token is None:
            return _error(404, "The operator API is disabled: set admin.token in the policy.",
                          "not_found")
        if not self.authorized(headers):
            return _error(401, "A valid operator token is required.", "invalid_token",
                          _UNAUTHORIZED)
        try:
            if path == "intel" or path.startswith("intel/"):
                return await self._intel_reply(path, method, query, body)
            return await self._route(path, method, body)
        except StorageError:
            return _unavailable()

    async def _intel_reply(self, path: str, method: str, query: bytes, body: bytes) -> Reply:
        status, data, code = await intel_ops.answer(self._intel, path, method, query, body)
        if isinstance(data, bytes):
            return Reply(status, data, [(b"cache-control", b"no-store")])
        if code is None:
            return _ok(data)
        if status == 405:
            return _not_allowed(str(data["allow"]))
        return _error(status, str(data["message"]), code)

    async def _route(self, path: str, method: str, body: bytes) -> Reply:
        if path == "overrides" or path.startswith("overrides/"):
            return await self._override(path[len("overrides/"):], method, body)
        if path in ("accounts", "accounts/"):
            return await self._top(method)
        principal = path[len("accounts/"):]
        if principal.endswith("/revoke"):
            return await self._revoke(principal[: -len("/revoke")], method)
        if method == "DELETE":
            return await self._reset(principal)
        if method != "GET":
            return _not_allowed("GET")
        if not principal:
            return _error(404, "Name a principal: /_guardgate/accounts/{principal}.", "not_found")
        if self._risk is None:
            return _error(404, "Risk scoring is off in this policy (no tiers).", "not_found")
        explained = await explain(self._risk.state, self._risk.clock.half_life, principal)
        if explained is not None:
            quotas = self._quotas
            explained["quotas"] = await quotas.usage(principal) if quotas is not None else []
            if self._clearances is not None:
                explained["clearance_epoch"] = await self._clearances.epoch(principal)
        if explained is None:
            return _error(404, "No risk state for this principal.", "not_found")
        return _ok(explained)

    async def _override(self, principal: str, method: str, body: bytes) -> Reply:
        if not principal:
            if method != "GET":
                return _not_allowed("GET")
            return _ok({"overrides": await self._overrides.all()})
        if method == "DELETE":
            if not await self._overrides.remove(principal):
                return _error(404, "No override is set for this principal.", "not_found")
            return _ok({"principal": principal, "removed": True})
        if method != "PUT":
            return _not_allowed("PUT", "DELETE")
        try:
            action = orjson.loads(body)
        except orjson.JSONDecodeError:
            action = None
        valid = isinstance(action, dict) and self._decider.runtime(action) is not None
        if not valid or len(principal) > 256:
            tiers = ", ".join(sorted(self._decider.tiers)) or "none defined"
            return _error(400, "Expected one of {\"tier\": NAME}, {\"allow\": true}, "
                          f"{{\"deny\": true}}; tiers: {tiers}.", "invalid_request")
        assert isinstance(action, dict)
        await self._overrides.set(principal, action)
        return _ok({"principal": principal, **action})

    async def _top(self, method: str) -> Reply:
        if method != "GET":
            return _not_allowed("GET")
        if self._risk is None:
            return _error(404, "Risk scoring is off in this policy (no tiers).", "not_found")
        return _ok({"accounts": [
            {"principal": principal, "score": round(score, 4),
             "tier": account["tier"] if account is not None else "normal"}
            for principal, score, account in await ranked(self._risk, 50)
        ]})

    async def _reset(self, principal: str) -> Reply:
        if self._risk is None and self._clearances is None:
            return _error(404, "This policy keeps no state about callers.", "not_found")
        if self._risk is not None:
            await self._risk.state.forget(principal)
        if self._clearances is not None:
            await self._clearances.revoke(principal)
        return _ok({"principal": principal, "reset": True})

    async def _revoke(self, principal: str, method: str) -> Reply:
        if method != "POST":
            return _not_allowed("POST")
        if self._clearances is None:
            return _error(404, "This policy has no challenges.", "not_found")
        epoch = await self._clearances.revoke(principal)
        return _ok({"principal": principal, "revoked": True, "epoch": epoch})


def _not_allowed(*methods: str) -> Reply:
    allowed = " or ".join(methods)
    message = f"Only {allowed} is supported here." if len(methods) == 1 else f"Use {allowed} here."
    return _error(405, message, "method_not_allowed", [(b"allow", ", ".join(methods).encode())])


def _unavailable() -> Reply:
    return _error(503, "The state storage is unavailable; retry shortly.",
                  "storage_unavailable", [(b"retry-after", b"1")])


def _ok(data: dict[str, Any]) -> Reply:
    return Reply(200, orjson.dumps(data), [(b"cache-control", b"no-store")])


async def ranked(risk: RiskEngine, count: int
                 ) -> list[tuple[str, float, dict[str, Any] | None]]:
    """The ``count`` callers with the highest scores, highest first: each
    with its score and its explanation (None once its state is gone)."""
    return [(principal, score, await explain(risk.state, risk.clock.half_life, principal))
            for principal, score in await risk.state.top(count)]


async def explain(state: RiskStore, half_life: float, principal: str) -> dict[str, Any] | None:
    peeked = await state.peek(principal)
    if peeked is None:
        return None
    now = time.time()
    last = explained(peeked["last"].encode()) if peeked.get("last") else {}
    updated = float(peeked.get("t") or now)
    requests = float(peeked.get("n") or 0) * 2 ** (-max(0.0, now - updated) / half_life)
    return {
        "principal": principal,
        "tier": peeked.get("tier") or last.get("tier") or "normal",
        "score": last.get("score"),
        "own_score": last.get("own_score"),
        "assessed_at": last.get("at"),
        "first_seen": float(peeked["first"]) if peeked.get("first") else None,
        "last_seen": float(peeked["seen"]) if peeked.get("seen") not in (None, "", "None") else None,
        "recent_requests": round(requests, 3),
        "signals": last.get("signals", []),
        "clusters": last.get("clusters", []),
        "intel": last.get("intel", []),
    }
