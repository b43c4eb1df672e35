"""Answers, read once (pipeline steps 9 and 10): one walker per API family
knows where its answers keep text, reasoning, logprobs and usage
(`walker_for`), and `AnswerChain` runs an answer's bytes, JSON or SSE,
through a named chain of processors over that one walk.

A new API format adds its walker module here and its line in ``WALKERS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from guardgate.apis.answers.chain import AnswerChain, Processor
from guardgate.apis.answers.chat import Chat
from guardgate.apis.answers.completions import Completions
from guardgate.apis.answers.messages import Messages
from guardgate.apis.answers.responses import Responses
from guardgate.apis.answers.walk import Edit, Json, LogprobSink, TextSink, Usage, Walker

__all__ = [
    "WALKERS",
    "AnswerChain",
    "Edit",
    "Json",
    "LogprobSink",
    "Processor",
    "TextSink",
    "Usage",
    "Walker",
    "walker_for",
]

# API name (as routes name it) -> the walker of its answers.
WALKERS: Mapping[str, type[Walker]] = MappingProxyType(
    {
        "openai.chat": Chat,
        "openai.completions": Completions,
        "openai.responses": Responses,
        "anthropic.messages": Messages,
    }
)


def walker_for(api: str, streaming: bool) -> Walker:
    """A walker for one answer of ``api``; ValueError for an API without one."""
    walker = WALKERS.get(api)
    if walker is None:
        raise ValueError(f"no answer walker for API {api!r}")
    return walker(streaming)
