"""OpenAI chat completions answers: ``choices[].message`` in a JSON answer,
``choices[].delta`` in a stream chunk; both hold the answer text
(``content``), reasoning fields, a refusal and tool calls."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from guardgate.apis.answers.choices import Choices, replace_text
from guardgate.apis.answers.walk import Edit, Json, LogprobSink, TextSink, chars, dicts

# Generated text the meter counts; reasoning models write one of the first two.
_TEXT = ("content", "reasoning_content", "reasoning", "refusal")
_REASONING = ("reasoning_content", "reasoning", "reasoning_details")
_LOGPROB_LISTS = ("content", "refusal")


class Chat(Choices):
    __slots__ = ()

    def chars(self, value: Json) -> int:
        total = 0
        part = "delta" if self.streaming else "message"
        for choice in dicts(value.get("choices")):
            message = choice.get(part)
            if type(message) is dict:
                total += _message_chars(message)
        return total

    def choice_logprobs(self, logprobs: object, index: int | None, sink: LogprobSink) -> bool:
        if type(logprobs) is not dict:
            return False
        changed = False
        for field in _LOGPROB_LISTS:
            entries = logprobs.get(field)
            if type(entries) is list:
                changed |= sink.entries(entries, None if index is None else (index, field))
        return changed

    def drop_choice_reasoning(self, choice: Json, edit: Edit) -> int:
        message = choice.get("delta" if self.streaming else "message")
        if type(message) is not dict:
            return 0
        carried = False
        for key in _REASONING:
            if key in message:
                del message[key]
                carried = edit.changed = True
        empty = (
            self.streaming
            and carried
            and all(v is None for v in message.values())
            and choice.get("finish_reason") is None
            and choice.get("logprobs") is None
        )
        return 1 if empty else 0

    def mark_whole(self, choice: Json, sink: TextSink, edit: Edit) -> None:
        message = choice.get("message")
        if type(message) is dict and type(message.get("content")) is str:
            replace_text(message, "content", sink.whole(message["content"]), edit)

    def mark_piece(self, choice: Json, key: Hashable, sink: TextSink, edit: Edit) -> None:
        delta = choice.get("delta")
        if type(delta) is dict:
            content = delta.get("content")
            if type(content) is str and content:
                replace_text(delta, "content", sink.feed(key, content), edit)

    def append(self, choice: Json, text: str) -> None:
        delta = choice.get("delta")
        if type(delta) is not dict:
            delta = choice["delta"] = {}
        content = delta.get("content")
        delta["content"] = (content if type(content) is str else "") + text

    def chunk(self, index: int, text: str) -> dict[str, Any]:
        return {"index": index, "delta": {"content": text}, "logprobs": None,
                "finish_reason": None}


def _message_chars(message: Json) -> int:
    total = 0
    for key in _TEXT:
        value = message.get(key)
        if type(value) is str:
            total += len(value)
    calls = message.get("tool_calls")
    if calls is not None:
        for call in dicts(calls):
            function = call.get("function")
            if type(function) is dict:
                total += chars(function.get("arguments"))
    return total
