"""Degrade transforms that act on the request only (step 7): no logit bias,
one choice, a smaller output token limit. Where each API's request keeps
the fields they change is its adapter's `RequestFields`.

Only ``call.body`` changes: the call's parsed fields keep what the caller
asked for, and the gateway serializes the body again when a rewrite says so.
"""

from __future__ import annotations

from pydantic import Field

from guardgate.apis import ADAPTERS
from guardgate.apis.base import ModelCall, RequestFields
from guardgate.perturb.degrade import Flag, On, Positive, Transform, registered

__all__ = ["ClampMaxTokens", "DropLogitBias", "ForceN1", "cap_int", "fields_of", "pop"]

Json = dict[str, object]

_MIN_THINKING = 1024  # Anthropic's smallest thinking budget


def fields_of(call: ModelCall) -> RequestFields:
    """Where ``call``'s API keeps what transforms change; ValueError for an unknown API."""
    adapter = ADAPTERS.get(call.api)
    if adapter is None:
        raise ValueError(f"no request rewrite for API {call.api!r}")
    return adapter.fields


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
        return fields_of(call).logit_bias and pop(call.body, "logit_bias")


@registered(order=50)
class ForceN1(Flag):
    """Ask for one choice per request (n: 1, and no best_of): one sample a call."""

    force_n1: On = True

    def rewrite_request(self, call: ModelCall) -> bool:
        choices = fields_of(call).choices
        if not choices:
            return False
        body, changed = call.body, False
        n = body.get(choices[0])
        if type(n) is int and n != 1:
            body[choices[0]] = 1
            changed = True
        for other in choices[1:]:  # more samples to pick from (best_of)
            changed = pop(body, other) or changed
        return changed


@registered(order=60)
class ClampMaxTokens(Transform):
    """Lower the request's output token limit to at most this; set it when none is sent."""

    clamp_max_tokens: Positive = Field(description="Output tokens per answer, at most.")

    def rewrite_request(self, call: ModelCall) -> bool:
        body, limit = call.body, self.clamp_max_tokens
        fields = fields_of(call)
        changed = sent = False
        for field in fields.max_tokens:
            if body.get(field) is not None:
                sent = True
                changed = cap_int(body, field, limit) or changed
        if not sent:
            body[fields.max_tokens_default] = limit
            changed = True
        if changed and fields.thinking_budget:
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
