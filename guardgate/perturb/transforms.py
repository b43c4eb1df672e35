"""Degrade transforms: what a high-risk caller's requests and answers lose (steps 7, 9).

A tier's ``degrade:`` list names transforms; `parse_degrade` turns it into a
frozen `Transforms` once, when the policy is compiled. `rewrite_request`
changes a request body before it is forwarded: fewer or no logprobs, no logit
bias, one choice, a smaller token limit. `ResponseRewriter` changes the answer
as it streams past, JSON or SSE, for every API family: it drops, caps or
coarsens logprobs, drops reasoning (renumbering what follows so that the
stream stays valid for the official SDKs), and hands the answer text, and only
it, to an optional `TextFilter`, the watermark's hook. `Tarpit` spends the
tarpit delay on one response; ``reroute`` is data the gateway reads.

The rewriter has the contract of `UsageMeter`: bytes in, bytes out, in order.
It never raises on what the upstream sends, holds at most `MAX_JSON` of a
JSON answer (a larger one passes untouched) and one SSE event at a time, and
passes every event it does not change on byte for byte. A changed event is
serialized again with orjson, keeping its other fields (``event:``, ``id:``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import re
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson

from guardgate.apis.base import ModelCall
from guardgate.apis.sse import MAX_EVENT, EventReader, event_data
from guardgate.apis.usage import MAX_JSON
from guardgate.types import Message

__all__ = [
    "COARSE_NOISE",
    "TARPIT_STEPS",
    "TRANSFORM_NAMES",
    "ResponseRewriter",
    "Tarpit",
    "TextFilter",
    "Transforms",
    "parse_degrade",
    "rewrite_request",
]

Json = dict[str, Any]

TRANSFORM_NAMES = (
    "drop_logprobs",
    "cap_top_logprobs",
    "coarsen_logprobs",
    "drop_logit_bias",
    "force_n1",
    "clamp_max_tokens",
    "drop_reasoning",
    "tarpit",
    "reroute",
)
COARSE_NOISE = 0.05  # the keyed noise added to a rounded logprob is within this, either way
TARPIT_STEPS = 20  # a stream's delay is spread over its first events, this many at most


# --- configuration -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transforms:
    """The degrade transforms of one tier; the default is none."""

    drop_logprobs: bool = False
    cap_top_logprobs: int | None = None  # alternatives per token, at most
    coarsen_logprobs: bool = False
    drop_logit_bias: bool = False
    force_n1: bool = False
    clamp_max_tokens: int | None = None
    drop_reasoning: bool = False
    tarpit: float | None = None  # seconds added to each answer
    reroute: str | None = None  # upstream URL to send the request to instead

    def names(self) -> tuple[str, ...]:
        """The transforms that are on, in `TRANSFORM_NAMES` order."""
        return tuple(
            name
            for name in TRANSFORM_NAMES
            if (value := getattr(self, name)) is not None and value is not False
        )

    @property
    def rewrites_request(self) -> bool:
        """Whether `rewrite_request` may change a request."""
        return (
            self.drop_logprobs
            or self.cap_top_logprobs is not None
            or self.drop_logit_bias
            or self.force_n1
            or self.clamp_max_tokens is not None
        )

    @property
    def rewrites_response(self) -> bool:
        """Whether a `ResponseRewriter` has anything to do besides a text filter."""
        return (
            self.drop_logprobs
            or self.cap_top_logprobs is not None
            or self.coarsen_logprobs
            or self.drop_reasoning
        )


_FLAGS = frozenset(
    {"drop_logprobs", "coarsen_logprobs", "drop_logit_bias", "force_n1", "drop_reasoning"}
)


def parse_degrade(items: Iterable[object]) -> Transforms:
    """A tier's ``degrade:`` list as `Transforms`, or ValueError saying what is wrong.

    Each item is a bare name (``drop_logprobs``) or a one-key mapping
    (``{clamp_max_tokens: 512}``); a name may appear once.
    """
    fields: dict[str, Any] = {}
    for position, item in enumerate(items):
        if type(item) is str:
            name, value, bare = item, True, True
        elif isinstance(item, dict) and len(item) == 1:
            [(name, value)] = item.items()
            bare = False
        else:
            raise ValueError(
                f"degrade item {position} must be a transform name or a mapping of one "
                f"name to its value, not {item!r}"
            )
        if name not in TRANSFORM_NAMES:
            raise ValueError(
                f"unknown degrade transform {name!r}; known: {', '.join(TRANSFORM_NAMES)}"
            )
        if name in fields:
            raise ValueError(f"degrade transform {name!r} is listed twice")
        fields[name] = _flag(name, value) if name in _FLAGS else _setting(name, value, bare)
    return Transforms(**fields)


def _flag(name: str, value: object) -> bool:
    if value is True or value is None:
        return True
    raise ValueError(f"degrade transform {name!r} takes no value, but got {value!r}")


def _setting(name: str, value: object, bare: bool) -> object:
    if bare:
        raise ValueError(f"degrade transform {name!r} needs a value: {{{name}: ...}}")
    if name == "cap_top_logprobs" or name == "clamp_max_tokens":
        least = 0 if name == "cap_top_logprobs" else 1
        if type(value) is not int or value < least:
            raise ValueError(f"{name} must be an integer of at least {least}, not {value!r}")
        return value
    if name == "tarpit":
        if (type(value) is not int and type(value) is not float) or not (
            0 < value < math.inf
        ):
            raise ValueError(f"tarpit must be a number of seconds above 0, not {value!r}")
        return float(value)
    # reroute
    if type(value) is not str or not _is_url(value):
        raise ValueError(f"reroute must be an http:// or https:// URL, not {value!r}")
    return value


def _is_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


# --- step 7: the request -------------------------------------------------------------

# API -> its max-tokens fields, and the one to set when none is sent.
_MAX_FIELDS: dict[str, tuple[tuple[str, ...], str]] = {
    "openai.chat": (("max_completion_tokens", "max_tokens"), "max_tokens"),
    "openai.completions": (("max_tokens",), "max_tokens"),
    "openai.responses": (("max_output_tokens",), "max_output_tokens"),
    "anthropic.messages": (("max_tokens",), "max_tokens"),
}
# API -> the field holding how many alternatives per token are asked for.
_TOP_FIELD = {
    "openai.chat": "top_logprobs",
    "openai.completions": "logprobs",
    "openai.responses": "top_logprobs",
}
_LOGPROBS_INCLUDE = "message.output_text.logprobs"
_MIN_THINKING = 1024  # Anthropic's smallest thinking budget


def rewrite_request(call: ModelCall, t: Transforms) -> bool:
    """Apply the request side of ``t`` to ``call.body``; True when it changed.

    Only the body changes: the call's parsed fields keep what the caller
    asked for. The caller serializes the body again when this returns True.
    """
    api, body = call.api, call.body
    if api not in _MAX_FIELDS:
        raise ValueError(f"no request rewrite for API {api!r}")
    changed = False
    if t.drop_logprobs:
        changed = _drop_asked_logprobs(api, body)
    elif t.cap_top_logprobs is not None and api in _TOP_FIELD:
        changed = _cap_int(body, _TOP_FIELD[api], t.cap_top_logprobs)
    if t.drop_logit_bias and api in _TOP_FIELD:
        changed = _pop(body, "logit_bias") or changed
    if t.force_n1 and (api == "openai.chat" or api == "openai.completions"):
        changed = _force_n1(api, body) or changed
    if t.clamp_max_tokens is not None:
        changed = _clamp_max_tokens(api, body, t.clamp_max_tokens) or changed
    return changed


def _pop(body: Json, key: str) -> bool:
    if key not in body:
        return False
    del body[key]
    return True


def _cap_int(body: Json, key: str, limit: int) -> bool:
    value = body.get(key)
    if type(value) is int and value > limit:
        body[key] = limit
        return True
    return False


def _drop_asked_logprobs(api: str, body: Json) -> bool:
    if api == "openai.chat":
        return _pop(body, "logprobs") | _pop(body, "top_logprobs")
    if api == "openai.completions":
        return _pop(body, "logprobs")
    if api == "openai.responses":
        changed = _pop(body, "top_logprobs")
        include = body.get("include")
        if type(include) is list and _LOGPROBS_INCLUDE in include:
            body["include"] = [item for item in include if item != _LOGPROBS_INCLUDE]
            changed = True
        return changed
    return False


def _force_n1(api: str, body: Json) -> bool:
    changed = False
    n = body.get("n")
    if type(n) is int and n != 1:
        body["n"] = 1
        changed = True
    if api == "openai.completions":
        changed = _pop(body, "best_of") or changed
    return changed


def _clamp_max_tokens(api: str, body: Json, limit: int) -> bool:
    fields, default = _MAX_FIELDS[api]
    changed = sent = False
    for field in fields:
        if body.get(field) is not None:
            sent = True
            changed = _cap_int(body, field, limit) or changed
    if not sent:
        body[default] = limit
        changed = True
    if changed and api == "anthropic.messages":
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


# --- step 9: the answer ----------------------------------------------------------------


class TextFilter(Protocol):
    """Rewrites one answer text as it streams: `feed` may hold text back, `flush` returns it."""

    def feed(self, text: str) -> str: ...

    def flush(self) -> str: ...


_CHAT_REASONING = ("reasoning_content", "reasoning", "reasoning_details")
_MARGIN = 0.001  # how far below the top logprob a coarsened other one is clamped


def _dicts(value: object) -> list[Json]:
    return [item for item in value if type(item) is dict] if type(value) is list else []


def _number(value: object) -> bool:
    return type(value) is float or type(value) is int


def _pair(token: object, logprob: object) -> tuple[str, float] | None:
    """A token and its logprob, when both are there with their JSON types."""
    if type(token) is str and (type(logprob) is float or type(logprob) is int):
        return token, logprob
    return None


class _Ops:
    """What every API's reader does to logprobs, reasoning usage and answer text.

    ``dirty`` is set by anything that changes the value being read, so that
    an untouched event or answer passes on as the bytes it came in.
    """

    __slots__ = ("_filters", "_mac", "_new_filter", "cap", "coarsen", "dirty", "drop", "reasoning")

    def __init__(
        self, t: Transforms, key: bytes, text_filter: Callable[[], TextFilter] | None
    ) -> None:
        self.drop = t.drop_logprobs
        self.cap = None if t.drop_logprobs else t.cap_top_logprobs
        self.coarsen = t.coarsen_logprobs and not t.drop_logprobs
        self.reasoning = t.drop_reasoning
        self._mac = hmac.new(key, digestmod=hashlib.sha256)
        self._new_filter = text_filter
        self._filters: dict[Hashable, TextFilter] = {}
        self.dirty = False

    # -- logprobs

    @property
    def shapes_logprobs(self) -> bool:
        return self.cap is not None or self.coarsen

    def entries(self, entries: object, start: int) -> int:
        """Cap and coarsen chat / Responses logprob entries from token ``start``; how many."""
        if type(entries) is not list:
            return 0
        if not self.shapes_logprobs:
            return len(entries)
        for offset, entry in enumerate(entries):
            if type(entry) is not dict:
                continue
            tops = entry.get("top_logprobs")
            if self.cap is not None and type(tops) is list and len(tops) > self.cap:
                tops = entry["top_logprobs"] = _highest_entries(tops, self.cap)
                self.dirty = True
            if self.coarsen:
                self._coarsen_entry(entry, _dicts(tops), start + offset)
        return len(entries)

    def _coarsen_entry(self, entry: Json, tops: list[Json], position: int) -> None:
        own = _pair(entry.get("token"), entry.get("logprob"))
        tops = [t for t in tops if _pair(t.get("token"), t.get("logprob"))]
        candidates = [own] if own else []
        candidates += [(t["token"], t["logprob"]) for t in tops]
        if not candidates:
            return
        coarse = self._coarse(candidates, position)
        if own:
            entry["logprob"] = coarse[own[0]]
        for top in tops:
            top["logprob"] = coarse[top["token"]]
        self.dirty = True

    def completion_logprobs(self, logprobs: object, start: int) -> int:
        """Cap and coarsen a completions ``logprobs`` object from token ``start``; how many."""
        if type(logprobs) is not dict:
            return 0
        tokens = logprobs.get("tokens")
        values = logprobs.get("token_logprobs")
        tops = logprobs.get("top_logprobs")
        tokens = tokens if type(tokens) is list else []
        values = values if type(values) is list else []
        tops = tops if type(tops) is list else []
        count = max(len(tokens), len(values), len(tops))
        if self.cap is not None:
            for i, top in enumerate(tops):
                if type(top) is dict and len(top) > self.cap:
                    tops[i] = _highest_mapping(top, self.cap)
                    self.dirty = True
        if self.coarsen:
            for i in range(count):
                own = _pair(tokens[i] if i < len(tokens) else None,
                            values[i] if i < len(values) else None)
                top = tops[i] if i < len(tops) and type(tops[i]) is dict else {}
                candidates = [own] if own else []
                candidates += [(k, v) for k, v in top.items() if _number(v)]
                if not candidates:
                    continue
                coarse = self._coarse(candidates, start + i)
                if own:
                    values[i] = coarse[own[0]]
                for k, v in top.items():
                    if _number(v):
                        top[k] = coarse[k]
                self.dirty = True
        return count

    def _coarse(self, candidates: list[tuple[str, float]], position: int) -> dict[str, float]:
        """Each candidate token's coarsened logprob at ``position``; the top one stays on top."""
        best: dict[str, float] = {}
        for token, value in candidates:
            if token not in best or value > best[token]:
                best[token] = float(value)
        top = max(best, key=best.__getitem__)  # the first of equals: the sampled token
        coarse = {token: self._noisy(token, value, position) for token, value in best.items()}
        ceiling = coarse[top]
        for token, value in coarse.items():
            if value >= ceiling and token != top:
                coarse[token] = round(ceiling - _MARGIN, 6)
        return coarse

    def _noisy(self, token: str, value: float, position: int) -> float:
        mac = self._mac.copy()
        mac.update(f"{position}\x1f{token}".encode("utf-8", "surrogatepass"))
        unit = int.from_bytes(mac.digest()[:8], "big") / 18446744073709551616.0
        coarse = min(round(value, 1) + (2.0 * unit - 1.0) * COARSE_NOISE, 0.0)
        return round(coarse, 6) + 0.0  # + 0.0: never -0.0

    # -- reasoning usage

    def discount_reasoning(self, usage: object, output: str, details: str) -> None:
        """Take reasoning tokens out of ``usage``, so that it counts what is sent."""
        if type(usage) is not dict:
            return
        detail = usage.get(details)
        if type(detail) is not dict:
            return
        spent = detail.get("reasoning_tokens")
        if type(spent) is not int or spent <= 0:
            return
        detail["reasoning_tokens"] = 0
        for key in (output, "total_tokens"):
            count = usage.get(key)
            if type(count) is int:
                usage[key] = max(0, count - spent)
        self.dirty = True

    # -- answer text

    @property
    def filtering(self) -> bool:
        return self._new_filter is not None

    def feed(self, key: Hashable, text: str) -> str:
        """``text`` streamed for the answer text ``key``, filtered (maybe partly held back)."""
        new = self._new_filter
        if new is None:
            return text
        text_filter = self._filters.get(key)
        if text_filter is None:
            text_filter = self._filters[key] = new()
        out = text_filter.feed(text)
        if out != text:
            self.dirty = True
        return out

    def close(self, key: Hashable) -> str:
        """What the filter of ``key`` still holds, at the end of that text; "" without one."""
        text_filter = self._filters.pop(key, None)
        if text_filter is None:
            return ""
        rest = text_filter.flush()
        if rest:
            self.dirty = True
        return rest

    def open_keys(self) -> list[Hashable]:
        return list(self._filters)

    def whole(self, text: str) -> str:
        """A whole answer text, filtered at once by its own filter."""
        new = self._new_filter
        if new is None or not text:
            return text
        text_filter = new()
        out = text_filter.feed(text) + text_filter.flush()
        if out != text:
            self.dirty = True
        return out


