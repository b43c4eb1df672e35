"""Shared fixtures. Tests that need Redis use a real one: skipped without it,
failed without it when CI is set."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from guardgate.toy import create_toy_app
from tests.servers import serve_in_thread

REDIS_URL = os.environ.get("GUARDGATE_TEST_REDIS", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except (redis.RedisError, OSError) as exc:
        message = f"Redis at {REDIS_URL} is not reachable: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return REDIS_URL


@pytest.fixture(scope="module")
def toy() -> Iterator[str]:
    """The toy model server, one per test module: its base URL."""
    with serve_in_thread(create_toy_app()) as base:
        yield base
