"""A hostile caller against clearance budgets, over real sockets: a burst of
concurrent requests on one clearance, and a clearance minted before a reload
that lowered its budget. Memory and a real Redis."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from guardgate import GuardGate
from guardgate.challenge import puzzle
from guardgate.challenge.tokens import new_id
from guardgate.policy import load_policy
from guardgate.store import open_store
from guardgate.toy import create_toy_app
from tests.servers import serve_in_thread

SECRET = "hostile-clearance-secret-0123456789"
PATH = "/v1/chat/completions"


@pytest.fixture(scope="module")
def slow_toy() -> Iterator[str]:
    """A toy upstream that takes its time (1 ms a token), so a burst of
    requests is in flight together."""
    with serve_in_thread(create_toy_app(token_delay=0.001)) as base:
        yield base


@pytest.fixture
def key() -> str:
    """A key of this test's own: its clearances share no record with another test's."""
    return "sk-hostile-" + secrets.token_hex(8)


def policy(upstream: str, storage: str, key: str, *, requests: int = 100,
           output_tokens: int = 1000) -> dict[str, Any]:
    return {
        "upstream": upstream,
        "storage": storage,
        "tiers": {"suspicious": {"score": 0.5, "challenge": {}}},
        "overrides": [{"api_key_sha256": hashlib.sha256(key.encode()).hexdigest(),
                       "tier": "suspicious"}],
        # Other tests' challenges to this address on one Redis do not count here.
        "challenge": {"secret": SECRET, "difficulty": 8, "issue_limit": "10000/minute",
                      "clearance": {"budget": {"requests": requests,
                                               "output_tokens": output_tokens}}},
    }


def chat(max_tokens: int) -> dict[str, Any]:
    return {"model": "toy-1", "messages": [{"role": "user", "content": "Tell me about tests"}],
            "max_tokens": max_tokens}


def cleared(base: str, key: str) -> dict[str, str]:
    """Solve a challenge with a one-token request; the headers of the
    clearance it bought."""
    headers = {"authorization": f"Bearer {key}"}
    refused = httpx.post(base + PATH, json=chat(1), headers=headers)
    assert refused.status_code == 401, refused.text
    token = refused.json()["error"]["challenge"]["token"]
    solved = httpx.post(base + PATH, json=chat(1),
                        headers={**headers, "guardgate-solution": puzzle.solve(token, 8)})
    assert solved.status_code == 200, solved.text
    assert solved.json()["usage"]["completion_tokens"] == 1
    time.sleep(0.1)  # its settlement (batched with Redis) is in
    return {**headers, "guardgate-clearance": solved.headers["guardgate-clearance"]}


def burst(base: str, headers: dict[str, str], count: int, max_tokens: int
          ) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(*[
                client.post(base + PATH, json=chat(max_tokens), headers=headers)
                for _ in range(count)
            ])
    return asyncio.run(run())


def served(responses: list[httpx.Response]) -> int:
    return sum(r.json()["usage"]["completion_tokens"] for r in responses
               if r.status_code == 200)


def test_a_burst_on_one_clearance_stays_within_its_budget(
    slow_toy: str, storage: str, key: str
) -> None:
    """1,000 output tokens: the one-token redemption, then four concurrent
    requests of 300. Three fit (901), the fourth is challenged; settled to
    the real usage, the clearance then pays for exactly its last 99 tokens."""
    with serve_in_thread(GuardGate(policy=policy(slow_toy, storage, key))) as base:
        headers = cleared(base, key)
        answers = burst(base, headers, 4, 300)
        time.sleep(0.1)
        last = httpx.post(base + PATH, json=chat(99), headers=headers)
        after = httpx.post(base + PATH, json=chat(1), headers=headers)
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 401]
    assert served(answers) == 900
    refused = next(a for a in answers if a.status_code == 401)
    assert refused.json()["error"]["code"] == "challenge_required"
    assert last.status_code == 200 and last.json()["usage"]["completion_tokens"] == 99
    assert after.status_code == 401  # 1 + 900 + 99: the budget is spent


def test_a_request_no_clearance_could_pay_for_is_refused(
    slow_toy: str, storage: str, key: str
) -> None:
    """A 100-token budget, four concurrent requests of 300. None is served,
    and none is challenged again (a new clearance could not pay either):
    each is told why, in the API's error shape."""
    with serve_in_thread(GuardGate(policy=policy(slow_toy, storage, key,
                                                 output_tokens=100))) as base:
        headers = cleared(base, key)
        answers = burst(base, headers, 4, 300)
        fits = httpx.post(base + PATH, json=chat(99), headers=headers)
    assert [a.status_code for a in answers] == [429] * 4
    assert answers[0].headers["x-should-retry"] == "false"  # solving again would not help
    error = answers[0].json()["error"]
    assert error["type"] == "tokens" and "allows 100 output tokens" in error["message"]
    assert served(answers) == 0
    assert fits.status_code == 200  # the clearance was left whole


def test_a_reload_lowers_the_budget_of_clearances_already_issued(
    toy: str, storage: str, key: str
) -> None:
    gate = GuardGate(policy=policy(toy, storage, key, requests=100, output_tokens=1000))
    with serve_in_thread(gate) as base:
        headers = cleared(base, key)  # 1 request, 1 token of 100 and 1,000
        gate.apply(load_policy(policy(toy, storage, key, requests=100, output_tokens=50)))
        tokens = [httpx.post(base + PATH, json=chat(40), headers=headers).status_code
                  for _ in range(2)]
        gate.apply(load_policy(policy(toy, storage, key, requests=3, output_tokens=1000)))
        requests = [httpx.post(base + PATH, json=chat(1), headers=headers).status_code
                    for _ in range(2)]
    # 1 + 40 fits the new 50 tokens, 1 + 40 + 40 does not.
    assert tokens == [200, 401]
    # Three requests (the redemption, the 40 tokens, one more), then none:
    # the policy's budget holds, the token's higher one does not.
    assert requests == [200, 401]


async def test_a_meter_reserves_at_once_and_settles_to_the_answer(storage: str) -> None:
    """The storage under the gate, on both backends: a reservation is taken
    whole or not at all, concurrent ones never share a remainder, and a
    settlement gives back what an answer did not use."""
    store = open_store(storage)
    try:
        meters = store.clearances()
        principal, clearance = "key:" + secrets.token_hex(8), new_id()
        spend = functools.partial(meters.spend, principal, clearance, 0, 10, 1000, 60)
        assert await spend(reserve=600, opening=True) == "ok"
        assert await asyncio.gather(*[spend(reserve=600) for _ in range(3)]) == ["spent"] * 3
        assert await spend(reserve=400) == "ok"  # exactly what is left
        assert await spend(reserve=1) == "spent"
        await meters.charge(principal, clearance, -500)  # the answers had 500 fewer
        await store.settlements.drain()
        assert await spend(reserve=500) == "ok"
        assert await spend(reserve=1) == "spent"
    finally:
        await store.close()
