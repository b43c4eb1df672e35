"""Step 2, route: one adapter per model API.

``ADAPTERS`` maps an API name (as policy routes name it) to its `Adapter`,
which parses a request body into a `ModelCall` and words errors the way that
API's clients expect. Any other route is pass-through and answers errors in
the OpenAI shape (`openai_error_body`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from guardgate.apis.anthropic import anthropic_error_body, parse_messages
from guardgate.apis.base import MAX_DEPTH, Adapter, ErrorBody, Family, ModelCall
from guardgate.apis.openai import (
    openai_error_body,
    parse_chat,
    parse_completions,
    parse_responses,
)

ADAPTERS: Mapping[str, Adapter] = MappingProxyType(
    {
        adapter.name: adapter
        for adapter in (
            Adapter("openai.chat", "openai", parse_chat, openai_error_body),
            Adapter("openai.completions", "openai", parse_completions, openai_error_body),
            Adapter("openai.responses", "openai", parse_responses, openai_error_body),
            Adapter("anthropic.messages", "anthropic", parse_messages, anthropic_error_body),
        )
    }
)

__all__ = [
    "ADAPTERS",
    "MAX_DEPTH",
    "Adapter",
    "ErrorBody",
    "Family",
    "ModelCall",
    "anthropic_error_body",
    "openai_error_body",
]
