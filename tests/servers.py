"""Real HTTP servers for tests and benchmarks: an ASGI app under uvicorn in a thread.

    with serve_in_thread(create_toy_app()) as base:   # "http://127.0.0.1:PORT"
        httpx.get(base + "/")

The socket is bound before the server starts (port 0 picks a free one, with no
race between choosing and binding), the context is entered only once uvicorn
reports ``started``, and leaving it sets ``should_exit`` and joins the thread
(forcing the exit if open connections outlast the grace period).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp

__all__ = ["free_port", "own_redis", "running", "serve_in_thread"]


@contextlib.contextmanager
def serve_in_thread(
    app: ASGIApp,
    port: int = 0,
    *,
    host: str = "127.0.0.1",
    startup_timeout: float = 10.0,
    shutdown_timeout: float = 5.0,
    **config: Any,
) -> Iterator[str]:
    """Serve ``app`` on ``host:port`` (0: a free port) and yield its base URL.

    Extra keyword arguments go to ``uvicorn.Config`` (they override the defaults:
    ``lifespan="auto"``, ``log_level="warning"``, a 1 s graceful shutdown, and
    no ``proxy_headers``, since the gateway reads forwarding headers itself).
    """
    options: dict[str, Any] = {"lifespan": "auto", "log_level": "warning",
                               "timeout_graceful_shutdown": 1, "proxy_headers": False,
                               **config}
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        bound_port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=bound_port, **options))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                                  name=f"uvicorn-{bound_port}", daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + startup_timeout
            while not server.started:
                if not thread.is_alive():
                    raise RuntimeError(f"uvicorn on {host}:{bound_port} exited during startup")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"uvicorn on {host}:{bound_port} did not start in time")
                time.sleep(0.005)
            yield f"http://{host}:{bound_port}"
        finally:
            server.should_exit = True
            thread.join(shutdown_timeout)
            if thread.is_alive():
                server.force_exit = True
                thread.join(shutdown_timeout)
    finally:
        sock.close()


@contextlib.contextmanager
def own_redis(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A redis-server of the test's own on ``port`` (no disk), stopped on leaving:
    for faults that stop Redis under a running gateway."""
    server = shutil.which("redis-server")
    if server is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    workdir = tempfile.mkdtemp(prefix="guardgate-redis-")
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:  # the port was taken, or the server refused
                raise RuntimeError(f"redis-server on port {port} exited with {proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def principal_of(key: str) -> str:
    """The principal the gateway names a caller by its API key."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running(*args: str, port: int) -> Iterator[subprocess.Popen[str]]:
    """``guardgate ARGS --port PORT`` in a process of its own, until it answers
    its health check; interrupted on leaving. Its output is piped: read it
    with ``communicate`` once it has ended (enough for a test's few lines)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "guardgate.cli", *args, "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/_guardgate/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                raise RuntimeError(f"did not start: {proc.communicate(timeout=10)}")
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def redis_for_bench(url: str | None) -> Iterator[str]:
    """``url`` as it is, never emptied; without one, a redis-server of the
    benchmark's own on a free port (no disk), stopped at the end."""
    if url:
        yield url
        return
    port = free_port()
    with own_redis(port):
        yield f"redis://127.0.0.1:{port}/0"


async def body_of(receive: Any) -> bytes:
    """An ASGI request's whole body, for test upstreams."""
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if not message.get("more_body"):
            return body
