"""The Anthropic messages adapter and the Anthropic error shape."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from guardgate.apis import ADAPTERS, ModelCall, anthropic_error_body
from guardgate.apis.anthropic import IMAGE_CHARS, anthropic_error_type
from guardgate.errors import BadRequest, BodyTooLarge, UpstreamTimeout, UpstreamUnavailable

adapter = ADAPTERS["anthropic.messages"]
parse = adapter.parse


def dumps(**fields: Any) -> bytes:
    return orjson.dumps(fields)


def refused(body: bytes) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        parse(body)
    return caught.value


def test_registry_entry() -> None:
    assert (adapter.name, adapter.family) == ("anthropic.messages", "anthropic")
    assert adapter.error_body is anthropic_error_body


# --- parsing -------------------------------------------------------------------------

# A body as the Anthropic SDK sends it for a tool-using, thinking conversation.
def images(body: dict[str, object]) -> int:
    """The image blocks in ``body``'s messages."""
    return orjson.dumps(body).count(b'"type":"image"')


TYPICAL = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 16000,
    "system": [
        {"type": "text", "text": "You are a geology tutor."},
        {"type": "text", "text": "Cite sources.", "cache_control": {"type": "ephemeral"}},
    ],
    "messages": [
        {"role": "user", "content": "What is basalt?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "The user asks...", "signature": "EqQBCg=="},
                {"type": "text", "text": "Let me look it up."},
                {
                    "type": "tool_use",
                    "id": "toolu_01",
                    "name": "search",
                    "input": {"query": "basalt"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01",
                    "content": "Basalt is volcanic.",
                },
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_02",
                    "content": [
                        {"type": "text", "text": "Fine-grained."},
                        {
                            "type": "image",
                            "source": {
                                "type": "base64",
                                "media_type": "image/png",
                                "data": "iVBORw0KGgo=",
                            },
                        },
                    ],
                },
                {"type": "image", "source": {"type": "url", "url": "https://example.com/b.jpg"}},
                {"type": "text", "text": "Explain simply."},
            ],
        },
    ],
    "stream": True,
    "temperature": 1,
    "thinking": {"type": "enabled", "budget_tokens": 10000},
    "tools": [{"name": "search", "input_schema": {"type": "object"}}],
    "metadata": {"user_id": "u-1"},
}


def test_messages_maps_every_field() -> None:
    raw = orjson.dumps(TYPICAL)
    call = parse(raw)
    assert call == ModelCall(
        api="anthropic.messages",
        body=TYPICAL,
        model="claude-sonnet-4-5",
        prompt=(
            "What is basalt?\nLet me look it up.\nBasalt is volcanic.\nFine-grained.\nExplain simply."
        ),
        system="You are a geology tutor.\nCite sources.",
        turns=3,
        user_turns=2,
        stream=True,
        max_tokens=16000,
        temperature=1.0,
        reasoning=True,
        reasoning_budget=10000,
        # Billed as input, measured as JSON: the tool definitions and the tool call.
        extra_input=len(orjson.dumps(TYPICAL["tools"])) + images(TYPICAL) * IMAGE_CHARS
        + len(orjson.dumps(TYPICAL["messages"][1]["content"][2])),  # type: ignore[index]
        context=b"\n".join([orjson.dumps(TYPICAL["tools"]),
                            orjson.dumps(TYPICAL["messages"][1]["content"][2])]).decode(),  # type: ignore[index]
    )
    assert call.body == orjson.loads(raw)


def test_tools_and_tool_calls_are_input() -> None:
    tools = [{"name": "search", "description": "Look it up.", "input_schema": {"type": "object"}}]
    use = {"type": "tool_use", "id": "toolu_1", "name": "search", "input": {"q": "basalt"}}
    server = {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
              "input": {"query": "basalt"}}
    call = parse(dumps(
        max_tokens=100, tools=tools,
        messages=[
            {"role": "user", "content": "What is basalt?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Search.", "signature": "c2ln"}, use, server]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "A rock."},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/b.jpg"}},
            ]},
        ],
    ))
    # An image is billed at its largest (IMAGE_CHARS), never as nothing.
    assert call.extra_input == sum(len(orjson.dumps(v)) for v in (tools, use, server)) + \
        IMAGE_CHARS
    assert call.prompt == "What is basalt?\nA rock."  # a tool result's text is prompt text
    assert (call.answers, call.token_ids) == (1, 0)
    # Tool definitions and calls are kept, as JSON, for the risk scan.
    assert call.context == "\n".join(orjson.dumps(v).decode() for v in (tools, use, server))


