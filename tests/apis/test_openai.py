"""The OpenAI adapters (chat, completions, responses) and the body decoding every adapter shares."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardgate.apis import ADAPTERS, MAX_DEPTH, Adapter, ModelCall, base, openai_error_body
from guardgate.errors import BadRequest, RequestError

chat = ADAPTERS["openai.chat"].parse
completions = ADAPTERS["openai.completions"].parse
responses = ADAPTERS["openai.responses"].parse
OPENAI = [ADAPTERS["openai.chat"], ADAPTERS["openai.completions"], ADAPTERS["openai.responses"]]


def dumps(**fields: Any) -> bytes:
    return orjson.dumps(fields)


def refused(parse: Callable[[bytes], object], body: bytes) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        parse(body)
    return caught.value


# --- registry ------------------------------------------------------------------


def test_registry_names_every_api_once_with_its_family() -> None:
    assert {name: a.family for name, a in ADAPTERS.items()} == {
        "openai.chat": "openai",
        "openai.completions": "openai",
        "openai.responses": "openai",
        "anthropic.messages": "anthropic",
    }
    assert all(a.name == name for name, a in ADAPTERS.items())
    assert all(a.error_body is openai_error_body for a in OPENAI)


def test_registry_covers_the_apis_policies_can_route_to() -> None:
    from guardgate.policy.model import API_NAMES

    assert set(ADAPTERS) == set(API_NAMES)


def test_registry_is_read_only() -> None:
    with pytest.raises(TypeError):
        ADAPTERS["openai.chat"] = ADAPTERS["anthropic.messages"]  # type: ignore[index]
    with pytest.raises(AttributeError):
        ADAPTERS["openai.chat"].name = "x"  # type: ignore[misc]


# --- chat completions ------------------------------------------------------------

TYPICAL_CHAT = {
    "model": "gpt-4o-2024-08-06",
    "messages": [
        {"role": "system", "content": "You are a careful assistant."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
        {"role": "user", "content": "What is a pulsar?"},
        {"role": "assistant", "content": "A rotating neutron star."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "And this one?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "text", "text": "Be brief."},
            ],
        },
    ],
    "max_completion_tokens": 512,
    "temperature": 0.2,
    "top_p": 0.9,
    "stream": True,
    "stream_options": {"include_usage": True},
    "logprobs": True,
    "top_logprobs": 5,
    "logit_bias": {"1734": -100, "50256": 5},
    "n": 3,
    "seed": -7,
    "reasoning_effort": "medium",
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "user": "u-1",
}


def test_chat_maps_every_field() -> None:
    raw = orjson.dumps(TYPICAL_CHAT)
    call = chat(raw)
    assert call == ModelCall(
        api="openai.chat",
        body=TYPICAL_CHAT,
        model="gpt-4o-2024-08-06",
        prompt="What is a pulsar?\nA rotating neutron star.\nAnd this one?\nBe brief.",
        system="You are a careful assistant.\nAnswer in English.",
        turns=5,
        user_turns=2,
        stream=True,
        include_usage=True,
        max_tokens=512,
        logprobs=True,
        top_logprobs=5,
        logit_bias=2,
        n=3,
        temperature=0.2,
        seed=-7,
        reasoning=True,
        reasoning_effort="medium",
        extra_input=len(orjson.dumps(TYPICAL_CHAT["tools"])),  # tool definitions are read too
        context=orjson.dumps(TYPICAL_CHAT["tools"]).decode(),  # and scanned for risk
    )
    assert call.body == orjson.loads(raw)


def test_chat_defaults_when_fields_are_absent() -> None:
    call = chat(b"{}")
    assert call == ModelCall(api="openai.chat", body={})
    assert (call.model, call.prompt, call.system, call.turns, call.n) == (None, "", None, 0, 1)
    assert not (call.stream or call.include_usage or call.logprobs or call.reasoning)


def test_chat_null_fields_count_as_absent() -> None:
    fields = [
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "stream",
        "stream_options",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "n",
        "temperature",
        "seed",
        "reasoning_effort",
    ]
    body = {name: None for name in fields}
    assert chat(orjson.dumps(body)) == ModelCall(api="openai.chat", body=body)


def test_chat_tool_turns_and_empty_content() -> None:
    call = chat(
        dumps(
            messages=[
                {"role": "user", "content": "weather in Oslo?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "w", "arguments": '{"city": "Oslo"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "3 degrees"},
                {"role": "assistant", "content": ""},
                {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
            ]
        )
    )
    assert call.prompt == "weather in Oslo?\n3 degrees"
    assert (call.turns, call.user_turns, call.system) == (5, 1, None)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"max_tokens": 100}, 100),
        ({"max_completion_tokens": 200}, 200),
        ({"max_tokens": 100, "max_completion_tokens": 50}, 100),
        ({"max_tokens": 10, "max_completion_tokens": 50}, 50),
        ({"max_tokens": 0}, 0),
        ({}, None),
    ],
)
def test_chat_max_tokens_takes_the_larger_limit(
    fields: dict[str, int], expected: int | None
) -> None:
    assert chat(orjson.dumps(fields)).max_tokens == expected


@pytest.mark.parametrize(
    ("fields", "logprobs", "top"),
    [
        ({"logprobs": True}, True, None),
        ({"logprobs": True, "top_logprobs": 0}, True, 0),
        ({"logprobs": True, "top_logprobs": 20}, True, 20),
        ({"logprobs": False}, False, None),
        ({"logprobs": False, "top_logprobs": 0}, False, 0),
        # Asking for alternatives is asking for logprobs, whatever the flag says.
        ({"top_logprobs": 3}, True, 3),
    ],
)
def test_chat_logprob_forms(fields: dict[str, Any], logprobs: bool, top: int | None) -> None:
    call = chat(orjson.dumps(fields))
    assert (call.logprobs, call.top_logprobs) == (logprobs, top)


@pytest.mark.parametrize(
    ("fields", "stream", "include_usage"),
    [
        ({"stream": True}, True, False),
        ({"stream": True, "stream_options": {"include_usage": True}}, True, True),
        ({"stream": True, "stream_options": {"include_usage": False}}, True, False),
        ({"stream": True, "stream_options": {}}, True, False),
        ({"stream": False, "stream_options": {"include_usage": True}}, False, False),
        ({"stream_options": {"include_usage": True}}, False, False),
        ({"stream": False}, False, False),
    ],
)
def test_chat_streaming_flags(fields: dict[str, Any], stream: bool, include_usage: bool) -> None:
    call = chat(orjson.dumps(fields))
    assert (call.stream, call.include_usage) == (stream, include_usage)


@pytest.mark.parametrize(
    ("effort", "reasoning"),
    [("minimal", True), ("low", True), ("high", True), ("none", False), (None, False)],
)
def test_chat_reasoning_effort(effort: str | None, reasoning: bool) -> None:
    call = chat(dumps(model="o3", reasoning_effort=effort))
    assert (call.reasoning, call.reasoning_effort) == (reasoning, effort)


def test_chat_numbers() -> None:
    call = chat(dumps(temperature=1, seed=0, n=1, logit_bias={}))
    assert call.temperature == 1.0 and isinstance(call.temperature, float)
    assert (call.seed, call.n, call.logit_bias) == (0, 1, 0)


# --- completions -------------------------------------------------------------------


def test_completions_maps_every_field() -> None:
    body = {
        "model": "gpt-3.5-turbo-instruct",
        "prompt": "Say this is a test",
        "max_tokens": 7,
        "temperature": 0,
        "n": 2,
        "best_of": 4,
        "stream": True,
        "stream_options": {"include_usage": True},
        "logprobs": 5,
        "echo": True,
        "logit_bias": {"50256": -100},
        "seed": 3,
        "suffix": None,
    }
    assert completions(orjson.dumps(body)) == ModelCall(
        api="openai.completions",
        body=body,
        model="gpt-3.5-turbo-instruct",
        prompt="Say this is a test",
        turns=1,
        user_turns=1,
        stream=True,
        include_usage=True,
        max_tokens=7,
        logprobs=True,
        top_logprobs=5,
        logit_bias=1,
        n=2,
        temperature=0.0,
        seed=3,
        best_of=4,
    )


def test_completions_defaults() -> None:
    assert completions(b"{}") == ModelCall(api="openai.completions", body={})


@pytest.mark.parametrize(
    ("prompt", "text", "turns"),
    [
        ("one", "one", 1),
        ("", "", 1),
        (["one", "two"], "one\ntwo", 2),
        ([1734, 318, 257], "", 1),
        ([[1734, 318], [257]], "", 2),
        (["text", [1734, 318]], "text", 2),
        ([], "", 0),
    ],
)
def test_completions_prompt_forms(prompt: Any, text: str, turns: int) -> None:
    call = completions(dumps(model="m", prompt=prompt))
    assert (call.prompt, call.turns, call.user_turns) == (text, turns, turns)


@pytest.mark.parametrize(("value", "top"), [(0, 0), (1, 1), (5, 5)])
def test_completions_logprobs_is_a_count(value: int, top: int) -> None:
    call = completions(dumps(prompt="x", logprobs=value))
    assert (call.logprobs, call.top_logprobs) == (True, top)


def test_completions_scoring_a_prompt_is_seen() -> None:
    # echo + max_tokens 0 + logprobs: the classic way to score a prompt's tokens.
    call = completions(dumps(prompt="x", echo=True, max_tokens=0, logprobs=5))
    assert (call.max_tokens, call.logprobs, call.top_logprobs) == (0, True, 5)


def test_completions_ignores_echo() -> None:
    assert completions(dumps(prompt="x", echo="yes")).prompt == "x"


@pytest.mark.parametrize(
    ("prompt", "prompts", "token_ids"),
    [
        ("one", 1, 0),
        (["a", "b", "c"], 3, 0),
        ([f"q{i}" for i in range(100)], 100, 0),
        ([1734, 318, 257], 1, 3),
        ([[1734, 318], [257]], 2, 3),
        (["text", [1734, 318]], 2, 2),
        ([[50256] * 5000], 1, 5000),
        ([], 1, 0),  # answered once, if the upstream takes it
        (None, 1, 0),
    ],
)
def test_completions_count_prompts_and_token_ids(prompt: Any, prompts: int, token_ids: int) -> None:
    call = completions(dumps(model="m", prompt=prompt))
    assert (call.prompts, call.token_ids) == (prompts, token_ids)


@pytest.mark.parametrize("prompt", [[1734, "x" * 40000], [1734, [318] * 9000], [1, 2, None]])
def test_a_token_id_prompt_holding_anything_else_is_refused(prompt: list[Any]) -> None:
    """It would go upstream counted as a few token ids."""
    with pytest.raises(BadRequest, match=r"prompt\[1\]|prompt\[2\]"):
        completions(dumps(model="m", prompt=prompt))


def test_completions_answers_are_every_prompt_times_n_or_best_of() -> None:
    hundred = [f"q{i}" for i in range(100)]
    assert completions(dumps(prompt=hundred)).answers == 100
    assert completions(dumps(prompt=hundred, n=2)).answers == 200
    # best_of candidates are generated and billed, though only n come back.
    assert completions(dumps(prompt=hundred, n=2, best_of=5)).answers == 500
    assert completions(dumps(prompt="x", best_of=3)).answers == 3
    assert completions(dumps(prompt=[[1], [2]], n=4, best_of=2)).answers == 8


def test_completions_suffix_is_input() -> None:
    call = completions(dumps(prompt="def f(x):", suffix="    return y\n"))
    assert (call.prompt, call.extra_input) == ("def f(x):", len("    return y\n"))


def test_chat_tool_definitions_and_calls_are_input() -> None:
    tools = [{"type": "function", "function": {"name": "weather", "description": "Now.",
                                               "parameters": {"type": "object"}}}]
    calls = [{"id": "c1", "type": "function",
              "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}]
    schema = {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}}
    call = chat(dumps(
        messages=[
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None, "tool_calls": calls},
            {"role": "tool", "tool_call_id": "c1", "content": "3 degrees"},
        ],
        tools=tools, response_format=schema, n=3,
    ))
    assert call.extra_input == sum(len(orjson.dumps(v)) for v in (tools, calls, schema))
    assert call.prompt == "Weather?\n3 degrees"  # the prompt stays text
    assert (call.prompts, call.answers, call.token_ids) == (1, 3, 0)
    # What the model reads besides the prompt is kept, as JSON, for the risk scan.
    assert call.context == "\n".join(orjson.dumps(v).decode() for v in (tools, schema, calls))


def test_responses_tool_calls_are_input_but_not_screenshots() -> None:
    tools = [{"type": "function", "name": "read", "parameters": {"type": "object"}}]
    call_item = {"type": "function_call", "call_id": "c1", "name": "read", "arguments": "{}"}
    output = {"type": "function_call_output", "call_id": "c1", "output": "the file"}
    screenshot = {"type": "computer_call_output", "call_id": "c2",
                  "output": {"type": "computer_screenshot", "image_url": "data:image/png;..."}}
    text = {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}}
    call = responses(dumps(
        input=[{"role": "user", "content": "Read it."}, call_item, output, screenshot,
               {"type": "reasoning", "id": "rs_1", "summary": []}],
        tools=tools, text=text,
    ))
    assert call.extra_input == sum(len(orjson.dumps(v)) for v in (tools, text, call_item, output))
    assert (call.prompt, call.turns, call.answers) == ("Read it.", 5, 1)
    # A tool's output is text the model reads: kept for the risk scan, not billed twice.
    assert call.context == "\n".join(
        orjson.dumps(v).decode() for v in (tools, text, call_item, output))


def test_responses_stored_prompt_variables_are_read_not_billed() -> None:
    template = {"id": "pmpt_1", "variables": {"style": "Think step by step."}}
    call = responses(dumps(prompt=template, input="Hi"))
    assert call.context == orjson.dumps(template).decode()
    assert call.extra_input == 0


def test_completions_suffix_is_read_for_risk() -> None:
    call = completions(dumps(prompt="def f(x):", suffix="    return y\n"))
    assert call.context == "    return y\n"


# --- responses ----------------------------------------------------------------------


def test_responses_maps_every_field() -> None:
    body = {
        "model": "o4-mini",
        "instructions": "Be terse.",
        "input": [
            {"role": "developer", "content": "No markdown."},
            {"role": "user", "content": "Summarize the file."},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Here it is:"},
                    {"type": "input_file", "file_id": "file-1"},
                    {"type": "input_image", "image_url": "https://example.com/a.png"},
                ],
            },
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Calling a tool.", "annotations": []}],
            },
            {"type": "function_call", "call_id": "c1", "name": "read", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "file body"},
            {"type": "reasoning", "id": "rs_1", "summary": []},
        ],
        "max_output_tokens": 1000,
        "top_logprobs": 4,
        "include": ["reasoning.encrypted_content", "message.output_text.logprobs"],
        "reasoning": {"effort": "high", "summary": "auto"},
        "stream": True,
        "temperature": 0.5,
        "store": False,
    }
    assert responses(orjson.dumps(body)) == ModelCall(
        api="openai.responses",
        body=body,
        model="o4-mini",
        prompt="Summarize the file.\nHere it is:\nCalling a tool.",
        system="Be terse.\nNo markdown.",
        turns=7,
        user_turns=2,
        stream=True,
        max_tokens=1000,
        logprobs=True,
        top_logprobs=4,
        temperature=0.5,
        reasoning=True,
        reasoning_effort="high",
        # The tool call and its output are read too, as JSON; reasoning is not.
        extra_input=len(orjson.dumps(body["input"][4])) + len(orjson.dumps(body["input"][5])),
        context=b"\n".join(orjson.dumps(item) for item in body["input"][4:6]).decode(),
    )


def test_responses_defaults() -> None:
    assert responses(b"{}") == ModelCall(api="openai.responses", body={})


def test_responses_string_input_is_one_user_turn() -> None:
    call = responses(dumps(model="gpt-4.1", input="Tell me a story."))
    assert (call.prompt, call.turns, call.user_turns, call.system) == (
        "Tell me a story.",
        1,
        1,
        None,
    )


def test_responses_instructions_as_items() -> None:
    call = responses(
        dumps(
            instructions=[{"role": "developer", "content": [{"type": "input_text", "text": "A"}]}]
        )
    )
    assert (call.system, call.prompt, call.turns) == ("A", "", 0)


@pytest.mark.parametrize(
    ("fields", "logprobs", "top"),
    [
        ({"include": ["message.output_text.logprobs"]}, True, None),
        ({"include": ["message.output_text.logprobs"], "top_logprobs": 2}, True, 2),
        ({"include": ["file_search_call.results"]}, False, None),
        ({"top_logprobs": 0}, False, 0),
        ({"top_logprobs": 3}, True, 3),
        ({}, False, None),
    ],
)
def test_responses_logprob_forms(fields: dict[str, Any], logprobs: bool, top: int | None) -> None:
    call = responses(orjson.dumps(fields))
    assert (call.logprobs, call.top_logprobs) == (logprobs, top)


@pytest.mark.parametrize(
    ("reasoning", "asked", "effort"),
    [
        ({"effort": "low"}, True, "low"),
        ({"effort": "high", "summary": "detailed"}, True, "high"),
        ({"summary": "auto"}, True, None),
        ({"effort": "none"}, False, "none"),
        (None, False, None),
    ],
)
def test_responses_reasoning(reasoning: Any, asked: bool, effort: str | None) -> None:
    call = responses(dumps(model="o3", input="x", reasoning=reasoning))
    assert (call.reasoning, call.reasoning_effort) == (asked, effort)


def test_responses_never_sets_chat_only_fields() -> None:
    call = responses(dumps(input="x", stream=True, n=4, logit_bias={"1": 1}, seed=1))
    assert (call.stream, call.include_usage, call.n, call.logit_bias, call.seed) == (
        True,
        False,
        1,
        0,
        None,
    )


# --- bodies as the OpenAI SDK sends them ---------------------------------------------


def sdk_bodies(calls: Callable[[Any], None]) -> list[tuple[str, bytes]]:
    openai = pytest.importorskip("openai")
    seen: list[tuple[str, bytes]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, request.content))
        error = {
            "message": "captured",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
        return httpx.Response(400, json={"error": error})

    client = openai.OpenAI(
        api_key="sk-test",
        base_url="http://upstream.test/v1",
        max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(answer)),
    )
    with pytest.raises(openai.BadRequestError):
        calls(client)
    return seen


def test_sdk_chat_body() -> None:
    [(path, raw)] = sdk_bodies(
        lambda client: client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
            ],
            max_completion_tokens=64,
            stream=True,
            stream_options={"include_usage": True},
            logprobs=True,
            top_logprobs=2,
            n=2,
            seed=1,
            logit_bias={"42": 3},
            reasoning_effort="low",
        )
    )
    call = ADAPTERS["openai.chat"].parse(raw)
    assert path == "/v1/chat/completions"
    assert (call.model, call.system, call.prompt, call.max_tokens) == (
        "gpt-4o-mini",
        "Be brief.",
        "Hi",
        64,
    )
    assert (call.stream, call.include_usage, call.logprobs, call.top_logprobs) == (
        True,
        True,
        True,
        2,
    )
    assert (call.n, call.seed, call.logit_bias, call.reasoning_effort) == (2, 1, 1, "low")


def test_sdk_completions_body() -> None:
    [(path, raw)] = sdk_bodies(
        lambda client: client.completions.create(
            model="gpt-3.5-turbo-instruct", prompt=["a", "b"], logprobs=3, echo=True, max_tokens=0
        )
    )
    call = ADAPTERS["openai.completions"].parse(raw)
    assert path == "/v1/completions"
    assert (call.prompt, call.turns, call.logprobs, call.top_logprobs, call.max_tokens) == (
        "a\nb",
        2,
        True,
        3,
        0,
    )


def test_sdk_responses_body() -> None:
    [(path, raw)] = sdk_bodies(
        lambda client: client.responses.create(
            model="o4-mini",
            instructions="Terse.",
            input=[{"role": "user", "content": [{"type": "input_text", "text": "Why?"}]}],
            reasoning={"effort": "high", "summary": "auto"},
            include=["message.output_text.logprobs"],
            top_logprobs=3,
            max_output_tokens=256,
        )
    )
    call = ADAPTERS["openai.responses"].parse(raw)
    assert path == "/v1/responses"
    assert (call.system, call.prompt, call.turns, call.user_turns) == ("Terse.", "Why?", 1, 1)
    assert (call.reasoning, call.reasoning_effort, call.logprobs, call.top_logprobs) == (
        True,
        "high",
        True,
        3,
    )
    assert call.max_tokens == 256


# --- hostile bodies ------------------------------------------------------------------

NOT_AN_OBJECT = [b"[]", b'[{"model": "m"}]', b'"text"', b"42", b"null", b"true"]
NOT_JSON = [
    b"",
    b"   ",
    b"{",
    b"model=gpt-4o",
    b'{"model": "m",}',
    b"{'model': 'm'}",
    b'{"x": NaN}',
    b'{"x": 1e400}',
    b'{"model": "\xff\xfe"}',  # invalid UTF-8
    b'{"model": "\xed\xa0\x80"}',  # an encoded surrogate
    b'{"model": "\\ud800"}',  # a lone surrogate escape
    b"\xef\xbb\xbf{}",  # a byte order mark
    b'{"model": "m"} trailing',
]


@pytest.mark.parametrize("adapter", OPENAI, ids=lambda a: a.name)
@pytest.mark.parametrize("raw", NOT_JSON)
def test_not_json_is_a_bad_request(adapter: Adapter, raw: bytes) -> None:
    err = refused(adapter.parse, raw)
    assert err.status == 400 and err.param is None
    assert err.message == "We could not parse the JSON body of your request."


@pytest.mark.parametrize("adapter", OPENAI, ids=lambda a: a.name)
@pytest.mark.parametrize("raw", NOT_AN_OBJECT)
def test_top_level_must_be_an_object(adapter: Adapter, raw: bytes) -> None:
    assert "must be a JSON object" in refused(adapter.parse, raw).message


@pytest.mark.parametrize("adapter", OPENAI, ids=lambda a: a.name)
@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 5000 + b"]" * 5000,
        b'{"model": "m", "metadata": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}",
        b'{"messages": [{"role": "user", "content": ' + b"[" * 5000 + b"]" * 5000 + b"}]}",
    ],
    ids=["array", "unread-field", "content"],
)
def test_deep_nesting_is_a_bad_request(adapter: Adapter, raw: bytes) -> None:
    err = refused(adapter.parse, raw)
    assert err.status == 400 and "nested more than" in err.message


@pytest.mark.parametrize("adapter", OPENAI, ids=lambda a: a.name)
def test_error_renders_in_the_openai_shape(adapter: Adapter) -> None:
    err = refused(adapter.parse, b'{"stream": "yes"}')
    rendered = orjson.loads(
        adapter.error_body(err.status, err.message, err.type, err.code, err.param)
    )
    assert rendered == {
        "error": {
            "message": "Invalid type for 'stream': expected a boolean, but got a string instead.",
            "type": "invalid_request_error",
            "param": "stream",
            "code": "invalid_type",
        }
    }


Parse = Callable[[bytes], ModelCall]
STRING_OR_PARTS = "a string or an array of objects"

# (parser, body, param, expected, got): the message is
# "Invalid type for '<param>': expected <expected>, but got <got> instead."
TYPE_ERRORS: list[tuple[Parse, dict[str, Any], str, str, str]] = [
    (chat, {"max_tokens": "100"}, "max_tokens", "an integer", "a string"),
    (chat, {"max_tokens": True}, "max_tokens", "an integer", "a boolean"),
    (chat, {"max_tokens": 100.0}, "max_tokens", "an integer", "a decimal"),
    # An integer too large for 64 bits reaches us as a float.
    (chat, {"max_tokens": 10**30}, "max_tokens", "an integer", "a decimal"),
    (chat, {"max_completion_tokens": [1]}, "max_completion_tokens", "an integer", "an array"),
    (chat, {"n": True}, "n", "an integer", "a boolean"),
    (chat, {"stream": "yes"}, "stream", "a boolean", "a string"),
    (chat, {"stream": 1}, "stream", "a boolean", "an integer"),
    (chat, {"stream_options": "usage"}, "stream_options", "an object", "a string"),
    (
        chat,
        {"stream": False, "stream_options": {"include_usage": "yes"}},
        "stream_options.include_usage",
        "a boolean",
        "a string",
    ),
    (chat, {"messages": {}}, "messages", "an array", "an object"),
    (chat, {"messages": "hello"}, "messages", "an array", "a string"),
    (chat, {"messages": [{"content": "a"}, "hello"]}, "messages[1]", "an object", "a string"),
    (chat, {"messages": [{"role": 1}]}, "messages[0].role", "a string", "an integer"),
    (chat, {"messages": [{"content": 5}]}, "messages[0].content", STRING_OR_PARTS, "an integer"),
    (chat, {"messages": [{"content": {}}]}, "messages[0].content", STRING_OR_PARTS, "an object"),
    (chat, {"messages": [{"content": ["a"]}]}, "messages[0].content[0]", "an object", "a string"),
    (
        chat,
        {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
        "messages[0].content[0].text",
        "a string",
        "an integer",
    ),
    (
        chat,
        {"messages": [{"role": "user", "content": [{"type": ["text"], "text": "a"}]}]},
        "messages[0].content[0].type",
        "a string",
        "an array",
    ),
    (chat, {"logprobs": "true"}, "logprobs", "a boolean", "a string"),
    (chat, {"logprobs": 1}, "logprobs", "a boolean", "an integer"),
    (chat, {"top_logprobs": "5"}, "top_logprobs", "an integer", "a string"),
    (chat, {"logit_bias": [["1", 2]]}, "logit_bias", "an object", "an array"),
    (chat, {"temperature": "0.5"}, "temperature", "a number", "a string"),
    (chat, {"temperature": False}, "temperature", "a number", "a boolean"),
    (chat, {"seed": 1.5}, "seed", "an integer", "a decimal"),
    (chat, {"seed": "1"}, "seed", "an integer", "a string"),
    (chat, {"reasoning_effort": 3}, "reasoning_effort", "a string", "an integer"),
    (chat, {"model": ["gpt-4o"]}, "model", "a string", "an array"),
    (completions, {"prompt": 5}, "prompt", "a string or an array", "an integer"),
    (completions, {"prompt": {"text": "a"}}, "prompt", "a string or an array", "an object"),
    (
        completions,
        {"prompt": ["a", 5]},
        "prompt[1]",
        "a string or an array of integers",
        "an integer",
    ),
    (completions, {"prompt": [True]}, "prompt[0]", "a string or an array of integers", "a boolean"),
    (completions, {"best_of": "two"}, "best_of", "an integer", "a string"),
    (completions, {"suffix": 5}, "suffix", "a string", "an integer"),
    (completions, {"prompt": "a", "logprobs": True}, "logprobs", "an integer", "a boolean"),
    (completions, {"max_tokens": "16"}, "max_tokens", "an integer", "a string"),
    (completions, {"stream": "true"}, "stream", "a boolean", "a string"),
    (
        completions,
        {"stream_options": {"include_usage": 1}},
        "stream_options.include_usage",
        "a boolean",
        "an integer",
    ),
    (completions, {"logit_bias": "none"}, "logit_bias", "an object", "a string"),
    (completions, {"seed": True}, "seed", "an integer", "a boolean"),
    (completions, {"temperature": [0]}, "temperature", "a number", "an array"),
    (responses, {"input": 5}, "input", STRING_OR_PARTS, "an integer"),
    (responses, {"input": {"role": "user"}}, "input", STRING_OR_PARTS, "an object"),
    (responses, {"input": ["hello"]}, "input[0]", "an object", "a string"),
    (responses, {"input": [{"type": 5}]}, "input[0].type", "a string", "an integer"),
    (responses, {"input": [{"content": 5}]}, "input[0].content", STRING_OR_PARTS, "an integer"),
    (
        responses,
        {"input": [{"role": "user", "content": [{"type": "input_text", "text": 5}]}]},
        "input[0].content[0].text",
        "a string",
        "an integer",
    ),
    (responses, {"input": [{"role": True}]}, "input[0].role", "a string", "a boolean"),
    (responses, {"instructions": 5}, "instructions", "a string", "an integer"),
    (responses, {"include": "message.output_text.logprobs"}, "include", "an array", "a string"),
    (responses, {"reasoning": "high"}, "reasoning", "an object", "a string"),
    (responses, {"reasoning": {"effort": 1}}, "reasoning.effort", "a string", "an integer"),
    (responses, {"max_output_tokens": "1000"}, "max_output_tokens", "an integer", "a string"),
    (responses, {"top_logprobs": True}, "top_logprobs", "an integer", "a boolean"),
    (responses, {"stream": "false"}, "stream", "a boolean", "a string"),
    (responses, {"temperature": None, "model": 4}, "model", "a string", "an integer"),
]


@pytest.mark.parametrize(
    ("parse", "body", "param", "expected", "got"),
    TYPE_ERRORS,
    ids=[f"{row[0].__name__}-{row[2]}-{i}" for i, row in enumerate(TYPE_ERRORS)],
)
def test_wrong_types_are_bad_requests(
    parse: Parse, body: dict[str, Any], param: str, expected: str, got: str
) -> None:
    err = refused(parse, json.dumps(body).encode())
    assert (err.status, err.param, err.code) == (400, param, "invalid_type")
    assert err.message == f"Invalid type for '{param}': expected {expected}, but got {got} instead."


# (parser, body, param, minimum, value)
BELOW_MINIMUM: list[tuple[Parse, dict[str, Any], str, int, int]] = [
    (chat, {"max_tokens": -1}, "max_tokens", 0, -1),
    (chat, {"max_completion_tokens": -100}, "max_completion_tokens", 0, -100),
    (chat, {"n": -1}, "n", 1, -1),
    (chat, {"n": 0}, "n", 1, 0),
    (chat, {"top_logprobs": -1}, "top_logprobs", 0, -1),
    (completions, {"prompt": "a", "logprobs": -1}, "logprobs", 0, -1),
    (completions, {"n": 0}, "n", 1, 0),
    (completions, {"best_of": 0}, "best_of", 1, 0),
    (completions, {"max_tokens": -2}, "max_tokens", 0, -2),
    (responses, {"max_output_tokens": -5}, "max_output_tokens", 0, -5),
    (responses, {"top_logprobs": -3}, "top_logprobs", 0, -3),
]


@pytest.mark.parametrize(
    ("parse", "body", "param", "minimum", "value"),
    BELOW_MINIMUM,
    ids=[f"{row[0].__name__}-{row[2]}-{i}" for i, row in enumerate(BELOW_MINIMUM)],
)
def test_values_below_minimum_are_bad_requests(
    parse: Parse, body: dict[str, Any], param: str, minimum: int, value: int
) -> None:
    err = refused(parse, json.dumps(body).encode())
    assert (err.status, err.param, err.code) == (400, param, "integer_below_min_value")
    assert err.message == (
        f"Invalid '{param}': integer below minimum value. "
        f"Expected a value >= {minimum}, but got {value} instead."
    )


def test_fields_not_read_are_left_to_the_upstream() -> None:
    body = {
        "top_p": "high",
        "tools": 5,
        "user": [],
        "metadata": "x",
        "echo": 3,
        "store": "yes",
        "text": 1,
    }
    for parse in (chat, completions, responses):
        assert parse(orjson.dumps(body)).body == body


# --- error bodies ---------------------------------------------------------------------


def test_openai_error_body_shape() -> None:
    raw = openai_error_body(429, "Slow down.", "rate_limit_error", "rate_limit_exceeded", "model")
    assert isinstance(raw, bytes)
    assert json.loads(raw) == {
        "error": {
            "message": "Slow down.",
            "type": "rate_limit_error",
            "param": "model",
            "code": "rate_limit_exceeded",
        }
    }
    assert json.loads(openai_error_body(500, "Oops.", "server_error", None)) == {
        "error": {"message": "Oops.", "type": "server_error", "param": None, "code": None}
    }


def test_openai_error_body_escapes_the_message() -> None:
    message = 'quote " backslash \\ newline \n and </script>'
    assert json.loads(openai_error_body(400, message, "t", None))["error"]["message"] == message


def test_gateway_errors_render_in_the_openai_shape() -> None:
    err: RequestError = BadRequest("Nope.", param="n")
    rendered = json.loads(openai_error_body(err.status, err.message, err.type, err.code, err.param))
    assert rendered["error"] == {
        "message": "Nope.",
        "type": "invalid_request_error",
        "param": "n",
        "code": "invalid_request",
    }


# --- decoding, shared by every adapter (guardgate.apis.base) ---------------------------


def nested(depth: int) -> bytes:
    """A body whose deepest container is ``depth`` levels down (the top-level object is 1)."""
    return b'{"metadata": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def test_decode_accepts_max_depth_and_refuses_one_more() -> None:
    assert base.decode(nested(MAX_DEPTH)) == orjson.loads(nested(MAX_DEPTH))
    err = refused(base.decode, nested(MAX_DEPTH + 1))
    assert (
        err.message == f"The JSON body of your request is nested more than {MAX_DEPTH} levels deep."
    )


def test_decode_refuses_deep_objects() -> None:
    raw = b'{"a": ' * 300 + b"1" + b"}" * 300
    assert "nested more than" in refused(base.decode, raw).message


def test_decode_allows_many_shallow_containers() -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}] * 2000
    raw = dumps(messages=messages)
    assert raw.count(b"{") > MAX_DEPTH
    assert chat(raw).turns == 2000


def test_brackets_in_strings_do_not_count() -> None:
    text = '[[[{{{ "quoted [" \\ back\\slash \\" ' * 200 + "]]]}}}" * 100
    call = chat(dumps(messages=[{"role": "user", "content": text}]))
    assert call.prompt == text


def test_closing_brackets_hidden_in_strings_do_not_hide_depth() -> None:
    # Closers inside a string would cancel the openers if strings were not skipped.
    raw = b'{"a": "' + b"]" * 3000 + b'", "b": ' + b"[" * 3000 + b"]" * 3000 + b"}"
    assert "nested more than" in refused(base.decode, raw).message
    raw = b'{"a": "\\"' + b"]" * 3000 + b'", "b": ' + b"[" * 3000 + b"]" * 3000 + b"}"
    assert "nested more than" in refused(base.decode, raw).message


def bushy(depth: int) -> bytes:
    """``depth`` levels, each with a side branch 4 deep: no long run of openers to spot."""
    chain = depth - 3  # the side branch of the innermost link reaches 4 deeper
    return b"[" + b"[[[[]]]],[" * (chain - 1) + b"]" * (chain - 1) + b"]"


@pytest.mark.parametrize("depth", [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, MAX_DEPTH + 5])
def test_depth_is_counted_exactly_in_bushy_bodies(depth: int) -> None:
    raw = bushy(depth)
    assert reference_depth(orjson.loads(raw)) == depth
    assert base.depth_within(orjson.loads(raw), MAX_DEPTH) is (depth <= MAX_DEPTH)
    body = b'{"metadata": ' + bushy(depth - 1) + b"}"
    if depth <= MAX_DEPTH:
        assert base.decode(body) == orjson.loads(body)
    else:
        assert "nested more than" in refused(base.decode, body).message


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[" * 2_000_000, "nested more than"),
        (b"[" * 2_000_000 + b"]" * 2_000_000, "nested more than"),
        (b'{"a": ' * 1_000_000, "nested more than"),
        (b'{"a": "' + b"]" * 1_000_000 + b'", "b": ' + b"[" * 1_000_000, "nested more than"),
        # A whole string, then garbage: the openers after it are never parsed.
        (b'"' + b'\\"' * 500_000 + b'"' + b"[" * 1_000_000, "could not parse"),
    ],
    ids=["open", "balanced", "objects", "hidden-closers", "escaped-quotes"],
)
def test_huge_nesting_is_refused_quickly(raw: bytes, message: str) -> None:
    # orjson stops at its own depth limit (1024) instead of recursing on.
    started = time.perf_counter()
    err = refused(base.decode, raw)
    assert err.status == 400 and message in err.message
    assert time.perf_counter() - started < 2.0


def json_values() -> st.SearchStrategy[Any]:
    tricky = st.text(alphabet='[]{}"\\/bfnrtu x\n', max_size=12)
    scalars = st.none() | st.booleans() | st.integers() | tricky
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(tricky, inner, max_size=4),
        max_leaves=40,
    )


def reference_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(reference_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(reference_depth, value), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(value=json_values(), limit=st.integers(0, 8))
def test_depth_within_agrees_with_the_real_depth(value: Any, limit: int) -> None:
    assert base.depth_within(value, limit) is (reference_depth(value) <= limit)


@settings(max_examples=200, deadline=None)
@given(value=json_values(), cut=st.integers(0, 400))
def test_truncated_json_never_crashes_decode(value: Any, cut: int) -> None:
    raw = json.dumps({"messages": value}).encode()[:cut]
    try:
        base.decode(raw)
    except BadRequest:
        pass
