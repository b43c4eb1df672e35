"""Shared fixtures. Tests that need Redis use a real one of their own: a
redis-server the session starts on a free port (nothing kept on disk), so
the tests may empty it at will and no one else's data is touched. Set
GUARDGATE_TEST_REDIS to a Redis URL to use another server instead: its
database is then emptied by the tests. Without either the Redis tests are
skipped, and fail when CI is set."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis

from guardgate.toy import create_toy_app
from tests.servers import (
    RedisCluster,
    free_port,
    own_redis_cluster,
    own_redis_sentinel,
    serve_in_thread,
)


def _ping(url: str) -> None:
    redis.Redis.from_url(url, socket_connect_timeout=1).ping()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    given = os.environ.get("GUARDGATE_TEST_REDIS")
    if given:
        try:
            _ping(given)
        except (redis.RedisError, OSError) as exc:
            _unavailable(f"Redis at {given} (GUARDGATE_TEST_REDIS) is not reachable: {exc}")
        yield given
        return
    binary = shutil.which("redis-server")
    if binary is None:
        _unavailable("redis-server is not installed (or set GUARDGATE_TEST_REDIS)")
    port = free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                _ping(url)
                break
            except (redis.RedisError, OSError) as exc:
                if server.poll() is not None or time.monotonic() > deadline:
                    _unavailable(f"redis-server on port {port} did not start: {exc}")
                time.sleep(0.05)
        yield url
    finally:
        server.terminate()
        server.wait(10)


def _unavailable(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def toy() -> Iterator[str]:
    """The toy model server, one per test module: its base URL."""
    with serve_in_thread(create_toy_app()) as base:
        yield base


@pytest.fixture(params=["memory", "redis"])
def storage(request: pytest.FixtureRequest) -> str:
    """Each storage backend in turn: memory, then the private Redis."""
    if request.param == "memory":
        return "memory://"
    url: str = request.getfixturevalue("redis_url")
    return url


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A Redis Cluster of the session's own (three primaries, three
    replicas); skipped without redis-server, failed when CI is set."""
    try:
        with own_redis_cluster() as cluster:
            yield cluster
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        _unavailable(f"a Redis Cluster could not be started: {exc}")


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[str]:
    """A Redis watched by a Redis Sentinel, the session's own: its
    ``redis+sentinel://`` URL."""
    try:
        with own_redis_sentinel() as url:
            yield url
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        _unavailable(f"a Redis Sentinel could not be started: {exc}")
