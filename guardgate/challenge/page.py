"""The browser side: a self-contained page whose Web Worker solves the
challenge, and the cookie that carries the clearance afterwards."""

from __future__ import annotations

from importlib import resources
from typing import Any

import orjson

from guardgate.challenge.gate import COOKIES

ENDPOINT = "/_guardgate/challenge"
_TEMPLATE = resources.files("guardgate.challenge").joinpath("page.html").read_text()
_LOOPBACK = ("localhost", "127.0.0.1", "[::1]")


def wants_page(method: str, headers: dict[bytes, bytes]) -> bool:
    """A browser navigating: a GET that accepts HTML."""
    return method == "GET" and b"text/html" in headers.get(b"accept", b"")


def render(challenge: dict[str, Any]) -> bytes:
    # JSON in a script element: "</" is escaped so no value can close it.
    data = orjson.dumps(challenge).decode().replace("</", "<\\/")
    page = _TEMPLATE.replace("__CHALLENGE__", data)
    return page.replace("__ENDPOINT__", orjson.dumps(ENDPOINT).decode()).encode()


def cookie(token: str, max_age: float, secure: bool) -> bytes:
    """The clearance cookie: ``__Host-`` prefixed (so only this host, path /,
    Secure) where the page is served securely, plain otherwise, since
    browsers refuse a ``__Host-`` cookie without Secure."""
    name = COOKIES[0] if secure else COOKIES[1]
    attributes = f"{name}={token}; Path=/; Max-Age={int(max_age)}; HttpOnly; SameSite=Lax"
    if secure:
        attributes += "; Secure"
    return attributes.encode("ascii")


def is_secure(scheme: str, host: bytes | None) -> bool:
    """Served over TLS, or to a loopback host, which browsers treat as secure."""
    if scheme == "https":
        return True
    name = (host or b"").decode("latin-1").lower()
    if name.startswith("["):
        name = name.split("]")[0] + "]"
    else:
        name = name.split(":")[0]
    return name in _LOOPBACK