def _highest_entries(tops: list[Any], k: int) -> list[Any]:
    """The ``k`` entries with the highest ``logprob``, in their order."""
    def rank(i: int) -> float:
        entry = tops[i]
        value = entry.get("logprob") if type(entry) is dict else None
        return float(value) if type(value) is float or type(value) is int else -math.inf

    keep = set(sorted(range(len(tops)), key=rank, reverse=True)[:k])
    return [entry for i, entry in enumerate(tops) if i in keep]


def _highest_mapping(top: Json, k: int) -> Json:
    """The ``k`` tokens of a completions ``top_logprobs`` mapping with the highest logprobs."""
    def rank(token: str) -> float:
        value = top[token]
        return float(value) if _number(value) else -math.inf

    keep = set(sorted(top, key=rank, reverse=True)[:k])
    return {token: value for token, value in top.items() if token in keep}


# --- one reader per API --------------------------------------------------------------


class _Reader:
    """Rewrites one API's answers: a whole JSON answer, or stream events one by one."""

    __slots__ = ("ops",)

    def __init__(self, ops: _Ops) -> None:
        self.ops = ops

    def answer(self, body: Json) -> None:
        """Rewrite a JSON answer in place."""

    def event(self, value: Json) -> list[Json]:
        """The events to send for one event: ``[value]`` (maybe changed), none, or more."""
        return [value]

    def end(self) -> list[Json]:
        """Events to send before the stream ends: what text filters still hold."""
        return []


