"""The tests and benchmarks never touch data they did not create: without
GUARDGATE_TEST_REDIS the Redis tests run on a redis-server of their own,
and no benchmark or test names the shared server at 127.0.0.1:6379."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_redis_tests_run_on_a_server_of_their_own(redis_url: str) -> None:
    if os.environ.get("GUARDGATE_TEST_REDIS"):
        pytest.skip("GUARDGATE_TEST_REDIS names the server: its database is the tests'")
    assert not re.search(r":6379(/|$)", redis_url), redis_url


@pytest.mark.parametrize("folder", ["bench", "tests"])
def test_no_benchmark_or_test_names_the_shared_server(folder: str) -> None:
    named = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path.name != Path(__file__).name and re.search(
            r"redis://(127\.0\.0\.1|localhost)(:6379)?/", path.read_text())
    ]
    assert named == []
