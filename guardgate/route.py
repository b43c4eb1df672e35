"""Step 2, route: which API a request is, and its body read (bounded) and
parsed once into a `ModelCall` by that API's adapter. Anything else passes
through, its body relayed as it arrives.

Paths are matched the way an upstream may read them, not only as written:
percent-decoded, slashes merged, dot segments resolved, ``;`` parameters
and a trailing slash dropped, case folded unless the policy says otherwise.
A model route spelled any other way (``//v1/chat/completions``,
``/V1/chat/completions``) is that route, and goes upstream as the route's
own path, so what is metered is what is served. A POST that is no route but
lies under a route's first segment (``/v1/``) or ends as a route does after
it (``/chat/completions``, ``/openai/deployments/d/chat/completions``,
``/v1/engines/e/completions``: aliases that servers such as LiteLLM,
llama.cpp and Azure OpenAI answer) gets what ``routing.unknown`` says, read
as the API its ending names (else the route nearest it). Such a call is
scored only when it carries a prompt: an embeddings call, read by a chat
parser, tells nothing of its caller.

Some requests ask for answers the upstream keeps, out of the request's own
answer: any method but POST under a model prefix (``/v1/``) but the model
list (stored responses and completions, eval outputs, run steps, files'
contents), or on a path holding a ``responses``, ``chat/completions``,
``conversations`` or ``messages`` segment however prefixed
(``GET /openai/deployments/d/chat/completions/{id}``); batches (a path
holding a ``batches`` segment); and POSTs on paths that are no route whose
body carries no prompt (an eval run, a job, an update). They are marked
deferred: treatment cannot reach those answers, so a caller whose tier
treats is refused them (step 7).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import unquote

from guardgate.apis import ADAPTERS, Adapter
from guardgate.apis.base import decode
from guardgate.body import read_body
from guardgate.errors import NotFound
from guardgate.exchange import Exchange
from guardgate.logs import get_logger
from guardgate.policy.model import Policy
from guardgate.types import Receive

log = get_logger("guardgate")

# Distinct paths whose match is remembered, and the longest remembered: the
# normalizing is done once per path a client uses, in bounded memory.
_REMEMBERED = 1024
_LONGEST = 512
# Rounds of percent-decoding: a chain of proxies may decode more than once.
_DECODINGS = 3
# POST in any case: the upstream's HTTP client upper-cases the method.
_POST = frozenset(
    "".join(c.upper() if bit & 1 << i else c for i, c in enumerate("post")) for bit in range(16)
)
# How a JSON object begins.
_OBJECT = re.compile(rb"[ \t\r\n]*\{")
# Path segments under which answers kept upstream are read back (any
# method but POST), and made in bulk (any method).
_STORED = frozenset({"responses", "conversations", "messages", "completions"})
_BULK = frozenset({"batches"})


class Router:
    """The policy's model routes, compiled once."""

    def __init__(self, policy: Policy, *, parse_calls: bool) -> None:
        routing = policy.routing
        self.case_sensitive = routing.case_sensitive
        self.unknown = routing.unknown
        # The routes as written: an exact match, the common case.
        self.adapters: Mapping[str, Adapter] = {
            route.path: ADAPTERS[route.api] for route in policy.routes
        }
        # Normalized, for every other spelling (the first route of a spelling wins).
        self._spelled: dict[str, tuple[Adapter, str]] = {}
        for path, adapter in self.adapters.items():
            self._spelled.setdefault(self.normalize(path), (adapter, path))
        self._prefixes = tuple({
            "/" + normal.split("/")[1] + "/"
            for normal in self._spelled if normal.count("/") >= 2
        })
        # What a route is after its first segment, longest first: its API.
        self._tails = sorted(
            (("/" + normal.split("/", 2)[2], adapter)
             for normal, (adapter, _) in self._spelled.items() if normal.count("/") >= 2),
            key=lambda tail: -len(tail[0]),
        )
        self._matched: dict[str, tuple[Adapter | None, str | None]] = {}
        self._deferred: dict[tuple[str, bool], bool] = {}
        self.max_body = policy.max_body
        # Some step of this policy reads the `ModelCall`. When none does, a
        # model route's body is only checked to be a JSON object.
        self.parse_calls = parse_calls

    def route(self, ex: Exchange) -> None:
        """The request's API. Model APIs are POSTs; other methods on their
        paths pass through."""
        scope = ex.scope
        path = scope["path"]
        if scope["method"] not in _POST:
            if self.deferred(path, post=False):
                ex.deferred = ex.unrouted = True
            return
        # Decoded, the path is the route: decoded again by the upstream, still.
        adapter = self.adapters.get(path)
        if adapter is not None:
            ex.adapter = adapter
            return
        adapter, target = self.match(path)
        if adapter is None:
            return
        if target is None and self.deferred(path, post=True):
            ex.deferred = ex.unrouted = True
            return  # a batch: its answers are read back later
        if target is not None:
            ex.adapter = adapter
            ex.scope = {**scope, "path": target, "raw_path": target.encode()}
        elif self.unknown == "deny":
            ex.adapter = adapter  # refused in the shape of the API nearest its path
            raise NotFound(f"Unknown request URL: POST {path[:200]}.",
                           reason="unknown path under a model prefix")
        elif self.unknown == "meter":
            ex.adapter = adapter
            ex.unrouted = True

    def match(self, path: str) -> tuple[Adapter | None, str | None]:
        """A path that is not a route as written: (its API, the route's path)
        when it spells a route; (the API of the route nearest it, None) when
        it is no route but lies under a model prefix; (None, None) otherwise."""
        found = self._matched.get(path)
        if found is None:
            found = self._match(path)
            if len(path) <= _LONGEST:
                if len(self._matched) >= _REMEMBERED:
                    del self._matched[next(iter(self._matched))]  # the oldest
                self._matched[path] = found
        return found

    def _match(self, path: str) -> tuple[Adapter | None, str | None]:
        normal = self.normalize(path)
        spelled = self._spelled.get(normal)
        if spelled is not None:
            if path != spelled[1]:
                log.info("model route spelled otherwise", path=path[:200], route=spelled[1])
            return spelled
        ending = next((adapter for tail, adapter in self._tails if normal.endswith(tail)), None)
        if ending is None and not normal.startswith(self._prefixes):
            return None, None
        log.warning("unknown model path", path=path[:200], handled=self.unknown)
        return ending or self._nearest(normal), None

    def deferred(self, path: str, *, post: bool) -> bool:
        """Whether a request to ``path`` makes or reads answers kept upstream."""
        found = self._deferred.get((path, post))
        if found is None:
            normal = self.normalize(path).lower()
            segments = normal.split("/")
            found = not _BULK.isdisjoint(segments) or (not post and (
                not _STORED.isdisjoint(segments)
                # Anything read under a model prefix but the model list: eval
                # outputs, run steps, a video's content are answers too.
                or (normal.startswith(self._prefixes) and segments[2:3] != ["models"])))
            if len(path) <= _LONGEST:
                if len(self._deferred) >= _REMEMBERED:
                    del self._deferred[next(iter(self._deferred))]
                self._deferred[path, post] = found
        return found

    def normalize(self, path: str) -> str:
        """``path`` as an upstream that normalizes paths may read it."""
        for _ in range(_DECODINGS):
            if "%" not in path:
                break
            path = unquote(path)
        segments: list[str] = []
        for segment in path.replace("\\", "/").split("/"):
            segment = segment.split(";", 1)[0]
            if segment == "..":
                if segments:
                    segments.pop()
            elif segment and segment != ".":
                segments.append(segment)
        normal = "/" + "/".join(segments)
        return normal if self.case_sensitive else normal.lower()

    def _nearest(self, normal: str) -> Adapter:
        """The API of the route sharing the most leading segments with ``normal``."""
        parts = normal.split("/")
        best: tuple[int, Adapter] | None = None
        for route, (adapter, _) in self._spelled.items():
            shared = 0
            for mine, theirs in zip(parts, route.split("/"), strict=False):
                if mine != theirs:
                    break
                shared += 1
            if best is None or shared > best[0]:
                best = (shared, adapter)
        assert best is not None  # under a prefix, so some route exists
        return best[1]

    async def read(self, ex: Exchange, receive: Receive) -> None:
        """The body, whole for a model call (and parsed), streamed otherwise."""
        adapter = ex.adapter
        body = await read_body(receive, ex.headers, self.max_body, buffer=adapter is not None)
        ex.body = body
        if not isinstance(body, bytes):
            return
        ex.bytes_in = len(body)
        if adapter is None:
            return
        path = ex.scope["path"]
        if path not in self.adapters and self.match(path)[1] is None \
                and _OBJECT.match(body) is None:
            # Metered on a path that is no route, with no JSON object: no model
            # call (a file upload, say), so it passes.
            ex.adapter = None
            return
        if self.parse_calls:
            call = ex.call = adapter.parse(body)
            if ex.unrouted:
                if call.prompt or call.system:
                    ex.unrouted = False  # a model call on an alias: scored as any other
                else:
                    # No prompt: a job, an update, an embedding, whose answer
                    # no walker reads (`treatment` refuses it to a treated caller).
                    ex.deferred = True
        else:
            # Nothing reads the call: which of two repeated keys counts does not matter.
            decode(body, unique=False)