class _Choices(_Reader):
    """OpenAI chat and completions: ``choices`` with an ``index``, one text each."""

    __slots__ = ("_base", "_positions")

    def __init__(self, ops: _Ops) -> None:
        super().__init__(ops)
        self._positions: dict[Hashable, int] = {}
        self._base: Json | None = None  # the last chunk's own fields, for a chunk of held text

    def _logprobs(self, choice: Json, index: int) -> None:
        """Drop, cap or coarsen one choice's logprobs; positions count per choice."""
        logprobs = choice.get("logprobs")
        if logprobs is None:
            return
        if self.ops.drop:
            choice["logprobs"] = None
            self.ops.dirty = True
        elif self.ops.shapes_logprobs:
            self._shape(logprobs, index)

    def _shape(self, logprobs: object, index: int) -> None:
        raise NotImplementedError

    def _advance(self, key: Hashable, count: int) -> None:
        if count:
            self._positions[key] = self._positions.get(key, 0) + count

    def event(self, value: Json) -> list[Json]:
        choices = value.get("choices")
        if type(choices) is not list:
            return [value]
        ops = self.ops
        if ops.filtering:
            self._base = {k: v for k, v in value.items() if k != "choices" and k != "usage"}
        emptied = 0
        for choice in _dicts(choices):
            index = choice.get("index")
            index = index if type(index) is int else 0
            self._logprobs(choice, index)
            emptied += self._delta(choice, index)
            if choice.get("finish_reason") is not None and ops.filtering:
                rest = ops.close(index)
                if rest:
                    self._append(choice, rest)
        if ops.reasoning:
            ops.discount_reasoning(value.get("usage"), "completion_tokens",
                                   "completion_tokens_details")
            if emptied and emptied == len(choices) and value.get("usage") is None:
                return []  # it only carried reasoning
        return [value]

    def _delta(self, choice: Json, index: int) -> int:
        """Rewrite a stream choice's text; 1 when it carried only reasoning, now nothing."""
        raise NotImplementedError

    def _append(self, choice: Json, text: str) -> None:
        raise NotImplementedError

    def _chunk(self, index: int, text: str) -> Json:
        raise NotImplementedError

    def end(self) -> list[Json]:
        out = []
        for key in self.ops.open_keys():
            rest = self.ops.close(key)
            if rest and self._base is not None and type(key) is int:
                out.append({**self._base, "choices": [self._chunk(key, rest)]})
        return out


