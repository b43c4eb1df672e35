"""TAXII 2.1 collections, through ``taxii2-client``: polling and publishing.

The client is synchronous (``requests``): the gateway runs it in a worker
thread, never on the request path, and every request it makes has a
timeout (the client sets none of its own). Failures come out as
`FeedError`: ``unreachable`` (no connection, a timeout, an HTTP error) or
``malformed`` (an answer that is not TAXII).
"""

from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter
from taxii2client.common import _HTTPConnection  # type: ignore[import-untyped]
from taxii2client.exceptions import (  # type: ignore[import-untyped]
    AccessError,
    TAXIIServiceException,
)
from taxii2client.v21 import Collection, as_pages  # type: ignore[import-untyped]

from guardgate.intel.reader import FeedError

PAGE = 100  # objects asked for per request
USER_AGENT = "guardgate-intel"


class _Deadline(HTTPAdapter):
    """Every request through it ends within ``timeout`` seconds (to connect, and between reads)."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: float | tuple[float | None, float | None] | None = None,
             verify: bool | str = True, cert: str | tuple[str, str] | None = None,
             proxies: dict[str, str] | None = None) -> requests.Response:
        return super().send(request, stream=stream, timeout=timeout or self._timeout,
                            verify=verify, cert=cert, proxies=proxies)


def collection(url: str, user: str | None, password: str | None, timeout: float) -> Any:
    connection = _HTTPConnection(user=user, password=password, version="2.1",
                                 user_agent=USER_AGENT)
    adapter = _Deadline(timeout)
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
        source = collection(url, user, password, timeout)
        for envelope in as_pages(source.get_objects, per_request=PAGE, **filters):
            if not isinstance(envelope, dict):
                raise FeedError("malformed", "the collection answered with no envelope")
            page = envelope.get("objects", [])
            if not isinstance(page, list):
                raise FeedError("malformed", "the envelope's objects are not a list")
            objects += page
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
