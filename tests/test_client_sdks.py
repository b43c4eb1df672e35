"""The current OpenAI and Anthropic SDKs through a challenging tier with
ChallengeAuth: OpenAI over httpx and httpx2, Anthropic over httpx2 (the only
client it takes), sync and async, streamed and not. A real gateway in front
of the toy upstream; its log shows what became of each call."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest
from structlog.testing import capture_logs

from guardgate import GuardGate
from guardgate.client import ChallengeAuth
from tests.servers import serve_in_thread

KEY = "sk-sdk-challenged"
PROMPT = [{"role": "user", "content": "Hi"}]
OPENAI_CHAT: dict[str, Any] = {"model": "toy-1", "messages": PROMPT, "max_tokens": 5}
ANTHROPIC_MESSAGE: dict[str, Any] = {"model": "toy-1", "messages": PROMPT, "max_tokens": 5}

CHALLENGED = (401, "challenge", None)
SOLVED = (200, "challenge", "solved")
CLEARED = (200, "challenge", "cleared")

Logs = list[MutableMapping[str, Any]]


def policy(toy: str) -> dict[str, Any]:
    return {
        "upstream": toy,
        "storage": "memory://",
        "tiers": {"suspicious": {"score": 0.5, "challenge": {}}},
        "overrides": [{"api_key_sha256": hashlib.sha256(KEY.encode()).hexdigest(),
                       "tier": "suspicious"}],
        # Low, so that a test spends its time on the SDKs, not on hashing.
        "challenge": {"secret": "test-sdk-challenge-secret-0123456789", "difficulty": 8},
    }


@pytest.fixture
def gateway(toy: str) -> Iterator[tuple[str, Logs]]:
    """A gateway that challenges KEY, and the log lines it writes."""
    with serve_in_thread(GuardGate(policy=policy(toy))) as base, capture_logs() as logs:
        yield base, logs


def outcomes(logs: Logs, count: int, wait: float = 5.0) -> list[tuple[object, ...]]:
    """(status, action, challenge) of the gateway's requests, once it has
    logged ``count`` of them or ``wait`` seconds have passed (a request is
    logged just after its answer ends)."""
    deadline = time.monotonic() + wait
    while True:
        lines: list[tuple[object, ...]] = [
            (e["status"], e["action"], e["challenge"]) for e in logs if e["event"] == "request"
        ]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines


def ask_openai(client: openai.OpenAI, stream: bool) -> str:
    if not stream:
        return client.chat.completions.create(**OPENAI_CHAT).choices[0].message.content or ""
    with client.chat.completions.create(**OPENAI_CHAT, stream=True) as chunks:
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


async def ask_openai_async(client: openai.AsyncOpenAI, stream: bool) -> str:
    if not stream:
        answer = await client.chat.completions.create(**OPENAI_CHAT)
        return answer.choices[0].message.content or ""
    async with await client.chat.completions.create(**OPENAI_CHAT, stream=True) as chunks:
        return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])


def _delta(event: Any) -> str:
    if event.type == "content_block_delta" and event.delta.type == "text_delta":
        return str(event.delta.text)
    return ""


def ask_anthropic(client: anthropic.Anthropic, stream: bool) -> str:
    if not stream:
        answer = client.messages.create(**ANTHROPIC_MESSAGE)
        return "".join(b.text for b in answer.content if b.type == "text")
    with client.messages.create(**ANTHROPIC_MESSAGE, stream=True) as events:
        return "".join(_delta(e) for e in events)


async def ask_anthropic_async(client: anthropic.AsyncAnthropic, stream: bool) -> str:
    if not stream:
        answer = await client.messages.create(**ANTHROPIC_MESSAGE)
        return "".join(b.text for b in answer.content if b.type == "text")
    async with await client.messages.create(**ANTHROPIC_MESSAGE, stream=True) as events:
        return "".join([_delta(e) async for e in events])


@dataclass(frozen=True)
class Sdk:
    """One SDK: how to build its clients against the gateway and ask them."""

    name: str
    sync_client: Callable[..., Any]
    async_client: Callable[..., Any]
    path: str  # what the SDK's base_url ends with
    ask: Callable[[Any, bool], str]
    ask_async: Callable[[Any, bool], Any]
    refused: type[Exception]

    def sync(self, base: str, **options: Any) -> Any:
        return self.sync_client(base_url=base + self.path, api_key=KEY, **options)

    def async_(self, base: str, **options: Any) -> Any:
        return self.async_client(base_url=base + self.path, api_key=KEY, **options)


OPENAI = Sdk("openai", openai.OpenAI, openai.AsyncOpenAI, "/v1", ask_openai,
             ask_openai_async, openai.AuthenticationError)
ANTHROPIC = Sdk("anthropic", anthropic.Anthropic, anthropic.AsyncAnthropic, "", ask_anthropic,
                ask_anthropic_async, anthropic.AuthenticationError)

# Each SDK with each HTTP library it takes for ``http_client``.
WITH_AUTH = [
    pytest.param(OPENAI, httpx2, id="openai-httpx2"),
    pytest.param(OPENAI, httpx, id="openai-httpx"),
    pytest.param(ANTHROPIC, httpx2, id="anthropic-httpx2"),
]
SDKS = [pytest.param(OPENAI, id="openai"), pytest.param(ANTHROPIC, id="anthropic")]
STREAM = [pytest.param(False, id="whole"), pytest.param(True, id="streamed")]


@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize(("sdk", "http"), WITH_AUTH)
def test_an_sdk_solves_a_challenge_and_keeps_its_clearance(
    gateway: tuple[str, Logs], sdk: Sdk, http: ModuleType, stream: bool
) -> None:
    base, logs = gateway
    challenge_auth = ChallengeAuth()
    with sdk.sync(base, max_retries=0, http_client=http.Client(auth=challenge_auth)) as client:
        first = sdk.ask(client, stream)
        solved = outcomes(logs, 2)
        second = sdk.ask(client, stream)
    assert first and second
    assert challenge_auth.clearance is not None
    assert solved == [CHALLENGED, SOLVED]
    # The clearance carries the next call: no fresh challenge.
    assert outcomes(logs, 3) == [CHALLENGED, SOLVED, CLEARED]


@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize(("sdk", "http"), WITH_AUTH)
async def test_an_async_sdk_solves_a_challenge_and_keeps_its_clearance(
    gateway: tuple[str, Logs], sdk: Sdk, http: ModuleType, stream: bool
) -> None:
    base, logs = gateway
    challenge_auth = ChallengeAuth()
    async with sdk.async_(base, max_retries=0,
                          http_client=http.AsyncClient(auth=challenge_auth)) as client:
        first = await sdk.ask_async(client, stream)
        solved = outcomes(logs, 2)
        second = await sdk.ask_async(client, stream)
    assert first and second
    assert challenge_auth.clearance is not None
    assert solved == [CHALLENGED, SOLVED]
    assert outcomes(logs, 3) == [CHALLENGED, SOLVED, CLEARED]


def _refusal(error: Exception, logs: Logs) -> None:
    """An SDK without the auth: one 401 it does not retry, though it may."""
    response = error.response  # type: ignore[attr-defined]
    assert response.status_code == 401
    token = response.json()["error"]["challenge"]["token"]  # in the SDK's own error shape
    assert response.headers["www-authenticate"].startswith(f'GuardGate-PoW challenge="{token}"')
    assert response.headers["x-should-retry"] == "false"
    assert response.headers["cache-control"] == "no-store"
    # The SDK has made all its tries when it raises; a second line would be one.
    assert outcomes(logs, 2, wait=0.2) == [CHALLENGED]


@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize("sdk", SDKS)
def test_an_sdk_without_the_auth_is_refused_once(
    gateway: tuple[str, Logs], sdk: Sdk, stream: bool
) -> None:
    base, logs = gateway
    with sdk.sync(base, max_retries=3) as client, pytest.raises(sdk.refused) as refused:
        sdk.ask(client, stream)
    _refusal(refused.value, logs)


@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize("sdk", SDKS)
async def test_an_async_sdk_without_the_auth_is_refused_once(
    gateway: tuple[str, Logs], sdk: Sdk, stream: bool
) -> None:
    base, logs = gateway
    async with sdk.async_(base, max_retries=3) as client:
        with pytest.raises(sdk.refused) as refused:
            await sdk.ask_async(client, stream)
    _refusal(refused.value, logs)


def test_one_auth_serves_httpx_and_httpx2_clients_alike(gateway: tuple[str, Logs]) -> None:
    base, logs = gateway
    # The clearance is bound to the user agent, so both clients send the same one.
    headers = {"authorization": f"Bearer {KEY}", "user-agent": "one-caller"}
    challenge_auth = ChallengeAuth()
    with httpx.Client(auth=challenge_auth, headers=headers) as one, \
            httpx2.Client(auth=challenge_auth, headers=headers) as two:
        solved = one.post(base + "/v1/chat/completions", json=OPENAI_CHAT)
        cleared = two.post(base + "/v1/chat/completions", json=OPENAI_CHAT)
    assert solved.status_code == cleared.status_code == 200
    assert outcomes(logs, 3) == [CHALLENGED, SOLVED, CLEARED]


@pytest.mark.parametrize("http", [pytest.param(httpx, id="httpx"), pytest.param(httpx2, id="httpx2")])
def test_a_body_sent_in_chunks_is_sent_again_with_the_solution(
    gateway: tuple[str, Logs], http: ModuleType
) -> None:
    base, logs = gateway
    body = json.dumps(OPENAI_CHAT).encode()
    with http.Client(auth=ChallengeAuth()) as client:
        answer = client.post(base + "/v1/chat/completions", content=iter([body[:9], body[9:]]),
                             headers={"authorization": f"Bearer {KEY}",
                                      "content-type": "application/json"})
    assert answer.status_code == 200, answer.text
    assert outcomes(logs, 2) == [CHALLENGED, SOLVED]


@pytest.mark.parametrize("setup", [
    pytest.param("import sys; sys.modules['httpx2'] = None", id="without-httpx2"),
    pytest.param("import httpx2; httpx2.alias_httpx()", id="httpx-aliased-to-httpx2"),
])
def test_the_auth_loads_without_httpx2_and_with_httpx_aliased_to_it(setup: str) -> None:
    if "alias_httpx" in setup and not hasattr(httpx2, "alias_httpx"):
        pytest.skip(f"httpx2 {httpx2.__version__} has no alias_httpx")
    # Without httpx2 it is an httpx.Auth alone; when httpx2.alias_httpx() makes
    # the two modules one, it is that one Auth (a base listed twice would fail).
    program = f"{setup}\nimport httpx\nfrom guardgate.client import ChallengeAuth\n" \
              "httpx.Client(auth=ChallengeAuth()).close()\n"
    subprocess.run([sys.executable, "-c", program], check=True, timeout=60)