class _Chat(_Choices):
    __slots__ = ()

    def answer(self, body: Json) -> None:
        ops = self.ops
        for choice in _dicts(body.get("choices")):
            self._logprobs(choice, -1)
            message = choice.get("message")
            if type(message) is not dict:
                continue
            if ops.reasoning:
                for key in _CHAT_REASONING:
                    if key in message:
                        del message[key]
                        ops.dirty = True
            content = message.get("content")
            if type(content) is str:
                message["content"] = ops.whole(content)
        if ops.reasoning:
            ops.discount_reasoning(body.get("usage"), "completion_tokens",
                                   "completion_tokens_details")

    def _shape(self, logprobs: object, index: int) -> None:
        if type(logprobs) is not dict:
            return
        for field in ("content", "refusal"):
            # index -1: a whole answer, counted from its start
            key = (index, field)
            start = 0 if index < 0 else self._positions.get(key, 0)
            count = self.ops.entries(logprobs.get(field), start)
            if index >= 0:
                self._advance(key, count)

    def _delta(self, choice: Json, index: int) -> int:
        delta = choice.get("delta")
        if type(delta) is not dict:
            return 0
        ops = self.ops
        carried = False
        if ops.reasoning:
            for key in _CHAT_REASONING:
                if key in delta:
                    del delta[key]
                    carried = ops.dirty = True
        content = delta.get("content")
        if type(content) is str and content:
            delta["content"] = ops.feed(index, content)
        empty = (
            carried
            and all(v is None for v in delta.values())
            and choice.get("finish_reason") is None
            and choice.get("logprobs") is None
        )
        return 1 if empty else 0

    def _append(self, choice: Json, text: str) -> None:
        delta = choice.get("delta")
        if type(delta) is not dict:
            delta = choice["delta"] = {}
        content = delta.get("content")
        delta["content"] = (content if type(content) is str else "") + text

    def _chunk(self, index: int, text: str) -> Json:
        return {"index": index, "delta": {"content": text}, "logprobs": None,
                "finish_reason": None}


