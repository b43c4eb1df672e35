"""One Redis round trip per admitted request before it is forwarded: the
risk assessment and the caller's own quota reservation are asked for in
the same turn of the event loop and share a pipeline, with what waits to
be settled riding along."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import connection

from guardgate import GuardGate
from tests.servers import serve_in_thread

POLICY = """\
upstream: {upstream}
storage: {storage}
quotas:
  - {{name: rpm, limit: 1000/minute}}
  - {{name: tpm, limit: 1000000/minute, cost: total_tokens}}
  - {{name: parallel, concurrency: 8}}
tiers:
  watch: {{score: 0.3, quota_factor: 0.5}}
  blocked: {{score: 0.9, deny: true}}
"""


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Commands and pipelines written to any Redis connection, counted."""
    count = [0]
    original = connection.AbstractConnection.send_packed_command

    async def counting(self: object, *args: object, **kwargs: object) -> object:
        count[0] += 1
        return await original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(connection.AbstractConnection, "send_packed_command", counting)
    yield count


def test_an_admitted_request_costs_one_round_trip(
        toy: str, redis_url: str, tmp_path: Path, writes: list[int]) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(upstream=toy, storage=redis_url))
    gate = GuardGate(policy=policy)
    requests = 40

    async def run(base: str, count: int) -> list[int]:
        async with httpx.AsyncClient(base_url=base) as client:
            statuses = []
            for i in range(count):
                reply = await client.post("/v1/chat/completions", headers={
                    "authorization": f"Bearer sk-trips-{i % 4}"}, json={
                    "model": "toy-1", "max_tokens": 16,
                    "messages": [{"role": "user", "content": f"Question {i}: why is the sky?"}]})
                statuses.append(reply.status_code)
        return statuses

    with serve_in_thread(gate) as base:
        assert asyncio.run(run(base, 8)) == [200] * 8  # connected, scripts loaded
        writes[0] = 0
        assert asyncio.run(run(base, requests)) == [200] * requests
        counted = writes[0]
    # One request at a time: each one's settlement rides with the next
    # one's assessment, and the last batch goes on its own.
    assert counted <= requests + 2, f"{counted} round trips for {requests} requests"
