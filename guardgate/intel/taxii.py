"""TAXII 2.1 collections, through ``taxii2-client``: polling and publishing.

The client is synchronous (``requests``): the gateway runs it in a worker
thread, never on the request path, and every request it makes has a
timeout (the client sets none of its own). A poll also ends at a total
deadline (`DEADLINE`), after `MAX_PAGES` pages or `MAX_OBJECTS` objects, and
refuses an answer larger than `MAX_BYTES`: a server that drips, pages
forever or answers without end is ``unreachable`` or ``malformed``, not a
poll that never ends. Failures come out as
`FeedError`: ``unreachable`` (no connection, a timeout, an HTTP error) or
``malformed`` (an answer that is not TAXII).
"""

from __future__ import annotations

import time
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from taxii2client.common import _HTTPConnection  # type: ignore[import-untyped]
from taxii2client.exceptions import (  # type: ignore[import-untyped]
    AccessError,
    TAXIIServiceException,
)
from taxii2client.v21 import Collection, as_pages  # type: ignore[import-untyped]

from guardgate.intel.reader import MAX_OBJECTS, FeedError

PAGE = 100  # objects asked for per request
USER_AGENT = "guardgate-intel"
DEADLINE = 300.0             # seconds a whole poll may take, at most
MAX_PAGES = 1000             # pages one poll fetches, at most
MAX_BYTES = 16 * 1024 * 1024  # bytes of one answer, at most
CHUNK = 64 * 1024


class _Deadline(HTTPAdapter):
    """Every request through it ends within ``timeout`` seconds (to connect,
    and between reads), and by ``deadline`` (a `time.monotonic` instant) in
    all; its answer is read whole, `MAX_BYTES` at most."""

    def __init__(self, timeout: float, deadline: float = float("inf")) -> None:
        super().__init__()
        self._timeout = timeout
        self.deadline = deadline

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: float | tuple[float | None, float | None] | None = None,
             verify: bool | str = True, cert: str | tuple[str, str] | None = None,
             proxies: dict[str, str] | None = None) -> requests.Response:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise FeedError("unreachable", "the poll ran past its deadline")
        response = super().send(request, stream=True,
                                timeout=min(timeout or self._timeout, left),
                                verify=verify, cert=cert, proxies=proxies)
        try:
            response._content = self._body(response)
        finally:
            response.close()
        return response

    def _body(self, response: requests.Response) -> bytes:
        body = bytearray()
        while True:
            chunk = response.raw.read1(CHUNK, decode_content=True)
            if not chunk:
                return bytes(body)
            body += chunk
            if len(body) > MAX_BYTES:
                raise FeedError("malformed", f"an answer larger than {MAX_BYTES >> 20} MiB")
            if time.monotonic() > self.deadline:
                raise FeedError("unreachable", "the poll ran past its deadline")


def collection(url: str, user: str | None, password: str | None, timeout: float,
               deadline: float = float("inf")) -> Any:
    connection = _HTTPConnection(user=user, password=password, version="2.1",
                                 user_agent=USER_AGENT)
    adapter = _Deadline(timeout, deadline)
    connection.session.mount("http://", adapter)
    connection.session.mount("https://", adapter)
    return Collection(url, conn=connection)


def _failed(exc: BaseException) -> FeedError:
    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        return FeedError("unreachable", f"HTTP {exc.response.status_code} from the collection")
    if isinstance(exc, AccessError):
        return FeedError("unreachable", f"the collection refuses access ({exc})")
    if isinstance(exc, requests.exceptions.RequestException):
        return FeedError("unreachable", f"cannot reach the collection ({type(exc).__name__})")
    return FeedError("malformed", f"not a TAXII 2.1 answer ({str(exc).splitlines()[0][:200]})")


def fetch(url: str, user: str | None, password: str | None, timeout: float,
          added_after: str | None = None) -> list[Any]:
    """Every object of the collection (added after ``added_after``, a STIX
    timestamp, when given), page by page."""
    filters = {"added_after": added_after} if added_after else {}
    objects: list[Any] = []
    try:
        source = collection(url, user, password, timeout, time.monotonic() + DEADLINE)
        for pages, envelope in enumerate(
                as_pages(source.get_objects, per_request=PAGE, **filters), 1):
            if not isinstance(envelope, dict):
                raise FeedError("malformed", "the collection answered with no envelope")
            page = envelope.get("objects", [])
            if not isinstance(page, list):
                raise FeedError("malformed", "the envelope's objects are not a list")
            objects += page
            if len(objects) > MAX_OBJECTS:
                raise FeedError("malformed", f"more than {MAX_OBJECTS} objects")
            if pages >= MAX_PAGES and envelope.get("more"):
                raise FeedError("malformed", f"more than {MAX_PAGES} pages")
    except FeedError:
        raise
    except (requests.exceptions.RequestException, TAXIIServiceException, ValueError,
            KeyError, TypeError) as exc:
        raise _failed(exc) from None
    return objects


def push(url: str, user: str | None, password: str | None, timeout: float,
         objects: list[Any]) -> dict[str, Any]:
    """Add ``objects`` to the collection; the TAXII status: how many were
    added, and those refused."""
    try:
        target = collection(url, user, password, timeout)
        status = target.add_objects({"objects": objects}, wait_for_completion=True,
                                    poll_interval=1, timeout=max(1, int(timeout)))
    except (requests.exceptions.RequestException, TAXIIServiceException, ValueError,
            KeyError, TypeError) as exc:
        raise _failed(exc) from None
    return {"status": status.status, "total": status.total_count,
            "added": status.success_count, "failed": status.failure_count,
            "pending": status.pending_count}
