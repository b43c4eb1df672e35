"""The answers the gateway writes itself: request ids, error bodies in the
shape of the caller's API, refusals, and small bodies it reads whole."""

from __future__ import annotations

import random
import re
from collections.abc import Mapping

from guardgate.apis import Adapter, openai_error_body
from guardgate.body import ClientGone, read_body
from guardgate.challenge import page
from guardgate.errors import RequestError
from guardgate.exchange import Exchange
from guardgate.types import Receive

_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")


def new_request_id() -> bytes:
    return b"%024x" % random.getrandbits(96)


def request_id(headers: Mapping[bytes, bytes]) -> bytes:
    """The caller's X-Request-Id when it is plain (it is echoed in headers
    and logs), or a new one."""
    given = headers.get(b"x-request-id")
    return given if given and _REQUEST_ID.fullmatch(given) else new_request_id()


def error_body(adapter: Adapter | None, err: RequestError) -> bytes:
    render = adapter.error_body if adapter is not None else openai_error_body
    return render(err.status, err.message, err.type, err.code, err.param, err.extra)


async def refuse(ex: Exchange, err: RequestError) -> None:
    """Answer a refused or failed request in its API's error shape, a
    browser's challenge as the challenge page. Past the response start there
    is no status left to send: nothing is written, and the connection is
    closed without a clean end."""
    ex.error = err.reason
    ex.refusal = err.action
    ticket = ex.ticket
    if ticket is not None and not ex.wrapped:
        # Refused after a solution was redeemed (a quota, a denial): the
        # clearance it bought still goes back, or the work is lost.
        err.headers = [*err.headers, *ticket.clearance]
    if ex.started:
        return
    challenge = err.extra.get("challenge") if err.extra else None
    if challenge is not None and page.wants_page(ex.scope["method"], ex.headers):
        await ex.reply(err.status, page.render(challenge), err.headers,
                       content_type=b"text/html; charset=utf-8")
    else:
        await ex.reply(err.status, error_body(ex.adapter, err), err.headers)


async def small_body(receive: Receive, headers: Mapping[bytes, bytes], limit: int) -> bytes:
    """An operator's or a login form's body, read whole; empty when it cannot
    be read (too large, the client gone), which the reader then refuses."""
    try:
        body = await read_body(receive, headers, limit, buffer=True)
    except (RequestError, ClientGone):
        return b""
    assert isinstance(body, bytes)  # buffered
    return body
