"""What leaves: an exported bundle is STIX 2.1 (``stix2`` parses it with no
custom content allowed, the OASIS validator passes it in strict mode), it
describes the campaign and never the customers (no prompt, no answer, no
API key, no principal or account id of A's traffic in it), on memory and
on Redis alike."""

from __future__ import annotations

import hashlib
import random
import re
import time
import zlib
from typing import Any

import httpx
import orjson
import pytest
import redis
import stix2
from stix2validator import ValidationOptions, validate_string

from guardgate.intel.feeds import IntelFeeds
from guardgate.intel.reader import Terms, read
from guardgate.intel.stix import EXTENSION_ID
from guardgate.policy import load_policy
from tests.intel.traffic import HOUR, Call, Clock, campaign, gateway, ordinary, policy


async def _drive(gate: Any, calls: list[Call], clock: Clock, keys: dict[str, str]
                 ) -> list[str]:
    """Send ``calls`` (half the accounts by API key, as ``keys`` says); the answers' texts."""
    answers = []
    transport = httpx.ASGITransport(app=gate, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        for call in sorted(calls, key=lambda c: c.ts):
            clock.now = call.ts
            headers = {"x-forwarded-for": call.ip, "user-agent": call.agent,
                       "x-account-created": str(int(call.created))}
            if call.account in keys:
                headers["authorization"] = f"Bearer {keys[call.account]}"
            else:
                headers["x-account-id"] = call.account
            response = await client.post("/v1/chat/completions", json=call.body,
                                         headers=headers)
            if response.status_code == 200:
                answers.append(response.json()["choices"][0]["message"]["content"])
    return answers


def _secrets(calls: list[Call], answers: list[str], keys: dict[str, str]) -> set[str]:
    """Everything of A's traffic that must not leave, longer than a digest."""
    found: set[str] = set()
    for call in calls:
        for message in call.body["messages"]:
            found.add(message["content"])
        found.add(call.account)
    found |= {text for text in answers if text}
    for key in keys.values():
        digest = hashlib.sha256(key.encode()).hexdigest()
        found |= {key, digest, "key:" + digest[:16]}
    found |= {"acct:" + call.account for call in calls}
    return {text for text in found if len(text) >= 12}


@pytest.mark.asyncio
async def test_an_export_is_stix_2_1_and_carries_no_customer_data(
        monkeypatch: pytest.MonkeyPatch, storage: str) -> None:
    if storage != "memory://":
        redis.Redis.from_url(storage).flushdb()
    rnd = random.Random(5)
    start = time.time() - 20 * HOUR
    clock = Clock(monkeypatch, start)
    networks = ["198.51.100", "203.0.113"]
    calls = campaign(rnd, start, 30, networks, 24, "hydra") + ordinary(rnd, start, 80, 5)
    keys = {call.account: f"sk-live-{hashlib.sha1(call.account.encode()).hexdigest()}"
            for call in calls if call.account.endswith(("1", "3", "5", "7", "9"))}
    gate = gateway({**policy(name="provider-a"), "storage": storage})
    try:
        answers = await _drive(gate, calls, clock, keys)
        assert gate.runtime.intel is not None
        exported = await gate.runtime.intel.export(start - 60, now=clock.now)
    finally:
        await gate.aclose()
    assert exported.campaigns == 1 and exported.indicators >= 4
    text = orjson.dumps(exported.bundle).decode()

    parsed = stix2.parse(text, allow_custom=False)
    types = {obj.type for obj in parsed.objects}
    assert {"identity", "campaign", "indicator", "relationship", "observed-data"} <= types
    assert all(obj.spec_version == "2.1" for obj in parsed.objects if hasattr(obj, "spec_version"))
    result = validate_string(text, ValidationOptions(version="2.1", strict=True))
    assert result.is_valid, [str(e) for e in result.errors] + [str(w) for w in result.warnings]

    leaked = [secret for secret in _secrets(calls, answers, keys) if secret in text]
    assert not leaked, leaked[:5]
    # Only the documented extension's fields, and values that are fingerprints.
    for obj in exported.bundle["objects"]:
        if obj["type"] == "indicator":
            extension = obj["extensions"][EXTENSION_ID]
            assert extension["kind"] in {"template", "system", "setup", "prefix", "agent"}
            assert re.fullmatch(r"[0-9a-fx./@:]+", extension["value"]), extension["value"]
            assert 0 < obj["confidence"] <= 100


@pytest.mark.asyncio
async def test_a_salted_export_matches_only_where_the_salt_is_held(
        monkeypatch: pytest.MonkeyPatch) -> None:
    salt = "a-salt-both-peers-hold-0123"
    rnd = random.Random(9)
    start = time.time() - 20 * HOUR
    clock = Clock(monkeypatch, start)
    calls = campaign(rnd, start, 30, ["192.0.2"], 24, "hydra") + ordinary(rnd, start, 60, 4)
    gate = gateway(policy(name="provider-a", salt=salt))
    await _drive(gate, calls, clock, {})
    assert gate.runtime.intel is not None
    exported = await gate.runtime.intel.export(start - 60, now=clock.now)
    text = orjson.dumps(exported.bundle).decode()
    assert "192.0.2." not in text  # not even the network leaves in the clear
    assert "ipv4-addr" not in text

    held = load_policy(policy(salt=salt)).intel
    other = load_policy(policy(salt="another-salt-0123456789")).intel
    assert held is not None and other is not None
    feeds = IntelFeeds()
    feeds.configure(held)
    feeds.load("peer", text, now=clock.now)
    assert feeds.index.size == exported.indicators
    probe = next(c for c in calls if c.account.startswith("hydra"))
    system = probe.body["messages"][0]["content"]
    matches = feeds.index.match((), f"{zlib.crc32(system.encode()):08x}", probe.agent,
                                probe.ip, clock.now)
    assert {indicator.kind for indicator, _ in matches} >= {"system", "prefix", "setup"}
    refused = read(text, "peer", clock.now, Terms(other.salt))
    assert not refused.indicators and refused.skipped["other_salt"] == exported.indicators
