"""The proof-of-work puzzle.

A solution is ``<challenge token>.<nonce>``, the nonce a decimal number. It
is valid when the SHA-256 of the solution's ASCII bytes, read as a 256-bit
big-endian number, is below the target ``2^(256 - difficulty)``. Difficulty
may be fractional: each step of 1 doubles the expected work, so a policy can
tune it finely; ``difficulty: 20`` takes about 2^20 hashes on average.
"""

from __future__ import annotations

import hashlib
import itertools

MAX_NONCE_DIGITS = 20


def target(difficulty: float) -> int:
    return int(2 ** (256 - difficulty))


def split(solution: str) -> tuple[str, str]:
    """The challenge token and the nonce of a solution; ValueError when malformed."""
    token, dot, nonce = solution.rpartition(".")
    if not dot or not token or not nonce.isdigit() or len(nonce) > MAX_NONCE_DIGITS \
            or not nonce.isascii():
        raise ValueError("malformed solution")
    return token, nonce


def has_work(solution: str, difficulty: float) -> bool:
    digest = hashlib.sha256(solution.encode("ascii")).digest()
    return int.from_bytes(digest, "big") < target(difficulty)


def solve(token: str, difficulty: float, start: int = 0) -> str:
    """A solution for ``token``: the first nonce from ``start`` that has the work."""
    goal = target(difficulty)
    prefix = hashlib.sha256((token + ".").encode("ascii"))
    for nonce in itertools.count(start):
        h = prefix.copy()
        h.update(str(nonce).encode("ascii"))
        if int.from_bytes(h.digest(), "big") < goal:
            return f"{token}.{nonce}"
    raise AssertionError("unreachable")
