"""Traffic for the intelligence tests: a hydra campaign (fresh accounts
behind a few networks, one tooling: client string, system prompt, prompt
templates) among ordinary callers, sent through gateways in process, each
request at its own simulated time."""

from __future__ import annotations

import random
import types
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

import guardgate.admit
from bench.simulate import CASUAL_FORMS, HARVEST_TEMPLATES, NOUNS, TOPICS, WORDS
from guardgate import GuardGate
from guardgate.toy import create_toy_app

TOOL_AGENT = "OpenAI/Python 1.54.3"  # the campaign's client: a popular SDK's string
TOOL_SYSTEM = "You are a meticulous expert tutor. Answer every question in full depth."
COMMON_SYSTEM = "You are a helpful assistant."
HOUR = 3600.0

TIERS = {
    "watch": {"score": 0.3},
    "suspicious": {"score": 0.5, "quota_factor": 0.25},
    "high": {"score": 0.7, "quota_factor": 0.1},
    "blocked": {"score": 0.9, "deny": True},
}
ADMIN_TOKEN = "intel-operator-token-0123"


def policy(**intel: Any) -> dict[str, Any]:
    """The detection benchmark's risk settings; the test client is the
    trusted auth layer (account ids, creation times)."""
    return {
        "identity": {"principal": [{"header": "x-account-id"}, "bearer", "ip"],
                     "trusted_proxies": ["127.0.0.1/32"]},
        "tiers": TIERS,
        "risk": {"budget": {"requests": 20, "tier": "watch"}},
        "admin": {"token": ADMIN_TOKEN},
        "intel": intel,
    }


@dataclass(frozen=True)
class Call:
    ts: float
    account: str
    ip: str
    agent: str
    created: float
    body: dict[str, Any]


def _chat(text: str, system: str | None) -> dict[str, Any]:
    messages = [{"role": "system", "content": system}] if system else []
    return {"model": "toy-1", "messages": [*messages, {"role": "user", "content": text}],
            "max_tokens": 2048}


def campaign(rnd: random.Random, start: float, accounts: int, prefixes: list[str],
             requests: int, name: str, templates: tuple[str, ...] = HARVEST_TEMPLATES[:2]
             ) -> list[Call]:
    """``accounts`` fresh accounts, each on a new address of one of
    ``prefixes`` (``a.b.c``), sending ``requests`` requests from the
    campaign's tooling, three in ten of them ordinary ones to blend in."""
    calls = []
    for n in range(accounts):
        joined = start + rnd.uniform(0, 4 * HOUR)
        ip = f"{rnd.choice(prefixes)}.{rnd.randrange(2, 254)}"
        account = f"{name}-{n:03d}-{rnd.getrandbits(32):08x}"
        ts = joined
        for _ in range(requests):
            if rnd.random() < 0.3:
                text = rnd.choice(CASUAL_FORMS).format(
                    noun=rnd.choice(NOUNS), day="week", num=rnd.randrange(2, 99),
                    words=rnd.choice(WORDS), name="Sam", topic=rnd.choice(TOPICS),
                    topic2=rnd.choice(TOPICS))
            else:
                text = rnd.choice(templates).format(topic=rnd.choice(TOPICS),
                                                    num=rnd.randint(3, 9))
            calls.append(Call(ts, account, ip, TOOL_AGENT, joined - rnd.uniform(0, HOUR),
                              _chat(text, TOOL_SYSTEM)))
            ts += rnd.uniform(30, 200)
    return calls


def ordinary(rnd: random.Random, start: float, accounts: int, requests: int,
             name: str = "user") -> list[Call]:
    """Long-standing accounts chatting in their own words, most through the
    campaign's popular client, some sending a common system prompt, some
    from the campaign's networks' neighbours."""
    calls = []
    for n in range(accounts):
        ip = f"{rnd.randrange(11, 223)}.{rnd.randrange(256)}.{rnd.randrange(256)}." \
             f"{rnd.randrange(2, 254)}"
        agent = TOOL_AGENT if rnd.random() < 0.6 else "Mozilla/5.0 (X11; Linux x86_64)"
        system = COMMON_SYSTEM if rnd.random() < 0.3 else None
        account = f"{name}-{n:03d}"
        ts = start + rnd.uniform(0, 20 * HOUR)
        for _ in range(requests):
            text = rnd.choice(CASUAL_FORMS).format(
                noun=rnd.choice(NOUNS), day="weekend", num=rnd.randrange(2, 99),
                words=rnd.choice(WORDS), name="Lee", topic=rnd.choice(TOPICS),
                topic2=rnd.choice(TOPICS))
            if rnd.random() < 0.1:
                text += " Explain step by step."
            calls.append(Call(ts, account, ip, agent, start - 200 * 86400.0,
                              _chat(text, system)))
            ts += rnd.uniform(60, 1800)
    return calls


class Clock:
    """The assessments' clock: set to each request's time before it is sent."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, now: float) -> None:
        self.now = now
        monkeypatch.setattr(guardgate.admit, "time", types.SimpleNamespace(time=self.time))

    def time(self) -> float:
        return self.now


def gateway(config: dict[str, Any]) -> GuardGate:
    return GuardGate(create_toy_app(), policy=config)


async def send(gate: GuardGate, calls: list[Call], clock: Clock) -> list[tuple[str, str]]:
    """Each call through ``gate`` in time order: (account, tier) per request."""
    transport = httpx.ASGITransport(app=gate, client=("127.0.0.1", 40000))
    seen: list[tuple[str, str]] = []
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        for call in sorted(calls, key=lambda c: c.ts):
            clock.now = call.ts
            headers = {"x-account-id": call.account, "x-forwarded-for": call.ip,
                       "user-agent": call.agent, "x-account-created": str(int(call.created))}
            with capture_logs() as logs:
                await client.post("/v1/chat/completions", json=call.body, headers=headers)
            lines = [e for e in logs if e.get("event") == "request"]
            seen.append((call.account, lines[-1]["tier"] if lines else "normal"))
    return seen


RANK = {"normal": 0, "watch": 1, "suspicious": 2, "high": 3, "blocked": 4}


def first_flagged(seen: list[tuple[str, str]], tier: str = "suspicious") -> dict[str, int | None]:
    """Per account, the number of its first request at ``tier`` or above (None: never)."""
    count: dict[str, int] = {}
    first: dict[str, int | None] = {}
    for account, reached in seen:
        count[account] = count.get(account, 0) + 1
        first.setdefault(account, None)
        if first[account] is None and RANK[reached] >= RANK[tier]:
            first[account] = count[account]
    return first


def highest(seen: list[tuple[str, str]]) -> dict[str, str]:
    top: dict[str, str] = {}
    for account, reached in seen:
        if RANK[reached] >= RANK[top.get(account, "normal")]:
            top[account] = reached
    return top
