"""What a storage backend may raise, caught where a failure is the policy's
call (``on_storage_error``)."""

from __future__ import annotations

import limits.errors
from redis.exceptions import RedisError

from guardgate.errors import StorageError

STORAGE_ERRORS: tuple[type[BaseException], ...] = (
    StorageError,
    limits.errors.StorageError,
    RedisError,
    OSError,
    TimeoutError,
)
