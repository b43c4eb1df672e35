"""The storage boundary: whatever a backend's client raises (Redis, the
`limits` storage, a socket) leaves `guardgate.store` as `StorageError`, the
one exception the steps catch where a failure is the policy's call
(``on_storage_error``)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import limits.errors
from redis.exceptions import RedisClusterException, RedisError

from guardgate.errors import StorageError

# What a backend's clients raise when the storage fails.
FOREIGN: tuple[type[BaseException], ...] = (
    limits.errors.StorageError,
    RedisError,
    RedisClusterException,
    OSError,
    TimeoutError,
)

T = TypeVar("T")


def translated(method: Callable[..., Awaitable[T]], operation: str) -> Callable[..., Awaitable[T]]:
    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> T:
        try:
            return await method(*args, **kwargs)
        except FOREIGN as exc:
            raise StorageError(f"{operation}: {exc!r}") from exc

    return call


C = TypeVar("C", bound=type)


def guarded(cls: C) -> C:
    """``cls`` with each of its public coroutine methods raising
    `StorageError` for what its client raised."""
    for name, attr in list(vars(cls).items()):
        if not name.startswith("_") and inspect.iscoroutinefunction(attr):
            setattr(cls, name, translated(attr, f"{cls.__name__}.{name}"))
    return cls


__all__ = ["FOREIGN", "StorageError", "guarded", "translated"]
