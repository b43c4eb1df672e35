"""OpenAI chat completions answers: ``choices[].message`` in a JSON answer,
``choices[].delta`` in a stream chunk; both hold the answer text
(``content``), reasoning fields, a refusal and tool calls, whose arguments
(``tool_calls[].function.arguments``, or the older ``function_call``) are a
JSON text, streamed in pieces per call ``index``."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from guardgate.apis.answers.choices import Choices, replace_text
from guardgate.apis.answers.walk import (
    Arguments,
    Edit,
    Json,
    LogprobSink,
    TextSink,
    chars,
    dicts,
    whole_arguments,
)

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
        if type(message) is not dict:
            return
        if type(message.get("content")) is str:
            replace_text(message, "content", sink.whole(message["content"]), edit)
        for function in _functions(message):
            if type(function.get("arguments")) is str:
                marked = whole_arguments(sink, function["arguments"])
                replace_text(function, "arguments", marked, edit)

    def mark_piece(self, choice: Json, key: Hashable, sink: TextSink, edit: Edit) -> None:
        delta = choice.get("delta")
        if type(delta) is not dict:
            return
        content = delta.get("content")
        if type(content) is str and content:
            replace_text(delta, "content", sink.feed(key, content), edit)
        if type(key) is not int:
            return
        for call, function in _calls(delta):
            arguments = function.get("arguments")
            if type(arguments) is str and arguments:
                marked = sink.feed(Arguments(key, call), arguments)
                replace_text(function, "arguments", marked, edit)

    def finish(self, choice: Json, index: int, sink: TextSink, edit: Edit) -> None:
        super().finish(choice, index, sink, edit)
        for key in sink.open_keys():
            if type(key) is Arguments and key.part == index:
                rest = sink.close(key)
                if rest:
                    delta = choice.get("delta")
                    if type(delta) is not dict:
                        delta = choice["delta"] = {}
                    _add_arguments(delta, key.call, rest)
                    edit.changed = True

    def held_choice(self, key: Hashable, text: str) -> Json | None:
        if type(key) is not Arguments:
            return super().held_choice(key, text)
        delta: Json = {}
        _add_arguments(delta, key.call, text)
        return {"index": key.part, "delta": delta, "logprobs": None, "finish_reason": None}

    def append(self, choice: Json, text: str) -> None:
        delta = choice.get("delta")
        if type(delta) is not dict:
            delta = choice["delta"] = {}
        content = delta.get("content")
        delta["content"] = (content if type(content) is str else "") + text

    def chunk(self, index: int, text: str) -> dict[str, Any]:
        return {"index": index, "delta": {"content": text}, "logprobs": None,
                "finish_reason": None}


_FUNCTION_CALL = "function_call"  # the call key of a choice's (older) single function call


def _functions(message: Json) -> list[Json]:
    """The ``function`` objects of a message's tool calls, and its function call."""
    return [function for _, function in _calls(message)]


def _calls(message: Json) -> list[tuple[int | str, Json]]:
    """Each call of a message or a delta, with its key among the choice's
    calls: a tool call's ``index`` (its place when there is none), or
    "function_call"."""
    out: list[tuple[int | str, Json]] = []
    calls = message.get("tool_calls")
    if type(calls) is list:
        for place, call in enumerate(calls):
            if type(call) is dict and type(call.get("function")) is dict:
                index = call.get("index")
                out.append((index if type(index) is int else place, call["function"]))
    function = message.get(_FUNCTION_CALL)
    if type(function) is dict:
        out.append((_FUNCTION_CALL, function))
    return out


def _add_arguments(delta: Json, call: int | str, text: str) -> None:
    """Add ``text`` to the arguments that ``delta`` carries for ``call``."""
    if call == _FUNCTION_CALL:
        function = delta.get(_FUNCTION_CALL)
        if type(function) is not dict:
            function = delta[_FUNCTION_CALL] = {}
    else:
        calls = delta.get("tool_calls")
        if type(calls) is not list:
            calls = delta["tool_calls"] = []
        found = next((c for c in calls if type(c) is dict and c.get("index") == call
                      and type(c.get("function")) is dict), None)
        if found is None:
            found = {"index": call, "function": {}}
            calls.append(found)
        function = found["function"]
    given = function.get("arguments")
    function["arguments"] = (given if type(given) is str else "") + text


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
