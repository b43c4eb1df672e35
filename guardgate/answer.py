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

A treated answer is treated whatever its size, or refused: never passed on
as it came. An answer with a part too large to treat (`TooLarge`) is
refused in its API's shape (`AnswerTooLarge`), and so is a successful answer
the walker cannot read (`AnswerUnreadable`: compressed although not asked
to be, a stream that is not one, JSON that is no object): with the
gateway's own error when nothing of it went out yet (a treated JSON
answer's response start waits for its first treated bytes), with an error
event that ends a stream, and by cutting the connection of a JSON answer
under way. An upstream's error answer (not 2xx) carries no model output and
passes as it came.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

from guardgate.apis import ADAPTERS, ErrorBody, walker_for
from guardgate.apis.answers import AnswerChain, TooLarge, Untreatable
from guardgate.apis.base import ModelCall
from guardgate.apis.usage import Meter, prepare_stream_usage
from guardgate.errors import RequestError, UpstreamError
from guardgate.logs import cut_response
from guardgate.metrics import Metrics
from guardgate.perturb.send import Perturbation
from guardgate.perturb.tarpit import Tarpit
from guardgate.types import Body, Message, Send

if TYPE_CHECKING:
    from guardgate.exchange import Exchange

__all__ = ["AnswerSend", "AnswerTooLarge", "AnswerUnreadable", "answer_path"]


class AnswerTooLarge(RequestError):
    """400: a treated answer holds a part too large to treat in bounded memory."""

    code = "answer_too_large"

    def __init__(self) -> None:
        super().__init__(
            "The answer is too large to be delivered; ask for fewer choices, tokens or "
            "logprobs.",
            reason="answer too large to treat: refused",
        )


class AnswerUnreadable(UpstreamError):
    """502: a treated answer came in a shape the gateway cannot read, so it
    can be neither treated nor passed on."""

    code = "upstream_answer_unreadable"

    def __init__(self) -> None:
        super().__init__(
            "The upstream's answer could not be read; please try again.",
            reason="treated answer unreadable (encoding or shape): refused",
        )


def answer_path(
    call: ModelCall | None,
    body: Body,
    send: Send,
    *,
    headers: list[tuple[bytes, bytes]],
    meter_tokens: bool,
    perturbation: Perturbation | None,
    metrics: Metrics,
    exchange: Exchange | None = None,
) -> tuple[Body, Send, Meter | None]:
    """The body to forward, the send to answer through and the usage meter
    (None when the answer is not read).

    ``headers`` go on the response start (rate-limit fields, a clearance);
    ``meter_tokens``: the answer's usage settles token quotas, so a stream is
    asked for its usage chunk (which the client then does not see).
    ``perturbation``: the tier's treatment of the request and the answer.
    ``exchange``: the request's, told when a refused answer's start never
    went out (the gateway then answers with its refusal).
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
    send = AnswerSend(send, headers, chain, tarpit, error_body=ADAPTERS[call.api].error_body,
                      exchange=exchange)
    return body, send, meter


class AnswerSend:
    """Wraps ``send`` for one answer: ``headers`` replace the upstream's on
    the response start, every body chunk goes through ``chain`` (a body that
    may change loses its length), and each message waits its share of the
    tarpit. A treated JSON answer's start waits for its first bytes."""

    __slots__ = ("_chain", "_error_body", "_exchange", "_headers", "_held", "_hold", "_send",
                 "_tarpit")

    def __init__(self, send: Send, headers: list[tuple[bytes, bytes]],
                 chain: AnswerChain | None = None, tarpit: Tarpit | None = None, *,
                 error_body: ErrorBody | None = None, exchange: Exchange | None = None) -> None:
        self._send = send
        self._headers = headers
        self._chain = chain
        self._tarpit = tarpit
        self._error_body = error_body
        self._exchange = exchange
        self._hold = chain is not None and chain.treats and not chain.streaming
        self._held: Message | None = None  # the response start, until there is a body to send

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        chain = self._chain
        if kind == "http.response.start":
            if chain is not None and chain.treats and 200 <= message["status"] < 300:
                # The model's answer, treated: what cannot be read is refused.
                # (An error answer is not the model's: it passes as it comes.)
                chain.strict = True
                if not _readable(chain.streaming, message):
                    await self._refuse(chain, AnswerUnreadable(), message)
            replaced = {k for k, _ in self._headers}
            if chain is not None and chain.rewrites:
                replaced.add(b"content-length")
            headers = [(k, v) for k, v in message.get("headers") or [] if k not in replaced]
            message["headers"] = [*headers, *self._headers]
            if self._hold:
                self._held = message
                if self._exchange is not None:
                    self._exchange.started = False  # not yet: it waits for the body
                return
        elif kind == "http.response.body" and chain is not None:
            given = message.get("body", b"")
            more = message.get("more_body", False)
            try:
                body = chain.feed(given)
                if not more:
                    body += chain.finish()
            except Untreatable as exc:
                await self._refuse(chain, AnswerTooLarge() if isinstance(exc, TooLarge)
                                   else AnswerUnreadable())
            if body is not given:
                message = {**message, "body": body}
            held = self._held
            if held is not None:
                if not body and more:
                    return  # nothing to send yet
                self._held = None
                if self._exchange is not None:
                    self._exchange.started = True
                await self._out(held)
        await self._out(message)

    async def _out(self, message: Message) -> None:
        if self._tarpit is not None:
            await self._tarpit.pause(message)
        await self._send(message)

    async def _refuse(self, chain: AnswerChain, err: RequestError,
                      start: Message | None = None) -> NoReturn:
        """Refuse the answer (``start``: its response start, not yet sent):
        what follows (the gateway's error) passes as it is."""
        self._chain, self._hold = None, False
        held, self._held = self._held or start, None
        if start is not None and self._exchange is not None:
            self._exchange.started = False
        render = self._error_body
        body = b"" if render is None else render(err.status, err.message, err.type, err.code)
        if held is not None:
            if self._exchange is None:  # (else the gateway answers with ``err`` instead)
                await self._send({"type": "http.response.start", "status": err.status,
                                  "headers": [(b"content-type", b"application/json"),
                                              *self._headers]})
                await self._send({"type": "http.response.body", "body": body})
        elif chain.streaming:
            await self._send({"type": "http.response.body", "body": chain.error_event(body),
                              "more_body": False})
        else:
            cut_response()  # under way: cut, so that it never looks whole
        raise err


_IDENTITY = (b"", b"identity")


def _readable(streaming: bool, start: Message) -> bool:
    """Whether an answer starting with ``start`` comes in a shape its walker
    reads: uncompressed, and a stream when one was asked for."""
    encoding = content_type = b""
    for name, value in start.get("headers") or []:
        if name == b"content-encoding":
            encoding = value.strip().lower()
        elif name == b"content-type":
            content_type = value.lower()
    if encoding not in _IDENTITY:
        return False
    return streaming == content_type.startswith(b"text/event-stream") or not content_type
