"""Feeds: read in the background, picked up when they change, and a feed
that is unreachable, malformed or expired changes nothing but a log line
and a metric: its last good indicators stay in force."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from guardgate.intel.export import build
from guardgate.intel.feeds import IntelFeeds
from guardgate.intel.stix import EXTENSION_ID, stamp
from guardgate.metrics import Metrics
from guardgate.policy import load_policy
from guardgate.policy.intel_config import IntelConfig
from guardgate.store.ledger import Caught, MemoryLedger
from tests.intel.conftest import Taxii
from tests.intel.traffic import gateway, policy
from tests.servers import free_port, serve_in_thread

TIERS = ["watch", "suspicious", "high", "blocked"]


def bundle(now: float, networks: list[str], valid_for: float = 7 * 86400.0) -> dict[str, Any]:
    """A campaign of twelve accounts in ``networks``, last seen at ``now``."""
    ledger = MemoryLedger()
    for n in range(12):
        clusters = tuple(("prefix", f"{net}.0/24", 12, 12) for net in networks)
        asyncio.run(ledger.note(Caught(f"acct:h{n}", now - 60 + n, "suspicious",
                                       (("template", "0.0badc0de", 12, 12), *clusters))))
    config = IntelConfig(min_tier="suspicious", valid_for=valid_for)
    return build(asyncio.run(ledger.entries(0, now)), config, TIERS, "suspicious", 0).bundle


def feeds_for(path: Path, metrics: Metrics | None = None) -> IntelFeeds:
    config = load_policy(policy(feeds=[{"name": "peer", "file": str(path)}])).intel
    feeds = IntelFeeds(metrics)
    feeds.configure(config)
    return feeds


def polls(metrics: Metrics, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "guardgate_intel_polls_total", {"feed": "peer", "outcome": outcome})
    return value or 0.0


def ids(feeds: IntelFeeds) -> set[str]:
    return {indicator.id for indicator in feeds.index.indicators}


@pytest.mark.parametrize("breakage", ["not json", "invalid stix", "expired", "gone"])
def test_a_broken_feed_file_changes_nothing_but_a_log_line_and_a_metric(
        tmp_path: Path, breakage: str) -> None:
    path = tmp_path / "peer.json"
    path.write_text(json.dumps(bundle(time.time(), ["198.51.100"])))
    metrics = Metrics()
    feeds = feeds_for(path, metrics)
    asyncio.run(feeds.refresh(every=True))
    before = ids(feeds)
    assert len(before) == 2 and polls(metrics, "ok") == 1

    if breakage == "not json":
        path.write_text("{ this is not json")
    elif breakage == "invalid stix":
        broken = bundle(time.time(), ["203.0.113"])
        next(o for o in broken["objects"] if o["type"] == "indicator").pop("pattern")
        path.write_text(json.dumps(broken))
    elif breakage == "expired":
        path.write_text(json.dumps(bundle(time.time() - 30 * 86400, ["203.0.113"], 86400)))
    else:
        path.unlink()
    reason = {"not json": "malformed", "invalid stix": "malformed", "expired": "expired",
              "gone": "unreachable"}[breakage]
    with capture_logs() as logs:
        asyncio.run(feeds.refresh(every=True))
        asyncio.run(feeds.refresh(every=True))  # failing again: counted, not logged again
    assert ids(feeds) == before
    failed = [e for e in logs if e["event"].startswith("intel feed failed")]
    assert len(failed) == 1 and failed[0]["reason"] == reason and failed[0]["kept"] == 2
    assert polls(metrics, reason) == 2
    [status] = feeds.status()["feeds"]
    assert status["outcome"] == reason and status["in_force"] == 2


def test_a_changed_feed_file_is_picked_up_in_the_background(tmp_path: Path) -> None:
    path = tmp_path / "peer.json"
    path.write_text(json.dumps(bundle(time.time(), ["198.51.100"])))
    feeds = feeds_for(path)
    changed = json.dumps(bundle(time.time(), ["203.0.113", "192.0.2"]))

    async def run() -> set[str]:
        feeds.start()
        try:
            deadline = time.monotonic() + 10
            while not feeds.index.size:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            first = {i.value for i in feeds.index.indicators}
            await asyncio.sleep(0.01)
            path.write_text(changed)
            while {i.value for i in feeds.index.indicators} == first:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            return {i.value for i in feeds.index.indicators}
        finally:
            await feeds.close()

    assert asyncio.run(run()) == {"0.0badc0de", "203.0.113.0/24", "192.0.2.0/24"}


def test_indicators_expire_with_their_valid_until(tmp_path: Path) -> None:
    now = time.time()
    path = tmp_path / "peer.json"
    path.write_text(json.dumps(bundle(now - 3600, ["198.51.100"], valid_for=7200)))
    feeds = feeds_for(path)
    asyncio.run(feeds.refresh(every=True))
    index = feeds.index
    assert index.match(("0.0badc0de",), None, "", "198.51.100.7", now)
    assert not index.match(("0.0badc0de",), None, "", "198.51.100.7", now + 3601)
    assert index.match((), None, "", "198.51.100.7", now)[0][0].kind == "prefix"
    assert not index.match((), None, "", "198.51.101.7", now)


def test_an_unreachable_or_malformed_collection_leaves_the_last_good_indicators(
        taxii: Taxii, tmp_path: Path) -> None:
    from guardgate.intel import taxii as client

    good = bundle(time.time(), ["198.51.100"])
    client.push(taxii.collection, taxii.user, taxii.password, 10, good["objects"])
    not_taxii = f"http://127.0.0.1:{free_port()}/api1/collections/{'0' * 8}/"

    async def plain(scope: Any, receive: Any, send: Any) -> None:  # answers JSON, not TAXII
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"objects": "nope"}'})

    base = load_policy(policy(feeds=[{"name": "peer", "taxii": taxii.collection,
                                      "user": taxii.user, "password": taxii.password}]))
    metrics = Metrics()
    feeds = IntelFeeds(metrics)
    feeds.configure(base.intel)
    asyncio.run(feeds.refresh(every=True))
    before = ids(feeds)
    assert len(before) == 2
    with serve_in_thread(plain) as elsewhere:
        for url, reason in ((not_taxii, "unreachable"),
                            (f"{elsewhere}/api1/collections/{'1' * 8}/", "malformed")):
            # The collection goes away, or answers something that is not TAXII.
            state = feeds._feeds["peer"]
            state.config = replace(state.config, taxii=url)
            with capture_logs() as logs:
                asyncio.run(feeds.refresh(every=True))
            assert ids(feeds) == before, reason
            assert [e["reason"] for e in logs if e["event"].startswith("intel feed")] == [reason]
            assert metrics.registry.get_sample_value(
                "guardgate_intel_polls_total", {"feed": "peer", "outcome": reason}) == 1


def test_a_policy_reload_brings_a_new_feed_and_a_dropped_feed_leaves(tmp_path: Path) -> None:
    path = tmp_path / "peer.json"
    path.write_text(json.dumps(bundle(time.time(), ["198.51.100"])))

    async def run() -> tuple[int, int, int]:
        gate = gateway(policy())
        assert gate.intel_feeds.index.size == 0
        gate.apply(load_policy(policy(feeds=[{"name": "peer", "file": str(path)}])))
        await gate.intel_feeds.refresh(every=True)
        added = gate.intel_feeds.index.size
        gate.apply(load_policy(policy(signal={"weight": 0.3},
                                      feeds=[{"name": "peer", "file": str(path)}])))
        kept = gate.intel_feeds.index.size  # the same feed, kept across the reload
        gate.apply(load_policy(policy()))
        dropped = gate.intel_feeds.index.size
        await gate.aclose()
        return added, kept, dropped

    assert asyncio.run(run()) == (2, 2, 0)


def test_a_collection_is_polled_for_what_was_added_and_a_revoked_indicator_leaves(
        taxii: Taxii) -> None:
    from guardgate.intel import taxii as client

    first = bundle(time.time(), ["192.0.2", "198.18.0"])
    client.push(taxii.collection, taxii.user, taxii.password, 10, first["objects"])
    config = load_policy(policy(feeds=[{"name": "isac", "taxii": taxii.collection,
                                         "user": taxii.user, "password": taxii.password}]))
    feeds = IntelFeeds()
    feeds.configure(config.intel)
    asyncio.run(feeds.refresh(every=True))
    values = {i.value for i in feeds.index.indicators}
    assert {"192.0.2.0/24", "198.18.0.0/24"} <= values
    withdrawn = next(o for o in first["objects"] if o["type"] == "indicator"
                     and o["extensions"][EXTENSION_ID]["value"] == "198.18.0.0/24")
    revoked = {**withdrawn, "revoked": True, "modified": stamp(time.time() + 1)}
    client.push(taxii.collection, taxii.user, taxii.password, 10, [revoked])
    asyncio.run(feeds.refresh(every=True))  # an incremental poll: only what was added since
    assert feeds._feeds["isac"].polls == 2
    assert {i.value for i in feeds.index.indicators} == values - {"198.18.0.0/24"}
