"""A model upstream that fails on request, on a real socket, for fault tests.

The request body's ``"model"`` names what the upstream does:

- ``ok``: a JSON chat completion with usage (7 completion tokens).
- ``stream``: an SSE chat completion stream, 5 chunks, usage and ``[DONE]``.
- ``error``: ``503`` with an OpenAI-shaped error body.
- ``reset``: starts a stream, sends two chunks, then resets the connection.
- ``hang``: reads the request and never answers.
- ``malformed``: a ``200`` SSE stream of broken events (invalid JSON, bytes
  that are not UTF-8, an event without data, no ``[DONE]``).
- ``truncated``: announces a JSON body of 500 bytes, sends 60, closes.
- ``slow``: a stream of 200 chunks, one every 50 ms.
- ``flood``: an SSE stream of 256 MiB, as fast as the reader takes it.

What it saw is kept: requests per mode, bytes sent, and an event set when
the gateway closed a connection while an answer was still being sent.

    with ChaosUpstream() as upstream:      # upstream.url: "http://127.0.0.1:PORT"
        ...
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
from collections import Counter
from types import TracebackType
from typing import Any, Self

_USAGE = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
_COMPLETION = {
    "id": "chatcmpl-chaos", "object": "chat.completion", "created": 1, "model": "chaos",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "An answer of seven tokens here."}}],
    "usage": _USAGE,
}


def _chunk(content: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    event: dict[str, Any] = {"id": "chatcmpl-chaos", "object": "chat.completion.chunk",
                             "created": 1, "model": "chaos", "choices": []}
    if content is not None:
        event["choices"] = [{"index": 0, "delta": {"content": content}, "finish_reason": None}]
    if usage is not None:
        event["usage"] = usage
    return b"data: " + json.dumps(event).encode() + b"\n\n"


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


_SSE_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
             b"transfer-encoding: chunked\r\n\r\n")
_END = b"0\r\n\r\n"


class ChaosUpstream:
    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.seen: Counter[str] = Counter()
        self.sent = 0  # body bytes written, over every connection
        self.left_early = threading.Event()  # a connection closed mid-answer
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="chaos-upstream")
        self._server: asyncio.base_events.Server | None = None
        self.url = ""

    def __enter__(self) -> Self:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self.url = future.result(10)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self) -> str:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", self.port,
                                                  reuse_address=True)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length) if length else b""
                try:
                    mode = str(json.loads(body).get("model", "ok"))
                except ValueError:
                    mode = "ok"
                self.seen[mode] += 1
                if not await self._answer(mode, reader, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            self.left_early.set()
        finally:
            writer.close()

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        self.sent += len(data)
        await writer.drain()

    async def _answer(self, mode: str, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> bool:
        """Answers one request; False when the connection is done with."""
        if mode == "ok":
            body = json.dumps(_COMPLETION).encode()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                         b"content-length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            return True
        if mode == "error":
            body = json.dumps({"error": {"message": "overloaded", "type": "server_error",
                                         "code": "overloaded"}}).encode()
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
                         b"content-length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            return True
        if mode == "hang":
            await reader.read()  # until the gateway gives up and closes
            self.left_early.set()
            return False
        if mode == "truncated":
            body = json.dumps(_COMPLETION).encode()[:60]
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                         b"content-length: 500\r\n\r\n" + body)
            await writer.drain()
            return False
        writer.write(_SSE_HEAD)
        if mode == "stream":
            for word in ("An ", "answer ", "of ", "five ", "chunks."):
                await self._send(writer, _chunked(_chunk(word)))
            await self._send(writer, _chunked(_chunk(usage=_USAGE)))
            await self._send(writer, _chunked(b"data: [DONE]\n\n") + _END)
            return True
        if mode == "reset":
            for word in ("Cut ", "short "):
                await self._send(writer, _chunked(_chunk(word)))
            raw = writer.get_extra_info("socket")
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if mode == "malformed":
            for event in (b"data: {not json\n\n", b"data: \xff\xfe\x00\n\n", b"event: ping\n\n",
                          _chunk("fine "), b"data: [1, 2\n\n", b": comment only\n\n"):
                await self._send(writer, _chunked(event))
            await self._send(writer, _END)
            return True
        if mode == "slow":
            for i in range(200):
                await self._send(writer, _chunked(_chunk(f"word{i} ")))
                await asyncio.sleep(0.05)
            await self._send(writer, _chunked(b"data: [DONE]\n\n") + _END)
            return True
        if mode == "flood":
            piece = _chunked(_chunk("x" * 65_000))
            for _ in range(256 * 1024 * 1024 // len(piece)):
                await self._send(writer, piece)
            await self._send(writer, _chunked(b"data: [DONE]\n\n") + _END)
            return True
        raise ValueError(f"unknown chaos mode {mode!r}")