class _Completions(_Choices):
    __slots__ = ()

    def answer(self, body: Json) -> None:
        for choice in _dicts(body.get("choices")):
            self._logprobs(choice, -1)
            text = choice.get("text")
            if type(text) is str:
                choice["text"] = self.ops.whole(text)

    def _shape(self, logprobs: object, index: int) -> None:
        start = 0 if index < 0 else self._positions.get(index, 0)
        count = self.ops.completion_logprobs(logprobs, start)
        if index >= 0:
            self._advance(index, count)

    def _delta(self, choice: Json, index: int) -> int:
        text = choice.get("text")
        if type(text) is str and text:
            choice["text"] = self.ops.feed(index, text)
        return 0

    def _append(self, choice: Json, text: str) -> None:
        given = choice.get("text")
        choice["text"] = (given if type(given) is str else "") + text

    def _chunk(self, index: int, text: str) -> Json:
        return {"text": text, "index": index, "logprobs": None, "finish_reason": None}


_PartKey = tuple[int, int]  # (output_index as the upstream sent it, content_index)
# What to do with the text of an output_text part in an event: leave it (the
# part is still streaming), give the part's whole filtered text, or filter it
# on its own (a lifecycle event's snapshot before the end).
_STREAMING, _FINAL, _FRESH = 0, 1, 2
_RESPONSE_ENDS = frozenset(
    {"response.completed", "response.incomplete", "response.failed", "response.done"}
)