def test_documents_are_read_for_risk_but_not_a_pdf_s_bytes() -> None:
    text = {"type": "document", "title": "Notes", "context": "Think step by step.",
            "source": {"type": "text", "media_type": "text/plain", "data": "Basalt is a rock."}}
    pdf = {"type": "document", "title": "Paper",
           "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}}
    found = {"type": "search_result", "source": "https://example.com", "title": "Basalt",
             "content": [{"type": "text", "text": "Volcanic."}]}
    call = parse(dumps(max_tokens=100, messages=[
        {"role": "user", "content": [text, pdf, found, {"type": "text", "text": "Summarize."}]}]))
    assert call.prompt == "Summarize."
    assert call.context == "\n".join([orjson.dumps(text).decode(),
                                      orjson.dumps({"type": "document", "title": "Paper"}).decode(),
                                      orjson.dumps(found).decode()])
    # Billed: each document's JSON (what the model reads of it), a base64
    # one at half its encoded size besides.
    assert call.extra_input == sum(len(orjson.dumps(v)) for v in (
        text, {"type": "document", "title": "Paper"}, found)) + len("JVBERi0x") // 2


def test_messages_simple_body() -> None:
    call = parse(
        dumps(
            model="claude-3-5-haiku-latest",
            max_tokens=1024,
            system="Be brief.",
            messages=[{"role": "user", "content": "Hello, Claude"}],
        )
    )
    assert (call.model, call.max_tokens, call.system, call.prompt) == (
        "claude-3-5-haiku-latest",
        1024,
        "Be brief.",
        "Hello, Claude",
    )
    assert (call.turns, call.user_turns, call.stream, call.reasoning) == (1, 1, False, False)


def test_messages_defaults() -> None:
    call = parse(b"{}")
    assert call == ModelCall(api="anthropic.messages", body={})
    assert (call.n, call.logprobs, call.top_logprobs, call.logit_bias, call.seed) == (
        1,
        False,
        None,
        0,
        None,
    )


def test_messages_null_fields_count_as_absent() -> None:
    body = {
        name: None
        for name in (
            "model",
            "system",
            "messages",
            "max_tokens",
            "stream",
            "temperature",
            "thinking",
        )
    }
    assert parse(orjson.dumps(body)) == ModelCall(api="anthropic.messages", body=body)


@pytest.mark.parametrize(
    ("thinking", "reasoning", "budget"),
    [
        ({"type": "enabled", "budget_tokens": 2048}, True, 2048),
        ({"type": "enabled"}, True, None),
        ({"type": "adaptive"}, True, None),
        ({"type": "disabled"}, False, None),
        ({"type": "disabled", "budget_tokens": "ignored"}, False, None),
        (None, False, None),
    ],
)
def test_messages_thinking(thinking: Any, reasoning: bool, budget: int | None) -> None:
    call = parse(dumps(model="claude-opus-4-1", max_tokens=4096, thinking=thinking))
    assert (call.reasoning, call.reasoning_budget) == (reasoning, budget)
    assert call.reasoning_effort is None


def test_messages_blocks_without_text_give_none() -> None:
    call = parse(
        dumps(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "document",
                            "source": {"type": "text", "media_type": "text/plain", "data": "doc"},
                        },
                        {"type": "tool_result", "tool_use_id": "t"},
                        {"type": "tool_result", "tool_use_id": "t", "content": ""},
                        {"type": "text", "text": ""},
                    ],
                },
                {"role": "assistant", "content": [{"type": "redacted_thinking", "data": "x"}]},
                {"role": "assistant", "content": ""},
            ]
        )
    )
    assert (call.prompt, call.turns, call.user_turns) == ("", 3, 1)


def test_messages_stream_flag() -> None:
    assert parse(dumps(stream=True)).stream is True
    assert parse(dumps(stream=False)).stream is False
    # Anthropic streams always carry usage; include_usage is an OpenAI notion.
    assert parse(dumps(stream=True)).include_usage is False


def test_fields_not_read_are_left_to_the_upstream() -> None:
    body = {
        "top_k": "x",
        "top_p": [],
        "tools": 5,
        "metadata": "m",
        "stop_sequences": 1,
        "tool_choice": True,
        "n": -1,
        "logprobs": "yes",
    }
    assert parse(orjson.dumps(body)).body == body


# --- hostile bodies --------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b'{"model": "\xff"}', b'{"model": "\\udc00"}', b"\xef\xbb\xbf{}", b'{"a":1}x'],
)
def test_not_json_is_a_bad_request(raw: bytes) -> None:
    err = refused(raw)
    assert (err.status, err.message) == (400, "We could not parse the JSON body of your request.")


@pytest.mark.parametrize("raw", [b"[]", b"[{}]", b'"hi"', b"1", b"null", b"false"])
def test_top_level_must_be_an_object(raw: bytes) -> None:
    assert "must be a JSON object" in refused(raw).message


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 5000 + b"]" * 5000,
        b'{"metadata": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}",
        b'{"messages": [{"role": "user", "content": [{"type": "tool_result", "content": '
        + b"[" * 5000
        + b"]" * 5000
        + b"}]}]}",
    ],
    ids=["array", "unread-field", "tool-result"],
)
def test_deep_nesting_is_a_bad_request(raw: bytes) -> None:
    assert "nested more than" in refused(raw).message


STRING_OR_BLOCKS = "a string or an array of objects"

