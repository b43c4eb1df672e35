"""What every API adapter produces, and the strict readers adapters share.

An adapter decodes a body once (`decode`), then reads only the fields it
knows, each checked for its JSON type (`read_int`, `read_bool`, ...). Fields
it does not read are left to the upstream to validate. ``null`` counts as
absent everywhere, as the model APIs treat it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import orjson

from guardgate.errors import BadRequest

if TYPE_CHECKING:
    from guardgate.apis.answers.walk import Walker

Family = Literal["openai", "anthropic"]

# Deepest container nesting accepted in a request body. Real requests (tool
# schemas included) stay far below; the bound keeps orjson.dumps (limit 254)
# able to serialize any rewritten body.
MAX_DEPTH = 128


@dataclass(slots=True)
class ModelCall:
    """A model request, parsed once from its body.

    Later steps (risk, quotas, rewriting) read this and never re-parse the
    body. ``body`` is the decoded JSON object, kept so that a request rewrite
    can change it and serialize it again; the original bytes are forwarded
    untouched when nothing is rewritten.
    """

    api: str                       # "openai.chat", "openai.completions", "openai.responses", "anthropic.messages"
    body: dict[str, Any]
    model: str | None = None
    prompt: str = ""               # all user-visible prompt text (system excluded), joined by "\n"
    system: str | None = None      # system / developer instructions, joined by "\n"
    turns: int = 0                 # number of messages (or input items); 1 for a bare prompt
    user_turns: int = 0            # messages with role "user"
    stream: bool = False
    include_usage: bool = False    # the client asked for usage in the stream (OpenAI stream_options)
    max_tokens: int | None = None  # max_tokens / max_completion_tokens / max_output_tokens
    logprobs: bool = False         # any form of logprob request
    top_logprobs: int | None = None
    logit_bias: int = 0            # number of biased tokens
    n: int = 1
    temperature: float | None = None
    seed: int | None = None
    reasoning: bool = False        # reasoning / thinking asked for explicitly
    reasoning_effort: str | None = None
    reasoning_budget: int | None = None  # Anthropic thinking.budget_tokens
    prompts: int = 1               # prompts answered apart, n answers each (a completions array)
    best_of: int = 1               # candidates generated per prompt, billed, not all returned
    token_ids: int = 0             # prompt tokens sent as token ids, one token each
    extra_input: int = 0           # characters billed as input besides prompt and system:
                                   # tool definitions, tool calls and results (as JSON), a suffix
    context: str = ""              # the other text the model reads, for the risk scan (billing
                                   # reads extra_input): tool definitions, output schemas, tool
                                   # calls and Responses tool outputs as JSON (escapes kept),
                                   # Anthropic documents, a suffix; joined by "\n"

    @property
    def answers(self) -> int:
        """How many answers the upstream may generate, and bill, for this call."""
        return self.prompts * max(self.n, self.best_of)


class ErrorBody(Protocol):
    """Renders an error in one API family's shape, as JSON bytes."""

    def __call__(
        self,
        status: int,
        message: str,
        type: str,
        code: str | None,
        param: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> bytes: ...


@dataclass(frozen=True, slots=True)
class RequestFields:
    """Where one API's request keeps what degrade transforms change."""

    max_tokens: tuple[str, ...]           # the output token limits it takes
    max_tokens_default: str               # the one to set when none is sent
    logprobs: tuple[str, ...] = ()        # fields asking for logprobs
    top_logprobs: str | None = None       # how many alternatives per token
    logprobs_include: str | None = None   # an ``include`` entry asking for logprobs
    # Logprobs some servers add that no walker treats (vLLM's prompt_logprobs):
    # a tier that treats logprobs never asks for them.
    untreated_logprobs: tuple[str, ...] = ()
    # What some servers add to answers that no walker treats (vLLM's token
    # ids: the untreated answer, encoded): a treated call never asks for it.
    untreated: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()         # fields asking for more than one answer
    logit_bias: bool = False              # takes a logit bias
    thinking_budget: bool = False         # a reasoning budget must stay below max_tokens
    stream_usage: bool = False            # a stream reports usage only when asked


@dataclass(frozen=True, slots=True)
class Adapter:
    """One model API, all in one place: its usual path, how to parse its
    requests, where its request keeps what transforms change, how to walk
    its answers and how to word its errors."""

    name: str
    family: Family
    path: str  # where a policy without ``routes`` serves it
    parse: Callable[[bytes], ModelCall]
    error_body: ErrorBody
    fields: RequestFields
    walker: type[Walker]


# --- decoding -------------------------------------------------------------


def depth_within(value: object, limit: int) -> bool:
    """Whether no container in the decoded JSON ``value`` nests deeper than ``limit``."""
    level: list[Any] = [value] if type(value) is dict or type(value) is list else []
    for _ in range(limit):
        if not level:
            return True
        level = [
            child
            for parent in level
            for child in (parent.values() if type(parent) is dict else parent)
            if type(child) is dict or type(child) is list
        ]
    return not level


def decode(body: bytes, *, unique: bool = True) -> dict[str, Any]:
    """The request body as a JSON object, or `BadRequest`.

    Nesting is bounded by `MAX_DEPTH`. orjson refuses anything nested past
    its own limit (1024) without recursing further; the tighter bound is
    checked on the decoded value, and only when the body has enough brackets
    to reach it. With ``unique``, a key repeated in one object is refused:
    orjson keeps its last value, an upstream may take the first.
    """
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        text = str(exc).lower()
        if "depth" in text or "recursion" in text:
            raise _too_deep() from None
        raise BadRequest(
            "We could not parse the JSON body of your request.",
            reason=f"invalid JSON body: {exc}",
        ) from None
    if type(value) is not dict:
        raise BadRequest(
            f"The request body must be a JSON object, but got {_json_type(value)} instead.",
            code="invalid_type",
        )
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH and not depth_within(value, MAX_DEPTH):
        raise _too_deep()
    if unique and (repeated := _repeated_key(body, value)) is not None:
        raise BadRequest(
            f"The JSON body of your request repeats the key '{repeated[:64]}' in one object.",
            reason="duplicate key in JSON body",
            code="duplicate_key",
        )
    return value


class _Repeated(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Repeated(key)
            seen.add(key)
    return value


def _repeated_key(body: bytes, value: dict[str, Any]) -> str | None:
    """A key ``body`` repeats in one of its objects, or None.

    Every ``:`` of a JSON text separates a key from its value or stands in a
    string, so a body with a repeated key holds more of them (counting those
    escaped as \\u003a) than the value orjson kept, written again. When it
    holds no more, no key repeats; only a body that fails this count (a
    repeat, or a ``u003`` that may be an escaped colon) is parsed again,
    pair by pair. The count costs a few passes over the bytes, a third of
    that second parse.
    """
    colons = body.count(b":")
    if colons < 2:
        return None
    if colons + body.count(b"u003") <= orjson.dumps(value).count(b":"):
        return None
    try:
        json.loads(body, object_pairs_hook=_unique_pairs)
    except _Repeated as repeated:
        return repeated.key
    return None


def _too_deep() -> BadRequest:
    return BadRequest(
        f"The JSON body of your request is nested more than {MAX_DEPTH} levels deep.",
        reason="JSON body nested too deeply",
    )


# --- typed field readers ----------------------------------------------------

_JSON_TYPES: dict[type, str] = {
    str: "a string",
    int: "an integer",
    float: "a decimal",
    bool: "a boolean",
    list: "an array",
    dict: "an object",
    type(None): "null",
}


def _json_type(value: object) -> str:
    return _JSON_TYPES.get(type(value), "an unknown value")


def invalid_type(param: str, expected: str, value: object) -> BadRequest:
    """The error for a field of the wrong JSON type, worded as the OpenAI API does."""
    return BadRequest(
        f"Invalid type for '{param}': expected {expected}, but got {_json_type(value)} instead.",
        param=param,
        code="invalid_type",
    )


def read_int(
    obj: dict[str, Any], key: str, param: str | None = None, *, minimum: int | None = 0
) -> int | None:
    """An integer field (a boolean is not one), at least ``minimum``; None when absent."""
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is not int:
        raise invalid_type(param or key, "an integer", value)
    if minimum is not None and value < minimum:
        name = param or key
        raise BadRequest(
            f"Invalid '{name}': integer below minimum value. "
            f"Expected a value >= {minimum}, but got {value} instead.",
            param=name,
            code="integer_below_min_value",
        )
    return value


def read_bool(obj: dict[str, Any], key: str, param: str | None = None) -> bool:
    """A boolean field; False when absent."""
    value = obj.get(key)
    if value is None:
        return False
    if type(value) is not bool:
        raise invalid_type(param or key, "a boolean", value)
    return value


def read_number(obj: dict[str, Any], key: str, param: str | None = None) -> float | None:
    """A number field (integer or decimal, not a boolean); None when absent."""
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is not float and type(value) is not int:
        raise invalid_type(param or key, "a number", value)
    return float(value)


def read_str(obj: dict[str, Any], key: str, param: str | None = None) -> str | None:
    """A string field; None when absent."""
    value = obj.get(key)
    if value is None or type(value) is str:
        return value
    raise invalid_type(param or key, "a string", value)


def read_object(obj: dict[str, Any], key: str, param: str | None = None) -> dict[str, Any] | None:
    """An object field; None when absent."""
    value = obj.get(key)
    if value is None or type(value) is dict:
        return value
    raise invalid_type(param or key, "an object", value)


def read_array(obj: dict[str, Any], key: str, param: str | None = None) -> list[Any] | None:
    """An array field; None when absent."""
    value = obj.get(key)
    if value is None or type(value) is list:
        return value
    raise invalid_type(param or key, "an array", value)


def read_items(items: list[Any], param: str) -> list[dict[str, Any]]:
    """Every element of ``items`` as an object, or `BadRequest` naming the first that is not."""
    for i, item in enumerate(items):
        if type(item) is not dict:
            raise invalid_type(f"{param}[{i}]", "an object", item)
    return items


def collect_text(
    parts: list[Any], kinds: tuple[str, ...], out: list[str], param: str, index: int | None = None
) -> None:
    """Append the ``text`` of every content part whose ``type`` is one of ``kinds``.

    ``parts`` is the field ``param``, or with ``index`` the ``content`` of
    ``param[index]``; a part's path is only spelled out for its error.
    """
    for i, part in enumerate(parts):
        if type(part) is not dict:
            raise invalid_type(f"{content_path(param, index)}[{i}]", "an object", part)
        kind = part.get("type")
        if kind in kinds:
            text = part.get("text")
            if type(text) is str:
                if text:
                    out.append(text)
            elif text is not None:
                raise invalid_type(f"{content_path(param, index)}[{i}].text", "a string", text)
        elif kind is not None and type(kind) is not str:
            raise invalid_type(f"{content_path(param, index)}[{i}].type", "a string", kind)


def collect_content(
    content: object, kinds: tuple[str, ...], out: list[str], param: str, index: int | None = None
) -> None:
    """Append the text of a ``content`` field: a string, or parts as in `collect_text`."""
    if type(content) is str:
        if content:
            out.append(content)
    elif type(content) is list:
        collect_text(content, kinds, out, param, index)
    elif content is not None:
        raise invalid_type(content_path(param, index), "a string or an array of objects", content)


def content_path(param: str, index: int | None) -> str:
    """``param``, or the path of the ``content`` of ``param[index]``."""
    return param if index is None else f"{param}[{index}].content"


def json_chars(value: object, out: list[str] | None = None) -> int:
    """How long ``value`` (decoded from a request, so serializable) is as JSON: the
    size of what a model is billed for reading in tool definitions and tool calls.
    With ``out``, the JSON text is appended to it (for `ModelCall.context`)."""
    try:
        raw = orjson.dumps(value)
    except orjson.JSONEncodeError:  # out of orjson's range: about as long in Python's repr
        text = repr(value)
        if out is not None:
            out.append(text)
        return len(text)
    if out is not None:
        out.append(raw.decode())
    return len(raw)


def json_fields(obj: dict[str, Any], keys: tuple[str, ...], out: list[str] | None = None) -> int:
    """`json_chars` of the fields of ``obj`` named in ``keys`` that are present."""
    return sum(json_chars(obj[key], out) for key in keys if obj.get(key) is not None)


def read_role(message: dict[str, Any], param: str, i: int) -> str | None:
    """A message's ``role``; the param path is only built for the error."""
    role = message.get("role")
    if role is None or type(role) is str:
        return role
    raise invalid_type(f"{param}[{i}].role", "a string", role)
