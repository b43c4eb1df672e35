"""Answers, read once (pipeline steps 9 and 10): one walker per API family
knows where its answers keep text, reasoning, logprobs and usage
(`walker_for`), and `AnswerChain` runs an answer's bytes, JSON or SSE,
through a named chain of processors over that one walk.

A new API format adds its walker module here; its `Adapter` names it.
"""

from __future__ import annotations

from guardgate.apis.answers.chain import (
    AnswerChain,
    Processor,
    TooLarge,
    Unreadable,
    Untreatable,
)
from guardgate.apis.answers.chat import Chat
from guardgate.apis.answers.completions import Completions
from guardgate.apis.answers.messages import Messages
from guardgate.apis.answers.responses import Responses
from guardgate.apis.answers.walk import (
    Arguments,
    Edit,
    Json,
    LogprobSink,
    TextSink,
    Usage,
    Walker,
)

__all__ = [
    "AnswerChain",
    "Arguments",
    "Chat",
    "Completions",
    "Edit",
    "Json",
    "LogprobSink",
    "Messages",
    "Processor",
    "Responses",
    "TextSink",
    "TooLarge",
    "Unreadable",
    "Untreatable",
    "Usage",
    "Walker",
]
