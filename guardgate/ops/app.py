"""The operator wing as an ASGI app, mounted by the gateway under
``/_guardgate/``. One is built per policy (and per reload) from what the
gateway hands it: the compiled runtime, the upstream and the store to probe,
metrics, dashboard activity and the access log's writer."""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

import orjson

from guardgate.apis import openai_error_body
from guardgate.apis.base import decode
from guardgate.body import ClientGone, read_body
from guardgate.challenge import page
from guardgate.challenge.gate import FAILED, ChallengeGate
from guardgate.challenge.tokens import TokenError
from guardgate.errors import BadRequest, Challenged, RequestError
from guardgate.exchange import Exchange
from guardgate.faults import unavailable
from guardgate.metrics import CONTENT_TYPE, Metrics
from guardgate.ops import dashboard
from guardgate.ops.admin import Operator
from guardgate.ops.dashboard import Activity
from guardgate.ops.intel import IMPORT_LIMIT
from guardgate.replies import error_body, new_request_id, small_body
from guardgate.runtime import Runtime
from guardgate.store import StorageError, Store
from guardgate.types import Receive, Scope, Send
from guardgate.upstream import Forwarder, forwarded_scheme

OPS_PREFIX = "/_guardgate/"
_OPENAPI = resources.files("guardgate").joinpath("openapi.json").read_bytes()
_HTML = b"text/html; charset=utf-8"
_NO_STORE = (b"cache-control", b"no-store")

LogLine = Callable[[str, dict[str, Any]], None]