class _Responses(_Reader):
    """OpenAI Responses: typed events about output items and their content parts."""

    __slots__ = ("_dropped", "_final", "_next", "_pieces", "_positions", "_shift", "_where")

    def __init__(self, ops: _Ops) -> None:
        super().__init__(ops)
        self._dropped: list[int] = []  # output indexes of dropped reasoning items, ascending
        self._shift = 0  # events added minus events dropped: sequence numbers move by this
        self._positions: dict[_PartKey, int] = {}
        self._pieces: dict[_PartKey, list[str]] = {}  # filtered text sent so far, per part
        self._where: dict[_PartKey, tuple[object, int]] = {}  # item id, output_index sent
        self._final: dict[_PartKey, str] = {}  # whole filtered text of each finished part
        self._next: int | None = None  # the sequence number of an event added at the end

    def answer(self, body: Json) -> None:
        self._response(body, _FINAL)

    def _response(self, response: Json, text: int) -> None:
        """A whole response: a JSON answer, or the one a lifecycle event carries."""
        ops = self.ops
        output = response.get("output")
        if type(output) is list:
            for index, item in enumerate(output):
                if type(item) is dict and item.get("type") == "message":
                    self._message(item, index, text)
            if ops.reasoning:
                kept = [i for i in output if type(i) is not dict or i.get("type") != "reasoning"]
                if len(kept) != len(output):
                    response["output"] = kept
                    ops.dirty = True
        if ops.reasoning:
            ops.discount_reasoning(response.get("usage"), "output_tokens",
                                   "output_tokens_details")

    def _message(self, item: Json, index: int, text: int) -> None:
        for part_index, part in enumerate(_dicts(item.get("content"))):
            if part.get("type") == "output_text":
                self._part(part, (index, part_index), text)

    def _part(self, part: Json, key: _PartKey, text: int) -> None:
        """An ``output_text`` part: its logprobs, and its text as ``text`` says."""
        self._logprobs(part, "logprobs")
        given = part.get("text")
        if text != _STREAMING and self.ops.filtering and type(given) is str:
            part["text"] = self._final_text(key, given) if text == _FINAL else self.ops.whole(given)

    def _logprobs(self, holder: Json, field: str, start: int = 0) -> int:
        logprobs = holder.get(field)
        if type(logprobs) is not list:
            return 0
        if self.ops.drop:
            if logprobs:
                holder[field] = []
                self.ops.dirty = True
            return 0
        return self.ops.entries(logprobs, start)

    def _final_text(self, key: _PartKey, text: str) -> str:
        """The part's whole filtered text: what was streamed, or ``text`` filtered at once."""
        final = self._final.get(key)
        if final is None:
            final = self._final[key] = self.ops.whole(text)
        elif final != text:
            self.ops.dirty = True
        return final

    def event(self, value: Json) -> list[Json]:
        kind = value.get("type")
        out = self._event(kind, value) if type(kind) is str else [value]
        sequence = value.get("sequence_number")
        if type(sequence) is int:
            self._number(out, sequence + self._shift)
            self._shift += len(out) - 1
        elif len(out) > 1:
            _unnumbered(out)
        return out

    def _number(self, events: list[Json], first: int) -> None:
        """Number ``events`` on from ``first``, so that the stream's numbers stay contiguous."""
        for number, event in enumerate(events, first):
            if event.get("sequence_number") != number:
                event["sequence_number"] = number
                self.ops.dirty = True
        self._next = first + len(events)

    def _event(self, kind: str, value: Json) -> list[Json]:
        ops = self.ops
        response = value.get("response")
        if type(response) is dict:
            if kind not in _RESPONSE_ENDS:
                self._response(response, _FRESH)
                return [value]
            out = self._close_all()
            self._response(response, _FINAL)
            return [*out, value]
        index = value.get("output_index")
        if type(index) is not int:
            return [] if ops.reasoning and kind.startswith("response.reasoning") else [value]
        if ops.reasoning:
            item = value.get("item")
            if type(item) is dict and item.get("type") == "reasoning":
                if index not in self._dropped:
                    self._dropped.insert(bisect_left(self._dropped, index), index)
                return []
            if kind.startswith("response.reasoning") or index in self._dropped:
                return []
            sent = index - bisect_left(self._dropped, index)
            if sent != index:
                value["output_index"] = sent
                ops.dirty = True
        part = value.get("content_index")
        key = (index, part if type(part) is int else 0)
        if kind == "response.output_text.delta":
            return self._delta(value, key)
        if kind == "response.output_text.done":
            out = self._close(key)
            self._logprobs(value, "logprobs")
            text = value.get("text")
            if ops.filtering and type(text) is str:
                value["text"] = self._final_text(key, text)
            return [*out, value]
        if kind == "response.content_part.done" or kind == "response.content_part.added":
            body = value.get("part")
            out = self._close(key) if kind.endswith("done") else []
            if type(body) is dict and body.get("type") == "output_text":
                self._part(body, key, _FINAL if out or kind.endswith("done") else _STREAMING)
            return [*out, value]
        if kind == "response.output_item.done" or kind == "response.output_item.added":
            item = value.get("item")
            done = kind.endswith("done")
            out = self._close_item(index) if done else []
            if type(item) is dict and item.get("type") == "message":
                self._message(item, index, _FINAL if done else _STREAMING)
            return [*out, value]
        return [value]

    def _delta(self, value: Json, key: _PartKey) -> list[Json]:
        ops = self.ops
        self._positions[key] = self._positions.get(key, 0) + self._logprobs(
            value, "logprobs", self._positions.get(key, 0)
        )
        delta = value.get("delta")
        if ops.filtering and type(delta) is str:
            text = ops.feed(key, delta)
            value["delta"] = text
            self._pieces.setdefault(key, []).append(text)
            self._where[key] = (value.get("item_id"), value.get("output_index", key[0]))
        return [value]

    def _close(self, key: _PartKey) -> list[Json]:
        """End the streamed text of a part: a delta with what its filter held, if anything."""
        if key in self._final or key not in self._pieces:
            return []
        rest = self.ops.close(key)
        self._final[key] = "".join(self._pieces.pop(key)) + rest
        item_id, index = self._where.pop(key)
        if not rest:
            return []
        return [{"type": "response.output_text.delta", "sequence_number": None,
                 "item_id": item_id, "output_index": index, "content_index": key[1],
                 "delta": rest, "logprobs": []}]

    def _close_item(self, index: int) -> list[Json]:
        return [event for key in list(self._pieces) if key[0] == index
                for event in self._close(key)]

    def _close_all(self) -> list[Json]:
        return [event for key in list(self._pieces) for event in self._close(key)]

    def end(self) -> list[Json]:
        out = self._close_all()
        if out and self._next is not None:
            self._number(out, self._next)
        else:
            _unnumbered(out)
        return out


