"""Anthropic messages answers: a message whose ``content`` is a list of
blocks (text, thinking, tool use). A stream starts the message
(``message_start``, usage without the output count), then starts, grows and
stops each block by its ``index``, then reports usage in ``message_delta``.
A tool use block's ``input`` is an object in a JSON answer, a JSON text
streamed in pieces (``input_json_delta``) in a stream. There are no
logprobs."""

from __future__ import annotations

from bisect import bisect_left, insort

import orjson

from guardgate.apis.answers.walk import (
    Arguments,
    Edit,
    Json,
    TextSink,
    Usage,
    Walker,
    chars,
    dicts,
    read_usage,
    whole_arguments,
)


def _block_chars(block: Json) -> int:
    return chars(block.get("text")) + chars(block.get("thinking")) + chars(
        block.get("partial_json")
    )


def _thinking(block: object) -> bool:
    if type(block) is not dict:
        return False
    kind = block.get("type")
    return kind == "thinking" or kind == "redacted_thinking"


class Messages(Walker):
    __slots__ = ("_dropped",)
    items = "content"

    def __init__(self, streaming: bool) -> None:
        super().__init__(streaming)
        self._dropped: list[int] = []  # indexes of dropped thinking blocks, ascending

    def usage(self, value: Json) -> Usage | None:
        if not self.streaming:
            return read_usage(value.get("usage"))
        kind = value.get("type")
        if kind == "message_delta":
            return read_usage(value.get("usage"))
        if kind == "message_start":
            message = value.get("message")
            read = read_usage(message.get("usage")) if type(message) is dict else None
            # Its output count is a placeholder; message_delta has the real one.
            return (read[0], None) if read is not None else None
        return None

    def chars(self, value: Json) -> int:
        if not self.streaming:
            return sum(_block_chars(block) for block in dicts(value.get("content")))
        if value.get("type") == "content_block_delta":
            delta = value.get("delta")
            return _block_chars(delta) if type(delta) is dict else 0
        return 0

    # -- reasoning: thinking blocks

    def drop_reasoning(self, edit: Edit) -> None:
        value = edit.value
        if not self.streaming:
            _drop_thinking(value, edit)
            return
        kind, index = value.get("type"), value.get("index")
        if kind == "message_start":
            message = value.get("message")
            if type(message) is dict:
                _drop_thinking(message, edit)
        elif type(index) is int and type(kind) is str and kind.startswith("content_block_"):
            if kind == "content_block_start" and _thinking(value.get("content_block")):
                if index not in self._dropped:
                    insort(self._dropped, index)
                edit.dropped = True
            elif index in self._dropped:
                edit.dropped = True
            else:
                # Later blocks move up into the places of dropped ones.
                sent = index - bisect_left(self._dropped, index)
                if sent != index:
                    value["index"] = sent
                    edit.changed = True

    # -- the answer text: text blocks

    def mark(self, edit: Edit, sink: TextSink) -> None:
        value = edit.value
        if not self.streaming:
            _mark_blocks(value, sink, edit)
            return
        kind, index = value.get("type"), value.get("index")
        if kind == "message_start":
            message = value.get("message")
            if type(message) is dict:
                _mark_blocks(message, sink, edit)
        elif kind == "message_delta" or kind == "message_stop":
            edit.before += self.held(sink)
        elif type(index) is not int:
            return
        elif kind == "content_block_delta":
            delta = value.get("delta")
            if type(delta) is not dict:
                return
            part = delta.get("type")
            key: int | Arguments
            if part == "text_delta":
                field, key = "text", index
            elif part == "input_json_delta":
                field, key = "partial_json", Arguments(index)
            else:
                return
            text = delta.get(field)
            if type(text) is str and text:
                marked = sink.feed(key, text)
                if marked != text:
                    delta[field] = marked
                    edit.changed = True
        elif kind == "content_block_stop":
            edit.before += self._close(index, sink)

    def _close(self, index: int, sink: TextSink) -> list[Json]:
        """The block ends: deltas with what the sink held of its text or its input."""
        out = []
        rest = sink.close(index)
        if rest:
            out.append({"type": "content_block_delta", "index": index,
                        "delta": {"type": "text_delta", "text": rest}})
        rest = sink.close(Arguments(index))
        if rest:
            out.append({"type": "content_block_delta", "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": rest}})
        return out

    def held(self, sink: TextSink) -> list[Json]:
        indexes: set[int] = set()
        for key in sink.open_keys():
            if type(key) is int:
                indexes.add(key)
            elif type(key) is Arguments:
                indexes.add(key.part)
        return [event for index in sorted(indexes) for event in self._close(index, sink)]


def _drop_thinking(message: Json, edit: Edit) -> None:
    content = message.get("content")
    if type(content) is list:
        kept = [block for block in content if not _thinking(block)]
        if len(kept) != len(content):
            message["content"] = kept
            edit.changed = True


def _mark_blocks(message: Json, sink: TextSink, edit: Edit) -> None:
    for block in dicts(message.get("content")):
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            if type(text) is str:
                marked = sink.whole(text)
                if marked != text:
                    block["text"] = marked
                    edit.changed = True
        elif kind == "tool_use" and type(block.get("input")) is dict:
            _mark_input(block, sink, edit)


def _mark_input(block: Json, sink: TextSink, edit: Edit) -> None:
    """A tool use's ``input`` object, marked as the JSON text a stream
    would carry: only its string values may change."""
    try:
        given = orjson.dumps(block["input"]).decode()
        marked = whole_arguments(sink, given)
        if marked != given:
            block["input"] = orjson.loads(marked)
            edit.changed = True
    except (orjson.JSONEncodeError, orjson.JSONDecodeError):
        return
