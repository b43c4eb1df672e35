"""Two deployments with separate storage, a real TAXII 2.1 server between
them: a hydra campaign caught at A is exported and pushed; B polls it; the
same campaign's fresh accounts (new keys, new addresses in the same
networks, the same tooling) are caught at B on arrival, where a B without
the feed, on the same traffic, takes longer; B's ordinary callers are
treated as they are without it."""

from __future__ import annotations

import random
import statistics
import time

import orjson
import pytest
import stix2

from guardgate.intel import taxii as taxii_client
from guardgate.intel.fingerprints import agent_digest
from guardgate.intel.stix import EXTENSION_ID
from tests.intel.conftest import Taxii
from tests.intel.traffic import (
    HOUR,
    RANK,
    TOOL_AGENT,
    Clock,
    campaign,
    first_flagged,
    gateway,
    highest,
    ordinary,
    policy,
    send,
)


@pytest.mark.asyncio
async def test_a_campaign_caught_at_a_is_caught_on_arrival_at_b(
        taxii: Taxii, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rnd = random.Random(20260101)
    start = time.time() - 30 * HOUR  # the campaign ran yesterday; B sees it today
    clock = Clock(monkeypatch, start)
    networks = [f"{rnd.randrange(11, 223)}.{rnd.randrange(256)}.{rnd.randrange(256)}"
                for _ in range(3)]

    # A: the campaign among ordinary callers; A catches it.
    a = gateway(policy(name="provider-a"))
    at_a = campaign(rnd, start, 40, networks, 25, "a")
    seen_a = await send(a, at_a + ordinary(rnd, start, 200, 5, "a-user"), clock)
    caught_a = highest(seen_a)
    hydra_a = [account for account in caught_a if account.startswith("a-")
               and not account.startswith("a-user")]
    assert sum(RANK[caught_a[h]] >= RANK["suspicious"] for h in hydra_a) >= 0.9 * len(hydra_a)

    # A exports what it caught and pushes it to the collection.
    assert a.runtime.intel is not None
    exported = await a.runtime.intel.export(start - 60, now=clock.now)
    assert exported.campaigns >= 1 and exported.indicators >= 3
    # The popular client string is carried by A's ordinary callers too: it stays home.
    values = {(o["extensions"][EXTENSION_ID]["kind"], o["extensions"][EXTENSION_ID]["value"])
              for o in exported.bundle["objects"] if o["type"] == "indicator"}
    assert ("agent", agent_digest(TOOL_AGENT)) not in values
    assert {kind for kind, _ in values} >= {"template", "system", "prefix", "setup"}
    bundle = stix2.parse(orjson.dumps(exported.bundle).decode(), allow_custom=False)
    status = taxii_client.push(taxii.collection, taxii.user, taxii.password, 10,
                               exported.bundle["objects"])
    assert status["failed"] == 0 and status["added"] == len(bundle.objects)

    # B polls the collection; a B without the feed runs beside it.
    feed = {"name": "peers", "taxii": taxii.collection, "user": taxii.user,
            "password": taxii.password, "every": "10s"}
    b = gateway(policy(name="provider-b", feeds=[feed]))
    alone = gateway(policy(name="provider-b"))
    await b.intel_feeds.refresh(every=True)
    assert b.intel_feeds.index.size == exported.indicators
    assert [f["outcome"] for f in b.intel_feeds.status()["feeds"]] == ["ok"]

    # The same campaign's fresh accounts at B (and B's own ordinary callers).
    later = clock.now + 2 * HOUR
    fresh = campaign(random.Random(7), later, 20, networks, 12, "fresh")
    users = ordinary(random.Random(8), later - 10 * HOUR, 60, 6, "b-user")
    with_feed = await send(b, fresh + users, clock)
    without = await send(alone, fresh + users, clock)

    flagged = first_flagged([s for s in with_feed if s[0].startswith("fresh")])
    baseline = first_flagged([s for s in without if s[0].startswith("fresh")])
    within = [n for n in flagged.values() if n is not None and n <= 5]
    never = 13  # an account never flagged counts as one past its 12th and last request
    with_counts = [n or never for n in flagged.values()]
    without_counts = [n or never for n in baseline.values()]
    with capsys.disabled():
        print(f"\nfirst request at suspicious, fresh accounts at B: with the feed "
              f"{sorted(with_counts)} (median {statistics.median(with_counts)}), without "
              f"{sorted(without_counts)} (median {statistics.median(without_counts)})")
    assert len(within) == len(flagged) == 20
    assert statistics.median(without_counts) > statistics.median(with_counts)
    assert sum(without_counts) > sum(with_counts)

    # Ordinary callers at B: the feed moves none of them.
    assert {k: v for k, v in highest(with_feed).items() if k.startswith("b-user")} == \
        {k: v for k, v in highest(without).items() if k.startswith("b-user")}

    # The operator sees which imported indicators matched which callers.
    matched = b.intel_feeds.status()["matched"]
    callers = {caller for entry in matched for caller in entry["callers"]}
    assert {f"acct:{account}" for account in flagged} <= callers
    for gate in (a, b, alone):
        await gate.aclose()
