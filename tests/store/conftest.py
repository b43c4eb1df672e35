"""Every backend in turn: memory, the tests' own Redis, Redis Cluster and
Redis behind a Sentinel. A store per test, closed after it; each test names
its own keys (`unique`), so none needs to empty a server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from guardgate.store import Store, open_store
from tests.servers import RedisCluster


@pytest.fixture(params=["memory", "redis", "cluster", "sentinel"])
def backend_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    if request.param in ("redis", "sentinel"):
        fixture = "redis_url" if request.param == "redis" else "redis_sentinel"
        url: str = request.getfixturevalue(fixture)
        return url
    cluster: RedisCluster = request.getfixturevalue("redis_cluster")
    return cluster.url


@pytest.fixture
async def store(backend_url: str) -> AsyncIterator[Store]:
    opened = open_store(backend_url)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def unique() -> str:
    """A name of the test's own, for its keys and principals."""
    return uuid.uuid4().hex[:12]
