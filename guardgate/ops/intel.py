"""The operator API's intelligence endpoints, behind ``admin.token``.

``GET /_guardgate/intel`` shows the feeds (source, last poll, outcome,
indicators in force, why indicators were skipped) and the imported
indicators that matched callers, each with the callers it matched (the
last 20, in this process).

``GET /_guardgate/intel/export?since=24h&min_tier=high`` answers with the
STIX 2.1 bundle of what was caught at ``min_tier`` (default the policy's
``intel.min_tier``) or above in the last ``since`` (default 24h): what
``guardgate intel export --gateway`` fetches.

``POST /_guardgate/intel/import?name=NAME`` with a STIX 2.1 bundle puts its
indicators in force in this process until they expire (a bundle of the same
name replaces the last one); a bundle that is not valid STIX 2.1 is refused
with 400 and changes nothing.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any
from urllib.parse import parse_qs

import orjson

from guardgate.intel.reader import FeedError, read
from guardgate.intel.service import DEFAULT_SINCE, IntelError, IntelService
from guardgate.policy.units import parse_duration

IMPORT_LIMIT = 16 * 1024 * 1024  # the largest bundle an operator may post
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")

Answer = tuple[int, dict[str, Any] | bytes, str | None]  # status, JSON or raw body, error code


def _query(raw: bytes) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(raw.decode("latin-1")).items()}


async def answer(service: IntelService | None, path: str, method: str, query: bytes,
                 body: bytes) -> Answer:
    """The answer to ``path`` (``intel``, ``intel/export``, ``intel/import``)."""
    if service is None:
        return 404, {"message": "This policy has no intel section, or no risk scoring."}, \
            "not_found"
    if path in ("intel", "intel/"):
        if method != "GET":
            return 405, {"message": "Only GET is supported here.", "allow": "GET"}, \
                "method_not_allowed"
        return 200, service.status(), None
    if path == "intel/export":
        if method != "GET":
            return 405, {"message": "Only GET is supported here.", "allow": "GET"}, \
                "method_not_allowed"
        return await _export(service, _query(query))
    if path == "intel/import":
        if method != "POST":
            return 405, {"message": "Only POST is supported here.", "allow": "POST"}, \
                "method_not_allowed"
        return await _import(service, _query(query), body)
    return 404, {"message": "Unknown intel endpoint."}, "not_found"


async def _export(service: IntelService, query: dict[str, str]) -> Answer:
    try:
        window = parse_duration(query.get("since", "")) if "since" in query else DEFAULT_SINCE
    except (TypeError, ValueError):
        return 400, {"message": "since: expected a duration like 30m, 24h or 7d."}, \
            "invalid_request"
    now = time.time()
    try:
        exported = await service.export(now - window, query.get("min_tier") or None, now)
    except IntelError as err:
        return 400, {"message": f"min_tier: {err}."}, "invalid_request"
    return 200, orjson.dumps(exported.bundle), None


async def _import(service: IntelService, query: dict[str, str], body: bytes) -> Answer:
    name = query.get("name") or "import"
    if not _NAME.fullmatch(name):
        return 400, {"message": "name: letters, digits, spaces, '.', '_' and '-', at most 64."}, \
            "invalid_request"
    if not body:
        return 400, {"message": f"Post a STIX 2.1 bundle of at most {IMPORT_LIMIT >> 20} MiB."}, \
            "invalid_request"
    try:
        # Parsed off the event loop (a large bundle takes seconds); at most
        # `MAX_OBJECTS` objects (`guardgate.intel.reader`).
        reading = await asyncio.to_thread(read, body, f"import:{name}", time.time(),
                                          service.feeds.terms)
        summary = service.feeds.take(f"import:{name}", reading)
    except FeedError as err:
        return 400, {"message": f"The bundle was refused ({err.reason}): {err.message}"}, \
            "invalid_bundle"
    return 200, summary, None
