"""The marker: the last processor of a marked tier's answers, handing the
answer text, and only it (never reasoning), to a `TextFilter` per text part:
the watermark's hook. Tool calls' arguments, a JSON text, go to a filter of
their own when the filters can mark JSON (`JsonTextFilter`, as the
watermark's `Marker` can), one per call; otherwise they pass as they came.

A filter may hold text back while a part streams (a word not yet whole);
what it holds goes out when the part ends, or when the stream does, in an
event the walker shapes for its API. A stream is marked exactly as the same
answer in one piece would be, and so are arguments streamed in pieces.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Protocol, runtime_checkable

from guardgate.apis.answers import Arguments, Edit, Processor, Walker

__all__ = ["JsonTextFilter", "TextFilter", "TextMarker"]


class TextFilter(Protocol):
    """Rewrites one answer text as it streams: `feed` may hold text back, `flush` returns it."""

    def feed(self, text: str) -> str: ...

    def flush(self) -> str: ...


@runtime_checkable
class JsonTextFilter(Protocol):
    """A `TextFilter` that can mark JSON too: `for_json` makes a filter for
    a text that is JSON (tool-call arguments), one that changes the prose of
    its string values only and keeps it JSON of the same structure."""

    def feed(self, text: str) -> str: ...

    def flush(self) -> str: ...

    def for_json(self) -> TextFilter: ...


class _Unchanged:
    """A filter that changes nothing: arguments, for filters that cannot mark JSON."""

    __slots__ = ()

    def feed(self, text: str) -> str:
        return text

    def flush(self) -> str:
        return ""


class TextMarker(Processor):
    """Marks one answer's text parts and tool calls' arguments, a filter
    from ``new_filter`` for each."""

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
            text_filter = self._filters[key] = self._filter(key)
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

    def _filter(self, key: Hashable) -> TextFilter:
        """A new filter for the part ``key`` names: for arguments, one that marks JSON."""
        made = self._new()
        if type(key) is not Arguments:
            return made
        return made.for_json() if isinstance(made, JsonTextFilter) else _Unchanged()
