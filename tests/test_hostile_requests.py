"""Requests shaped to slip past the gateway: a second API key, a model path
spelled otherwise, a JSON key sent twice, a method overridden by header.
Each is sent over a real socket, as written (http.client does not tidy a
path), to upstreams that read requests the way real ones do: one that
normalizes paths as nginx and lenient frameworks do, one that authenticates
by x-api-key, one that takes the first of two repeated keys."""

from __future__ import annotations

import asyncio
import http.client
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import orjson
import pytest
from structlog.testing import capture_logs

from guardgate import GuardGate
from guardgate.toy import create_toy_app
from guardgate.types import ASGIApp, Receive, Scope, Send
from tests.servers import body_of, principal_of, serve_in_thread

CHAT = {"model": "toy-1", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}
LOGPROBS = {**CHAT, "logprobs": True, "top_logprobs": 5}
MESSAGES = {"model": "toy-1", "max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}]}
CAPPED_KEY = "sk-capped"


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def send(base: str, path: str, body: bytes | dict[str, Any] | None = None,
         headers: dict[str, str] | list[tuple[str, str]] | None = None,
         method: str = "POST") -> Answer:
    """One request with ``path`` and ``method`` exactly as given."""
    host, port = base.removeprefix("http://").split(":")
    data = orjson.dumps(body) if isinstance(body, dict) else body
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        items = headers.items() if isinstance(headers, dict) else headers or []
        for name, value in items:
            connection.putheader(name, value)
        if data is not None:
            connection.putheader("content-type", "application/json")
            connection.putheader("content-length", str(len(data)))
        connection.endheaders(data)
        response = connection.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()},
                      response.read())
    finally:
        connection.close()


def alternatives(answer: Answer) -> int:
    """The most logprob alternatives any token of a chat answer carries."""
    content = answer.json()["choices"][0]["logprobs"]["content"]
    return max(len(token["top_logprobs"]) for token in content)


# --- upstreams ---------------------------------------------------------------


def normalizing(app: ASGIApp, seen: list[str]) -> ASGIApp:
    """``app`` behind a front that reads paths leniently: percent-decoded,
    slashes merged, dot segments resolved (nginx), case and a trailing slash
    ignored (Express), a ``.json`` format suffix dropped (Django REST)."""

    async def front(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
            seen.append(raw)
            segments: list[str] = []
            for segment in unquote(raw).split("/"):
                if segment == "..":
                    if segments:
                        segments.pop()
                elif segment and segment != ".":
                    segments.append(segment.split(";")[0])
            path = "/" + "/".join(segments).lower().removesuffix(".json")
            scope = {**scope, "path": path, "raw_path": path.encode()}
        await app(scope, receive, send)

    return front


def keyed(app: ASGIApp, keys: set[str], seen: list[str]) -> ASGIApp:
    """``app`` behind Anthropic-style authentication: by x-api-key alone."""

    async def front(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            key = dict(scope["headers"]).get(b"x-api-key", b"").decode()
            if key not in keys:
                body = b'{"type":"error","error":{"type":"authentication_error"}}'
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
            seen.append(key)
        await app(scope, receive, send)

    return front


def recording(seen: list[dict[str, str]]) -> ASGIApp:
    """Answers every request with 200 and keeps its method and headers."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        seen.append({"method": scope["method"],
                     **{k.decode(): v.decode() for k, v in scope["headers"]}})
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


def first_value_wins(seen: list[dict[str, Any]]) -> ASGIApp:
    """A chat upstream whose JSON parser keeps the first of a repeated key."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        call = json.loads(await body_of(receive), object_pairs_hook=lambda pairs: dict(reversed(pairs)))
        seen.append(call)
        tokens = call.get("max_tokens", 16) * call.get("n", 1)
        answer = orjson.dumps({
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok " * tokens},
                         "finish_reason": "length"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": tokens, "total_tokens": tokens + 1},
        })
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})

    return app


@pytest.fixture(scope="module")
def lenient() -> Iterator[tuple[str, list[str]]]:
    """The toy model behind a path-normalizing front, and the raw paths it got."""
    seen: list[str] = []
    with serve_in_thread(normalizing(create_toy_app(), seen)) as base:
        yield base, seen


def capped(upstream: str, **more: Any) -> dict[str, Any]:
    """A policy whose CAPPED_KEY caller may see two logprob alternatives, on
    a token quota that every model call is metered by."""
    return {
        "upstream": upstream,
        "tiers": {"capped": {"score": 0.99, "degrade": [{"cap_top_logprobs": 2}]}},
        "overrides": [{"principal": principal_of(CAPPED_KEY), "tier": "capped"}],
        "quotas": [{"name": "tpm", "limit": "1000000/minute", "cost": "total_tokens"}],
        **more,
    }


