"""Pipeline step 8: forward to the model, an HTTP upstream or a wrapped ASGI app.

Both forwarders take the request as the gateway prepared it and relay the
response to ``send`` message by message, so a stream reaches the client as
the upstream produces it. aiohttp is the HTTP client: in a side-by-side
measurement (bench/proxy_bench.py) it forwards several times faster than
httpx's default transport under concurrency.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from functools import lru_cache
from typing import Protocol

import aiohttp
from yarl import URL

from guardgate.body import BodyStream
from guardgate.challenge.gate import CLEARANCE, SOLUTION
from guardgate.disconnect import DisconnectWatch
from guardgate.errors import UpstreamTimeout, UpstreamUnavailable
from guardgate.exchange import Exchange
from guardgate.policy.model import IdentityConfig, UpstreamConfig
from guardgate.types import ASGIApp, Body, Message, Receive, Scope, Send

# RFC 9110 section 7.6.1: connection-specific fields a proxy must not forward.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)


@lru_cache(maxsize=256)
def hop_by_hop(connection: bytes | None) -> frozenset[bytes]:
    """HOP_BY_HOP plus the fields a Connection header (all its values joined
    by commas) names."""
    if not connection:
        return HOP_BY_HOP
    named = {t.strip().lower() for t in connection.split(b",")}
    named.discard(b"")
    # Mostly "keep-alive" or "close": nothing beyond the fixed set.
    return HOP_BY_HOP if named <= HOP_BY_HOP else HOP_BY_HOP | named


# Set again by the gateway (host by the client library, the length when the
# body is sent whole) or rebuilt (the forwarding fields). The gateway's own
# credentials are never passed on, nor a method other than the one it routed
# by: frameworks that honour these headers would serve a GET as a model POST.
CHALLENGE_HEADERS = frozenset({SOLUTION, CLEARANCE})
METHOD_OVERRIDES = frozenset({b"x-http-method-override", b"x-http-method", b"x-method-override"})
_NOT_FOR_APP = CHALLENGE_HEADERS | METHOD_OVERRIDES
_DROP_STREAMED = HOP_BY_HOP | _NOT_FOR_APP | {
    b"host", b"x-forwarded-for", b"x-forwarded-proto",
}
_DROP_BUFFERED = _DROP_STREAMED | {b"content-length"}


class Forwarding:
    """What of a request goes upstream, compiled once per policy: the
    headers dropped (by peer trusted, body streamed; identity headers only a
    trusted proxy may set are dropped from anyone else, so the upstream
    cannot be told them either), and the watch that cancels an exchange
    whose client left."""

    def __init__(self, identity: IdentityConfig, watch: DisconnectWatch) -> None:
        trusted_only = {identity.org_header, identity.created_header} | {
            source.header for source in identity.principal if source.holds == "account"
        }
        untrusted = frozenset(h.encode("latin-1") for h in trusted_only if h)
        self.dropped: Mapping[tuple[bool, bool], frozenset[bytes]] = {
            (True, True): _DROP_STREAMED,
            (True, False): _DROP_BUFFERED,
            (False, True): _DROP_STREAMED | untrusted,
            (False, False): _DROP_BUFFERED | untrusted,
        }
        self.watch = watch

    def headers(self, ex: Exchange, streamed: bool) -> list[tuple[str, str]]:
        """The client's headers as the upstream gets them: hop-by-hop fields
        dropped, the forwarding fields appended, the request id passed on."""
        assert ex.identity is not None
        trusted = ex.identity.trusted_peer
        drop = self.dropped[trusted, streamed]
        raw: list[tuple[bytes, bytes]] = ex.scope["headers"]
        headers = ex.headers  # the last value of a repeated name
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
                elif name == b"x-forwarded-proto" and trusted:
                    proto = value.decode("latin-1")
                continue
            out.append((name.decode("latin-1"), _text(value)))
        client = ex.scope.get("client")
        if client:
            forwarded.append(client[0])
        if forwarded:
            out.append(("x-forwarded-for", ", ".join(forwarded)))
        out.append(("x-forwarded-proto", proto or ex.scope.get("scheme", "http")))
        if b"x-request-id" not in headers:
            out.append(("x-request-id", ex.request_id.decode("latin-1")))
        return out


def _text(value: bytes) -> str:
    # aiohttp writes header values as UTF-8: decoding them the same way keeps
    # their bytes; only values that are not UTF-8 fall back.
    try:
        return value.decode()
    except UnicodeDecodeError:
        return value.decode("latin-1")


def forwarded_scheme(scope: Scope, headers: Mapping[bytes, bytes], trusted_peer: bool) -> str:
    """The scheme the client used: a trusted proxy's X-Forwarded-Proto, or the connection's."""
    proto = headers.get(b"x-forwarded-proto") if trusted_peer else None
    if proto:
        return proto.decode("latin-1").split(",")[-1].strip().lower()
    return str(scope.get("scheme", "http"))


class Forwarder(Protocol):
    async def forward(self, ex: Exchange, receive: Receive, rules: Forwarding) -> None: ...

    async def ready(self) -> bool: ...

    async def close(self) -> None: ...


# Bodies of known length up to this size are relayed in one message rather
# than chunk by chunk: fewer sends, and nothing a client would see as buffering.
_WHOLE_BODY = 64 * 1024


class HttpUpstream:
    """Forwards to an HTTP upstream over one pooled aiohttp session."""

    def __init__(self, config: UpstreamConfig) -> None:
        self.config = config
        self._base = config.url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=config.connect_timeout, sock_read=config.read_timeout
        )

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self.config.max_connections, ttl_dns_cache=30, enable_cleanup_closed=True
        )
        return aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            # The proxy relays bytes as they are: no decompression, no
            # cookies kept between clients, no headers of its own.
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = self._open()
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def ready(self) -> bool:
        """The upstream answers HTTP at all (any status counts)."""
        try:
            async with self.session.get(
                self._base + "/", timeout=aiohttp.ClientTimeout(total=2.0)
            ) as resp:
                await resp.read()
                return True
        except (TimeoutError, aiohttp.ClientError, OSError):
            return False

    async def forward(self, ex: Exchange, receive: Receive, rules: Forwarding) -> None:
        """Step 8 over HTTP; the exchange is cancelled when its client leaves."""
        scope = ex.scope
        target = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        method = scope["method"]
        body = ex.body
        watch = rules.watch
        if not isinstance(body, BodyStream):
            headers = rules.headers(ex, streamed=False)
            watch.add(ex, receive)
            try:
                await self._relay(ex, method, target, headers, body or None, ex.send)
            finally:
                watch.discard(ex)
            return
        # A streamed upload owns ``receive`` until it ends; only then may the
        # watch listen on it. The upload is read in the client library's own
        # task: the one to cancel is this one.
        headers = rules.headers(ex, streamed=True)
        task = asyncio.current_task()
        body.on_end = lambda: watch.add(ex, receive, task)
        try:
            await self._relay(ex, method, target, headers, body, ex.send)
        except Exception:
            if body.failure is not None and not ex.started:
                raise body.failure from None
            raise
        finally:
            watch.discard(ex)

    async def _relay(
        self,
        ex: Exchange,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: Body | None,
        send: Send,
    ) -> None:
        """Send the request and relay the response to ``send``, chunk by chunk.

        Errors before the response starts are raised as UpstreamUnavailable
        or UpstreamTimeout; after it started they propagate so the caller
        can abort the client connection rather than end it cleanly.
        """
        started = time.perf_counter()
        try:
            ctx = self.session.request(
                method,
                URL(self._base + target, encoded=True),
                headers=headers,
                data=body,
                allow_redirects=False,
                compress=None,
            )
            resp = await ctx.__aenter__()
        except TimeoutError as exc:
            raise UpstreamTimeout(
                "The model endpoint did not answer in time.", reason=f"upstream timeout: {exc!r}"
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamUnavailable(
                "The model endpoint is unavailable.", reason=f"upstream unreachable: {exc!r}"
            ) from exc
        ex.upstream_latency = time.perf_counter() - started
        try:
            out = []
            connection: list[bytes] = []
            has_rid = False
            for name, value in resp.raw_headers:
                name = name.lower()
                if name in HOP_BY_HOP:
                    if name == b"connection":
                        connection.append(value)
                    continue
                if name == b"x-request-id":
                    has_rid = True
                out.append((name, value))
            if connection:
                drop = hop_by_hop(b",".join(connection))
                if drop is not HOP_BY_HOP:  # it names fields of its own
                    out = [(k, v) for k, v in out if k not in drop]
            if not has_rid:
                out.append((b"x-request-id", ex.request_id))
            ex.status = resp.status
            ex.started = ex.answered = True
            await send({"type": "http.response.start", "status": resp.status, "headers": out})
            length = resp.content_length
            if method == "HEAD":
                body = b""
            elif length is not None and length <= _WHOLE_BODY:
                # A small body of known length goes out in one message.
                body = await resp.read()
            else:
                body = b""
                async for chunk in resp.content.iter_any():
                    ex.bytes_out += len(chunk)
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            ex.bytes_out += len(body)
            ex.complete = True
            await send({"type": "http.response.body", "body": body, "more_body": False})
        finally:
            await ctx.__aexit__(None, None, None)


class AppUpstream:
    """Forwards to a wrapped in-process ASGI app (middleware mode)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None

    async def forward(self, ex: Exchange, receive: Receive, rules: Forwarding) -> None:
        """Step 8 in process: the app gets the request as the gateway prepared it."""
        started = time.perf_counter()
        scope = ex.scope
        body = ex.body
        send = ex.send
        if any(k in _NOT_FOR_APP for k, _ in scope["headers"]):
            scope = {**scope, "headers": [
                (k, v) for k, v in scope["headers"] if k not in _NOT_FOR_APP
            ]}
        if isinstance(body, bytes):
            length = str(len(body)).encode()
            if any(k == b"content-length" and v != length for k, v in scope["headers"]):
                # The body was rewritten: the app must see its new length.
                scope = {**scope, "headers": [
                    *((k, v) for k, v in scope["headers"] if k != b"content-length"),
                    (b"content-length", length),
                ]}

        async def relay(message: Message) -> None:
            if message["type"] == "http.response.start":
                ex.upstream_latency = time.perf_counter() - started
                ex.status = message["status"]
                ex.started = ex.answered = True
                headers = message.get("headers") or []
                if not any(k == b"x-request-id" for k, _ in headers):
                    message["headers"] = [*headers, (b"x-request-id", ex.request_id)]
            elif message["type"] == "http.response.body":
                ex.bytes_out += len(message.get("body", b""))
                if not message.get("more_body", False):
                    ex.complete = True
            await send(message)

        await self.app(scope, replay(body, receive), relay)


def replay(body: Body, receive: Receive) -> Receive:
    """A receive that hands out ``body`` first, then defers to the real one."""
    if isinstance(body, bytes):
        sent = False

        async def receive_bytes() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return receive_bytes

    chunks = body
    done = False

    async def receive_stream() -> Message:
        nonlocal done
        if not done:
            try:
                chunk = await chunks.__anext__()
                return {"type": "http.request", "body": chunk, "more_body": True}
            except StopAsyncIteration:
                done = True
                return {"type": "http.request", "body": b"", "more_body": False}
        return await receive()

    return receive_stream
