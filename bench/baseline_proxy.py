"""The yardstick: a minimal pure-ASGI pass-through over aiohttp.

No policy, no logging, no parsing: the least a Python proxy can do. The
proxy benchmark runs it beside guardgate so the ratio between the two is
measured on the same machine in the same run.

    UPSTREAM=http://127.0.0.1:9000 uvicorn bench.baseline_proxy:app
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp

UPSTREAM = os.environ.get("UPSTREAM", "http://127.0.0.1:9000")
_session: aiohttp.ClientSession | None = None


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _session
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
        return
    if _session is None:
        _session = aiohttp.ClientSession(auto_decompress=False)
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    headers = [(k.decode(), v.decode()) for k, v in scope["headers"] if k not in (b"host", b"content-length")]
    url = UPSTREAM + scope["path"]
    async with _session.request(scope["method"], url, headers=headers, data=body or None) as resp:
        out = [(k.lower(), v) for k, v in resp.raw_headers if k.lower() not in (b"transfer-encoding", b"connection")]
        await send({"type": "http.response.start", "status": resp.status, "headers": out})
        async for chunk in resp.content.iter_any():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
