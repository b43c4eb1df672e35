"""OpenAI-compatible APIs: chat completions, completions, responses."""

from __future__ import annotations

from typing import Any

import orjson

from guardgate.apis.base import (
    ModelCall,
    collect_content,
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

_SYSTEM_ROLES = ("system", "developer")
_CHAT_TEXT = ("text",)
_RESPONSES_TEXT = ("input_text", "output_text")
LOGPROBS_INCLUDE = "message.output_text.logprobs"
# Billed as input besides the messages' text: tool and function definitions,
# output schemas; a message's tool calls.
_CHAT_BILLED = ("tools", "functions", "response_format")
_CALLS_BILLED = ("tool_calls", "function_call")
_RESPONSES_BILLED = ("tools", "text")
# Input items that are tool calls or their results, billed as input; a
# computer call's output is a screenshot, billed as an image.
_ITEM_CALLS = ("_call", "_call_output")
_SCREENSHOT = "computer_call_output"


def openai_error_body(
    status: int,
    message: str,
    type: str,
    code: str | None,
    param: str | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """An error in the OpenAI shape; also used for pass-through routes and the gateway's own.
    ``extra`` adds fields to the error object."""
    error = {"message": message, "type": type, "param": param, "code": code}
    if extra:
        error.update(extra)
    return orjson.dumps({"error": error})


def parse_chat(body: bytes) -> ModelCall:
    """``POST /v1/chat/completions``."""
    data = decode(body)
    system: list[str] = []
    prompt: list[str] = []
    context: list[str] = []
    turns = user_turns = 0
    extra = json_fields(data, _CHAT_BILLED, context)
    messages = read_array(data, "messages")
    if messages is not None:
        turns = len(messages)
        for i, message in enumerate(read_items(messages, "messages")):
            role = read_role(message, "messages", i)
            if role == "user":
                user_turns += 1
            out = system if role in _SYSTEM_ROLES else prompt
            collect_content(message.get("content"), _CHAT_TEXT, out, "messages", i)
            if role == "assistant":
                extra += json_fields(message, _CALLS_BILLED, context)

    # Both limits may be sent; the larger is what the answer may cost.
    max_tokens = read_int(data, "max_completion_tokens")
    legacy = read_int(data, "max_tokens")
    if legacy is not None and (max_tokens is None or legacy > max_tokens):
        max_tokens = legacy
    top_logprobs = read_int(data, "top_logprobs")
    effort = read_str(data, "reasoning_effort")
    stream = read_bool(data, "stream")
    return ModelCall(
        api="openai.chat",
        body=data,
        model=read_str(data, "model"),
        prompt="\n".join(prompt),
        system="\n".join(system) if system else None,
        turns=turns,
        user_turns=user_turns,
        stream=stream,
        include_usage=_include_usage(data) and stream,
        max_tokens=max_tokens,
        logprobs=read_bool(data, "logprobs") or bool(top_logprobs),
        top_logprobs=top_logprobs,
        logit_bias=_bias_count(data),
        n=_n(data),
        temperature=read_number(data, "temperature"),
        seed=read_int(data, "seed", minimum=None),
        reasoning=effort is not None and effort != "none",
        reasoning_effort=effort,
        extra_input=extra,
        context="\n".join(context),
    )


def parse_completions(body: bytes) -> ModelCall:
    """``POST /v1/completions`` (legacy)."""
    data = decode(body)
    texts: list[str] = []
    turns, token_ids = _collect_prompts(data.get("prompt"), texts)
    suffix = read_str(data, "suffix")
    best_of = read_int(data, "best_of", minimum=1)

    # Here ``logprobs`` is the number of alternatives per token; 0 still
    # returns the sampled token's logprob.
    top_logprobs = read_int(data, "logprobs")
    stream = read_bool(data, "stream")
    return ModelCall(
        api="openai.completions",
        body=data,
        model=read_str(data, "model"),
        prompt="\n".join(texts),
        turns=turns,
        user_turns=turns,
        stream=stream,
        include_usage=_include_usage(data) and stream,
        max_tokens=read_int(data, "max_tokens"),
        logprobs=top_logprobs is not None,
        top_logprobs=top_logprobs,
        logit_bias=_bias_count(data),
        n=_n(data),
        temperature=read_number(data, "temperature"),
        seed=read_int(data, "seed", minimum=None),
        prompts=max(1, turns),  # no prompt, or an empty array, is still answered once
        best_of=1 if best_of is None else best_of,
        token_ids=token_ids,
        extra_input=len(suffix) if suffix else 0,
        context=suffix or "",
    )


def parse_responses(body: bytes) -> ModelCall:
    """``POST /v1/responses``."""
    data = decode(body)
    system: list[str] = []
    prompt: list[str] = []
    context: list[str] = []
    turns = user_turns = 0
    extra = json_fields(data, _RESPONSES_BILLED, context)
    # A stored prompt's variables are filled into text the model reads.
    template = data.get("prompt")
    if type(template) is dict:
        json_chars(template, context)

    instructions = data.get("instructions")
    if type(instructions) is str:
        if instructions:
            system.append(instructions)
    elif type(instructions) is list:
        extra += _collect_items(instructions, "instructions", system, system, context)[1]
    elif instructions is not None:
        raise invalid_type("instructions", "a string", instructions)

    given = data.get("input")
    if type(given) is str:
        turns = user_turns = 1
        if given:
            prompt.append(given)
    elif type(given) is list:
        turns = len(given)
        user_turns, calls = _collect_items(given, "input", system, prompt, context)
        extra += calls
    elif given is not None:
        raise invalid_type("input", "a string or an array of objects", given)

    include = read_array(data, "include")
    top_logprobs = read_int(data, "top_logprobs")
    reasoning = read_object(data, "reasoning")
    effort = None if reasoning is None else read_str(reasoning, "effort", "reasoning.effort")
    return ModelCall(
        api="openai.responses",
        body=data,
        model=read_str(data, "model"),
        prompt="\n".join(prompt),
        system="\n".join(system) if system else None,
        turns=turns,
        user_turns=user_turns,
        stream=read_bool(data, "stream"),
        max_tokens=read_int(data, "max_output_tokens"),
        logprobs=(include is not None and LOGPROBS_INCLUDE in include) or bool(top_logprobs),
        top_logprobs=top_logprobs,
        temperature=read_number(data, "temperature"),
        reasoning=reasoning is not None and effort != "none",
        reasoning_effort=effort,
        extra_input=extra,
        context="\n".join(context),
    )


def _include_usage(data: dict[str, Any]) -> bool:
    options = read_object(data, "stream_options")
    return options is not None and read_bool(
        options, "include_usage", "stream_options.include_usage"
    )


def _bias_count(data: dict[str, Any]) -> int:
    bias = read_object(data, "logit_bias")
    return 0 if bias is None else len(bias)


def _n(data: dict[str, Any]) -> int:
    n = read_int(data, "n", minimum=1)
    return 1 if n is None else n


def _collect_prompts(prompt: object, texts: list[str]) -> tuple[int, int]:
    """Collect a completions ``prompt``; return how many prompts it holds
    and how many token ids they are made of.

    The field is one prompt (a string, or an array of token ids), or an
    array of prompts, each a string or an array of token ids. Token ids
    give no text; each is one token of input. An array that starts with a
    token id is one prompt of token ids and must hold nothing else.
    """
    if type(prompt) is str:
        if prompt:
            texts.append(prompt)
        return 1, 0
    if prompt is None:
        return 0, 0
    if type(prompt) is not list:
        raise invalid_type("prompt", "a string or an array", prompt)
    if prompt and type(prompt[0]) is int:
        # One prompt of token ids: nothing else in it, or what else it holds
        # would go upstream uncounted.
        for i, item in enumerate(prompt):
            if type(item) is not int:
                raise invalid_type(f"prompt[{i}]", "an integer (a token id)", item)
        return 1, len(prompt)
    ids = 0
    for i, item in enumerate(prompt):
        if type(item) is str:
            if item:
                texts.append(item)
        elif type(item) is list:
            ids += len(item)
        else:
            raise invalid_type(f"prompt[{i}]", "a string or an array of integers", item)
    return len(prompt), ids


def _collect_items(
    items: list[Any], param: str, system: list[str], prompt: list[str], context: list[str]
) -> tuple[int, int]:
    """Collect the text of Responses input items; return how many come from
    the user, and the characters of the tool calls and results among them.

    Only messages carry prompt text here; tool calls and their outputs are
    billed as input and measured as JSON, which goes to ``context``; other
    items (reasoning, references) are counted by the caller, nothing more.
    """
    user_turns = calls = 0
    for i, item in enumerate(read_items(items, param)):
        kind = item.get("type")
        if kind is not None and kind != "message":
            if type(kind) is not str:
                raise invalid_type(f"{param}[{i}].type", "a string", kind)
            if kind.endswith(_ITEM_CALLS) and kind != _SCREENSHOT:
                calls += json_chars(item, context)
            continue
        role = read_role(item, param, i)
        if role == "user":
            user_turns += 1
        out = system if role in _SYSTEM_ROLES else prompt
        collect_content(item.get("content"), _RESPONSES_TEXT, out, param, i)
    return user_turns, calls
