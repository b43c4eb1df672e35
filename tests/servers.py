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

__all__ = ["RedisCluster", "free_port", "own_redis", "own_redis_cluster", "own_redis_sentinel",
           "running", "serve_in_thread"]


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
    server = _redis_server()
    workdir = tempfile.mkdtemp(prefix="guardgate-redis-")
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(proc, port)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


class RedisCluster:
    """A Redis Cluster of the test's own: three primaries, each with one
    replica, on free ports (nothing kept on disk)."""

    def __init__(self, ports: list[int], procs: dict[int, subprocess.Popen[bytes]],
                 workdir: str) -> None:
        self.ports = ports
        self.procs = procs
        self.workdir = workdir

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def start(self, port: int) -> None:
        """(Re)start the node on ``port`` with its saved cluster config."""
        self.procs[port] = subprocess.Popen(
            [_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.workdir, "--cluster-enabled", "yes",
             "--cluster-config-file", f"nodes-{port}.conf", "--cluster-node-timeout", "1000",
             "--logfile", f"redis-{port}.log", "--repl-diskless-sync-delay", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.procs[port], port)

    def stop(self, port: int) -> None:
        proc = self.procs.pop(port)
        proc.kill()
        proc.wait(10)

    def info(self, port: int, section: str = "cluster") -> str:
        import redis

        client = redis.Redis(port=port, socket_timeout=2)
        try:
            if section == "cluster":
                return str(client.execute_command("CLUSTER", "INFO"), "utf-8")
            return str(client.execute_command("INFO", section), "utf-8")
        finally:
            client.close()

    def replica_of(self, primary: int) -> int:
        """The port of the replica of the primary on ``primary``."""
        import redis

        client = redis.Redis(port=primary, socket_timeout=2)
        try:
            nodes = str(client.execute_command("CLUSTER", "NODES"), "utf-8").splitlines()
        finally:
            client.close()
        ids = {int(line.split()[1].split("@")[0].rsplit(":", 1)[1]): line.split()[0]
               for line in nodes}
        for line in nodes:
            fields = line.split()
            if "slave" in fields[2] and fields[3] == ids[primary]:
                return int(fields[1].split("@")[0].rsplit(":", 1)[1])
        raise RuntimeError(f"no replica of {primary}")

    def primaries(self) -> list[int]:
        """The ports of the nodes now serving slots as primaries."""
        import redis

        for port in self.procs:
            try:
                client = redis.Redis(port=port, socket_timeout=2)
                slots = client.execute_command("CLUSTER", "SLOTS")
                client.close()
            except (redis.RedisError, OSError):
                continue
            return sorted({int(entry[2][1]) for entry in slots})
        return []

    def wait_ok(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            states = []
            for port in self.procs:
                try:
                    states.append("cluster_state:ok" in self.info(port))
                except Exception:  # noqa: BLE001 - a node still starting
                    states.append(False)
            if all(states) and len(self.primaries()) == 3 and self._replicas_synced():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not reach state ok: {states}")
            time.sleep(0.1)


    def _replicas_synced(self) -> bool:
        """Every replica's link to its primary up: one that never synced
        would not be promoted when its primary fails."""
        import redis

        for port in self.procs:
            try:
                client = redis.Redis(port=port, socket_timeout=2)
                info = client.info("replication")
                client.close()
            except (redis.RedisError, OSError):
                return False
            if info.get("role") == "slave" and info.get("master_link_status") != "up":
                return False
        return True


def _redis_server() -> str:
    server = shutil.which("redis-server")
    if server is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    return server


def _wait_for_port(proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        if proc.poll() is not None:  # the port was taken, or the server refused
            raise RuntimeError(f"redis-server on port {port} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _cluster_ports(count: int) -> list[int]:
    """Free ports whose cluster bus ports (port + 10000) are free too."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port + 10000 > 65535 or port in ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        ports.append(port)
    return ports


@contextlib.contextmanager
def own_redis_cluster() -> Iterator[RedisCluster]:
    """Three primaries and three replicas, created with ``redis-cli --cluster
    create``; every node stopped on leaving."""
    cli = shutil.which("redis-cli")
    if cli is None:
        _redis_server()
        if os.environ.get("CI"):
            pytest.fail("redis-cli is not installed")
        pytest.skip("redis-cli is not installed")
    workdir = tempfile.mkdtemp(prefix="guardgate-cluster-")
    cluster = RedisCluster(_cluster_ports(6), {}, workdir)
    try:
        for port in cluster.ports:
            cluster.start(port)
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{port}" for port in cluster.ports),
             "--cluster-replicas", "1", "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60,
        )
        cluster.wait_ok()
        yield cluster
    finally:
        for port in list(cluster.procs):
            cluster.stop(port)
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def own_redis_sentinel() -> Iterator[str]:
    """A redis-server and one Redis Sentinel watching it as ``guardgate``,
    both the test's own: the ``redis+sentinel://`` URL naming them."""
    server = _redis_server()
    redis_port, sentinel_port = free_port(), free_port()
    workdir = tempfile.mkdtemp(prefix="guardgate-sentinel-")
    conf = os.path.join(workdir, "sentinel.conf")
    with open(conf, "w") as out:
        out.write(f"port {sentinel_port}\nbind 127.0.0.1\ndir {workdir}\n"
                  f"sentinel monitor guardgate 127.0.0.1 {redis_port} 1\n"
                  "sentinel down-after-milliseconds guardgate 1000\n")
    with own_redis(redis_port):
        proc = subprocess.Popen([server, conf, "--sentinel"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            _wait_for_port(proc, sentinel_port)
            yield f"redis+sentinel://127.0.0.1:{sentinel_port}/guardgate"
        finally:
            proc.terminate()
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
