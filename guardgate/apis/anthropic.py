"""Anthropic-compatible API: messages."""

from __future__ import annotations

from typing import Any

import orjson

from guardgate.apis.base import (
    ModelCall,
    collect_content,
    content_path,
    decode,
    invalid_type,
    json_chars,
    json_fields,
    read_array,
    read_bool,
    read_int,
    read_items,
    read_number,
    read_object,
    read_role,
    read_str,
)

_TEXT = ("text",)
# Billed as input besides the text: tool definitions and an output schema;
# in messages, the tool calls (``tool_use``, ``server_tool_use``, ...).
_BILLED = ("tools", "output_format")
_TOOL_CALL = "tool_use"
# Blocks whose text the model reads besides text blocks and tool results:
# documents (their source, title and context) and search results.
# What an image is reserved as, in characters (about 1,600 tokens: the most
# an image is billed at its largest size).
IMAGE_CHARS = 6400
_DOCUMENTS = ("document", "search_result")

# https://docs.anthropic.com/en/api/errors; other 4xx are invalid_request_error
# there too, other 5xx (502, 504 from the gateway) api_error.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def anthropic_error_type(status: int) -> str:
    """The Anthropic ``error.type`` for an HTTP status."""
    found = _ERROR_TYPES.get(status)
    if found is not None:
        return found
    return "invalid_request_error" if status < 500 else "api_error"


def anthropic_error_body(
    status: int,
    message: str,
    type: str,
    code: str | None,
    param: str | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """An error in the Anthropic shape.

    The shape has no ``param`` or ``code``, and its ``type`` follows the
    status, so a client's SDK raises the exception it has for that status.
    """
    error: dict[str, Any] = {"type": anthropic_error_type(status), "message": message}
    if extra:
        error.update(extra)
    return orjson.dumps({"type": "error", "error": error})


def parse_messages(body: bytes) -> ModelCall:
    """``POST /v1/messages``."""
    data = decode(body)
    system: list[str] = []
    collect_content(data.get("system"), _TEXT, system, "system")

    prompt: list[str] = []
    context: list[str] = []
    turns = user_turns = 0
    extra = json_fields(data, _BILLED, context)
    messages = read_array(data, "messages")
    if messages is not None:
        turns = len(messages)
        for i, message in enumerate(read_items(messages, "messages")):
            if read_role(message, "messages", i) == "user":
                user_turns += 1
            content = message.get("content")
            if type(content) is list:
                extra += _collect_blocks(content, prompt, context, i)
            else:
                collect_content(content, _TEXT, prompt, "messages", i)

    reasoning, budget = _thinking(data)
    return ModelCall(
        api="anthropic.messages",
        body=data,
        model=read_str(data, "model"),
        prompt="\n".join(prompt),
        system="\n".join(system) if system else None,
        turns=turns,
        user_turns=user_turns,
        stream=read_bool(data, "stream"),
        max_tokens=read_int(data, "max_tokens"),
        temperature=read_number(data, "temperature"),
        reasoning=reasoning,
        reasoning_budget=budget,
        extra_input=extra,
        context="\n".join(context),
    )


def _collect_blocks(blocks: list[Any], out: list[str], context: list[str], index: int) -> int:
    """Text blocks, and the text a tool result hands back to the model, to
    ``out``; tool calls and documents as JSON to ``context``. Return what the
    other blocks are billed as, in characters: tool calls as JSON, documents
    by their size, images at `IMAGE_CHARS` each."""
    calls = 0
    for i, block in enumerate(blocks):
        if type(block) is not dict:
            raise invalid_type(f"messages[{index}].content[{i}]", "an object", block)
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            if type(text) is str:
                if text:
                    out.append(text)
            elif text is not None:
                raise invalid_type(f"messages[{index}].content[{i}].text", "a string", text)
        elif kind == "tool_result":
            path = content_path("messages", index)
            content = block.get("content")
            collect_content(content, _TEXT, out, path, i)
            if type(content) is list:
                calls += IMAGE_CHARS * sum(
                    1 for part in content if type(part) is dict and part.get("type") == "image")
        elif type(kind) is str:
            if kind.endswith(_TOOL_CALL):
                calls += json_chars(block, context)
            elif kind in _DOCUMENTS:
                calls += _document(block, context)
            elif kind == "image":
                calls += IMAGE_CHARS
        elif kind is not None:
            raise invalid_type(f"messages[{index}].content[{i}].type", "a string", kind)
    return calls


def _document(block: dict[str, Any], context: list[str]) -> int:
    """A document or search result, as JSON, for the risk scan; a document
    sent as base64 (a PDF) only by its title and context. Returns what it is
    billed as, in characters: its JSON, and a base64 document at half its
    encoded size (a PDF page is read as text and as an image)."""
    source = block.get("source")
    extra = 0
    if type(source) is dict and source.get("type") == "base64":
        data = source.get("data")
        extra = len(data) // 2 if type(data) is str else 0
        block = {key: value for key, value in block.items() if key != "source"}
    return json_chars(block, context) + extra


def _thinking(data: dict[str, Any]) -> tuple[bool, int | None]:
    thinking = read_object(data, "thinking")
    if thinking is None:
        return False, None
    kind = read_str(thinking, "type", "thinking.type")
    if kind == "enabled":
        return True, read_int(thinking, "budget_tokens", "thinking.budget_tokens")
    return kind == "adaptive", None