class OpsApp:
    def __init__(self, runtime: Runtime, forwarder: Forwarder, store: Store, metrics: Metrics,
                 activity: Activity, log_line: LogLine) -> None:
        self.runtime = runtime
        self.forwarder = forwarder
        self.store = store
        self.metrics = metrics
        self.activity = activity
        self._log_line = log_line
        gate = runtime.gate
        admission = runtime.admission
        self.operator = Operator(runtime.policy.admin.token, admission.risk,
                                 gate.clearances if gate is not None else None,
                                 admission.overrides, admission.decider, admission.quotas,
                                 runtime.intel)
        self._routes = {
            "healthz": self._healthz,
            "readyz": self._readyz,
            "": self._dashboard,
            "login": self._login,
            "openapi.json": self._openapi,
            "metrics": self._metrics,
            "challenge": self._redeem,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"][len(OPS_PREFIX):]
        ex = Exchange(new_request_id(), send, scope, dict(scope["headers"]))
        handler = self._routes.get(path)
        if handler is None and path.startswith(("accounts", "overrides", "intel")):
            handler = self._operator
        if handler is None:
            body = openai_error_body(404, "Unknown operator endpoint.", "not_found_error",
                                     "not_found")
            await ex.reply(404, body)
            return
        await handler(ex, receive)

    async def _healthz(self, ex: Exchange, receive: Receive) -> None:
        await ex.reply(200, b'{"status":"ok"}')

    async def _readyz(self, ex: Exchange, receive: Receive) -> None:
        upstream_ok, storage_ok = await asyncio.gather(self.forwarder.ready(),
                                                       self.store.ready())
        report = {
            "status": "ready" if upstream_ok and storage_ok else "unavailable",
            "upstream": "ok" if upstream_ok else "unreachable",
            "storage": "ok" if storage_ok else "unreachable",
            "policy": self.runtime.version,
        }
        await ex.reply(200 if upstream_ok and storage_ok else 503, orjson.dumps(report))

    async def _openapi(self, ex: Exchange, receive: Receive) -> None:
        await ex.reply(200, _OPENAPI)

    async def _metrics(self, ex: Exchange, receive: Receive) -> None:
        await ex.reply(200, self.metrics.render(), content_type=CONTENT_TYPE)

    async def _operator(self, ex: Exchange, receive: Receive) -> None:
        scope = ex.scope
        body = b""
        path = scope["path"][len(OPS_PREFIX):]
        if scope["method"] in ("PUT", "POST"):
            limit = IMPORT_LIMIT if path == "intel/import" else 16 * 1024
            body = await small_body(receive, ex.headers, limit)
        reply = await self.operator.handle(path, scope["method"], scope["headers"], body,
                                           scope.get("query_string", b""))
        await ex.reply(reply.status, reply.body, reply.headers)

    def _token(self) -> str | None:
        return self.runtime.policy.admin.token

    async def _no_dashboard(self, ex: Exchange) -> None:
        body = openai_error_body(404, "The dashboard needs admin.token in the policy.",
                                 "not_found_error", "not_found")
        await ex.reply(404, body)

    async def _login(self, ex: Exchange, receive: Receive) -> None:
        token = self._token()
        if token is None:
            await self._no_dashboard(ex)
            return
        if ex.scope["method"] != "POST":
            await self._dashboard(ex, receive)
            return
        given = dashboard.login_token(await small_body(receive, ex.headers, 4096))
        if not hmac.compare_digest(given.encode(), token.encode()):
            await ex.reply(401, dashboard.login_page(failed=True), content_type=_HTML)
            return
        cookie = dashboard.admin_cookie(token, self._secure(ex))
        await ex.reply(303, b"", [(b"location", b"/_guardgate/"), (b"set-cookie", cookie)])

    async def _dashboard(self, ex: Exchange, receive: Receive) -> None:
        token = self._token()
        if token is None:
            await self._no_dashboard(ex)
            return
        if not dashboard.authorized(token, ex.headers):
            await ex.reply(200, dashboard.login_page(), content_type=_HTML, headers=[_NO_STORE])
            return
        body = await dashboard.dashboard(self.runtime.policy, self.activity,
                                         self.runtime.admission.risk, self.runtime.intel)
        await ex.reply(200, body, [_NO_STORE], content_type=_HTML)

    def _secure(self, ex: Exchange) -> bool:
        identity = self.runtime.identifier.identify(ex.scope, ex.headers)
        scheme = forwarded_scheme(ex.scope, ex.headers, identity.trusted_peer)
        return page.is_secure(scheme, ex.headers.get(b"host"))

    async def _redeem(self, ex: Exchange, receive: Receive) -> None:
        """POST /_guardgate/challenge {"solution": ...}: the challenge page
        redeems its solution here and gets the clearance as a cookie."""
        gate = self.runtime.gate
        if gate is None:
            body = openai_error_body(404, "Unknown operator endpoint.", "not_found_error",
                                     "not_found")
            await ex.reply(404, body)
            return
        identity = self.runtime.identifier.identify(ex.scope, ex.headers)
        try:
            clearance, token = await self._redemption(ex, receive, gate)
        except RequestError as err:
            await ex.reply(err.status, error_body(None, err), err.headers)
            self._log_line("challenge", {"principal": identity.principal, "status": err.status,
                                         "error": err.reason})
            return
        except ClientGone:
            return
        cookie = page.cookie(token, clearance.expires - clearance.issued, self._secure(ex))
        await ex.reply(200, b'{"status":"ok"}', [(b"set-cookie", cookie), _NO_STORE])
        self._log_line("challenge", {"principal": identity.principal, "status": 200,
                                     "outcome": "solved"})

    async def _redemption(self, ex: Exchange, receive: Receive, gate: ChallengeGate
                          ) -> tuple[Any, str]:
        if ex.scope["method"] != "POST":
            raise BadRequest("POST a solution here.", reason="challenge endpoint: not a POST")
        body = await read_body(receive, ex.headers, 16 * 1024, buffer=True)
        assert isinstance(body, bytes)
        solution = decode(body).get("solution")
        if not isinstance(solution, str):
            raise BadRequest("Expected {\"solution\": \"<token>.<nonce>\"}.", param="solution")
        identity = self.runtime.identifier.identify(ex.scope, ex.headers)
        try:
            return await gate.redeem(solution, gate.binding(identity), time.time(), paying=False)
        except TokenError as err:
            raise Challenged(FAILED, reason=f"challenge failed: {err.reason}") from None
        except StorageError as exc:
            self.runtime.faults.failed("challenge", exc)
            raise unavailable(exc) from None
