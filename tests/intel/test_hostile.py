"""What a hostile peer, a hostile TAXII server or a large operator import
cannot do: name the whole internet, stay in force forever, carry megabytes
per value, flood the index with duplicates, hold a poll without end, or
stall the event loop."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest

from guardgate.intel import reader, taxii
from guardgate.intel.feeds import IntelFeeds
from guardgate.intel.fingerprints import Network
from guardgate.intel.index import Indicator, IntelIndex
from guardgate.intel.reader import FeedError, Terms, read
from guardgate.intel.stix import EXTENSION_ID
from guardgate.ops.intel import _import
from guardgate.policy.intel_config import FeedConfig, IntelConfig
from tests.intel.test_signal import DIGEST, T0, decide, record, shared

DAY = 86400.0
COMMON = "You are a helpful assistant."


def indicator(n: int, kind: str, value: str, **extra: Any) -> dict[str, Any]:
    obj = {"type": "indicator", "spec_version": "2.1",
           "id": f"indicator--00000000-0000-4000-8000-{n:012d}",
           "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
           "pattern_type": "stix", "valid_from": "2026-01-01T00:00:00Z", "confidence": 100,
           "pattern": f"[x-guardgate-fingerprint:kind = '{kind}' AND "
                      f"x-guardgate-fingerprint:value = '{value[:40]}']",
           "extensions": {EXTENSION_ID: {"extension_type": "property-extension", "kind": kind,
                                         "value": value, "last_seen": "9999-12-31T00:00:00Z"}}}
    obj.update(extra)
    return obj


def bundle(*objects: dict[str, Any]) -> bytes:
    return orjson.dumps({"type": "bundle", "id": "bundle--00000000-0000-4000-8000-000000000001",
                         "objects": list(objects)})


def held(data: bytes, now: float = T0 + 60) -> tuple[list[Indicator], dict[str, int]]:
    reading = read(data, "peer", now, Terms())
    return [found for _, found in reading.indicators.values()], dict(reading.skipped)


def crc(text: str) -> str:
    return f"{zlib.crc32(text.encode()):08x}"


# --- 1. poisoning ----------------------------------------------------------------------------

def test_networks_broader_than_a_16_or_a_32_are_refused() -> None:
    kept, skipped = held(bundle(
        indicator(1, "prefix", "0.0.0.0/0"), indicator(2, "prefix", "::/0"),
        indicator(3, "setup", f"{crc(COMMON)}@0.0.0.0/0"),
        indicator(4, "prefix", "10.1.0.0/15"), indicator(5, "prefix", "2001:db8::/31"),
        indicator(6, "prefix", "10.1.0.0/16"), indicator(7, "prefix", "2001:db8::/32")))
    assert skipped == {"too_broad": 5}
    assert sorted(found.value for found in kept) == ["10.1.0.0/16", "2001:db8::/32"]


def test_no_indicator_stays_in_force_forever_or_is_seen_in_the_future() -> None:
    modified = time.mktime(time.strptime("2026-01-01", "%Y-%m-%d")) - time.timezone
    kept, _ = held(bundle(
        indicator(1, "template", "0.0badc0de"),
        indicator(2, "template", "1.0badc0de", valid_until="2099-01-01T00:00:00Z")))
    assert len(kept) == 2
    for found in kept:
        assert found.valid_until == pytest.approx(modified + reader.MAX_VALID)
        assert found.last_seen <= T0 + 60
        assert found.strength(T0 + 60 + 365 * DAY, 3 * DAY) == 0.0


def test_a_broad_setup_counts_for_no_established_caller() -> None:
    old = T0 - 400 * DAY
    for network, counts in (("81.2.0.0/16", False), ("81.2.69.0/24", True)):
        data = bundle(indicator(1, "setup", f"{DIGEST}@{network}",
                                modified="2025-12-31T23:00:00.000Z",
                                valid_from="2025-12-31T23:00:00Z"))
        line = decide(data, record("old-customer", "81.2.69.160", old))[0]
        assert (shared(line) > 0) is counts, network


# --- 2. huge values --------------------------------------------------------------------------

def test_huge_values_and_scope_ids_are_refused_and_networks_normalized() -> None:
    kept, skipped = held(bundle(
        indicator(1, "template", "0." + "z" * 200),
        indicator(2, "prefix", "::%" + "z" * 100 + "/64"),
        indicator(3, "prefix", "fe80::1%eth0/64"),
        indicator(4, "prefix", "2001:0db8:0000::7/48")))
    assert skipped == {"too_long": 1, "not_understood": 2}
    assert [found.value for found in kept] == ["2001:db8::/48"]


def test_the_explanation_holds_one_truncated_value_per_kind() -> None:
    networks = ["198.51.96.0/19", "198.51.96.0/20", "198.51.96.0/21", "198.51.100.0/22",
                "198.51.100.0/24"]
    data = bundle(*(indicator(n, "prefix", net) for n, net in enumerate(networks)),
                  indicator(9, "system", DIGEST + " " * 100))
    line = decide(data, record("new", "198.51.100.7", T0 - 300))[0]
    assert shared(line) > 0
    matched = line["explained"][6]
    assert [entry[1] for entry in matched] == ["prefix"]  # one per kind; the long one refused
    assert matched[0][0].startswith("indicator--") and len(matched[0][2]) <= 64


# --- 3. duplicates ---------------------------------------------------------------------------

def test_the_index_keeps_the_strongest_of_duplicates() -> None:
    net = Network(4, 24, (198 << 24) | (51 << 16) | (100 << 8))
    copies = [Indicator(f"i{n}", "peer", "prefix", "198.51.100.0/24", n / 1000, T0, None, net)
              for n in range(1, 501)]
    index = IntelIndex(copies)
    assert index.size == 1
    assert [m[0].id for m in index.match((), None, "", "198.51.100.7", T0)] == ["i500"]


def test_a_feed_holds_at_most_its_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader, "MAX_INDICATORS", 10)
    kept, skipped = held(bundle(*(indicator(n, "template", f"0.{n:08x}") for n in range(25))))
    assert len(kept) == 10
    assert skipped == {"too_many": 15}


# --- 4. a hostile TAXII server ---------------------------------------------------------------

@pytest.fixture
def hostile() -> Iterator[tuple[str, dict[str, int]]]:
    """A TAXII 'server' whose every page says there is more (``/more/``), or
    that drips its answer a byte at a time (``/drip/``)."""
    served = {"pages": 0}
    page = [indicator(n, "template", f"9.{n:08x}") for n in range(10)]
    kind = "application/taxii+json;version=2.1"

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if "/objects" in self.path and "/drip/" in self.path:
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", "100000")
                self.end_headers()
                with_end = time.monotonic() + 5
                while time.monotonic() < with_end:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.2)
                return
            if "/objects" in self.path:
                served["pages"] += 1
                body = json.dumps({"more": True, "next": str(served["pages"]),
                                   "objects": page}).encode()
            else:
                body = json.dumps({"id": "91a7b528-80eb-42ed-a74d-c6fbd5a26116", "title": "c",
                                   "can_read": True, "can_write": False,
                                   "media_types": [kind]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()


COLLECTION = "/api1/collections/91a7b528-80eb-42ed-a74d-c6fbd5a26116/"


def test_a_poll_stops_at_its_page_cap(hostile: tuple[str, dict[str, int]],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    base, served = hostile
    monkeypatch.setattr(taxii, "MAX_PAGES", 5)
    with pytest.raises(FeedError, match="pages"):
        taxii.fetch(base + "/more" + COLLECTION, None, None, 2.0)
    assert served["pages"] == 5


def test_a_poll_stops_at_its_object_cap(hostile: tuple[str, dict[str, int]],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    base, served = hostile
    monkeypatch.setattr(taxii, "MAX_OBJECTS", 35)
    with pytest.raises(FeedError, match="objects"):
        taxii.fetch(base + "/more" + COLLECTION, None, None, 2.0)
    assert served["pages"] == 4


def test_a_dripping_server_meets_the_deadline(hostile: tuple[str, dict[str, int]],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    base, _ = hostile
    monkeypatch.setattr(taxii, "DEADLINE", 1.0)
    started = time.monotonic()
    with pytest.raises(FeedError) as caught:
        taxii.fetch(base + "/drip" + COLLECTION, None, None, 2.0)
    assert caught.value.reason == "unreachable"
    assert time.monotonic() - started < 3.0


def test_an_answer_past_the_byte_cap_is_refused(hostile: tuple[str, dict[str, int]],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    base, _ = hostile
    monkeypatch.setattr(taxii, "MAX_BYTES", 100)
    with pytest.raises(FeedError, match="larger"):
        taxii.fetch(base + "/more" + COLLECTION, None, None, 2.0)


def test_a_slow_feed_holds_neither_the_others_nor_shutdown(
        hostile: tuple[str, dict[str, int]], tmp_path: Any) -> None:
    base, _ = hostile
    good = tmp_path / "good.json"
    good.write_bytes(bundle(indicator(1, "template", "0.0badc0de",
                                      modified=time.strftime("%Y-%m-%dT%H:%M:%S.000Z",
                                                             time.gmtime()))))
    feeds = IntelFeeds()
    feeds.configure(IntelConfig(feeds=(
        FeedConfig("slow", taxii=base + "/drip" + COLLECTION, timeout=2.0),
        FeedConfig("good", file=str(good)))))

    async def run() -> float:
        feeds.start()
        deadline = time.monotonic() + 3
        while feeds.index.size == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert feeds.index.size == 1  # the good feed, while the slow one drips
        started = time.monotonic()
        await feeds.close()
        return time.monotonic() - started

    assert asyncio.run(run()) < 0.5


# --- 5. operator import ----------------------------------------------------------------------

def test_an_import_is_read_off_the_loop_and_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    feeds = IntelFeeds()
    feeds.configure(IntelConfig())
    service: Any = type("Service", (), {"feeds": feeds})()
    threads: list[str] = []
    real = reader.read

    def spy(*args: Any) -> Any:
        threads.append(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr("guardgate.ops.intel.read", spy, raising=False)
    monkeypatch.setattr(reader, "MAX_OBJECTS", 3)
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    small = bundle(*(indicator(n, "template", f"0.{n:08x}", modified=now) for n in range(3)))
    status, answered, _ = asyncio.run(_import(service, {"name": "peer"}, small))
    assert status == 200 and isinstance(answered, dict) and answered["indicators"] == 3
    assert threads and threads[0] != threading.main_thread().name
    large = bundle(*(indicator(n, "template", f"0.{n:08x}", modified=now) for n in range(4)))
    status, answered, code = asyncio.run(_import(service, {"name": "peer"}, large))
    assert status == 400 and code == "invalid_bundle"
