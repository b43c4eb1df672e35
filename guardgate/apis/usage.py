"""Each answer's real token usage, read as its body streams past (steps 7, 9, 10).

Quotas settle against what the upstream reports. `prepare_stream_usage` asks
an OpenAI chat or completions stream for its usage chunk when the client did
not; `UsageMeter` reads usage and counts generated text from every response
body chunk, JSON or SSE, without holding the stream back. Its output is the
input byte for byte, except that a stream whose usage the gateway asked for
loses what asking added: the usage-only event (``"choices": []``) and the
``"usage": null`` member the upstream then puts on every other chunk. The
client receives the stream it would have had without the gateway.

The meter never raises on what the upstream sends and never holds more than
`MAX_JSON` of a JSON answer or `MAX_EVENT` of one SSE event.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from itertools import islice
from typing import Any

import orjson

from guardgate.apis.base import ModelCall
from guardgate.apis.sse import MAX_EVENT, EventReader, event_data

__all__ = ["CHARS_PER_TOKEN", "MAX_JSON", "UsageMeter", "prepare_stream_usage"]

MAX_JSON = 4 << 20
CHARS_PER_TOKEN = 4

Json = dict[str, Any]

# Streams that carry usage only when asked; Responses and Anthropic streams always do.
_ASKS_FOR_USAGE = frozenset({"openai.chat", "openai.completions"})


def prepare_stream_usage(call: ModelCall) -> bytes | None:
    """The body to forward so that the stream reports usage, or None when it already will.

    Other ``stream_options`` keys are kept. The meter of such a response must
    strip what this adds (``strip_usage_chunk=True``).
    """
    if call.api not in _ASKS_FOR_USAGE or not call.stream or call.include_usage:
        return None
    options = call.body.get("stream_options")
    merged = (
        {**options, "include_usage": True} if type(options) is dict else {"include_usage": True}
    )
    try:
        return orjson.dumps({**call.body, "stream_options": merged})
    except orjson.JSONEncodeError:  # not serializable again: settle on the estimate
        return None


class UsageMeter:
    """Reads one response's usage; `feed` every body chunk, then `finish`.

    ``input_tokens`` and ``output_tokens`` are the upstream's own counts,
    None until seen; ``text_chars`` counts generated text (answers, reasoning,
    tool arguments), the basis of `estimated_output_tokens`.
    """

    __slots__ = (
        "_body",
        "_on_event",
        "_on_json",
        "_reader",
        "_strip",
        "input_tokens",
        "output_tokens",
        "text_chars",
    )

    def __init__(self, api: str, streaming: bool, strip_usage_chunk: bool) -> None:
        try:
            self._on_event, self._on_json = _READERS[api]
        except KeyError:
            raise ValueError(f"no usage reader for API {api!r}") from None
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.text_chars = 0
        self._strip = streaming and strip_usage_chunk
        self._reader = EventReader(MAX_EVENT) if streaming else None
        self._body: bytearray | None = None if streaming else bytearray()

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to send on for ``chunk``: ``chunk`` itself unless stripping."""
        reader = self._reader
        if reader is None:
            body = self._body
            if body is None:
                self.text_chars += len(chunk)
            elif len(body) + len(chunk) > MAX_JSON:
                # Too large to parse: settle on an estimate from its size.
                self.text_chars += len(body) + len(chunk)
                self._body = None
            else:
                body += chunk
            return chunk
        pieces = reader.push(chunk)
        if not self._strip:
            for piece, whole in pieces:
                if whole:
                    self._observe(piece)
            return chunk
        kept = [self._keep(piece) if whole else piece for piece, whole in pieces]
        return kept[0] if len(kept) == 1 else b"".join(kept)

    def finish(self) -> bytes:
        """What was held back, at the end of the body: an incomplete last event, or nothing."""
        if self._reader is None:
            body, self._body = self._body, None
            if body:
                value = _load(body)
                if value is not None:
                    self._on_json(self, value)
            return b""
        rest = self._reader.flush()
        if not rest:
            return b""
        if self._strip:
            return self._keep(rest)
        self._observe(rest)
        return b""  # already sent on

    def estimated_output_tokens(self) -> int:
        """Output tokens estimated from the generated text, when no usage was seen."""
        return math.ceil(self.text_chars / CHARS_PER_TOKEN)

    def _observe(self, event: bytes) -> Json | None:
        value = _load_event(event)
        if value is not None:
            self._on_event(self, value)
        return value

    def _keep(self, event: bytes) -> bytes:
        """``event`` as the client gets it when the gateway asked for usage."""
        value = self._observe(event)
        if value is None or "usage" not in value:
            return event
        usage = value["usage"]
        if usage is None:
            return _without_null_usage(event, value)
        if type(usage) is dict and value.get("choices") == []:
            return b""
        return event


def _load(data: bytes | bytearray) -> Json | None:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return value if type(value) is dict else None


def _load_event(event: bytes) -> Json | None:
    data = event_data(event)
    if data is None or data.startswith(b"[DONE]"):
        return None
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return value if type(value) is dict else None


_NULL_LAST = b',"usage":null}'
_NULL_MEMBER = re.compile(rb'(,\s*)?"usage"\s*:\s*null(\s*,\s*)?')
_TRIES = 4


