"""The answer text in what a detector is given: plain text, or JSON lines of
answers as the APIs return them (OpenAI chat, completions and responses;
Anthropic messages), or of ``{"text": ...}``.

An answer's text is what the marker marks: the walkers of the API answers
find it, each in the shape it knows, so detection reads exactly the text
that was marked, whichever API wrote the line.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Any

import orjson

from guardgate.apis import ADAPTERS
from guardgate.apis.answers import Edit

__all__ = ["answer_texts"]


def answer_texts(raw: bytes, *, jsonl: bool) -> Iterator[str]:
    if not jsonl:
        yield raw.decode("utf-8", "replace")
        return
    for line in raw.splitlines():
        if not line.strip():
            continue
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        yield from _texts(item)


def _texts(item: Any) -> Iterator[str]:
    if isinstance(item, str):
        yield item
        return
    if not isinstance(item, dict):
        return
    if isinstance(item.get("text"), str):
        yield item["text"]
    found = _Texts()
    edit = Edit()
    for adapter in ADAPTERS.values():
        edit.reset(item, b"")
        adapter.walker(False).mark(edit, found)
    yield from found.texts


class _Texts:
    """A text sink that keeps what it is given and changes nothing."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def whole(self, text: str) -> str:
        self.texts.append(text)
        return text

    def feed(self, key: Hashable, text: str) -> str:
        return self.whole(text)

    def close(self, key: Hashable) -> str:
        return ""

    def open_keys(self) -> list[Hashable]:
        return []
