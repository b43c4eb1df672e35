"""OpenAI (legacy) completions answers: ``choices[].text``, the same in a
JSON answer and a stream chunk, with logprobs as parallel lists."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from guardgate.apis.answers.choices import Choices, replace_text
from guardgate.apis.answers.walk import Edit, Json, LogprobSink, TextSink, chars, dicts


class Completions(Choices):
    __slots__ = ()

    def chars(self, value: Json) -> int:
        return sum(chars(choice.get("text")) for choice in dicts(value.get("choices")))

    def choice_logprobs(self, logprobs: object, index: int | None, sink: LogprobSink) -> bool:
        return type(logprobs) is dict and sink.table(logprobs, index)

    def mark_whole(self, choice: Json, sink: TextSink, edit: Edit) -> None:
        if type(choice.get("text")) is str:
            replace_text(choice, "text", sink.whole(choice["text"]), edit)

    def mark_piece(self, choice: Json, key: Hashable, sink: TextSink, edit: Edit) -> None:
        text = choice.get("text")
        if type(text) is str and text:
            replace_text(choice, "text", sink.feed(key, text), edit)

    def append(self, choice: Json, text: str) -> None:
        given = choice.get("text")
        choice["text"] = (given if type(given) is str else "") + text

    def chunk(self, index: int, text: str) -> dict[str, Any]:
        return {"text": text, "index": index, "logprobs": None, "finish_reason": None}
