"""Shared state: the `Store` interface and its backends, opened by URL
scheme (`open_store`): ``memory://`` in this process, Redis, Redis Cluster
or Redis Sentinel for many replicas. Every backend raises `StorageError`
for what its clients raise."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# Each backend registers its schemes on import.
import guardgate.store.memory
import guardgate.store.redis  # noqa: F401
from guardgate.errors import StorageError
from guardgate.store.base import BACKENDS, Store, open_store
from guardgate.store.first_seen import FirstSeen


def redacted(url: str) -> str:
    """``url`` as it may be shown: a password in it (``user:password@``, or
    the ``password`` query parameter redis-py also reads) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None and "password" not in parts.query.lower():
        return url
    if parts.password is not None:
        user = parts.username or ""
        parts = parts._replace(netloc=f"{user}:***@{parts.netloc.rpartition('@')[2]}")
    if "password" in parts.query.lower():
        query = [(k, "***" if k.lower() == "password" else v)
                 for k, v in parse_qsl(parts.query, keep_blank_values=True)]
        parts = parts._replace(query=urlencode(query, safe="*"))
    return urlunsplit(parts)


__all__ = ["BACKENDS", "FirstSeen", "StorageError", "Store", "open_store", "redacted"]
