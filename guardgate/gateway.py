"""GuardGate: the pure-ASGI gateway that runs the pipeline.

One class, two ways to reach the model: ``GuardGate(policy=...)`` forwards
to the policy's HTTP upstream, ``GuardGate(app, policy=...)`` sits in front
of an in-process ASGI app. Everything per request lives in locals and in an
`Exchange`, never on ``self``.
"""

from __future__ import annotations

import asyncio
import hmac
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from guardgate import dashboard as dashboard_page
from guardgate.admin import Operator
from guardgate.admit import Admission, Ticket
from guardgate.apis import ADAPTERS, Adapter, ModelCall, openai_error_body
from guardgate.apis.base import decode
from guardgate.apis.usage import UsageMeter, prepare_stream_usage
from guardgate.body import BodyStream, ClientGone, read_body
from guardgate.challenge import page
from guardgate.challenge.gate import CLEARANCE as CLEARANCE_HEADER
from guardgate.challenge.gate import FAILED, SOLUTION, ChallengeGate, Passed
from guardgate.challenge.tokens import TokenError
from guardgate.dashboard import Activity
from guardgate.disconnect import DisconnectWatch
from guardgate.errors import (
    BadRequest,
    Challenged,
    Denied,
    PolicyError,
    PolicyProblem,
    RateLimited,
    RequestError,
    StorageUnavailable,
    UpstreamError,
    UpstreamUnavailable,
)
from guardgate.exchange import Exchange
from guardgate.identity import Identifier, Identity
from guardgate.logs import cut_response, get_logger, info_writer, quiet_expected_cuts
from guardgate.metering import MeteredSend
from guardgate.metrics import CONTENT_TYPE, Metrics
from guardgate.perturb.send import Perturbation
from guardgate.perturb.watermark import Key
from guardgate.policy import load_policy, minimal_policy
from guardgate.policy.model import Policy, TierChallenge, UpstreamConfig
from guardgate.reload import PolicyWatcher
from guardgate.store import STORAGE_ERRORS, Store
from guardgate.types import ASGIApp, Body, Message, Receive, Scope, Send
from guardgate.upstream import HOP_BY_HOP, AppUpstream, HttpUpstream, hop_by_hop

OPS_PREFIX = "/_guardgate/"
_OPENAPI = resources.files("guardgate").joinpath("openapi.json").read_bytes()
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")

access_log = get_logger("guardgate.access")
log = get_logger("guardgate")


@dataclass(frozen=True, slots=True)
class Runtime:
    """What the request path reads, compiled once per policy."""

    policy: Policy
    adapters: Mapping[str, Adapter]  # path -> adapter, for model routes
    identifier: Identifier
    admission: Admission
    # Request headers not forwarded, by (peer trusted, body streamed). Identity
    # headers only a trusted proxy may set are dropped from anyone else, so
    # the upstream cannot be told them either.
    dropped: Mapping[tuple[bool, bool], frozenset[bytes]]
    # Some step of this policy reads the `ModelCall`. When none does, a model
    # route's body is only checked to be a JSON object, not parsed further.
    parse_calls: bool
    gate: ChallengeGate | None  # step 5, when the policy has challenges
    # Steps 7 and 9 by tier name, for tiers that degrade or mark answers, and
    # the upstreams tiers are rerouted to.
    perturbations: Mapping[str, Perturbation]
    reroutes: Mapping[str, HttpUpstream]
    version: str  # the policy's version as logs and metrics name it

    @classmethod
    def compile(cls, policy: Policy, store: Store, metrics: Metrics,
                pools: Mapping[str, HttpUpstream] | None = None) -> Runtime:
        """``pools``: the reroute upstreams of the policy before, kept where
        their settings did not change."""
        adapters = {route.path: ADAPTERS[route.api] for route in policy.routes}
        admission = Admission(policy, store, metrics)
        identity = policy.identity
        trusted_only = {identity.org_header, identity.created_header} | {
            source.header for source in identity.principal if source.holds == "account"
        }
        untrusted = frozenset(h.encode("latin-1") for h in trusted_only if h)
        dropped = {
            (True, True): _DROP_STREAMED,
            (True, False): _DROP_BUFFERED,
            (False, True): _DROP_STREAMED | untrusted,
            (False, False): _DROP_BUFFERED | untrusted,
        }
        parse_calls = admission.meters_tokens or admission.risk is not None
        gate = ChallengeGate(policy.challenge, store, metrics) if policy.challenge else None
        secret = (policy.watermark_key or "").encode()
        key = Key(secret) if policy.watermark_key else None
        perturbations = {
            tier.name: Perturbation(tier.degrade, key if tier.mark else None, secret)
            for tier in policy.tiers
            if tier.degrade is not None or tier.mark
        }
        reroutes = {}
        for tier in policy.tiers:
            if tier.degrade is not None and tier.degrade.reroute:
                url = tier.degrade.reroute
                config = replace_url(policy.upstream, url)
                kept = (pools or {}).get(url)
                reroutes[url] = kept if kept is not None and kept.config == config \
                    else HttpUpstream(config)
        return cls(policy, adapters, Identifier(identity), admission, dropped, parse_calls, gate,
                   perturbations, reroutes, policy.digest[:12])