def _unnumbered(events: list[Json]) -> None:
    """Drop the placeholder sequence number of added events, in a stream without numbers."""
    for event in events:
        if "sequence_number" in event and event["sequence_number"] is None:
            del event["sequence_number"]


class _Messages(_Reader):
    """Anthropic messages: content blocks with an ``index``."""

    __slots__ = ("_dropped", "_sent")

    def __init__(self, ops: _Ops) -> None:
        super().__init__(ops)
        self._dropped: list[int] = []  # indexes of dropped thinking blocks, ascending
        self._sent: dict[int, int] = {}  # open text block -> the index it is sent under

    def answer(self, body: Json) -> None:
        content = body.get("content")
        if type(content) is not list:
            return
        ops = self.ops
        if ops.reasoning:
            kept = [b for b in content if not _thinking(b)]
            if len(kept) != len(content):
                body["content"] = content = kept
                ops.dirty = True
        for block in _dicts(content):
            text = block.get("text")
            if block.get("type") == "text" and type(text) is str:
                block["text"] = ops.whole(text)

    def event(self, value: Json) -> list[Json]:
        kind = value.get("type")
        index = value.get("index")
        if kind == "message_start":
            message = value.get("message")
            if type(message) is dict:
                self.answer(message)
            return [value]
        if kind == "message_delta" or kind == "message_stop":
            return [*self.end(), value]
        if type(index) is not int or type(kind) is not str or not kind.startswith(
            "content_block_"
        ):
            return [value]
        ops = self.ops
        if ops.reasoning:
            if kind == "content_block_start" and _thinking(value.get("content_block")):
                if index not in self._dropped:
                    self._dropped.insert(bisect_left(self._dropped, index), index)
                return []
            if index in self._dropped:
                return []
            sent = index - bisect_left(self._dropped, index)
            if sent != index:
                value["index"] = sent
                ops.dirty = True
        if kind == "content_block_delta":
            delta = value.get("delta")
            if type(delta) is dict and delta.get("type") == "text_delta":
                text = delta.get("text")
                if type(text) is str and text and ops.filtering:
                    delta["text"] = ops.feed(index, text)
                    self._sent[index] = value["index"]
        elif kind == "content_block_stop":
            return [*self._close(index), value]
        return [value]

    def _close(self, index: int) -> list[Json]:
        rest = self.ops.close(index)
        sent = self._sent.pop(index, index)
        if not rest:
            return []
        return [{"type": "content_block_delta", "index": sent,
                 "delta": {"type": "text_delta", "text": rest}}]

    def end(self) -> list[Json]:
        return [event for key in self.ops.open_keys() if type(key) is int
                for event in self._close(key)]


def _thinking(block: object) -> bool:
    if type(block) is not dict:
        return False
    kind = block.get("type")
    return kind == "thinking" or kind == "redacted_thinking"


_READERS: dict[str, Callable[[_Ops], _Reader]] = {
    "openai.chat": _Chat,
    "openai.completions": _Completions,
    "openai.responses": _Responses,
    "anthropic.messages": _Messages,
}


