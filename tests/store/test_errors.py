"""`StorageError` is what every backend raises, whatever its client raised;
nothing outside `guardgate/store/` names a Redis or `limits` exception."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from limits import parse

from guardgate.errors import StorageError
from guardgate.store import open_store
from guardgate.store.risk import Clock, Observation, Record
from tests.servers import free_port

PACKAGE = Path(__file__).resolve().parents[2] / "guardgate"


def test_nothing_outside_the_store_names_a_backend_exception() -> None:
    named = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "store" or "store" in path.relative_to(PACKAGE).parts[:1]:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and (
                    node.module.split(".")[0] == "redis" or node.module == "limits.errors"):
                named.append(f"{path.name}: from {node.module}")
            if isinstance(node, ast.Import) and any(
                    a.name.split(".")[0] == "redis" or a.name == "limits.errors"
                    for a in node.names):
                named.append(f"{path.name}: import")
            if isinstance(node, ast.Name | ast.Attribute) and (
                    getattr(node, "id", None) or getattr(node, "attr", None)) in (
                    "RedisError", "RedisClusterException", "STORAGE_ERRORS"):
                named.append(f"{path.name}:{node.lineno}")
    assert named == []


@pytest.mark.parametrize("scheme", ["redis", "redis+cluster"])
async def test_every_operation_of_an_unreachable_redis_raises_storage_error(
        scheme: str) -> None:
    store = open_store(f"{scheme}://127.0.0.1:{free_port()}")
    state = store.risk_state(Clock(3600, 3600))
    clearances = store.clearances()
    overrides = store.overrides()
    obs = Observation("key:a", 1e9, 0, 0, 1, "t", "p", (("prefix", "x"),))
    operations = {
        "windows.hit": store.windows.hit("k", 60, 1),
        "windows.get": store.windows.get("k"),
        "windows.settle": store.windows.settle("k", 1e9, -1, 60),
        "limiter.hit": store.limiter("fixed-window").hit(parse("1/minute"), "a"),
        "limiter.stats": store.limiter("moving-window").get_window_stats(parse("1/minute"), "a"),
        "slots.acquire": store.slots.acquire("{s}", 1, "h"),
        "slots.release": store.slots.release("{s}", "h"),
        "clearances.redeem": clearances.redeem("key:a", "c", 60),
        "clearances.spend": clearances.spend("key:a", "k", 0, 1, 1, 60),
        "clearances.revoke": clearances.revoke("key:a"),
        "clearances.epoch": clearances.epoch("key:a"),
        "overrides.all": overrides.all(),
        "overrides.set": overrides.set("key:a", {"deny": True}),
        "overrides.remove": overrides.remove("key:a"),
        "risk.observe": state.observe(obs),
        "risk.peek": state.peek("key:a"),
        "risk.top": state.top(3),
        "risk.forget": state.forget("key:a"),
        "first_seen.get": store.first_seen().get("key:a", 1e9),
    }
    raised = {}
    for name, operation in operations.items():
        try:
            await operation
        except Exception as exc:  # noqa: BLE001 - what it raises is the test
            raised[name] = type(exc).__name__
        else:
            raised[name] = "nothing"
    # What waits to be settled fails later, in the background: logged and
    # counted, never raised into a request.
    await state.record(Record("key:a", 1e9, "", False, b"[]", None, ()))
    await store.settlements.drain()
    assert store.settlements.failures == 1
    assert await store.ready() is False
    await store.close()
    assert raised == dict.fromkeys(operations, StorageError.__name__)
