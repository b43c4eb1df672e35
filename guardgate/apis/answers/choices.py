"""What OpenAI chat completions and completions answers share: ``choices``,
each with an ``index`` and one answer text, whole in a JSON answer and in
pieces across stream chunks until the chunk that gives its finish reason."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from guardgate.apis.answers.walk import (
    Edit,
    Json,
    LogprobSink,
    TextSink,
    Usage,
    Walker,
    dicts,
    discount_reasoning,
    read_usage,
)


def choice_index(choice: Json) -> int:
    index = choice.get("index")
    return index if type(index) is int else 0


class Choices(Walker):
    """One chat or completions answer; subclasses say where a choice keeps its text."""

    __slots__ = ("_last",)
    items = "choices"

    def __init__(self, streaming: bool) -> None:
        super().__init__(streaming)
        # The last chunk the marker saw: its fields (id, model, ...) go on a
        # chunk that carries text still held when the stream ends.
        self._last: Json | None = None

    def usage(self, value: Json) -> Usage | None:
        usage = value.get("usage")
        return None if usage is None else read_usage(usage)

    # -- logprobs: ``choices[].logprobs``, null when there are none

    def drop_logprobs(self, edit: Edit) -> None:
        for choice in dicts(edit.value.get("choices")):
            if choice.get("logprobs") is not None:
                choice["logprobs"] = None
                edit.changed = True

    def logprobs(self, edit: Edit, sink: LogprobSink) -> None:
        for choice in dicts(edit.value.get("choices")):
            logprobs = choice.get("logprobs")
            # A stream's tokens count on per choice; a JSON answer's start at 0.
            index = choice_index(choice) if self.streaming else None
            if logprobs is not None and self.choice_logprobs(logprobs, index, sink):
                edit.changed = True

    def choice_logprobs(self, logprobs: object, index: int | None, sink: LogprobSink) -> bool:
        raise NotImplementedError

    # -- reasoning: the usage's reasoning tokens; chat adds its own fields

    def drop_reasoning(self, edit: Edit) -> None:
        value = edit.value
        choices = value.get("choices")
        if type(choices) is not list:
            if self.streaming:
                return
            choices = []
        emptied = sum(self.drop_choice_reasoning(choice, edit) for choice in dicts(choices))
        if discount_reasoning(value.get("usage"), "completion_tokens",
                              "completion_tokens_details"):
            edit.changed = True
        if emptied and emptied == len(choices) and value.get("usage") is None:
            edit.dropped = True  # the chunk only carried reasoning

    def drop_choice_reasoning(self, choice: Json, edit: Edit) -> int:
        """Drop one choice's reasoning; 1 when a stream choice then carries nothing."""
        return 0

    # -- the answer text: one per choice

    def mark(self, edit: Edit, sink: TextSink) -> None:
        choices = edit.value.get("choices")
        if type(choices) is not list:
            return
        if not self.streaming:
            for choice in dicts(choices):
                self.mark_whole(choice, sink, edit)
            return
        self._last = edit.value
        for choice in dicts(choices):
            index = choice_index(choice)
            self.mark_piece(choice, index, sink, edit)
            if choice.get("finish_reason") is not None:
                self.finish(choice, index, sink, edit)

    def finish(self, choice: Json, index: int, sink: TextSink, edit: Edit) -> None:
        """The choice's last chunk: it gets what the sink still held for the choice."""
        rest = sink.close(index)
        if rest:
            self.append(choice, rest)
            edit.changed = True

    def held(self, sink: TextSink) -> list[Json]:
        out = []
        for key in sink.open_keys():
            rest = sink.close(key)
            if rest and self._last is not None:
                choice = self.held_choice(key, rest)
                if choice is not None:
                    base = {k: v for k, v in self._last.items()
                            if k != "choices" and k != "usage"}
                    out.append({**base, "choices": [choice]})
        return out

    def held_choice(self, key: Hashable, text: str) -> Json | None:
        """A choice carrying only ``text``, which the sink held under ``key``."""
        return self.chunk(key, text) if type(key) is int else None

    def mark_whole(self, choice: Json, sink: TextSink, edit: Edit) -> None:
        raise NotImplementedError

    def mark_piece(self, choice: Json, key: Hashable, sink: TextSink, edit: Edit) -> None:
        raise NotImplementedError

    def append(self, choice: Json, text: str) -> None:
        """Add ``text`` to what the choice of this chunk carries."""
        raise NotImplementedError

    def chunk(self, index: int, text: str) -> dict[str, Any]:
        """A choice carrying only ``text``, for a chunk of its own."""
        raise NotImplementedError


def replace_text(holder: Json, field: str, text: str, edit: Edit) -> None:
    """Put ``text`` at ``holder[field]``; the edit changed when it differs."""
    if holder[field] != text:
        holder[field] = text
        edit.changed = True
