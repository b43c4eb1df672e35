"""OpenAI Responses answers: a response whose ``output`` is a list of items
(messages with content parts, reasoning, tool calls). A stream tells the
same as typed events about items (``output_index``) and their parts
(``content_index``), numbered by ``sequence_number``, and repeats the whole
response in its lifecycle events (created, in progress, completed).

Text a part streamed is repeated at its end (``output_text.done``, the
done events of its part and item, the completed response): the walker keeps
what was sent for each part so that every repetition says the same. So are
the arguments of a function call item, a JSON text
(``function_call_arguments.delta``, then ``.done`` and the item's).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Iterator

from guardgate.apis.answers.walk import (
    Arguments,
    Edit,
    Json,
    LogprobSink,
    TextSink,
    Usage,
    Walker,
    chars,
    dicts,
    discount_reasoning,
    read_usage,
    whole_arguments,
)

# Events carrying generated text the meter counts.
_DELTAS = frozenset(
    {
        "response.output_text.delta",
        "response.refusal.delta",
        "response.reasoning_text.delta",
        "response.reasoning_summary_text.delta",
        "response.function_call_arguments.delta",
        "response.custom_tool_call_input.delta",
        "response.audio.transcript.delta",
    }
)
# Lifecycle events that close the response: its usage is final, its text too.
_ENDS = frozenset(
    {"response.completed", "response.incomplete", "response.failed", "response.done"}
)

PartKey = tuple[int, int]  # (output_index, content_index)
# What the walker hands the sink: an output_text part, or the arguments of
# the function call item at an output index.
_Key = PartKey | Arguments
# What to do with an output_text part's text met in an event: leave it (the
# part is still streaming), give the part's whole text as it was sent, or
# mark it on its own (a snapshot taken before the part ended).
_STREAMING, _FINAL, _FRESH = 0, 1, 2


def _kind(value: Json) -> str | None:
    kind = value.get("type")
    return kind if type(kind) is str else None


def _text_parts(response: Json) -> Iterator[tuple[PartKey, Json]]:
    """The output_text parts of the message items of a whole response."""
    output = response.get("output")
    for index, item in enumerate(output if type(output) is list else ()):
        if type(item) is dict and item.get("type") == "message":
            yield from _message_parts(item, index)


def _message_parts(item: Json, index: int) -> Iterator[tuple[PartKey, Json]]:
    for part_index, part in enumerate(dicts(item.get("content"))):
        if part.get("type") == "output_text":
            yield (index, part_index), part


def _marked_parts(item: object, index: int) -> Iterator[tuple[_Key, Json, str]]:
    """What the marker changes in an output item: the text of its
    output_text parts, the arguments of a function call; each with its key
    and the field holding it."""
    if type(item) is not dict:
        return
    kind = item.get("type")
    if kind == "message":
        for key, part in _message_parts(item, index):
            yield key, part, "text"
    elif kind == "function_call":
        yield Arguments(index), item, "arguments"


def _index(key: _Key) -> int:
    """The output index of what ``key`` names."""
    return key.part if isinstance(key, Arguments) else key[0]


_Holder = tuple[Json, PartKey | None]


def _delta_holders(value: Json, index: int) -> list[_Holder]:
    part = value.get("content_index")
    return [(value, (index, part if type(part) is int else 0))]


def _done_holders(value: Json, index: int) -> list[_Holder]:
    return [(value, None)]


def _part_holders(value: Json, index: int) -> list[_Holder]:
    part = value.get("part")
    return [(part, None)] if type(part) is dict and part.get("type") == "output_text" else []


def _item_holders(value: Json, index: int) -> list[_Holder]:
    item = value.get("item")
    if type(item) is not dict or item.get("type") != "message":
        return []
    return [(part, None) for _, part in _message_parts(item, index)]


# Stream events about one output item -> what in them holds logprobs.
_HOLDERS: dict[str, Callable[[Json, int], list[_Holder]]] = {
    "response.output_text.delta": _delta_holders,
    "response.output_text.done": _done_holders,
    "response.content_part.added": _part_holders,
    "response.content_part.done": _part_holders,
    "response.output_item.added": _item_holders,
    "response.output_item.done": _item_holders,
}


class Responses(Walker):
    __slots__ = ("_dropped", "_final", "_next", "_pieces", "_shift", "_where")
    numbers = True
    items = "output"

    def __init__(self, streaming: bool) -> None:
        super().__init__(streaming)
        self._dropped: list[int] = []  # output indexes of dropped reasoning items, ascending
        self._shift = 0  # events added minus events dropped: later sequence numbers move by it
        self._next: int | None = None  # the sequence number of an event added at the end
        self._pieces: dict[_Key, list[str]] = {}  # marked text sent so far, per open part
        self._where: dict[_Key, tuple[object, int]] = {}  # item id and index, per open part
        self._final: dict[_Key, str] = {}  # whole marked text of each part that ended

    # -- usage and text counts

    def usage(self, value: Json) -> Usage | None:
        if not self.streaming:
            return read_usage(value.get("usage"))
        if _kind(value) in _ENDS:
            response = value.get("response")
            if type(response) is dict:
                return read_usage(response.get("usage"))
        return None

    def chars(self, value: Json) -> int:
        if self.streaming:
            return chars(value.get("delta")) if _kind(value) in _DELTAS else 0
        total = 0
        for item in dicts(value.get("output")):
            total += chars(item.get("arguments"))
            for part in dicts(item.get("content")) + dicts(item.get("summary")):
                total += chars(part.get("text")) + chars(part.get("refusal"))
        return total

    # -- logprobs: a list on each output_text part and text event; [] when none

    def _logprob_holders(self, value: Json) -> list[_Holder]:
        """What holds logprobs in ``value``, each with the key its tokens count on under."""
        if not self.streaming:
            return [(part, None) for _, part in _text_parts(value)]
        kind, response = _kind(value), value.get("response")
        if kind is None:
            return []
        if type(response) is dict:
            return [(part, None) for _, part in _text_parts(response)]
        index = value.get("output_index")
        holders = _HOLDERS.get(kind)
        return holders(value, index) if holders is not None and type(index) is int else []

    def drop_logprobs(self, edit: Edit) -> None:
        for holder, _ in self._logprob_holders(edit.value):
            if type(holder.get("logprobs")) is list and holder["logprobs"]:
                holder["logprobs"] = []
                edit.changed = True

    def logprobs(self, edit: Edit, sink: LogprobSink) -> None:
        for holder, key in self._logprob_holders(edit.value):
            entries = holder.get("logprobs")
            if type(entries) is list and sink.entries(entries, key):
                edit.changed = True

    # -- reasoning: reasoning items, and the events about them

    def drop_reasoning(self, edit: Edit) -> None:
        value = edit.value
        if not self.streaming:
            self._drop_reasoning_items(value, edit)
            return
        kind, response = _kind(value), value.get("response")
        if kind is None:
            return
        if type(response) is dict:
            self._drop_reasoning_items(response, edit)
            return
        index, item = value.get("output_index"), value.get("item")
        if type(index) is not int:
            edit.dropped = kind.startswith("response.reasoning")
        elif type(item) is dict and item.get("type") == "reasoning":
            if index not in self._dropped:
                insort(self._dropped, index)
            edit.dropped = True
        elif kind.startswith("response.reasoning") or index in self._dropped:
            edit.dropped = True
        else:
            # Later items move up into the places of dropped ones.
            sent = index - bisect_left(self._dropped, index)
            if sent != index:
                value["output_index"] = sent
                edit.changed = True

    def _drop_reasoning_items(self, response: Json, edit: Edit) -> None:
        output = response.get("output")
        if type(output) is list:
            kept = [i for i in output if type(i) is not dict or i.get("type") != "reasoning"]
            if len(kept) != len(output):
                response["output"] = kept
                edit.changed = True
        if discount_reasoning(response.get("usage"), "output_tokens", "output_tokens_details"):
            edit.changed = True

    # -- the answer text: output_text parts of message items; function call arguments

    def mark(self, edit: Edit, sink: TextSink) -> None:
        value = edit.value
        if not self.streaming:
            # Each part's text once, marked on its own: an answer read one
            # output item at a time numbers each item 0.
            self._mark_response(value, _FRESH, sink, edit)
            return
        kind = _kind(value)
        if kind is None:
            return
        response = value.get("response")
        if type(response) is dict:
            if kind in _ENDS:
                edit.before += self._close_all(sink)
            self._mark_response(response, _FINAL if kind in _ENDS else _FRESH, sink, edit)
            return
        index = value.get("output_index")
        mark = _MARKS.get(kind)
        if mark is not None and type(index) is int:
            part = value.get("content_index")
            mark(self, value, (index, part if type(part) is int else 0), sink, edit)

    def _mark_delta(self, value: Json, key: _Key, sink: TextSink, edit: Edit) -> None:
        delta = value.get("delta")
        if type(delta) is str:
            text = sink.feed(key, delta)
            if text != delta:
                value["delta"] = text
                edit.changed = True
            self._pieces.setdefault(key, []).append(text)
            self._where[key] = (value.get("item_id"), _index(key))

    def _mark_text_done(self, value: Json, key: PartKey, sink: TextSink, edit: Edit) -> None:
        edit.before += self._close(key, sink)
        self._mark_text(value, key, _FINAL, sink, edit)

    def _mark_arguments_delta(self, value: Json, key: PartKey, sink: TextSink,
                              edit: Edit) -> None:
        self._mark_delta(value, Arguments(key[0]), sink, edit)

    def _mark_arguments_done(self, value: Json, key: PartKey, sink: TextSink,
                             edit: Edit) -> None:
        arguments = Arguments(key[0])
        edit.before += self._close(arguments, sink)
        self._mark_text(value, arguments, _FINAL, sink, edit, "arguments")

    def _mark_part(self, value: Json, key: PartKey, sink: TextSink, edit: Edit) -> None:
        done = value.get("type") == "response.content_part.done"
        if done:
            edit.before += self._close(key, sink)
        part = value.get("part")
        if type(part) is dict and part.get("type") == "output_text":
            self._mark_text(part, key, _FINAL if done else _STREAMING, sink, edit)

    def _mark_item(self, value: Json, key: PartKey, sink: TextSink, edit: Edit) -> None:
        done = value.get("type") == "response.output_item.done"
        if done:
            edit.before += [e for k in list(self._pieces) if _index(k) == key[0]
                            for e in self._close(k, sink)]
        mode = _FINAL if done else _STREAMING
        for part_key, part, field in _marked_parts(value.get("item"), key[0]):
            self._mark_text(part, part_key, mode, sink, edit, field)

    def _mark_response(self, response: Json, mode: int, sink: TextSink, edit: Edit) -> None:
        output = response.get("output")
        for index, item in enumerate(output if type(output) is list else ()):
            for key, part, field in _marked_parts(item, index):
                self._mark_text(part, key, mode, sink, edit, field)

    def _mark_text(self, holder: Json, key: _Key, mode: int, sink: TextSink, edit: Edit,
                   field: str = "text") -> None:
        """The ``text`` of an output_text part (or its done event), or the
        ``arguments`` of a function call, as ``mode`` says."""
        given = holder.get(field)
        if mode == _STREAMING or type(given) is not str:
            return
        if mode == _FINAL:
            final = self._final.get(key)
            if final is None:
                final = self._final[key] = self._whole(key, given, sink)
            text = final
        else:
            text = self._whole(key, given, sink)
        if text != given:
            holder[field] = text
            edit.changed = True

    @staticmethod
    def _whole(key: _Key, text: str, sink: TextSink) -> str:
        return whole_arguments(sink, text) if type(key) is Arguments else sink.whole(text)

    def _close(self, key: _Key, sink: TextSink) -> list[Json]:
        """End a streamed part: its whole text is known; a delta with what the sink held."""
        if key in self._final or key not in self._pieces:
            return []
        rest = sink.close(key)
        self._final[key] = "".join(self._pieces.pop(key)) + rest
        item_id, index = self._where.pop(key)
        if not rest:
            return []
        if isinstance(key, Arguments):
            return [{"type": "response.function_call_arguments.delta", "sequence_number": None,
                     "item_id": item_id, "output_index": index, "delta": rest}]
        return [{"type": "response.output_text.delta", "sequence_number": None,
                 "item_id": item_id, "output_index": index, "content_index": key[1],
                 "delta": rest, "logprobs": []}]

    def _close_all(self, sink: TextSink) -> list[Json]:
        return [event for key in list(self._pieces) for event in self._close(key, sink)]

    def held(self, sink: TextSink) -> list[Json]:
        return self._close_all(sink)

    # -- sequence numbers

    def settle(self, edit: Edit) -> None:
        if not self.streaming:
            return
        out = edit.before if edit.dropped else [*edit.before, edit.value]
        sequence = edit.value.get("sequence_number")
        if type(sequence) is int:
            if self._number(out, sequence + self._shift):
                edit.changed = True
            self._shift += len(out) - 1
        elif edit.before:
            _unnumbered(edit.before)

    def settle_end(self, events: list[Json]) -> None:
        if events and self._next is not None:
            self._number(events, self._next)
        else:
            _unnumbered(events)

    def _number(self, events: list[Json], first: int) -> bool:
        """Number ``events`` on from ``first``, so that the stream's numbers stay
        contiguous; whether any number changed."""
        changed = False
        for number, event in enumerate(events, first):
            if event.get("sequence_number") != number:
                event["sequence_number"] = number
                changed = True
        self._next = first + len(events)
        return changed


def _unnumbered(events: list[Json]) -> None:
    """Drop the placeholder sequence number of added events, in a stream without numbers."""
    for event in events:
        if "sequence_number" in event and event["sequence_number"] is None:
            del event["sequence_number"]


_Mark = Callable[[Responses, Json, PartKey, TextSink, Edit], None]
_MARKS: dict[str, _Mark] = {
    "response.output_text.delta": Responses._mark_delta,
    "response.output_text.done": Responses._mark_text_done,
    "response.function_call_arguments.delta": Responses._mark_arguments_delta,
    "response.function_call_arguments.done": Responses._mark_arguments_done,
    "response.content_part.added": Responses._mark_part,
    "response.content_part.done": Responses._mark_part,
    "response.output_item.added": Responses._mark_item,
    "response.output_item.done": Responses._mark_item,
}