class GuardGate:
    """The gateway, as a proxy app or as middleware around ``app``."""

    def __init__(
        self,
        app: ASGIApp | None = None,
        *,
        policy: Policy | str | Path | Mapping[str, Any] | None = None,
        upstream: str | None = None,
    ) -> None:
        if policy is None:
            compiled = minimal_policy(upstream) if upstream else Policy()
        else:
            compiled = _load(policy, upstream, proxy=app is None)
        # A policy read from a file is watched and reloaded when it changes.
        self._upstream_override = upstream
        self._watcher = (
            PolicyWatcher(Path(policy), self.reload) if isinstance(policy, str | Path) else None
        )
        self._retired: list[HttpUpstream] = []
        self._retired_stores: list[Store] = []
        self.app = app
        self.forwarder: HttpUpstream | AppUpstream
        if app is not None:
            self.forwarder = AppUpstream(app)
        elif compiled.upstream is not None:
            self.forwarder = HttpUpstream(compiled.upstream)
        else:
            raise _no_upstream(compiled)
        self.metrics = Metrics()
        quiet_expected_cuts()
        self.store = Store(compiled.storage)
        self.runtime = Runtime.compile(compiled, self.store, self.metrics)
        self.metrics.set_policy(self.runtime.version)
        self._watch = DisconnectWatch()
        self.operator = _operator(compiled, self.runtime)
        self.activity = Activity()
        # Resolved once: the logging configuration in force when the gateway
        # is built is the one it logs with.
        self._log_line = info_writer(access_log.bind())

    @property
    def policy(self) -> Policy:
        return self.runtime.policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if scope["path"].startswith(OPS_PREFIX):
                await self._ops(scope, receive, send)
            else:
                await self._exchange(scope, receive, send)
        elif self.app is not None:
            if kind == "lifespan":
                send = self._closing_on_shutdown(send)
            await self.app(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1003})

    def _closing_on_shutdown(self, send: Send) -> Send:
        """The wrapped app runs the lifespan; the gateway closes its own
        resources (pending settlements, Redis) before shutdown completes."""

        async def relay(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                self._start_watching()
            elif message["type"] == "lifespan.shutdown.complete":
                await self.aclose()
            await send(message)

        return relay

    async def reload(self) -> bool:
        """Load the policy file again and swap it in when it is valid."""
        if self._watcher is None:
            return False
        try:
            policy = _load(self._watcher.path, self._upstream_override, proxy=self.app is None)
        except PolicyError as err:
            self.metrics.policy_reloads.labels("invalid").inc()
            log.error("policy reload refused: the last good policy stays",
                      path=str(self._watcher.path), problems=[str(p) for p in err.problems],
                      policy=self.policy.digest[:12])
            return False
        if policy.digest == self.policy.digest and policy.upstream == self.policy.upstream:
            return True
        self.apply(policy)
        self.metrics.policy_reloads.labels("ok").inc()
        log.info("policy reloaded", path=str(self._watcher.path), policy=policy.digest[:12])
        return True

    def apply(self, policy: Policy) -> None:
        """Swap ``policy`` in. Requests already running keep the one they began with."""
        if policy.storage != self.store.url:
            self._retired_stores.append(self.store)
            self.store = Store(policy.storage)
        if (
            isinstance(self.forwarder, HttpUpstream)
            and policy.upstream is not None
            and policy.upstream != self.forwarder.config
        ):
            # Streams still running on the old pool finish there; it is closed at shutdown.
            self._retired.append(self.forwarder)
            self.forwarder = HttpUpstream(policy.upstream)
        runtime = Runtime.compile(policy, self.store, self.metrics, self.runtime.reroutes)
        kept = set(map(id, runtime.reroutes.values()))
        self._retired.extend(u for u in self.runtime.reroutes.values() if id(u) not in kept)
        self.operator = _operator(policy, runtime)
        self.runtime = runtime
        self.metrics.set_policy(runtime.version)

    async def aclose(self) -> None:
        if self._watcher is not None:
            await self._watcher.stop()
        for old in self._retired:
            await old.close()
        for store in self._retired_stores:
            await store.close()
        await self.forwarder.close()
        for rerouted in self.runtime.reroutes.values():
            await rerouted.close()
        await self.store.close()

    def _start_watching(self) -> None:
        if self._watcher is not None:
            self._watcher.start()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._start_watching()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _ops(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"][len(OPS_PREFIX) :]
        ex = Exchange(_new_request_id())
        if path == "healthz":
            await ex.reply(send, 200, b'{"status":"ok"}')
        elif path == "readyz":
            upstream_ok, storage_ok = await asyncio.gather(
                self.forwarder.ready(), self.store.ready()
            )
            report = {
                "status": "ready" if upstream_ok and storage_ok else "unavailable",
                "upstream": "ok" if upstream_ok else "unreachable",
                "storage": "ok" if storage_ok else "unreachable",
                "policy": self.runtime.version,
            }
            await ex.reply(send, 200 if upstream_ok and storage_ok else 503, orjson.dumps(report))
        elif path in ("", "login"):
            await self._dashboard(scope, receive, send, ex, path)
        elif path == "openapi.json":
            await ex.reply(send, 200, _OPENAPI)
        elif path == "metrics":
            body = self.metrics.render()
            await ex.reply(send, 200, body, content_type=CONTENT_TYPE)
        elif path.startswith(("accounts", "overrides")):
            body = b""
            if scope["method"] in ("PUT", "POST"):
                body = await _small_body(receive, dict(scope["headers"]), 16 * 1024)
            reply = await self.operator.handle(path, scope["method"], scope["headers"], body)
            await ex.reply(send, reply.status, reply.body, reply.headers)
        elif path == "challenge" and self.runtime.gate is not None:
            await self._redeem_for_browser(scope, receive, send, ex, self.runtime.gate)
        else:
            body = openai_error_body(404, "Unknown operator endpoint.", "not_found_error", "not_found")
            await ex.reply(send, 404, body)

    async def _dashboard(
        self, scope: Scope, receive: Receive, send: Send, ex: Exchange, path: str
    ) -> None:
        token = self.policy.admin.token
        headers: dict[bytes, bytes] = dict(scope["headers"])
        html_type = b"text/html; charset=utf-8"
        if token is None:
            body = openai_error_body(404, "The dashboard needs admin.token in the policy.",
                                     "not_found_error", "not_found")
            await ex.reply(send, 404, body)
            return
        if path == "login" and scope["method"] == "POST":
            given = dashboard_page.login_token(await _small_body(receive, headers, 4096))
            if not hmac.compare_digest(given.encode(), token.encode()):
                await ex.reply(send, 401, dashboard_page.login_page(failed=True),
                               content_type=html_type)
                return
            identity = self.runtime.identifier.identify(scope, headers)
            secure = page.is_secure(_forwarded_scheme(scope, headers, identity),
                                    headers.get(b"host"))
            await ex.reply(send, 303, b"", [(b"location", b"/_guardgate/"),
                                            (b"set-cookie", dashboard_page.admin_cookie(
                                                token, secure))])
            return
        if not dashboard_page.authorized(token, headers):
            await ex.reply(send, 200, dashboard_page.login_page(), content_type=html_type,
                           headers=[(b"cache-control", b"no-store")])
            return
        body = await dashboard_page.dashboard(self.policy, self.activity,
                                              self.runtime.admission.risk)
        await ex.reply(send, 200, body, [(b"cache-control", b"no-store")],
                       content_type=html_type)

    async def _redeem_for_browser(
        self, scope: Scope, receive: Receive, send: Send, ex: Exchange, gate: ChallengeGate
    ) -> None:
        """POST /_guardgate/challenge {"solution": ...}: the challenge page
        redeems its solution here and gets the clearance as a cookie."""
        headers: dict[bytes, bytes] = dict(scope["headers"])
        identity = self.runtime.identifier.identify(scope, headers)
        try:
            if scope["method"] != "POST":
                raise BadRequest("POST a solution here.", reason="challenge endpoint: not a POST")
            body = await read_body(receive, headers, 16 * 1024, buffer=True)
            assert isinstance(body, bytes)
            solution = decode(body).get("solution")
            if not isinstance(solution, str):
                raise BadRequest("Expected {\"solution\": \"<token>.<nonce>\"}.", param="solution")
            try:
                clearance, token = await gate.redeem(solution, gate.binding(identity), time.time(),
                                                     paying=False)
            except TokenError as err:
                raise Challenged(FAILED, reason=f"challenge failed: {err.reason}") from None
            except STORAGE_ERRORS as exc:
                self.runtime.admission.storage_failed("challenge", exc)
                raise StorageUnavailable(
                    "The service is temporarily unavailable. Please retry shortly.",
                    reason=f"storage unavailable: {exc!r}", headers=[(b"retry-after", b"1")],
                ) from None
        except RequestError as err:
            await ex.reply(send, err.status, _error_body(None, err), err.headers)
            self._log_line("challenge", {"principal": identity.principal, "status": err.status,
                                         "error": err.reason})
            return
        except ClientGone:
            return
        secure = page.is_secure(_forwarded_scheme(scope, headers, identity), headers.get(b"host"))
        cookie = page.cookie(token, clearance.expires - clearance.issued, secure)
        await ex.reply(send, 200, b'{"status":"ok"}',
                       [(b"set-cookie", cookie), (b"cache-control", b"no-store")])
        self._log_line("challenge", {"principal": identity.principal, "status": 200,
                                     "outcome": "solved"})

    async def _exchange(self, scope: Scope, receive: Receive, send: Send) -> None:
        rt = self.runtime
        began = time.perf_counter()
        headers: dict[bytes, bytes] = dict(scope["headers"])
        rid = headers.get(b"x-request-id")
        ex = Exchange(rid if rid and _REQUEST_ID.fullmatch(rid) else _new_request_id())
        identity = rt.identifier.identify(scope, headers)
        # Model APIs are POSTs; other methods on their paths pass through.
        adapter = rt.adapters.get(scope["path"]) if scope["method"] == "POST" else None
        error: str | None = None
        bytes_in = 0
        ticket: Ticket | None = None
        meter: Any | None = None
        reached = True
        refusal: str | None = None
        call: ModelCall | None = None
        upstream: HttpUpstream | None = None  # a tier rerouted elsewhere
        wrapped = False  # the answer goes through MeteredSend, which adds the clearance
        try:
            if len(headers) != len(scope["headers"]):
                _refuse_repeated_credentials(scope["headers"])
            body = await read_body(receive, headers, rt.policy.max_body, buffer=adapter is not None)
            if isinstance(body, bytes):
                bytes_in = len(body)
            if adapter is not None:
                assert isinstance(body, bytes)
                if rt.parse_calls:
                    call = adapter.parse(body)
                else:
                    decode(body)
            if rt.admission.idle:
                ticket = rt.admission.admitted
            else:
                ticket = await rt.admission.assess(identity, call)
                challenge = ticket.decision.challenge
                if challenge is not None and rt.gate is not None and not ticket.decision.deny:
                    if rt.admission.shadow:
                        ticket.would = "challenge"
                    else:
                        ticket.passed = await _through_gate(rt, headers, identity, challenge)
                await rt.admission.admit(ticket, identity, call)
                decision = ticket.decision
                if call is not None and decision.tier in rt.perturbations and not decision.deny:
                    if rt.admission.shadow:
                        ticket.would = ticket.would or ("degrade" if decision.degrade else "mark")
                    else:
                        perturbation = rt.perturbations[decision.tier]
                        body, send = perturbation.apply(call, body, send, self.metrics)
                        reroute = decision.degrade.reroute if decision.degrade else None
                        if reroute:
                            upstream = rt.reroutes[reroute]
            if (
                ticket.reservation is not None
                or ticket.assessment is not None
                or ticket.passed is not None
            ):
                wrapped = True
                body, send, meter = _metered(ticket, call, body, send, rt.admission.meters_tokens)
                if meter is not None:
                    # Usage is read from the answer's bytes: ask for them uncompressed.
                    scope = _without_header(scope, b"accept-encoding")
            await self._forward(scope, headers, receive, send, ex, identity, call, body, upstream)
        except RequestError as err:
            error = err.reason
            reached = not isinstance(err, UpstreamUnavailable)
            if isinstance(err, UpstreamError):
                self.metrics.upstream_failures.labels(
                    "unavailable" if isinstance(err, UpstreamUnavailable) else "timeout").inc()
            if isinstance(err, RateLimited):
                refusal = "throttle"
            elif isinstance(err, Denied):
                refusal = "block"
            elif isinstance(err, Challenged):
                refusal = "challenge"
            # Past the response start there is no status left to send: the
            # connection is closed without a clean end, as for an upstream
            # failure mid-response.
            if ticket is not None and not wrapped:
                # Refused after a solution was redeemed (a quota, a denial): the
                # clearance it bought still goes back, or the work is lost.
                err.headers = [*err.headers, *_clearance(ticket)]
            if not ex.started:
                if isinstance(err, Challenged) and err.extra and page.wants_page(
                    scope["method"], headers
                ):
                    body_out = page.render(err.extra["challenge"])
                    await ex.reply(send, err.status, body_out, err.headers,
                                   content_type=b"text/html; charset=utf-8")
                else:
                    await ex.reply(send, err.status, _error_body(adapter, err), err.headers)
        except (ClientGone, asyncio.CancelledError) as gone:
            if isinstance(gone, asyncio.CancelledError):
                task = asyncio.current_task()
                if task is None or not ex.gone:
                    raise
                task.uncancel()
            error = "client disconnected"
            self.metrics.clients_gone.labels("response" if ex.started else "request").inc()
            ex.status = ex.status or 499
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            if not isinstance(upstream or self.forwarder, HttpUpstream):
                raise  # the wrapped application's own error: its server reports it
            # The upstream failed mid-response: the client connection is
            # closed without a clean end, so a cut stream never looks whole.
            error = f"upstream failed mid-response: {exc!r}"
            self.metrics.upstream_failures.labels("cut").inc()
            cut_response()
        finally:
            if ticket is not None and (
                ticket.reservation is not None or ticket.assessment is not None
            ):
                await rt.admission.settle(
                    ticket, ex.started, meter, reached=reached, call=call, status=ex.status
                )
            if ticket is not None and ticket.passed is not None and meter is not None:
                await _charge_clearance(rt, ticket, meter)
            action = refusal or _action(ticket)
            if ticket is not None and ticket is not rt.admission.admitted \
                    and rt.policy.admin.token is not None:
                self.activity.count(action or "allow", ticket.decision.tier)
            upstream_latency = ex.upstream_latency
            took = time.perf_counter() - began
            self.metrics.latencies.observe("gateway", took)
            if upstream_latency is not None:
                self.metrics.latencies.observe("upstream", upstream_latency)
            self.metrics.count_request(adapter.name if adapter is not None else None, ex.status)
            self._log_line(
                "request",
                {
                    "request_id": ex.request_id.decode("latin-1"),
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": ex.status,
                    "principal": identity.principal,
                    "client_ip": identity.client_ip,
                    "api": adapter.name if adapter is not None else None,
                    "latency_ms": round(took * 1000, 3),
                    "upstream_ms": (
                        None if upstream_latency is None else round(upstream_latency * 1000, 3)
                    ),
                    "bytes_in": bytes_in,
                    "bytes_out": ex.bytes_out,
                    "tier": ticket.decision.tier if ticket is not None else None,
                    "action": action,
                    "score": _score(ticket),
                    "challenge": (
                        ticket.passed.outcome if ticket is not None and ticket.passed else None
                    ),
                    "reasons": (
                        ticket.reasons if ticket is not None and not ticket.decision.allow
                        else None
                    ),
                    "error": error,
                    "policy": rt.version,
                },
            )

    async def _forward(
        self,
        scope: Scope,
        headers: Mapping[bytes, bytes],
        receive: Receive,
        send: Send,
        ex: Exchange,
        identity: Identity,
        call: ModelCall | None,
        body: Body,
        upstream: HttpUpstream | None = None,
    ) -> None:
        forwarder = upstream or self.forwarder
        if isinstance(forwarder, AppUpstream):
            if any(k in _CHALLENGE_HEADERS for k, _ in scope["headers"]):
                scope = {**scope, "headers": [
                    (k, v) for k, v in scope["headers"] if k not in _CHALLENGE_HEADERS
                ]}
            if isinstance(body, bytes):
                length = str(len(body)).encode()
                if any(k == b"content-length" and v != length for k, v in scope["headers"]):
                    # The body was rewritten: the app must see its new length.
                    scope = _without_header(scope, b"content-length")
                    scope["headers"] = [*scope["headers"], (b"content-length", length)]
            await forwarder.forward(ex, scope, body, receive, send)
            return
        target = scope.get("raw_path") or scope["path"].encode()
        target = target.decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        method = scope["method"]
        if isinstance(body, BodyStream):
            # A streamed upload owns ``receive`` until it ends; only then may
            # the disconnect watch listen on it.
            drop = self.runtime.dropped[identity.trusted_peer, True]
            out = _upstream_headers(scope, headers, ex, identity, drop)
            # The upload is read in the client library's own task: the one
            # to cancel is this one.
            task = asyncio.current_task()
            body.on_end = lambda: self._watch.add(ex, receive, task)
            try:
                await forwarder.forward(ex, method, target, out, body, send)
            except Exception:
                if body.failure is not None and not ex.started:
                    raise body.failure from None
                raise
            finally:
                self._watch.discard(ex)
            return
        out = _upstream_headers(
            scope, headers, ex, identity, self.runtime.dropped[identity.trusted_peer, False]
        )
        self._watch.add(ex, receive)
        try:
            await forwarder.forward(ex, method, target, out, body or None, send)
        finally:
            self._watch.discard(ex)


def _metered(
    ticket: Ticket, call: ModelCall | None, body: Body, send: Send, meters_tokens: bool
) -> tuple[Body, Send, Any | None]:
    """The body to forward and the send to answer through, when the answer
    must carry quota headers or be metered for its token usage."""
    headers = ticket.reservation.headers if ticket.reservation is not None else []
    clearance = _clearance(ticket)
    if clearance:
        headers = [*headers, *clearance]
    if call is None:
        return body, MeteredSend(send, headers, None, rewrites=False), None
    if not meters_tokens:
        # Read for the risk state only: the answer passes untouched.
        meter = UsageMeter(call.api, call.stream, False)
        return body, MeteredSend(send, headers, meter, rewrites=False), meter
    strip = False
    if call.stream:
        asked = prepare_stream_usage(call)
        if asked is not None:
            body, strip = asked, True
    meter = UsageMeter(call.api, call.stream, strip)
    return body, MeteredSend(send, headers, meter, rewrites=strip), meter


# Headers that name the caller: sent twice, the gateway and the upstream
# could each believe a different one.
_CREDENTIALS = frozenset({b"authorization", b"x-api-key", b"api-key"})


def _refuse_repeated_credentials(raw: list[tuple[bytes, bytes]]) -> None:
    seen: set[bytes] = set()
    for name, _ in raw:
        if name in _CREDENTIALS:
            if name in seen:
                raise BadRequest(
                    f"The {name.decode()} header may be sent only once.",
                    reason=f"repeated {name.decode()} header",
                )
            seen.add(name)


def _without_header(scope: Scope, name: bytes) -> Scope:
    headers = scope["headers"]
    if not any(k == name for k, _ in headers):
        return scope
    return {**scope, "headers": [(k, v) for k, v in headers if k != name]}


async def _through_gate(
    rt: Runtime, headers: dict[bytes, bytes], identity: Identity, challenge: TierChallenge
) -> Passed | None:
    """Step 5. With the storage down, ``on_storage_error`` decides: open lets
    the request through unchallenged, closed refuses it."""
    assert rt.gate is not None
    try:
        return await rt.gate.check(headers, identity, challenge)
    except STORAGE_ERRORS as exc:
        rt.admission.storage_failed("challenge", exc)
        rt.admission.refuse_if_closed(exc)
        return None


async def _charge_clearance(rt: Runtime, ticket: Ticket, meter: Any) -> None:
    """An answer's output tokens go to the clearance that paid for it."""
    if rt.gate is None or ticket.passed is None:
        return
    used = meter.output_tokens
    if used is None:
        used = meter.estimated_output_tokens()
    try:
        await rt.gate.charge(ticket.passed, used)
    except STORAGE_ERRORS as exc:
        rt.admission.storage_failed("charge", exc)


def _forwarded_scheme(scope: Scope, headers: dict[bytes, bytes], identity: Identity) -> str:
    proto = headers.get(b"x-forwarded-proto") if identity.trusted_peer else None
    if proto:
        return proto.decode("latin-1").split(",")[-1].strip().lower()
    return str(scope.get("scheme", "http"))


def _score(ticket: Ticket | None) -> float | None:
    if ticket is None or ticket.assessment is None:
        return None
    return round(ticket.assessment.score, 4)


def _action(ticket: Ticket | None) -> str | None:
    if ticket is None:
        return None
    if ticket.would is not None:
        return "would_" + ticket.would
    return ticket.decision.action


def _operator(policy: Policy, runtime: Runtime) -> Operator:
    gate = runtime.gate
    return Operator(policy.admin.token, runtime.admission.risk,
                    gate.clearances if gate is not None else None,
                    runtime.admission.overrides, runtime.admission.decider,
                    runtime.admission.quotas)


def replace_url(config: UpstreamConfig | None, url: str) -> UpstreamConfig:
    """The policy's upstream settings (timeouts, pool) for another URL."""
    return replace(config, url=url) if config is not None else UpstreamConfig(url)


def _load(source: Policy | str | Path | Mapping[str, Any], upstream: str | None, *,
          proxy: bool) -> Policy:
    """The policy from ``source``, forwarding to ``upstream`` when one is
    given; a proxy's must name an upstream."""
    policy = load_policy(source)
    if upstream is not None:
        policy = replace(policy, upstream=minimal_policy(upstream).upstream)
    if proxy and policy.upstream is None:
        raise _no_upstream(policy)
    return policy


def _no_upstream(policy: Policy) -> PolicyError:
    problem = PolicyProblem("upstream", "a proxy needs an upstream URL", hint="set upstream:")
    return PolicyError([problem], policy.source)


async def _small_body(receive: Receive, headers: Mapping[bytes, bytes], limit: int) -> bytes:
    """An operator's or a login form's body, read whole; empty when it cannot
    be read (too large, the client gone), which the reader then refuses."""
    try:
        body = await read_body(receive, headers, limit, buffer=True)
    except (RequestError, ClientGone):
        return b""
    assert isinstance(body, bytes)  # buffered
    return body


def _clearance(ticket: Ticket) -> list[tuple[bytes, bytes]]:
    """The clearance a solution bought, handed back with the answer."""
    passed = ticket.passed
    if passed is None or not passed.token:
        return []
    return [(CLEARANCE_HEADER, passed.token.encode("ascii"))]


def _new_request_id() -> bytes:
    return b"%024x" % random.getrandbits(96)


def _error_body(adapter: Adapter | None, err: RequestError) -> bytes:
    render = adapter.error_body if adapter is not None else openai_error_body
    return render(err.status, err.message, err.type, err.code, err.param, err.extra)


def _upstream_headers(
    scope: Scope,
    headers: Mapping[bytes, bytes],
    ex: Exchange,
    identity: Identity,
    drop: frozenset[bytes],
) -> list[tuple[str, str]]:
    """The client's headers as the upstream gets them: hop-by-hop fields
    dropped, the forwarding fields appended, the request id passed on.

    ``headers`` is the request's headers as a dict (the last value of a
    repeated name).
    """
    raw: list[tuple[bytes, bytes]] = scope["headers"]
    if len(headers) == len(raw):
        connection = headers.get(b"connection")
    else:  # a name repeats: every Connection value counts
        connection = b",".join([v for k, v in raw if k == b"connection"]) or None
    if connection is not None:
        drop = drop | hop_by_hop(connection)
    out: list[tuple[str, str]] = []
    forwarded: list[str] = []
    proto = None
    for name, value in raw:
        if name in drop:
            if name == b"x-forwarded-for":
                forwarded.append(value.decode("latin-1"))
            elif name == b"x-forwarded-proto" and identity.trusted_peer:
                proto = value.decode("latin-1")
            continue
        # aiohttp writes header values as UTF-8: decoding them the same way
        # keeps their bytes; only values that are not UTF-8 fall back.
        try:
            text = value.decode()
        except UnicodeDecodeError:
            text = value.decode("latin-1")
        out.append((name.decode("latin-1"), text))
    client = scope.get("client")
    if client:
        forwarded.append(client[0])
    if forwarded:
        out.append(("x-forwarded-for", ", ".join(forwarded)))
    out.append(("x-forwarded-proto", proto or scope.get("scheme", "http")))
    if b"x-request-id" not in headers:
        out.append(("x-request-id", ex.request_id.decode("latin-1")))
    return out


# Set again by the gateway (host by the client library, the length when the
# body is sent whole) or rebuilt (the forwarding fields).
# The gateway's own credentials are never passed on.
_CHALLENGE_HEADERS = frozenset({SOLUTION, CLEARANCE_HEADER})
_DROP_STREAMED = HOP_BY_HOP | _CHALLENGE_HEADERS | {
    b"host", b"x-forwarded-for", b"x-forwarded-proto",
}
_DROP_BUFFERED = _DROP_STREAMED | {b"content-length"}
