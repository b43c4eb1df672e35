"""Entries kept by rank, to be forgotten lowest rank first.

`Ranked` is how the memory risk state bounds itself: callers ranked by how
risky they are, cluster windows by how many accounts they hold. Each rank
keeps its entries in the order they were last touched, so within a rank
the stalest go first; every operation is a dictionary operation or two.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol, TypeVar


class HasRank(Protocol):
    rank: int


V = TypeVar("V", bound=HasRank)


class Ranked(dict[str, V]):
    """Entries by key (read it as a dict; change it only through `put` and
    `drop`), each in the rank its ``rank`` attribute names."""

    __slots__ = ("_ranks", "_sweep")

    def __init__(self) -> None:
        super().__init__()
        self._ranks: list[OrderedDict[str, None]] = []
        self._sweep = 0

    def touch(self, key: str, item: V) -> None:
        """``item`` (held at ``key``) was used: the last of its rank to go."""
        self._ranks[item.rank].move_to_end(key)

    def put(self, key: str, item: V, rank: int) -> None:
        """Hold ``item`` at ``key`` in ``rank``, the last of it to go."""
        ranks = self._ranks
        held = self.get(key)
        if held is not None:
            del ranks[held.rank][key]
        while len(ranks) <= rank:
            ranks.append(OrderedDict())
        item.rank = rank
        self[key] = item
        ranks[rank][key] = None

    def drop(self, key: str) -> V:
        item = self.pop(key)
        del self._ranks[item.rank][key]
        return item

    def lowest(self) -> tuple[str, V] | None:
        """The entry to forget first: the stalest of the lowest rank."""
        for rank in self._ranks:
            if rank:
                key = next(iter(rank))
                return key, self[key]
        return None

    def sweep(self, expired: Callable[[V], bool], step: int) -> list[V]:
        """Drop up to ``step`` of the stalest entries of one rank (each call
        the next rank, in turn) while ``expired`` says they are."""
        ranks = self._ranks
        if not ranks:
            return []
        self._sweep = (self._sweep + 1) % len(ranks)
        rank = ranks[self._sweep]
        dropped = []
        for _ in range(step):
            if not rank:
                break
            key = next(iter(rank))
            if not expired(self[key]):
                break
            dropped.append(self.drop(key))
        return dropped


__all__ = ["Ranked"]