class ResponseRewriter:
    """Rewrites one answer; `feed` every body chunk, then `finish`.

    ``key`` keys the logprob noise; ``text_filter`` makes one `TextFilter`
    per answer text (choice, content part, text block).
    """

    __slots__ = ("_active", "_body", "_events", "_named", "_ops", "_reader")

    def __init__(
        self,
        api: str,
        streaming: bool,
        t: Transforms,
        key: bytes,
        text_filter: Callable[[], TextFilter] | None = None,
    ) -> None:
        try:
            make = _READERS[api]
        except KeyError:
            raise ValueError(f"no response rewrite for API {api!r}") from None
        self._ops = _Ops(t, key, text_filter)
        self._reader = make(self._ops)
        self._active = t.rewrites_response or text_filter is not None
        self._events = EventReader(MAX_EVENT) if streaming else None
        self._body: bytearray | None = None if streaming else bytearray()
        self._named = False  # the stream names its events (``event:`` lines)

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to send on for ``chunk``; a JSON answer is held until `finish`."""
        if not self._active:
            return chunk
        events = self._events
        if events is None:
            body = self._body
            if body is None:
                return chunk
            if len(body) + len(chunk) > MAX_JSON:  # too large to hold: it passes as it is
                self._body = None
                return bytes(body) + chunk
            body += chunk
            return b""
        out = [self._event(piece) if whole else piece for piece, whole in events.push(chunk)]
        return out[0] if len(out) == 1 else b"".join(out)

    def finish(self) -> bytes:
        """The rest, at the end of the body: the rewritten JSON answer, or the stream's end."""
        if not self._active:
            return b""
        if self._events is None:
            body, self._body = self._body, None
            return self._answer(bytes(body)) if body else b""
        rest = self._events.flush()
        last = self._event(rest) if rest else b""
        held = self._render_new(self._reader.end())
        # Text still held goes before an unfinished last event, after a rewritten one.
        return last + held if last.endswith(b"\n\n") else held + last

    def _answer(self, body: bytes) -> bytes:
        value = _load(body)
        if value is None:
            return body
        self._ops.dirty = False
        self._reader.answer(value)
        if not self._ops.dirty:
            return body
        try:
            return orjson.dumps(value)
        except orjson.JSONEncodeError:
            return body

    def _event(self, event: bytes) -> bytes:
        data = event_data(event)
        if data is None:
            return event
        if data.startswith(b"[DONE]"):
            return self._render_new(self._reader.end()) + event
        value = _load(data)
        if value is None:
            return event
        self._named = event.startswith(b"event:") or b"\nevent:" in event
        ops = self._ops
        ops.dirty = False
        out = self._reader.event(value)
        if not ops.dirty and len(out) == 1 and out[0] is value:
            return event
        return b"".join(
            _render(_head(event), value, event) if item is value else self._render_one(item)
            for item in out
        )

    def _render_new(self, events: list[Json]) -> bytes:
        return b"".join(self._render_one(event) for event in events)

    def _render_one(self, value: Json) -> bytes:
        """An event the rewriter adds, named like the stream's own."""
        kind = value.get("type")
        head = b"event: " + kind.encode() + b"\n" if self._named and type(kind) is str else b""
        return _render(head, value, b"")


def _load(data: bytes) -> Json | None:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return value if type(value) is dict else None


def _head(event: bytes) -> bytes:
    """The event's lines other than data, each ended by LF."""
    return b"".join(
        line + b"\n"
        for line in event.replace(b"\r", b"").split(b"\n")
        if line and not line.startswith(b"data:")
    )


def _render(head: bytes, value: Json, fallback: bytes) -> bytes:
    try:
        return head + b"data: " + orjson.dumps(value) + b"\n\n"
    except orjson.JSONEncodeError:
        return fallback


# --- tarpit ------------------------------------------------------------------------------

_BOUNDARY = re.compile(rb"\n\r?\n")


class Tarpit:
    """Spends the tarpit delay on one response; await `pause` before sending each message.

    A JSON answer waits the whole delay once, before its start; a stream
    waits a `TARPIT_STEPS`-th of it before each event until it is spent.
    """

    __slots__ = ("_json", "_sleep", "_step", "_steps")

    def __init__(
        self,
        seconds: float,
        streaming: bool,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._json = None if streaming else seconds
        self._step = seconds / TARPIT_STEPS
        self._steps = TARPIT_STEPS if streaming else 0
        self._sleep = sleep

    async def pause(self, message: Message) -> None:
        kind = message.get("type")
        if self._json is not None:
            if kind == "http.response.start":
                seconds, self._json = self._json, None
                await self._sleep(seconds)
            return
        if not self._steps or kind != "http.response.body":
            return
        body = message.get("body") or b""
        if not body:
            return
        steps = min(self._steps, max(1, len(_BOUNDARY.findall(body))))
        self._steps -= steps
        await self._sleep(self._step * steps)
