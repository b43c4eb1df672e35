"""The answer text in what a detector is given: plain text, or JSON lines of
answers as the APIs return them (OpenAI chat, completions and responses;
Anthropic messages), or of ``{"text": ...}``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson


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
    for choice in item.get("choices") or ():
        if isinstance(choice, dict):
            message = choice.get("message")
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                yield message["content"]
            if isinstance(choice.get("text"), str):
                yield choice["text"]
    for block in item.get("content") or ():  # Anthropic
        if isinstance(block, dict) and block.get("type") == "text":
            yield str(block.get("text", ""))
    for output in item.get("output") or ():  # OpenAI Responses
        if isinstance(output, dict):
            for part in output.get("content") or ():
                if isinstance(part, dict) and part.get("type") == "output_text":
                    yield str(part.get("text", ""))
