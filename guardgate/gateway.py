"""GuardGate: the pure-ASGI gateway that runs the pipeline.

One class, two ways to reach the model: ``GuardGate(policy=...)`` forwards
to the policy's HTTP upstream, ``GuardGate(app, policy=...)`` sits in front
of an in-process ASGI app. Everything per request lives on an `Exchange`,
never on ``self``; `_exchange` is the pipeline, one named step a line, each
step in the module that owns it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp

from guardgate.body import ClientGone
from guardgate.disconnect import DisconnectWatch
from guardgate.errors import (
    PolicyError,
    PolicyProblem,
    RequestError,
    UpstreamError,
    UpstreamUnavailable,
)
from guardgate.exchange import Exchange
from guardgate.intel.feeds import IntelFeeds
from guardgate.logs import cut_response, get_logger, info_writer, quiet_expected_cuts
from guardgate.metrics import Metrics
from guardgate.ops import OPS_PREFIX, OpsApp
from guardgate.ops.dashboard import Activity
from guardgate.policy import load_policy, minimal_policy
from guardgate.policy.model import Policy
from guardgate.reload import PolicyWatcher
from guardgate.replies import error_body, refuse, request_id
from guardgate.runtime import Runtime
from guardgate.store import Store, open_store
from guardgate.treatment import treat
from guardgate.types import ASGIApp, Message, Receive, Scope, Send
from guardgate.upstream import AppUpstream, Forwarder, HttpUpstream

access_log = get_logger("guardgate.access")
log = get_logger("guardgate")

# An upstream that fails once its response started: the client connection
# is closed without a clean end, so a cut stream never looks whole.
_CUT = (aiohttp.ClientError, TimeoutError, OSError)


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
        self.forwarder: Forwarder
        if app is not None:
            self.forwarder = AppUpstream(app)
        elif compiled.upstream is not None:
            self.forwarder = HttpUpstream(compiled.upstream)
        else:
            raise _no_upstream(compiled)
        self.metrics = Metrics()
        quiet_expected_cuts()
        self.store = open_store(compiled.storage)
        self._watch = DisconnectWatch()
        self.activity = Activity()
        # Resolved once: the logging configuration in force when the gateway
        # is built is the one it logs with.
        self._log_line = info_writer(access_log.bind())
        # Imported intelligence: polled in the background once the gateway
        # runs, kept across reloads like the store.
        self.intel_feeds = IntelFeeds(self.metrics)
        self.intel_feeds.configure(compiled.intel)
        self._background = False
        self.runtime = Runtime.compile(compiled, self.store, self.metrics, self._watch,
                                       feeds=self.intel_feeds)
        self.metrics.set_policy(self.runtime.version)
        self.ops = self._ops_app()

    @property
    def policy(self) -> Policy:
        return self.runtime.policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if not self._background:  # served without a lifespan
                self._start_background()
            path = scope["path"]
            if path.startswith(OPS_PREFIX):
                await self.ops(scope, receive, send)
            elif ("%" in path or "_" in path) and self._ops_spelled(path):
                # The operator wing spelled otherwise (``//_guardgate/``): its
                # own, never the upstream's.
                normal = self.runtime.router.normalize(path) + ("/" if path.endswith("/") else "")
                await self.ops({**scope, "path": normal, "raw_path": normal.encode()},
                               receive, send)
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

    def _ops_spelled(self, path: str) -> bool:
        return (self.runtime.router.normalize(path) + "/").startswith(OPS_PREFIX)

    async def _exchange(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The pipeline, in DESIGN's order."""
        rt = self.runtime
        headers: dict[bytes, bytes] = dict(scope["headers"])
        ex = Exchange(request_id(headers), send, scope, headers)
        ex.identity = rt.identifier.identify(scope, headers)          # 1 identify
        ex.upstream = self.forwarder
        try:
            rt.router.route(ex)                                       # 2 route
            rt.identifier.credentials.refuse(ex.identity, scope["headers"], headers, ex.adapter)
            await rt.router.read(ex, receive)
            if rt.admission.idle:  # a policy that decides and meters nothing skips 3-7
                ex.ticket = rt.admission.admitted
            else:
                await rt.admission.assess(ex)                         # 3, 4 assess, decide
                if rt.gate is not None:
                    await rt.gate.screen(ex, rt.faults, shadow=rt.admission.shadow)  # 5
                await rt.admission.admit(ex)                          # 6 quotas
                treat(ex, shadow=rt.admission.shadow,                 # 7, 9 rewrite
                      meter_tokens=rt.admission.meters_tokens, metrics=self.metrics)
            await ex.upstream.forward(ex, receive, rt.forwarding)     # 8 forward
        except RequestError as err:
            self._count_failure(ex, err)
            await refuse(ex, err)
        except (ClientGone, asyncio.CancelledError) as gone:
            self._client_left(ex, gone)
        except _CUT as exc:
            await self._upstream_cut(ex, exc)
        finally:
            if ex.ticket is not None and ex.ticket.observed:
                await rt.settle(ex)                                   # 10 settle
            self._record(ex, rt)

    def _count_failure(self, ex: Exchange, err: RequestError) -> None:
        ex.reached = not isinstance(err, UpstreamUnavailable)
        if isinstance(err, UpstreamError):
            kind = "unavailable" if isinstance(err, UpstreamUnavailable) else "timeout"
            self.metrics.upstream_failures.labels(kind).inc()

    def _client_left(self, ex: Exchange, gone: BaseException) -> None:
        if isinstance(gone, asyncio.CancelledError):
            task = asyncio.current_task()
            if task is None or not ex.gone:
                raise gone
            task.uncancel()
        ex.error = "client disconnected"
        self.metrics.clients_gone.labels("response" if ex.started else "request").inc()
        ex.status = ex.status or 499

    async def _upstream_cut(self, ex: Exchange, exc: BaseException) -> None:
        if not isinstance(ex.upstream, HttpUpstream):
            raise exc  # the wrapped application's own error: its server reports it
        ex.error = f"upstream failed mid-response: {exc!r}"
        self.metrics.upstream_failures.labels("cut").inc()
        if ex.started:
            cut_response()
            return
        # Nothing reached the client yet (a treated answer waits for its first
        # treated bytes): an error in the API's shape, past the answer path.
        err = UpstreamUnavailable("The model endpoint failed while answering.",
                                  reason=ex.error)
        headers = ex.ticket.headers if ex.ticket is not None else []
        await ex.reply(err.status, error_body(ex.adapter, err), [*err.headers, *headers],
                       direct=True)

    def _record(self, ex: Exchange, rt: Runtime) -> None:
        """The request's metrics and its access log line."""
        took = time.perf_counter() - ex.began
        ticket = ex.ticket
        if ticket is not None and ticket is not rt.admission.admitted \
                and rt.policy.admin.token is not None:
            self.activity.count(ex.action or "allow", ticket.decision.tier)
        self.metrics.latencies.observe("gateway", took)
        if ex.upstream_latency is not None:
            self.metrics.latencies.observe("upstream", ex.upstream_latency)
        self.metrics.count_request(ex.adapter.name if ex.adapter is not None else None,
                                   ex.status)
        self._log_line("request", ex.summary(rt.version, took))

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
            self.store = open_store(policy.storage)
        if (
            isinstance(self.forwarder, HttpUpstream)
            and policy.upstream is not None
            and policy.upstream != self.forwarder.config
        ):
            # Streams still running on the old pool finish there; it is closed at shutdown.
            self._retired.append(self.forwarder)
            self.forwarder = HttpUpstream(policy.upstream)
        self.intel_feeds.configure(policy.intel)
        runtime = Runtime.compile(policy, self.store, self.metrics, self._watch,
                                  self.runtime.reroutes, self.intel_feeds)
        kept = set(map(id, runtime.reroutes.values()))
        self._retired.extend(u for u in self.runtime.reroutes.values() if id(u) not in kept)
        self.runtime = runtime
        self.ops = self._ops_app()
        self.metrics.set_policy(runtime.version)

    def _ops_app(self) -> OpsApp:
        return OpsApp(self.runtime, self.forwarder, self.store, self.metrics, self.activity,
                      self._log_line)

    async def aclose(self) -> None:
        if self._watcher is not None:
            await self._watcher.stop()
        await self.intel_feeds.close()
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
        self._start_background()

    def _start_background(self) -> None:
        """The intelligence feeds' poller, once, in the serving event loop."""
        self._background = True
        self.intel_feeds.start()

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
