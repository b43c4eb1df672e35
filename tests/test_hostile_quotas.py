"""Token quotas that hold for every request shape, tried as a hostile caller
would: prompt arrays, token-id prompts, n and best_of, many short turns,
streams. A real gateway in front of the toy upstream, over sockets; what
is counted is the usage the answers carried."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from guardgate import GuardGate, load_policy
from guardgate.errors import RateLimited
from guardgate.quota import Demand, Quotas, Subject
from guardgate.store import open_store
from guardgate.toy import create_toy_app
from tests.servers import serve_in_thread

LIMIT = 2000
QUOTA = {"name": "tpm", "limit": f"{LIMIT}/minute", "cost": "total_tokens"}

Json = dict[str, Any]
Answer = tuple[int, int, int | None, int]


class Counted:
    """An ASGI app that counts the HTTP requests it is handed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.requests += 1
        await self.app(scope, receive, send)


def _key() -> dict[str, str]:
    """A caller of its own: a fresh quota counter."""
    return {"authorization": f"Bearer sk-{uuid.uuid4().hex}"}


def _carried(events: list[Json]) -> int:
    """The tokens an answer carried, by its usage: the last ``total_tokens``
    an OpenAI answer reports (top level, or in a Responses event's
    ``response``), or an Anthropic answer's input (``message_start``) plus
    its output (the last ``message_delta``)."""
    total = given = made = 0
    for event in events:
        usage = event.get("usage")
        for holder in ("response", "message"):
            if not usage and isinstance(event.get(holder), dict):
                usage = event[holder].get("usage")
        if not usage:
            continue
        if "total_tokens" in usage:
            total = usage["total_tokens"]
        given = usage.get("input_tokens", given)
        made = usage.get("output_tokens", made)
    return total or given + made


async def _answer(client: httpx.AsyncClient, url: str, body: Json,
                  headers: dict[str, str]) -> Answer:
    """(status, tokens carried, tokens reserved as the answer's headers tell,
    the quota window the request was charged to)."""
    sent = time.time()
    async with client.stream("POST", url, json=body, headers=headers) as response:
        raw = await response.aread()
    if response.status_code != 200:
        return response.status_code, 0, None, -1
    if body.get("stream"):
        events = [json.loads(line[6:]) for line in raw.decode().splitlines()
                  if line.startswith("data: {")]
    else:
        events = [json.loads(raw)]
    remaining = response.headers.get("x-ratelimit-remaining-tokens")
    held = None if remaining is None else LIMIT - int(remaining)
    # The window charged ends ``t`` seconds (rounded up) after the gateway
    # reserved, a moment after ``sent``: its end names it, to a second or two.
    reset = int(response.headers["ratelimit"].rsplit(";t=", 1)[1])
    return 200, _carried(events), held, round(sent + reset)


# ------------------------------------------------------------- row 1, refused


