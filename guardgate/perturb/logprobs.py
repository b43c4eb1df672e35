"""Degrade transforms of logprobs: drop them, keep fewer alternatives per
token, or coarsen their values. Each asks the upstream for less (step 7) and
changes what the answer still carries (step 9), wherever the walker finds
logprobs. In the chain they run in this order, so that once logprobs are
dropped the others find nothing left to do.

Coarsening rounds each logprob to 0.1 and adds noise keyed by the policy's
secret, the token and its position in the text: the same answer coarsens
the same way every time (nothing to average out by asking again), the
sampled token stays the most likely one, and no value rises above 0.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Hashable
from typing import Any, TypeGuard

from pydantic import Field

from guardgate.apis.answers import Edit, Processor, Walker
from guardgate.apis.base import ModelCall
from guardgate.perturb.degrade import Flag, NonNegative, On, Transform, registered
from guardgate.perturb.request import cap_int, fields_of, pop

__all__ = ["COARSE_NOISE", "CapTopLogprobs", "CoarsenLogprobs", "DropLogprobs"]

Json = dict[str, Any]

COARSE_NOISE = 0.05  # the keyed noise added to a rounded logprob is within this, either way
_MARGIN = 0.001  # how far below the top logprob a coarsened other one is clamped


@registered(order=10)
class DropLogprobs(Flag):
    """Drop logprobs: not asked for (prompt logprobs neither), and removed from answers."""

    drop_logprobs: On = True

    def rewrite_request(self, call: ModelCall) -> bool:
        fields, body = fields_of(call), call.body
        changed = _untreated(call)
        for field in fields.logprobs:
            changed = pop(body, field) or changed
        asked = fields.logprobs_include
        include = body.get("include")
        if asked is not None and type(include) is list and asked in include:
            body["include"] = [item for item in include if item != asked]
            changed = True
        return changed

    def processor(self, walker: Walker, secret: bytes) -> Processor:
        return _Dropper(walker)


@registered(order=20)
class CapTopLogprobs(Transform):
    """Keep at most this many alternatives per token (the most likely ones); no prompt logprobs."""

    cap_top_logprobs: NonNegative = Field(description="Alternatives per token, at most.")

    def rewrite_request(self, call: ModelCall) -> bool:
        field = fields_of(call).top_logprobs
        capped = field is not None and cap_int(call.body, field, self.cap_top_logprobs)
        return _untreated(call) or capped

    def processor(self, walker: Walker, secret: bytes) -> Processor:
        return _Cap(walker, self.cap_top_logprobs)


@registered(order=30)
class CoarsenLogprobs(Flag):
    """Round logprobs to 0.1 and add keyed noise; the sampled token stays on top; no prompt logprobs."""

    coarsen_logprobs: On = True
    needs_key = True

    def rewrite_request(self, call: ModelCall) -> bool:
        return _untreated(call)

    def processor(self, walker: Walker, secret: bytes) -> Processor:
        return _Coarsener(walker, secret)


class _Dropper(Processor):
    __slots__ = ("_walker",)

    def __init__(self, walker: Walker) -> None:
        self._walker = walker

    def answer(self, edit: Edit) -> None:
        self._walker.drop_logprobs(edit)

    def event(self, edit: Edit) -> None:
        self._walker.drop_logprobs(edit)


class _Cap(Processor):
    __slots__ = ("_k", "_walker")

    def __init__(self, walker: Walker, k: int) -> None:
        self._walker = walker
        self._k = k

    def answer(self, edit: Edit) -> None:
        self._walker.logprobs(edit, self)

    def event(self, edit: Edit) -> None:
        self._walker.logprobs(edit, self)

    def entries(self, entries: list[Any], key: Hashable | None) -> bool:
        changed = False
        for entry in entries:
            tops = entry.get("top_logprobs") if type(entry) is dict else None
            if type(tops) is list and len(tops) > self._k:
                entry["top_logprobs"] = _highest_entries(tops, self._k)
                changed = True
        return changed

    def table(self, logprobs: Json, key: Hashable | None) -> bool:
        tops = _list(logprobs.get("top_logprobs"))
        changed = False
        for i, top in enumerate(tops):
            if type(top) is dict and len(top) > self._k:
                tops[i] = _highest_mapping(top, self._k)
                changed = True
        return changed


class _Coarsener(Processor):
    __slots__ = ("_mac", "_positions", "_walker")

    def __init__(self, walker: Walker, secret: bytes) -> None:
        self._walker = walker
        self._mac = hmac.new(secret, digestmod=hashlib.sha256)
        self._positions: dict[Hashable, int] = {}  # tokens seen so far, per streamed text

    def answer(self, edit: Edit) -> None:
        self._walker.logprobs(edit, self)

    def event(self, edit: Edit) -> None:
        self._walker.logprobs(edit, self)

    def _start(self, key: Hashable | None, count: int) -> int:
        """Where tokens continuing ``key`` start; counts ``count`` more of them."""
        if key is None:
            return 0
        start = self._positions.get(key, 0)
        self._positions[key] = start + count
        return start

    def entries(self, entries: list[Any], key: Hashable | None) -> bool:
        start = self._start(key, len(entries))
        changed = False
        for offset, entry in enumerate(entries):
            if type(entry) is not dict:
                continue
            own = _pair(entry.get("token"), entry.get("logprob"))
            tops = [t for t in _dicts(entry.get("top_logprobs"))
                    if _pair(t.get("token"), t.get("logprob"))]
            candidates = ([own] if own else []) + [(t["token"], t["logprob"]) for t in tops]
            if not candidates:
                continue
            coarse = self._coarse(candidates, start + offset)
            if own:
                entry["logprob"] = coarse[own[0]]
            for top in tops:
                top["logprob"] = coarse[top["token"]]
            changed = True
        return changed

    def table(self, logprobs: Json, key: Hashable | None) -> bool:
        tokens, values, tops = (_list(logprobs.get(k))
                                for k in ("tokens", "token_logprobs", "top_logprobs"))
        count = max(len(tokens), len(values), len(tops))
        start = self._start(key, count)
        changed = False
        for i in range(count):
            own = _pair(tokens[i] if i < len(tokens) else None,
                        values[i] if i < len(values) else None)
            top = tops[i] if i < len(tops) and type(tops[i]) is dict else {}
            candidates = ([own] if own else []) + [(k, v) for k, v in top.items() if _number(v)]
            if not candidates:
                continue
            coarse = self._coarse(candidates, start + i)
            if own:
                values[i] = coarse[own[0]]
            for k, v in top.items():
                if _number(v):
                    top[k] = coarse[k]
            changed = True
        return changed

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


def _untreated(call: ModelCall) -> bool:
    """Take out the logprobs no walker treats; whether any were asked for."""
    body = call.body
    changed = False
    for field in fields_of(call).untreated_logprobs:
        changed = pop(body, field) or changed
    return changed


def _dicts(value: object) -> list[Json]:
    return [item for item in value if type(item) is dict] if type(value) is list else []


def _list(value: object) -> list[Any]:
    return value if type(value) is list else []


def _number(value: object) -> TypeGuard[float]:
    return type(value) is float or type(value) is int


def _pair(token: object, logprob: object) -> tuple[str, float] | None:
    """A token and its logprob, when both are there with their JSON types."""
    if type(token) is str and (type(logprob) is float or type(logprob) is int):
        return token, logprob
    return None


def _highest_entries(tops: list[Any], k: int) -> list[Any]:
    """The ``k`` entries with the highest ``logprob``, in their order."""
    def rank(i: int) -> float:
        entry = tops[i]
        value = entry.get("logprob") if type(entry) is dict else None
        return float(value) if _number(value) else -math.inf

    keep = set(sorted(range(len(tops)), key=rank, reverse=True)[:k])
    return [entry for i, entry in enumerate(tops) if i in keep]


def _highest_mapping(top: Json, k: int) -> Json:
    """The ``k`` tokens of a completions ``top_logprobs`` mapping with the highest logprobs."""
    def rank(token: str) -> float:
        value = top[token]
        return float(value) if _number(value) else -math.inf

    keep = set(sorted(top, key=rank, reverse=True)[:k])
    return {token: value for token, value in top.items() if token in keep}
