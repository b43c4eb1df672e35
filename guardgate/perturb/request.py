"""Degrade transforms that act on the request only (step 7): no logit bias,
one choice, a smaller output token limit; and where each API's request
keeps the fields they change.

Only ``call.body`` changes: the call's parsed fields keep what the caller
asked for, and the gateway serializes the body again when a rewrite says so.
"""

from __future__ import annotations

from pydantic import Field

from guardgate.apis.base import ModelCall
from guardgate.perturb.degrade import Flag, On, Positive, Transform, registered

__all__ = ["MAX_TOKEN_FIELDS", "TOP_LOGPROBS_FIELD", "ClampMaxTokens", "DropLogitBias",
           "ForceN1", "cap_int", "pop"]

Json = dict[str, object]

# API -> its max-tokens fields, and the one to set when none is sent. An API
# without an entry has no request rewrite.
MAX_TOKEN_FIELDS: dict[str, tuple[tuple[str, ...], str]] = {
    "openai.chat": (("max_completion_tokens", "max_tokens"), "max_tokens"),
    "openai.completions": (("max_tokens",), "max_tokens"),
    "openai.responses": (("max_output_tokens",), "max_output_tokens"),
    "anthropic.messages": (("max_tokens",), "max_tokens"),
}
# API -> the field asking how many alternatives per token; the APIs with logit bias.
TOP_LOGPROBS_FIELD = {
    "openai.chat": "top_logprobs",
    "openai.completions": "logprobs",
    "openai.responses": "top_logprobs",
}
_MIN_THINKING = 1024  # Anthropic's smallest thinking budget


def pop(body: Json, key: str) -> bool:
    if key not in body:
        return False
    del body[key]
    return True


def cap_int(body: Json, key: str, limit: int) -> bool:
    value = body.get(key)
    if type(value) is int and value > limit:
        body[key] = limit
        return True
    return False


@registered(order=40)
class DropLogitBias(Flag):
    """Drop the request's logit_bias: no steering the sampler token by token."""

    drop_logit_bias: On = True

    def rewrite_request(self, call: ModelCall) -> bool:
        return call.api in TOP_LOGPROBS_FIELD and pop(call.body, "logit_bias")


@registered(order=50)
class ForceN1(Flag):
    """Ask for one choice per request (n: 1, and no best_of): one sample a call."""

    force_n1: On = True

    def rewrite_request(self, call: ModelCall) -> bool:
        if call.api != "openai.chat" and call.api != "openai.completions":
            return False
        body, changed = call.body, False
        n = body.get("n")
        if type(n) is int and n != 1:
            body["n"] = 1
            changed = True
        if call.api == "openai.completions":
            changed = pop(body, "best_of") or changed
        return changed


@registered(order=60)
class ClampMaxTokens(Transform):
    """Lower the request's output token limit to at most this; set it when none is sent."""

    clamp_max_tokens: Positive = Field(description="Output tokens per answer, at most.")

    def rewrite_request(self, call: ModelCall) -> bool:
        body, limit = call.body, self.clamp_max_tokens
        fields, default = MAX_TOKEN_FIELDS[call.api]
        changed = sent = False
        for field in fields:
            if body.get(field) is not None:
                sent = True
                changed = cap_int(body, field, limit) or changed
        if not sent:
            body[default] = limit
            changed = True
        if changed and call.api == "anthropic.messages":
            _fit_thinking(body, limit)
        return changed


def _fit_thinking(body: Json, limit: int) -> None:
    """Keep an Anthropic thinking budget below the clamped ``max_tokens``, as the API requires.

    Below the smallest budget there is no room to think: thinking is turned off.
    """
    thinking = body.get("thinking")
    if type(thinking) is not dict or thinking.get("type") != "enabled":
        return
    budget = thinking.get("budget_tokens")
    if type(budget) is not int or budget < limit:
        return
    if limit > _MIN_THINKING:
        body["thinking"] = {**thinking, "budget_tokens": limit - 1}
    else:
        body["thinking"] = {"type": "disabled"}