def test_a_prompt_array_reserves_every_prompt_and_the_too_large_is_never_forwarded() -> None:
    """100 prompts of max_tokens 1000 under 2,000 tokens a minute: the old
    reservation counted one prompt and the caller was served 100,649 tokens.
    Now it is refused as too large, before the upstream sees it, with a 429
    the SDKs do not retry (``x-should-retry: false``)."""
    toy = Counted(create_toy_app())
    with serve_in_thread(toy) as upstream:
        gate = Counted(GuardGate(policy={"upstream": upstream, "quotas": [QUOTA]}))
        with serve_in_thread(gate) as base:
            client = openai.OpenAI(base_url=base + "/v1", api_key="sk-array")  # retries on
            prompts = [f"Tell me about the number {i}." for i in range(100)]
            with pytest.raises(openai.RateLimitError) as array:
                client.completions.create(model="m", prompt=prompts, max_tokens=1000)
            asked = gate.requests
            # Token ids are input too, one token each: 2,400 of them cannot fit.
            with pytest.raises(openai.RateLimitError) as ids:
                client.completions.create(model="m", prompt=[[7] * 1200, [8] * 1200],
                                          max_tokens=1)
            # best_of answers are generated and billed, though only n come back.
            with pytest.raises(openai.RateLimitError):
                client.completions.create(model="m", prompt="Hi", max_tokens=500, best_of=5)
            # Each API's own output limit, refused in its own shape.
            with pytest.raises(openai.RateLimitError):
                client.responses.create(model="m", input="Hi", max_output_tokens=2500)
            with pytest.raises(openai.RateLimitError):
                client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "Hi"}],
                    max_completion_tokens=700, n=3)
            claude = anthropic.Anthropic(base_url=base, api_key="sk-claude")
            with pytest.raises(anthropic.RateLimitError) as messages:
                claude.messages.create(model="m", max_tokens=2500,
                                       messages=[{"role": "user", "content": "Hi"}])
            # A small array fits, and reserves all its answers.
            fits = client.completions.with_raw_response.create(
                model="m", prompt=["Hi", "Ho", "Ha", "He"], n=2, max_tokens=50)
    assert asked == 1  # the SDK, retries on, did not retry
    assert toy.requests == 1  # only the one that fits was forwarded
    for refused in (array.value, ids.value):
        assert refused.status_code == 429
        assert refused.response.headers["x-should-retry"] == "false"
        assert "retry-after" not in refused.response.headers
        error = refused.response.json()["error"]
        assert (error["type"], error["code"]) == ("tokens", "rate_limit_exceeded")
        assert error["message"].startswith("Request too large for tokens (tpm): limit 2000")
    assert _requested(array.value) >= 100 * 1000  # every prompt's answer
    assert _requested(ids.value) >= 2 * 1200  # every token id
    body = messages.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    assert messages.value.response.headers["x-should-retry"] == "false"
    remaining = int(fits.headers["x-ratelimit-remaining-tokens"])
    assert remaining <= LIMIT - 4 * 2 * 50  # four prompts, two answers each, 50 tokens each
    assert fits.parse().usage is not None
    assert len(fits.parse().choices) == 8


def _requested(refused: openai.APIStatusError) -> int:
    """The cost a too-large refusal names: "..., requested 2411. Reduce ..."."""
    message = refused.response.json()["error"]["message"]
    return int(message.split("requested ", 1)[1].split(".", 1)[0])


def test_the_toy_bills_token_ids_one_token_each(toy: str) -> None:
    """As the real APIs do: what the reservation of a token-id prompt is held to."""
    usage = httpx.post(toy + "/v1/completions", json={
        "model": "m", "prompt": [[50256] * 300, [1734] * 100], "max_tokens": 2,
    }).json()["usage"]
    assert usage["prompt_tokens"] == 400 + 2  # the ids, and one per prompt
    assert usage["completion_tokens"] == 2 * 2


# ------------------------------------------------- must show 2: every shape


def _turns(count: int, *, user_last: bool = True) -> list[Json]:
    """A conversation of ``count`` short messages, the last from the user."""
    roles = ["user", "assistant"] * count
    if user_last and count % 2 == 0:
        roles = roles[1:]
    return [{"role": role, "content": "Hi"} for role in roles[:count]]


@dataclass(frozen=True)
class Shape:
    """One way to ask, cheap to reserve wrongly: each costs more than the
    code before this change reserved for it."""

    name: str
    path: str
    body: Json


SHAPES = [
    # Every message has framing tokens on top of its text.
    Shape("chat", "/v1/chat/completions",
          {"model": "m", "messages": _turns(30), "n": 2, "max_tokens": 20}),
    Shape("completions-list", "/v1/completions",
          {"model": "m", "prompt": ["Hi there."] * 6, "n": 2, "max_tokens": 15}),
    Shape("completions-token-ids", "/v1/completions",
          {"model": "m", "prompt": [[1734] * 80, [318] * 80, [257] * 80], "max_tokens": 10}),
    Shape("responses", "/v1/responses",
          {"model": "m", "input": _turns(40), "max_output_tokens": 20}),
    Shape("messages", "/v1/messages",
          {"model": "m", "messages": _turns(41), "max_tokens": 20}),
]


