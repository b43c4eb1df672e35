"""Examples stay true: their policies load and the middleware app serves."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from guardgate import load_policy
from tests.servers import serve_in_thread

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.mark.parametrize("path", sorted((EXAMPLES / "policies").glob("*.yaml")), ids=lambda p: p.name)
def test_example_policy_loads(path: Path) -> None:
    policy = load_policy(path)
    assert policy.upstream is not None


def test_middleware_example_serves() -> None:
    from examples.middleware_app import app

    with serve_in_thread(app) as base:
        response = httpx.post(
            base + "/v1/chat/completions",
            json={"model": "toy-1", "messages": [{"role": "user", "content": "Hi"}]},
            headers={"authorization": "Bearer sk-example"},
        )
        broken = httpx.post(base + "/v1/chat/completions", content=b"{",
                            headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"]
    assert broken.status_code == 400
    assert broken.json()["error"]["type"] == "invalid_request_error"


def test_the_readme_signal_table_is_the_catalogue() -> None:
    from guardgate.risk.catalogue import markdown_table

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert markdown_table() in readme
