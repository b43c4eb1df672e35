"""Pipeline step 8: forward to the model, an HTTP upstream or a wrapped ASGI app.

Both forwarders take the request as the gateway prepared it and relay the
response to ``send`` message by message, so a stream reaches the client as
the upstream produces it. aiohttp is the HTTP client: in a side-by-side
measurement (bench/proxy_bench.py) it forwards several times faster than
httpx's default transport under concurrency.
"""

from __future__ import annotations

import time
from functools import lru_cache

import aiohttp
from yarl import URL

from guardgate.errors import UpstreamTimeout, UpstreamUnavailable
from guardgate.exchange import Exchange
from guardgate.policy.model import UpstreamConfig
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

    async def forward(
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
            ex.started = True
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

    async def forward(
        self, ex: Exchange, scope: Scope, body: Body, receive: Receive, send: Send
    ) -> None:
        started = time.perf_counter()

        async def relay(message: Message) -> None:
            if message["type"] == "http.response.start":
                ex.upstream_latency = time.perf_counter() - started
                ex.status = message["status"]
                ex.started = True
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