@pytest.fixture(scope="module")
def slow_toy() -> Iterator[str]:
    """A toy that takes its time (2 ms a token), so that answers overlap."""
    with serve_in_thread(create_toy_app(token_delay=0.002)) as upstream:
        yield upstream


@pytest.fixture(scope="module")
def gateway(slow_toy: str) -> Iterator[str]:
    """A gateway with a 2,000 tokens a minute quota."""
    with serve_in_thread(GuardGate(policy={"upstream": slow_toy, "quotas": [QUOTA]})) as base:
        yield base


@pytest.fixture(scope="module")
def replicas(slow_toy: str, redis_url: str) -> Iterator[list[str]]:
    """Two gateways sharing one quota in Redis."""
    policy = {"upstream": slow_toy, "storage": redis_url, "quotas": [QUOTA]}
    with serve_in_thread(GuardGate(policy=policy)) as one, \
            serve_in_thread(GuardGate(policy=policy)) as two:
        yield [one, two]


def _run(bases: list[str], shape: Shape, stream: bool,
         waves: int = 3, width: int = 32) -> tuple[Answer, list[Answer]]:
    """One request alone (its reservation is all its caller's counter holds),
    then waves of ``width`` concurrent requests from another caller, spread
    over the gateways at ``bases``; the next wave goes when the last one has
    been answered (and settled)."""
    body = dict(shape.body)
    if stream:
        body["stream"] = True
        if shape.path in ("/v1/chat/completions", "/v1/completions"):
            body["stream_options"] = {"include_usage": True}

    async def run() -> tuple[Answer, list[Answer]]:
        out: list[Answer] = []
        async with httpx.AsyncClient(timeout=30) as client:
            alone = await _answer(client, bases[0] + shape.path, body, _key())
            headers = _key()
            for _ in range(waves):
                out += await asyncio.gather(*[
                    _answer(client, bases[i % len(bases)] + shape.path, body, headers)
                    for i in range(width)])
                await asyncio.sleep(0.1)  # settlements land (in Redis, batched)
        return alone, out

    return asyncio.run(run())