def _without_null_usage(event: bytes, value: Json) -> bytes:
    """``event`` without its top-level ``"usage": null`` member, or unchanged if not found."""
    line = event.rstrip(b"\r\n")
    if (
        line.endswith(_NULL_LAST)
        and line.startswith(b"data:")
        and b"\n" not in line
        and b"\r" not in line
    ):
        # One compact data line ending in the member (as OpenAI writes it): it is top level.
        cut = len(line) - len(_NULL_LAST)
        return event[:cut] + event[cut + len(_NULL_LAST) - 1 :]
    # Any other layout: cut each candidate and keep the cut that leaves exactly the rest.
    try:
        expected = orjson.dumps({k: v for k, v in value.items() if k != "usage"})
    except orjson.JSONEncodeError:
        return event
    for match in islice(_NULL_MEMBER.finditer(event), _TRIES):
        lead, trail = match.group(1), match.group(2)
        if lead is not None:
            start, end = match.start(), match.start(2) if trail is not None else match.end()
        elif trail is not None:
            start, end = match.start(), match.end()
        else:
            continue
        candidate = event[:start] + event[end:]
        left = _load_event(candidate)
        try:
            if left is not None and orjson.dumps(left) == expected:
                return candidate
        except orjson.JSONEncodeError:
            return event
    return event


# --- what each API reports ---------------------------------------------------

_Reader = Callable[[UsageMeter, Json], None]


def _chars(value: object) -> int:
    return len(value) if type(value) is str else 0


def _dicts(value: object) -> list[Json]:
    return [item for item in value if type(item) is dict] if type(value) is list else []


def _count(usage: Json, key: str) -> int | None:
    value = usage.get(key)
    return value if type(value) is int and value >= 0 else None


def _read_usage(meter: UsageMeter, usage: object, *, output: bool = True) -> None:
    if type(usage) is not dict:
        return
    prompt = _count(usage, "prompt_tokens")
    if prompt is None:
        prompt = _count(usage, "input_tokens")
        if prompt is not None:
            # Anthropic counts cached prompt tokens apart; OpenAI's counts include them.
            prompt += (_count(usage, "cache_creation_input_tokens") or 0) + (
                _count(usage, "cache_read_input_tokens") or 0
            )
    if prompt is not None:
        meter.input_tokens = prompt
    if output:
        completion = _count(usage, "completion_tokens")
        if completion is None:
            completion = _count(usage, "output_tokens")
        if completion is not None:
            meter.output_tokens = completion


_CHAT_TEXT = ("content", "reasoning_content", "reasoning", "refusal")


def _chat_text(message: Json) -> int:
    chars = 0
    for key in _CHAT_TEXT:
        value = message.get(key)
        if type(value) is str:
            chars += len(value)
    calls = message.get("tool_calls")
    if calls is not None:
        for call in _dicts(calls):
            function = call.get("function")
            if type(function) is dict:
                chars += _chars(function.get("arguments"))
    return chars


def _chat_event(meter: UsageMeter, event: Json) -> None:
    for choice in _dicts(event.get("choices")):
        delta = choice.get("delta")
        if type(delta) is dict:
            meter.text_chars += _chat_text(delta)
    usage = event.get("usage")
    if usage is not None:
        _read_usage(meter, usage)


def _chat_json(meter: UsageMeter, body: Json) -> None:
    for choice in _dicts(body.get("choices")):
        message = choice.get("message")
        if type(message) is dict:
            meter.text_chars += _chat_text(message)
    _read_usage(meter, body.get("usage"))


def _completion(meter: UsageMeter, value: Json) -> None:
    """A completions chunk or answer: both carry ``choices[].text``."""
    for choice in _dicts(value.get("choices")):
        meter.text_chars += _chars(choice.get("text"))
    _read_usage(meter, value.get("usage"))


_RESPONSE_DELTAS = frozenset(
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
_RESPONSE_ENDS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def _response_event(meter: UsageMeter, event: Json) -> None:
    kind = event.get("type")
    if type(kind) is not str:
        return
    if kind in _RESPONSE_DELTAS:
        meter.text_chars += _chars(event.get("delta"))
    elif kind in _RESPONSE_ENDS:
        response = event.get("response")
        if type(response) is dict:
            _read_usage(meter, response.get("usage"))


def _response_json(meter: UsageMeter, body: Json) -> None:
    for item in _dicts(body.get("output")):
        meter.text_chars += _chars(item.get("arguments"))
        for part in _dicts(item.get("content")) + _dicts(item.get("summary")):
            meter.text_chars += _chars(part.get("text")) + _chars(part.get("refusal"))
    _read_usage(meter, body.get("usage"))


def _block_text(block: Json) -> int:
    return (
        _chars(block.get("text"))
        + _chars(block.get("thinking"))
        + _chars(block.get("partial_json"))
    )


def _message_event(meter: UsageMeter, event: Json) -> None:
    kind = event.get("type")
    if kind == "content_block_delta":
        delta = event.get("delta")
        if type(delta) is dict:
            meter.text_chars += _block_text(delta)
    elif kind == "message_start":
        message = event.get("message")
        if type(message) is dict:  # its output_tokens is a placeholder; message_delta has it
            _read_usage(meter, message.get("usage"), output=False)
    elif kind == "message_delta":
        _read_usage(meter, event.get("usage"))


def _message_json(meter: UsageMeter, body: Json) -> None:
    for block in _dicts(body.get("content")):
        meter.text_chars += _block_text(block)
    _read_usage(meter, body.get("usage"))


# API name -> (read one SSE event, read a JSON answer)
_READERS: dict[str, tuple[_Reader, _Reader]] = {
    "openai.chat": (_chat_event, _chat_json),
    "openai.completions": (_completion, _completion),
    "openai.responses": (_response_event, _response_json),
    "anthropic.messages": (_message_event, _message_json),
}
