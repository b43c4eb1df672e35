"""What a tier does to requests and answers (steps 7 and 9), compiled once
per policy: `Perturbation` gives the request body to forward, the answer
processors (the degrade transforms', then the marker) and the tarpit.

`ResponseRewriter` is the answer side on its own: a chain of those
processors over one answer's bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import orjson

from guardgate.apis import ADAPTERS, walker_for
from guardgate.apis.answers import AnswerChain, Processor, Walker
from guardgate.apis.base import ModelCall
from guardgate.metrics import Metrics
from guardgate.perturb.marking import TextFilter, TextMarker
from guardgate.perturb.tarpit import Tarpit
from guardgate.perturb.transforms import Transforms, rewrite_request
from guardgate.perturb.watermark import Key, Marker
from guardgate.types import Body

__all__ = ["Perturbation", "ResponseRewriter"]


@dataclass(frozen=True, slots=True)
class Perturbation:
    """One tier's perturbation."""

    transforms: Transforms | None
    key: Key | None        # the watermark, when the tier marks
    secret: bytes          # keys the logprob noise

    def rewrite_request(self, call: ModelCall, body: Body) -> Body:
        """The body to forward: ``body``, or the call's body rewritten and serialized again."""
        t = self.transforms
        changed = _untreated(call)
        if t is not None and t.rewrites_request:
            changed = rewrite_request(call, t) or changed
        return orjson.dumps(call.body) if changed else body

    def processors(self, walker: Walker) -> list[Processor]:
        """The answer's processors, in order: the degrade transforms', then the marker."""
        out = _degrading(self.transforms or Transforms(), walker, self.secret)
        key = self.key
        if key is not None:
            out.append(TextMarker(walker, lambda: Marker(key)))
        return out

    def tarpit(self, streaming: bool) -> Tarpit | None:
        t = self.transforms
        seconds = t.tarpit if t is not None else None
        return Tarpit(seconds, streaming) if seconds else None

    def count(self, metrics: Metrics) -> None:
        """What this request gets, in the metrics."""
        for name in self.transforms.names() if self.transforms is not None else ():
            metrics.transforms.labels(name).inc()
        if self.key is not None:
            metrics.marked.inc()


def _degrading(t: Transforms, walker: Walker, secret: bytes) -> list[Processor]:
    return [p for item in t if (p := item.processor(walker, secret)) is not None]


class ResponseRewriter(AnswerChain):
    """The degrade transforms ``t`` and a ``text_filter`` per answer text over
    one answer; `feed` every body chunk, then `finish`. ``key`` keys the
    logprob noise."""

    __slots__ = ()

    def __init__(
        self,
        api: str,
        streaming: bool,
        t: Transforms,
        key: bytes,
        text_filter: Callable[[], TextFilter] | None = None,
    ) -> None:
        walker = walker_for(api, streaming)
        processors = _degrading(t, walker, key)
        if text_filter is not None:
            processors.append(TextMarker(walker, text_filter))
        super().__init__(walker, processors)


def _untreated(call: ModelCall) -> bool:
    """Take out what asks for answers no walker treats; whether any did."""
    adapter = ADAPTERS.get(call.api)
    if adapter is None:
        return False
    body = call.body
    changed = False
    for field in adapter.fields.untreated:
        if field in body:
            del body[field]
            changed = True
    return changed