async def test_a_refund_settled_after_its_window_ended_is_not_credited_to_the_next(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A request reserved at the end of one window and answered in the next
    (a long stream) refunds nothing into the next window's allowance."""
    clock = [1_800_000_000.0 - 1]  # a second before the turn of a minute
    monkeypatch.setattr(time, "time", lambda: clock[0])
    policy = load_policy({"upstream": "http://upstream.invalid", "quotas": [QUOTA]})
    quotas = Quotas(policy, open_store("memory://"))
    caller = Subject("acct:a", "192.0.2.1", "192.0.2.0/24", None)
    long_stream = await quotas.reserve(caller, Demand(0, 1500))
    clock[0] += 61  # the stream is still running when the next window opens
    await quotas.reserve(caller, Demand(0, 2000))  # the next window, spent
    await quotas.settle(long_stream, 0, 10)  # 1,490 tokens not used
    with pytest.raises(RateLimited):
        await quotas.reserve(caller, Demand(0, 1000))


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("shape", SHAPES, ids=[s.name for s in SHAPES])
def test_no_window_serves_more_than_the_limit_and_one_reservation(
        gateway: str, shape: Shape, stream: bool) -> None:
    _holds([gateway], shape, stream)


@pytest.mark.parametrize("shape", SHAPES, ids=[s.name for s in SHAPES])
def test_two_replicas_on_one_redis_hold_the_same_bound(
        replicas: list[str], shape: Shape) -> None:
    _holds(replicas, shape, stream=True)


def _holds(bases: list[str], shape: Shape, stream: bool) -> None:
    started = time.monotonic()
    alone, answers = _run(bases, shape, stream)
    assert time.monotonic() - started < 60  # one window of the quota
    served = [carried for status, carried, _, _ in answers if status == 200]
    refused = [status for status, _, _, _ in answers if status != 200]
    assert served and refused and set(refused) == {429}
    one = max(served)
    # What the answers carried, against the limit of the window each was
    # charged to.
    windows: dict[int, int] = {}
    for status, carried, _, ends in answers:
        if status == 200:
            window = next((w for w in windows if abs(w - ends) <= 3), ends)
            windows[window] = windows.get(window, 0) + carried
    assert all(total <= LIMIT + one for total in windows.values()), (windows, len(served))
    assert sum(served) >= LIMIT // 2  # metered, not starved
    # The reservation is honest: it covers what the answer carried.
    status, carried, reserved, _ = alone
    assert status == 200 and reserved is not None
    assert carried <= reserved, (carried, reserved)


# --- an answer's bound: no limit sent, or usage never seen ----------------------------

GENEROUS = 30000  # what the upstream below writes when no output limit is sent


def generous_upstream(delay: float = 0.0) -> ASGIApp:
    """A chat endpoint that writes GENEROUS tokens unless told a limit, in
    Chinese (about a token a character) and streamed, its usage a moment
    after its last words; a whole answer after ``delay`` seconds."""
    async def chat(request: Request) -> Response:
        body = await request.json()
        limit = body.get("max_tokens") or body.get("max_completion_tokens") or GENEROUS
        usage = {"prompt_tokens": 5, "completion_tokens": limit, "total_tokens": limit + 5}
        if not body.get("stream"):
            await asyncio.sleep(delay)
            return JSONResponse({"object": "chat.completion", "usage": usage, "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "模" * limit},
                 "finish_reason": "length"}]})

        async def events() -> AsyncIterator[bytes]:
            for done in range(0, limit, 100):
                chunk = {"object": "chat.completion.chunk", "choices": [
                    {"index": 0, "delta": {"content": "模" * min(100, limit - done)},
                     "finish_reason": None}]}
                yield b"data: " + orjson.dumps(chunk) + b"\n\n"
            end = {"object": "chat.completion.chunk", "choices": [
                {"index": 0, "delta": {}, "finish_reason": "length"}]}
            yield b"data: " + orjson.dumps(end) + b"\n\n"
            await asyncio.sleep(0.3)
            if (body.get("stream_options") or {}).get("include_usage"):
                last = {"object": "chat.completion.chunk", "choices": [], "usage": usage}
                yield b"data: " + orjson.dumps(last) + b"\n\n"
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


