"""The keyed choice: for a slot's context and group, the member the key
selects."""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

from guardgate.perturb.watermark.table import SHIPPED, Vocabulary


class Key:
    """The keyed choice: for a context and a group's candidates, one member.
    ``vocabulary``: the groups marked (the shipped ones, and a deployment's
    private table); the key hashes a group's name from it."""

    def __init__(self, key: bytes, vocabulary: Vocabulary = SHIPPED) -> None:
        self._key = key
        self.vocabulary = vocabulary
        self._names = vocabulary.names
        self.choice = lru_cache(maxsize=65536)(self._choice)

    def _choice(self, context: str, group: int, candidates: tuple[str, ...]) -> str:
        message = f"{context}\x1f{self._names[group]}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        ordered = sorted(candidates)  # as the name has them: a line's order does not count
        return ordered[int.from_bytes(digest[:8], "big") % len(ordered)]
