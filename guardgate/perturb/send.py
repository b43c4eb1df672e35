"""Pipeline steps 7 and 9 for one request: its body rewritten, its answer
sent through the response rewriter (degrade transforms, the watermark) and
the tarpit."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from guardgate.apis.base import ModelCall
from guardgate.metrics import Metrics
from guardgate.perturb.transforms import ResponseRewriter, Tarpit, Transforms, rewrite_request
from guardgate.perturb.watermark import Key, Marker
from guardgate.types import Body, Message, Send


class PerturbedSend:
    """Wraps ``send``: the answer's body goes through ``rewriter`` (its length
    is then unknown: Content-Length is dropped), each message waits its share
    of the tarpit."""

    __slots__ = ("_rewriter", "_send", "_tarpit")

    def __init__(self, send: Send, rewriter: ResponseRewriter | None, tarpit: Tarpit | None):
        self._send = send
        self._rewriter = rewriter
        self._tarpit = tarpit

    async def __call__(self, message: Message) -> None:
        rewriter = self._rewriter
        kind = message["type"]
        if kind == "http.response.start" and rewriter is not None:
            headers = message.get("headers") or []
            message = {**message, "headers": [(k, v) for k, v in headers
                                              if k != b"content-length"]}
        elif kind == "http.response.body" and rewriter is not None:
            body = rewriter.feed(message.get("body", b""))
            if not message.get("more_body", False):
                body += rewriter.finish()
            message = {**message, "body": body}
        if self._tarpit is not None:
            await self._tarpit.pause(message)
        await self._send(message)


@dataclass(frozen=True, slots=True)
class Perturbation:
    """What a tier does to requests and answers, compiled once per policy."""

    transforms: Transforms | None
    key: Key | None        # the watermark, when the tier marks
    secret: bytes          # keys the logprob noise

    def apply(self, call: ModelCall, body: Body, send: Send, metrics: Metrics
              ) -> tuple[Body, Send]:
        """The body to forward and the send to answer through."""
        t = self.transforms
        if t is not None and t.rewrites_request and rewrite_request(call, t):
            body = orjson.dumps(call.body)
        key = self.key
        text_filter = (lambda: Marker(key)) if key is not None else None
        rewriter = None
        if (t is not None and t.rewrites_response) or text_filter is not None:
            rewriter = ResponseRewriter(call.api, call.stream, t or Transforms(), self.secret,
                                        text_filter)
        tarpit = Tarpit(t.tarpit, call.stream) if t is not None and t.tarpit else None
        for name in t.names() if t is not None else ():
            metrics.transforms.labels(name).inc()
        if key is not None:
            metrics.marked.inc()
        return body, PerturbedSend(send, rewriter, tarpit)
