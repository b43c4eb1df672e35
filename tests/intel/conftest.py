"""Fixtures for threat intelligence: a real TAXII 2.1 server (medallion, its
memory backend, started on a free port for the module), and gateways driven
in process on a simulated clock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import free_port

COLLECTION = "365fed99-08fa-4dcd-a1b3-fb247eb41d01"
USER, PASSWORD = "peer", "peer-password-0123"


class Taxii:
    """A running TAXII 2.1 server with one collection a user may read and write."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.collection = f"{base}/api1/collections/{COLLECTION}/"
        self.user, self.password = USER, PASSWORD


def _data(base: str) -> dict[str, Any]:
    return {
        "/discovery": {"title": "peers", "default": f"{base}/api1/",
                       "api_roots": [f"{base}/api1/"]},
        "api1": {
            "information": {"title": "distillation campaigns",
                            "versions": ["application/taxii+json;version=2.1"],
                            "max_content_length": 10 * 1024 * 1024},
            "status": [],
            "collections": [{
                "id": COLLECTION, "title": "campaigns", "can_read": True, "can_write": True,
                "media_types": ["application/stix+json;version=2.1"],
                "objects": [], "manifest": [],
            }],
        },
    }


@pytest.fixture(scope="module")
def taxii(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Taxii]:
    """medallion with its memory backend, on a free port, for the module."""
    folder: Path = tmp_path_factory.mktemp("taxii")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    (folder / "data.json").write_text(json.dumps(_data(base)))
    config = {"backend": {"module": "medallion.backends.memory_backend",
                          "module_class": "MemoryBackend",
                          "filename": str(folder / "data.json")},
              "users": {USER: PASSWORD}, "taxii": {"max_page_size": 100}}
    (folder / "config.json").write_text(json.dumps(config))
    process = subprocess.Popen(
        [sys.executable, "-m", "medallion.scripts.run", "--port", str(port),
         str(folder / "config.json")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"},
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(base + "/taxii2/", auth=(USER, PASSWORD), timeout=1,
                             headers={"accept": "application/taxii+json;version=2.1"}
                             ).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("medallion did not start")
            time.sleep(0.1)
        yield Taxii(base)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)
