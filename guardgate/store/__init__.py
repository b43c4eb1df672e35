"""Shared state: in-process memory, or Redis for many replicas."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import RedisError


def is_redis(url: str) -> bool:
    return url.startswith(("redis://", "rediss://", "redis+cluster://", "unix://"))


async def storage_ready(url: str, timeout: float = 2.0) -> bool:
    """Whether the configured storage answers (memory always does)."""
    if not is_redis(url):
        return True
    cluster = url.startswith("redis+cluster://")
    target = "redis://" + url[len("redis+cluster://") :] if cluster else url
    client: aioredis.Redis | aioredis.RedisCluster
    try:
        if cluster:
            client = aioredis.RedisCluster.from_url(target, socket_timeout=timeout)
        else:
            client = aioredis.Redis.from_url(
                target, socket_timeout=timeout, socket_connect_timeout=timeout
            )
        async with client:
            return bool(await client.ping())
    except (RedisError, OSError, ValueError):
        return False
