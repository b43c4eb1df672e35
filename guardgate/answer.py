"""The answer's way back to the client (pipeline steps 7, 9 and 10's reading):
the request body as the upstream gets it and the ``send`` the answer goes
through, built once per request from what the earlier steps decided.

The answer is read once, by its API's walker, and goes through one chain of
processors in this order:

1. the meter reads usage and counts text as the upstream sent it (before
   anything is dropped), and strips the usage the gateway asked for;
2. the tier's degrade transforms rewrite it (logprobs, reasoning);
3. the marker marks the text that is left (the watermark);

then the tarpit paces what the chain sends, and the client gets it with the
quota headers on its response start.
"""

from __future__ import annotations

from guardgate.apis import walker_for
from guardgate.apis.answers import AnswerChain
from guardgate.apis.base import ModelCall
from guardgate.apis.usage import Meter, prepare_stream_usage
from guardgate.metrics import Metrics
from guardgate.perturb.send import Perturbation
from guardgate.perturb.tarpit import Tarpit
from guardgate.types import Body, Message, Send

__all__ = ["AnswerSend", "answer_path"]


def answer_path(
    call: ModelCall | None,
    body: Body,
    send: Send,
    *,
    headers: list[tuple[bytes, bytes]],
    meter_tokens: bool,
    perturbation: Perturbation | None,
    metrics: Metrics,
) -> tuple[Body, Send, Meter | None]:
    """The body to forward, the send to answer through and the usage meter
    (None when the answer is not read).

    ``headers`` go on the response start (rate-limit fields, a clearance);
    ``meter_tokens``: the answer's usage settles token quotas, so a stream is
    asked for its usage chunk (which the client then does not see).
    ``perturbation``: the tier's treatment of the request and the answer.
    """
    if call is None:
        return body, AnswerSend(send, headers), None
    tarpit = None
    if perturbation is not None:
        body = perturbation.rewrite_request(call, body)
        tarpit = perturbation.tarpit(call.stream)
        perturbation.count(metrics)
    strip = False
    if meter_tokens and call.stream:
        asked = prepare_stream_usage(call)
        if asked is not None:
            body, strip = asked, True
    walker = walker_for(call.api, call.stream)
    meter = Meter(walker, strip)
    degrade = perturbation.processors(walker) if perturbation is not None else []
    chain = AnswerChain(walker, [meter, *degrade])
    return body, AnswerSend(send, headers, chain, tarpit), meter


class AnswerSend:
    """Wraps ``send`` for one answer: ``headers`` replace the upstream's on
    the response start, every body chunk goes through ``chain`` (a body that
    may change loses its length), and each message waits its share of the
    tarpit."""

    __slots__ = ("_chain", "_headers", "_send", "_tarpit")

    def __init__(self, send: Send, headers: list[tuple[bytes, bytes]],
                 chain: AnswerChain | None = None, tarpit: Tarpit | None = None) -> None:
        self._send = send
        self._headers = headers
        self._chain = chain
        self._tarpit = tarpit

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        chain = self._chain
        if kind == "http.response.start":
            replaced = {k for k, _ in self._headers}
            if chain is not None and chain.rewrites:
                replaced.add(b"content-length")
            headers = [(k, v) for k, v in message.get("headers") or [] if k not in replaced]
            message["headers"] = [*headers, *self._headers]
        elif kind == "http.response.body" and chain is not None:
            given = message.get("body", b"")
            body = chain.feed(given)
            if not message.get("more_body", False):
                body += chain.finish()
            if body is not given:
                message = {**message, "body": body}
        if self._tarpit is not None:
            await self._tarpit.pause(message)
        await self._send(message)