AS_CAPPED = {"authorization": f"Bearer {CAPPED_KEY}"}


# --- row 2: one caller, one credential ---------------------------------------


def test_a_second_different_key_is_refused_in_the_api_shape() -> None:
    seen: list[str] = []
    upstream_app = keyed(create_toy_app(), {"sk-real"}, seen)
    policy = {"quotas": [{"name": "rpm", "limit": "3/minute"}]}
    with serve_in_thread(upstream_app) as upstream, \
            serve_in_thread(GuardGate(policy={**policy, "upstream": upstream})) as base:
        # A fresh Bearer token on each request, the real key beside it: the
        # upstream would serve every one, each a new principal to the gateway.
        rotated = [send(base, "/v1/messages", MESSAGES,
                        {"x-api-key": "sk-real", "authorization": f"Bearer junk-{i}"})
                   for i in range(5)]
        # Where the upstream authenticates by Authorization, any scheme counts.
        basic_openai = send(base, "/v1/chat/completions", CHAT,
                            {"x-api-key": "sk-real", "authorization": "Basic dXNlcjpwYXNz"})
        # Where it does not, a non-Bearer Authorization is not a key.
        basic_anthropic = send(base, "/v1/messages", MESSAGES,
                               {"x-api-key": "sk-real", "authorization": "Basic dXNlcjpwYXNz"})
        same = send(base, "/v1/messages", MESSAGES,
                    {"x-api-key": "sk-real", "authorization": "Bearer sk-real"})
        third = send(base, "/v1/messages", MESSAGES, {"x-api-key": "sk-real"})
        fourth = send(base, "/v1/messages", MESSAGES, {"x-api-key": "sk-real"})
    assert [r.status for r in rotated] == [400] * 5
    error = rotated[0].json()
    assert error["type"] == "error"  # Anthropic's shape on its route
    assert error["error"]["type"] == "invalid_request_error"
    assert "two different API keys" in error["error"]["message"]
    assert basic_openai.status == 400
    assert basic_openai.json()["error"]["code"] == "invalid_request"
    assert basic_anthropic.status == same.status == third.status == 200
    # One principal throughout: the quota of 3 is spent by the three served.
    assert fourth.status == 429
    assert seen == ["sk-real"] * 3


def test_the_credential_header_the_policy_names_is_one_of_the_keys(toy: str) -> None:
    policy = {"upstream": toy, "identity": {"credential": "X-Goog-Api-Key"}}
    with serve_in_thread(GuardGate(policy=policy)) as base:
        mixed = send(base, "/v1/chat/completions", CHAT,
                     {"x-goog-api-key": "sk-real", "authorization": "Bearer sk-other"})
        alone = send(base, "/v1/chat/completions", CHAT, {"x-goog-api-key": "sk-real"})
    assert mixed.status == 400
    assert alone.status == 200


def test_an_azure_api_key_is_the_caller_not_its_address(toy: str) -> None:
    """``api-key`` authenticates at Azure OpenAI and LiteLLM: by default it
    names the caller, so a key denied is denied however it is sent."""
    policy = {"upstream": toy, "overrides": [{"principal": principal_of("sk-azure"),
                                              "deny": True}]}
    with serve_in_thread(GuardGate(policy=policy)) as base:
        bearer = send(base, "/v1/chat/completions", CHAT, {"authorization": "Bearer sk-azure"})
        azure = send(base, "/v1/chat/completions", CHAT, {"api-key": "sk-azure"})
    assert bearer.status == azure.status == 403


def test_bearer_tokens_are_read_as_rfc_9110_writes_them(toy: str) -> None:
    policy = {"upstream": toy, "quotas": [{"name": "rpm", "limit": "3/minute"}]}
    spellings = ["Bearer sk-one", "bearer\tsk-one", "BEARER    sk-one", "Bearer \t sk-one"]
    with serve_in_thread(GuardGate(policy=policy)) as base:
        codes = [send(base, "/v1/chat/completions", CHAT, {"authorization": spelling}).status
                 for spelling in spellings]
    # Every spelling is the one key: its quota of 3 refuses the fourth.
    assert codes == [200, 200, 200, 429]