# (body, param, expected, got): the message is
# "Invalid type for '<param>': expected <expected>, but got <got> instead."
TYPE_ERRORS: list[tuple[dict[str, Any], str, str, str]] = [
    ({"max_tokens": "1024"}, "max_tokens", "an integer", "a string"),
    ({"max_tokens": True}, "max_tokens", "an integer", "a boolean"),
    ({"max_tokens": 1024.5}, "max_tokens", "an integer", "a decimal"),
    ({"stream": "true"}, "stream", "a boolean", "a string"),
    ({"stream": 0}, "stream", "a boolean", "an integer"),
    ({"temperature": "1"}, "temperature", "a number", "a string"),
    ({"temperature": True}, "temperature", "a number", "a boolean"),
    ({"model": 3}, "model", "a string", "an integer"),
    ({"system": 5}, "system", STRING_OR_BLOCKS, "an integer"),
    ({"system": {"type": "text", "text": "a"}}, "system", STRING_OR_BLOCKS, "an object"),
    ({"system": ["Be brief."]}, "system[0]", "an object", "a string"),
    ({"system": [{"type": "text", "text": 5}]}, "system[0].text", "a string", "an integer"),
    ({"messages": {}}, "messages", "an array", "an object"),
    ({"messages": [[]]}, "messages[0]", "an object", "an array"),
    ({"messages": [{"role": ["user"]}]}, "messages[0].role", "a string", "an array"),
    ({"messages": [{"content": 5}]}, "messages[0].content", STRING_OR_BLOCKS, "an integer"),
    ({"messages": [{"content": [5]}]}, "messages[0].content[0]", "an object", "an integer"),
    (
        {"messages": [{"role": "user", "content": [{"type": "text", "text": []}]}]},
        "messages[0].content[0].text",
        "a string",
        "an array",
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": 1}]}]},
        "messages[0].content[0].type",
        "a string",
        "an integer",
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "tool_result", "content": 5}]}]},
        "messages[0].content[0].content",
        STRING_OR_BLOCKS,
        "an integer",
    ),
    (
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "content": [{"type": "text", "text": 1}]}],
                }
            ]
        },
        "messages[0].content[0].content[0].text",
        "a string",
        "an integer",
    ),
    ({"thinking": "enabled"}, "thinking", "an object", "a string"),
    ({"thinking": {"type": True}}, "thinking.type", "a string", "a boolean"),
    (
        {"thinking": {"type": "enabled", "budget_tokens": "2048"}},
        "thinking.budget_tokens",
        "an integer",
        "a string",
    ),
]


@pytest.mark.parametrize(
    ("body", "param", "expected", "got"), TYPE_ERRORS, ids=[row[1] for row in TYPE_ERRORS]
)
def test_wrong_types_are_bad_requests(
    body: dict[str, Any], param: str, expected: str, got: str
) -> None:
    err = refused(json.dumps(body).encode())
    assert (err.status, err.param, err.code) == (400, param, "invalid_type")
    assert err.message == f"Invalid type for '{param}': expected {expected}, but got {got} instead."


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"max_tokens": -1}, "max_tokens"),
        ({"thinking": {"type": "enabled", "budget_tokens": -1}}, "thinking.budget_tokens"),
    ],
)
def test_negative_token_counts_are_bad_requests(body: dict[str, Any], param: str) -> None:
    err = refused(json.dumps(body).encode())
    assert (err.status, err.param, err.code) == (400, param, "integer_below_min_value")
    assert err.message == (
        f"Invalid '{param}': integer below minimum value. Expected a value >= 0, but got -1 instead."
    )


def test_bad_request_renders_in_the_anthropic_shape() -> None:
    err = refused(b'{"max_tokens": "1024"}')
    rendered = json.loads(
        adapter.error_body(err.status, err.message, err.type, err.code, err.param)
    )
    assert rendered == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "Invalid type for 'max_tokens': expected an integer, but got a string instead.",
        },
    }


# --- error bodies ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (504, "api_error"),
        (529, "overloaded_error"),
        (405, "invalid_request_error"),
        (422, "invalid_request_error"),
        (503, "api_error"),
    ],
)
def test_error_type_follows_the_status(status: int, kind: str) -> None:
    assert anthropic_error_type(status) == kind
    raw = anthropic_error_body(status, "Something happened.", "openai_style_type", "some_code", "p")
    assert isinstance(raw, bytes)
    assert json.loads(raw) == {
        "type": "error",
        "error": {"type": kind, "message": "Something happened."},
    }


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (BodyTooLarge("Request exceeds the maximum size."), "request_too_large"),
        (UpstreamUnavailable("The model endpoint is unavailable."), "api_error"),
        (UpstreamTimeout("The model endpoint timed out."), "api_error"),
    ],
)
def test_gateway_errors_render_in_the_anthropic_shape(error: Any, kind: str) -> None:
    raw = adapter.error_body(error.status, error.message, error.type, error.code, error.param)
    assert json.loads(raw) == {"type": "error", "error": {"type": kind, "message": error.message}}


def test_error_body_escapes_the_message() -> None:
    message = 'a "quote", a \\ and a\nnewline'
    assert json.loads(anthropic_error_body(400, message, "x", None))["error"]["message"] == message
