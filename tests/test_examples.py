"""Examples stay true: their policies load and the middleware app serves."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from guardgate import load_policy
from tests.servers import serve_in_thread

EXAMPLES = Path(__file__).parent.parent / "examples"
# What the examples take from the environment.
SECRETS = {
    "GUARDGATE_SECRET": "example-secret-0123456789",
    "GUARDGATE_WATERMARK_KEY": "example-watermark-0123456789",
    "GUARDGATE_ADMIN_TOKEN": "example-admin-token-0123456789",
}


@pytest.mark.parametrize("path", sorted((EXAMPLES / "policies").glob("*.yaml")), ids=lambda p: p.name)
def test_example_policy_loads(path: Path) -> None:
    policy = load_policy(path, env=SECRETS)
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


def test_the_compose_and_kubernetes_examples_hold_together() -> None:
    import yaml

    from guardgate.policy import load_policy_text

    compose = yaml.safe_load((EXAMPLES / "compose.yaml").read_text())
    gateway = compose["services"]["guardgate"]
    mounted = gateway["volumes"][0].split(":")[0]
    policy = load_policy(EXAMPLES / mounted, env=SECRETS)
    assert policy.upstream is not None and policy.upstream.url == "http://model:8000"
    assert policy.storage == "redis://redis:6379/0"
    assert set(SECRETS) <= set(gateway["environment"])

    documents = list(yaml.safe_load_all((EXAMPLES / "kubernetes" / "pod.yaml").read_text()))
    config_map = next(d for d in documents if d["kind"] == "ConfigMap")
    pod = next(d for d in documents if d["kind"] == "Pod")
    sidecar = next(c for c in pod["spec"]["containers"] if c["name"] == "guardgate")
    assert sidecar["readinessProbe"]["httpGet"]["path"] == "/_guardgate/readyz"
    assert sidecar["volumeMounts"][0]["mountPath"] == "/etc/guardgate"  # the image's policy path
    in_pod = load_policy_text(config_map["data"]["policy.yaml"], env=SECRETS)
    assert in_pod.upstream is not None and in_pod.upstream.url == "http://127.0.0.1:8000"
    assert any(tier.mark for tier in in_pod.tiers)


def test_fastapi_example_serves_through_the_gateway() -> None:
    from examples.fastapi_app import app

    with serve_in_thread(app) as base:
        response = httpx.post(base + "/v1/chat/completions",
                              json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
                              headers={"authorization": "Bearer sk-example"})
        denied = httpx.post(base + "/v1/chat/completions", content=b"{not json")
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"].startswith("You asked")
    assert response.headers["x-ratelimit-limit-requests"] == "120"
    assert denied.status_code == 400  # the gateway refuses broken JSON before the app


def test_the_dockerfile_is_small_non_root_and_runs_serve() -> None:
    root = Path(__file__).resolve().parent.parent
    lines = [line.strip() for line in (root / "Dockerfile").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0].startswith("FROM ") and "slim" in lines[0]
    for line in lines:
        if line.startswith("COPY"):
            for source in line.split()[1:-1]:
                assert (root / source).exists(), source
    user = next(line for line in lines if line.startswith("USER"))
    assert user.split()[1] not in ("root", "0")
    assert any(line.startswith("HEALTHCHECK") for line in lines)
    entry = next(line for line in lines if line.startswith("ENTRYPOINT"))
    assert '"guardgate", "serve"' in entry
    cmd = next(line for line in lines if line.startswith("CMD ["))
    assert "/etc/guardgate/policy.yaml" in cmd
    # The compose file and the pod mount the policy where the image reads it.
    import yaml

    compose = yaml.safe_load((EXAMPLES / "compose.yaml").read_text())
    assert compose["services"]["guardgate"]["volumes"][0].endswith(
        ":/etc/guardgate/policy.yaml:ro")
    assert compose["services"]["guardgate"]["build"] == ".."