def test_a_bearer_token_that_is_no_token68_is_refused(toy: str) -> None:
    """Words after the token, or a no-break space an upstream would trim:
    each spelling would be another principal for one key."""
    policy = {"upstream": toy, "quotas": [{"name": "rpm", "limit": "3/minute"}]}
    spellings = [f"Bearer sk-one junk{i}" for i in range(3)] + [
        "Bearer sk-one" + "\xa0" * i for i in range(1, 4)]
    with serve_in_thread(GuardGate(policy=policy)) as base:
        codes = [send(base, "/v1/chat/completions", CHAT,
                      [("authorization", spelling)]).status for spelling in spellings]
        plain = send(base, "/v1/chat/completions", CHAT, {"authorization": "Bearer sk-one"})
    assert codes == [400] * 6
    assert plain.status == 200


# --- row 3: paths as the upstream reads them ---------------------------------


@pytest.mark.parametrize("path", [
    "//v1/chat/completions",
    "/v1//chat/completions",
    "/V1/chat/completions",
    "/v1/Chat/COMPLETIONS",
    "/v1/./chat/completions",
    "/v1/models/../chat/completions",
    "/v1/%2e%2e/v1/chat/completions",
    "/v1/chat/completions/",
    "/v1/chat/completions;v=1",
    "/v1/chat/%2563ompletions",
])
def test_a_model_route_spelled_otherwise_is_that_route(
        lenient: tuple[str, list[str]], path: str) -> None:
    upstream, seen = lenient
    with serve_in_thread(GuardGate(policy=capped(upstream))) as base:
        answer = send(base, path, LOGPROBS, AS_CAPPED)
    assert answer.status == 200
    assert alternatives(answer) == 2           # the tier's treatment applied
    assert "x-ratelimit-limit-tokens" in answer.headers  # metered by the token quota
    assert seen[-1] == "/v1/chat/completions"  # served as the route that was metered


def test_unknown_posts_under_a_model_prefix_get_what_the_policy_says(
        lenient: tuple[str, list[str]]) -> None:
    upstream, seen = lenient
    suffixed = "/v1/chat/completions.json"  # chat, to a framework with format suffixes
    answers: dict[str, list[Answer]] = {}
    reached: dict[str, list[str]] = {}
    with capture_logs() as logs:
        for unknown in ("meter", "pass", "deny"):
            policy = capped(upstream, routing={"unknown": unknown})
            before = len(seen)
            with serve_in_thread(GuardGate(policy=policy)) as base:
                answers[unknown] = [
                    send(base, suffixed, LOGPROBS, AS_CAPPED),
                    send(base, suffixed, LOGPROBS, AS_CAPPED),
                    send(base, "/v1/messages/count_tokens", MESSAGES, AS_CAPPED),
                    send(base, "/v1/files", b"--x\r\n\r\nnot json\r\n--x--\r\n", AS_CAPPED),
                    send(base, "/v1/models", None, AS_CAPPED, method="GET"),
                ]
            reached[unknown] = seen[before:]
    metered, passed, denied = answers["meter"], answers["pass"], answers["deny"]
    # meter (the default): read as the nearest route's API and treated as one.
    assert [alternatives(a) for a in metered[:2]] == [2, 2]
    assert "x-ratelimit-limit-tokens" in metered[0].headers
    # No JSON object, no model call: not a POST a treated caller may make.
    assert metered[3].status == 403
    assert "/v1/files" not in reached["meter"]
    assert metered[4].status == 200
    # pass: forwarded untouched, as before.
    # (to a treated caller, whose answer it could not treat: refused)
    assert passed[0].status == 403 and "/v1/chat/completions.json" not in reached["pass"]
    # deny: 404 in the shape of the API nearest the path.
    assert [a.status for a in denied[:4]] == [404] * 4
    assert denied[0].json()["error"]["code"] == "unknown_url"
    assert denied[2].json()["type"] == "error"  # under /v1/messages: Anthropic's shape
    assert denied[4].status == 200  # not a POST: passes
    assert reached["deny"] == ["/v1/models"]
    # One log line per distinct path, not per request.
    unknown = [e for e in logs if e["event"] == "unknown model path"]
    assert [(e["path"], e["handled"]) for e in unknown if e["path"] == suffixed] == [
        (suffixed, "meter"), (suffixed, "pass"), (suffixed, "deny")]


