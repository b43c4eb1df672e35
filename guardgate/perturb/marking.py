"""The marker: the last processor of a marked tier's answers, handing the
answer text, and only it (never reasoning or tool arguments), to a
`TextFilter` per text part: the watermark's hook.

A filter may hold text back while a part streams (a word not yet whole);
what it holds goes out when the part ends, or when the stream does, in an
event the walker shapes for its API. A stream is marked exactly as the same
answer in one piece would be.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Protocol

from guardgate.apis.answers import Edit, Processor, Walker

__all__ = ["TextFilter", "TextMarker"]


class TextFilter(Protocol):
    """Rewrites one answer text as it streams: `feed` may hold text back, `flush` returns it."""

    def feed(self, text: str) -> str: ...

    def flush(self) -> str: ...


class TextMarker(Processor):
    """Marks one answer's text parts, a filter from ``new_filter`` for each."""

    __slots__ = ("_filters", "_new", "_walker")

    def __init__(self, walker: Walker, new_filter: Callable[[], TextFilter]) -> None:
        self._walker = walker
        self._new = new_filter
        self._filters: dict[Hashable, TextFilter] = {}  # parts that are streaming

    def answer(self, edit: Edit) -> None:
        self._walker.mark(edit, self)

    def event(self, edit: Edit) -> None:
        self._walker.mark(edit, self)

    def end(self, events: list[dict[str, Any]]) -> None:
        events += self._walker.held(self)

    # -- what the walker hands over (`TextSink`)

    def feed(self, key: Hashable, text: str) -> str:
        text_filter = self._filters.get(key)
        if text_filter is None:
            text_filter = self._filters[key] = self._new()
        return text_filter.feed(text)

    def close(self, key: Hashable) -> str:
        text_filter = self._filters.pop(key, None)
        return text_filter.flush() if text_filter is not None else ""

    def whole(self, text: str) -> str:
        if not text:
            return text
        text_filter = self._new()
        return text_filter.feed(text) + text_filter.flush()

    def open_keys(self) -> list[Hashable]:
        return list(self._filters)