async def test_what_an_answer_costs_past_its_window_is_owed_in_the_next(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An answer longer than its reservation (no output limit sent, and a
    model that writes more than `default_max_tokens`), settled after its
    window ended: what it cost past the reservation is charged to the window
    open now, so over time a caller gets no more than the limit."""
    clock = [1_800_000_000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    policy = load_policy({"upstream": "http://upstream.invalid", "quotas": [QUOTA]})
    quotas = Quotas(policy, open_store("memory://"))
    caller = Subject("acct:a", "192.0.2.1", "192.0.2.0/24", None)
    long_answer = await quotas.reserve(caller, Demand(0, 1500))
    clock[0] += 61
    await quotas.settle(long_answer, 0, 5000)  # 3,500 past what it reserved
    with pytest.raises(RateLimited):
        await quotas.reserve(caller, Demand(0, 10))
    clock[0] += 61
    await quotas.reserve(caller, Demand(0, 1500))  # paid: a fresh window


def test_a_caller_served_past_its_reservations_is_refused_until_it_has_paid() -> None:
    """Six calls naming no output limit, each reserving `default_max_tokens`
    (4,096), to a model that writes 30,000: what was served past the
    reservations is charged, and the caller is refused."""
    quota = {"name": "tpm", "limit": "20000/minute", "cost": "total_tokens"}
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    headers = _key()

    async def run(base: str) -> tuple[list[httpx.Response], httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            burst = await asyncio.gather(*[
                client.post(base + "/v1/chat/completions", json=body, headers=headers)
                for _ in range(6)])
            return list(burst), await client.post(base + "/v1/chat/completions", json=body,
                                                  headers=headers)

    # The answers take a second: all six are reserved before any is settled,
    # however busy the machine.
    with serve_in_thread(generous_upstream(delay=1.0)) as upstream, \
            serve_in_thread(GuardGate(policy={"upstream": upstream, "quotas": [quota]})) as base:
        burst, after = asyncio.run(run(base))
    assert [a.status_code for a in burst].count(200) == 4  # 4 x 4,096 reserved fit
    assert after.status_code == 429
    assert after.headers["x-ratelimit-remaining-tokens"] == "0"


def test_a_stream_left_before_its_usage_is_charged_what_it_reserved() -> None:
    """Settled on characters it would cost a quarter: Chinese is a token a
    character, and the usage chunk the client never waited for is lost."""
    limit, each = 10000, 2000
    quota = {"name": "tpm", "limit": f"{limit}/minute", "cost": "total_tokens"}
    body = {"model": "m", "stream": True, "max_tokens": each,
            "messages": [{"role": "user", "content": "写一篇文章"}]}
    headers = _key()
    got = 0
    with serve_in_thread(generous_upstream()) as upstream, \
            serve_in_thread(GuardGate(policy={"upstream": upstream, "quotas": [quota]})) as base:
        for _ in range(12):
            with httpx.Client(timeout=30) as client, \
                    client.stream("POST", base + "/v1/chat/completions", json=body,
                                  headers=headers) as answer:
                if answer.status_code != 200:
                    break
                for line in answer.iter_lines():  # leave at the last words
                    if line.startswith("data: {"):
                        choices = json.loads(line[6:])["choices"]
                        got += sum(len(c["delta"].get("content") or "") for c in choices)
                        if any(c.get("finish_reason") for c in choices):
                            break
            time.sleep(0.4)  # settled
    assert got <= limit + each, got


def test_an_embeddings_call_is_charged_its_usage_not_a_reservation() -> None:
    """Its usage counts input only: the output it never had is not charged
    at `default_max_tokens`, as an answer without usage would be."""
    async def embeddings(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"embedding": [0.1, 0.2]}],
                             "usage": {"prompt_tokens": 5, "total_tokens": 5}})

    upstream = Starlette(routes=[Route("/v1/embeddings", embeddings, methods=["POST"])])
    quota = {"name": "tpm", "limit": "10000/minute", "cost": "total_tokens"}
    headers = _key()
    with serve_in_thread(upstream) as base_up, \
            serve_in_thread(GuardGate(policy={"upstream": base_up, "quotas": [quota]})) as base:
        answers = [httpx.post(base + "/v1/embeddings", headers=headers, timeout=10,
                              json={"model": "e", "input": "a sentence"}) for _ in range(6)]
        time.sleep(0.1)
    assert [a.status_code for a in answers] == [200] * 6


def test_documents_and_images_are_reserved_as_input(toy: str) -> None:
    """A 108,000-character document beside a two-word question: reserved at
    its size, never as the question alone, so one such call cannot take 27
    windows' worth of input."""
    document = {"type": "document", "title": "Notes",
                "source": {"type": "text", "media_type": "text/plain", "data": "word " * 21600}}
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    ask = {"type": "text", "text": "Summarize this."}
    with serve_in_thread(GuardGate(policy={"upstream": toy, "quotas": [QUOTA]})) as base:
        big = httpx.post(base + "/v1/messages", headers=_key(), timeout=10, json={
            "model": "toy-1", "max_tokens": 50,
            "messages": [{"role": "user", "content": [document, ask]}]})
        pictured = httpx.post(base + "/v1/messages", headers=_key(), timeout=10, json={
            "model": "toy-1", "max_tokens": 50,
            "messages": [{"role": "user", "content": [image, ask]}]})
    assert big.status_code == 429 and big.headers["x-should-retry"] == "false"
    held = LIMIT - int(pictured.headers["x-ratelimit-remaining-tokens"])
    assert held >= 1600  # the image, at its largest