def test_calls_on_unknown_paths_are_metered_never_scored(
        lenient: tuple[str, list[str]]) -> None:
    """An embeddings call, read by the nearest API's parser, has no prompt:
    scored, every embeddings user would share one empty template and look
    like a harvester. Its caller keeps the tier it is in."""
    upstream, _ = lenient
    gate = GuardGate(policy={
        "upstream": upstream,
        "tiers": {"watch": {"score": 0.1}, "suspicious": {"score": 0.3, "quota_factor": 0.5}},
        "quotas": [{"name": "rpm", "limit": "1000/minute"}],
    })
    key = {"authorization": "Bearer sk-embedder"}
    embed = {"model": "text-embedding-3-small", "input": "the same sentence"}
    with serve_in_thread(gate) as base:
        answers = [send(base, "/v1/embeddings", embed, key) for _ in range(40)]
        assert "x-ratelimit-limit-requests" in answers[-1].headers  # metered
        chat = send(base, "/v1/chat/completions", CHAT, key)
    assert chat.status == 200
    state = gate.runtime.admission.risk.state  # type: ignore[union-attr]
    assert asyncio.run(state.peek(principal_of("sk-embedder")))["n"] == "1.0"


def test_path_matching_remembers_a_bounded_number_of_paths(toy: str) -> None:
    gate = GuardGate(policy={"upstream": toy})
    router = gate.runtime.router
    for i in range(3000):
        router.match(f"/v1/chat/completions/{i}")
    router.match("/v1/x" * 400)  # too long to remember
    assert len(router._matched) <= 1024
    assert router.match("/V1//chat/completions")[1] == "/v1/chat/completions"


# --- row 8: one value per key -------------------------------------------------


def test_a_key_repeated_in_a_model_call_is_refused() -> None:
    seen: list[dict[str, Any]] = []
    policy = {"quotas": [{"name": "tpm", "limit": "2000/minute", "cost": "total_tokens"}]}
    hi = b'{"model": "m", "messages": [{"role": "user", "content": "Hi"}], '
    repeated = [
        hi + b'"max_tokens": 1900, "max_tokens": 10}',
        hi + b'"max_tokens": 10, "n": 50, "n": 1}',
        b'{"model": "m", "messages": [{"role": "user", "content": "Hi", "content": "x"}]}',
        b'{"model": "m", "messages": [], "max_tokens": 1900, "\\u006dax_tokens": 10}',
        # An escaped colon standing in for the separator the repeat adds.
        hi + b'"max_tokens": 1900, "max_tokens": 10, "stop": "\\u003a"}',
    ]
    escaped_colon = b'{"model": "m:1", "messages": [{"role": "user", "content": "a\\u003ab"}],' \
                    b' "max_tokens": 10}'
    with serve_in_thread(first_value_wins(seen)) as upstream, \
            serve_in_thread(GuardGate(policy={**policy, "upstream": upstream})) as base:
        refused = [send(base, "/v1/chat/completions", body) for body in repeated]
        anthropic = send(base, "/v1/messages",
                         b'{"model": "m", "max_tokens": 1900, "max_tokens": 10, "messages": []}')
        plain = send(base, "/v1/chat/completions", escaped_colon)
    assert [r.status for r in refused] == [400] * len(repeated)
    assert refused[0].json()["error"]["code"] == "duplicate_key"
    assert "max_tokens" in refused[0].json()["error"]["message"]
    assert anthropic.status == 400 and anthropic.json()["type"] == "error"
    assert plain.status == 200  # an escaped colon is no repeated key
    assert [call["messages"][0]["content"] for call in seen] == ["a:b"]


# --- row 9: the method the gateway routed by ---------------------------------


@pytest.mark.parametrize("mode", ["proxy", "middleware"])
def test_method_override_headers_never_reach_the_upstream(mode: str) -> None:
    seen: list[dict[str, str]] = []
    app = recording(seen)
    overrides = {"x-http-method-override": "POST", "x-http-method": "POST",
                 "x-method-override": "POST"}
    with serve_in_thread(app) as upstream:
        gate = GuardGate(policy={"upstream": upstream}) if mode == "proxy" else GuardGate(app)
        with serve_in_thread(gate) as base:
            answer = send(base, "/v1/chat/completions", CHAT, overrides, method="GET")
    assert answer.status == 200
    assert seen[-1]["method"] == "GET"
    assert not set(overrides) & set(seen[-1])


def test_a_lower_case_post_is_a_model_call(toy: str) -> None:
    # The upstream's client upper-cases the method: the gateway routes as if it had.
    with serve_in_thread(GuardGate(policy=capped(toy)), http="h11") as base:
        answer = send(base, "/v1/chat/completions", LOGPROBS, AS_CAPPED, method="post")
    assert answer.status == 200
    assert alternatives(answer) == 2
