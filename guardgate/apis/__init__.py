"""Step 2, route: one adapter per model API.

``ADAPTERS`` maps an API name (as policy routes name it) to its `Adapter`:
everything the gateway knows of that API, in one place. It parses a request
body into a `ModelCall`, says where the request keeps what degrade
transforms change, walks the answers and words errors the way that API's
clients expect. Any other route is pass-through and answers errors in the
OpenAI shape (`openai_error_body`). A new API format is a parser module, a
walker in `guardgate.apis.answers` and its `Adapter` below.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from guardgate.apis.answers import Chat, Completions, Messages, Responses, Walker
from guardgate.apis.anthropic import anthropic_error_body, parse_messages
from guardgate.apis.base import MAX_DEPTH, Adapter, ErrorBody, Family, ModelCall, RequestFields
from guardgate.apis.openai import (
    LOGPROBS_INCLUDE,
    openai_error_body,
    parse_chat,
    parse_completions,
    parse_responses,
)

# vLLM's request fields whose answers carry what no walker treats.
VLLM_EXTRAS = ("prompt_logprobs", "return_token_ids", "return_tokens_as_token_ids")

ADAPTERS: Mapping[str, Adapter] = MappingProxyType(
    {
        adapter.name: adapter
        for adapter in (
            Adapter(
                "openai.chat", "openai", "/v1/chat/completions", parse_chat, openai_error_body,
                RequestFields(("max_completion_tokens", "max_tokens"), "max_tokens",
                              logprobs=("logprobs", "top_logprobs"),
                              top_logprobs="top_logprobs", choices=("n",), logit_bias=True,
                              stream_usage=True, untreated_logprobs=("prompt_logprobs",),
                              untreated=VLLM_EXTRAS),
                Chat,
            ),
            Adapter(
                "openai.completions", "openai", "/v1/completions", parse_completions,
                openai_error_body,
                RequestFields(("max_tokens",), "max_tokens", logprobs=("logprobs",),
                              top_logprobs="logprobs", choices=("n", "best_of"),
                              logit_bias=True, stream_usage=True,
                              untreated_logprobs=("prompt_logprobs",), untreated=VLLM_EXTRAS),
                Completions,
            ),
            Adapter(
                "openai.responses", "openai", "/v1/responses", parse_responses,
                openai_error_body,
                RequestFields(("max_output_tokens",), "max_output_tokens",
                              logprobs=("top_logprobs",), top_logprobs="top_logprobs",
                              logprobs_include=LOGPROBS_INCLUDE,
                              logit_bias=True),
                Responses,
            ),
            Adapter(
                "anthropic.messages", "anthropic", "/v1/messages", parse_messages,
                anthropic_error_body,
                RequestFields(("max_tokens",), "max_tokens", thinking_budget=True),
                Messages,
            ),
        )
    }
)

def walker_for(api: str, streaming: bool) -> Walker:
    """A walker for one answer of ``api``; ValueError for an API the gateway does not know."""
    adapter = ADAPTERS.get(api)
    if adapter is None:
        raise ValueError(f"no answer walker for API {api!r}")
    return adapter.walker(streaming)


__all__ = [
    "ADAPTERS",
    "MAX_DEPTH",
    "Adapter",
    "ErrorBody",
    "Family",
    "ModelCall",
    "RequestFields",
    "anthropic_error_body",
    "openai_error_body",
    "walker_for",
]
