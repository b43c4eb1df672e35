"""The operator's side: the intel endpoints and the dashboard over HTTP,
and ``guardgate intel export|import|push`` as a shell runs them (a real
gateway, a real TAXII 2.1 server), every failure one line, never a
traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import stix2

from bench.simulate import traffic
from guardgate import GuardGate
from guardgate.cli import main
from guardgate.intel import taxii as client
from guardgate.toy import create_toy_app
from tests.intel.conftest import Taxii
from tests.intel.test_feeds import bundle
from tests.intel.traffic import ADMIN_TOKEN, policy
from tests.servers import serve_in_thread

ROOT = Path(__file__).resolve().parents[2]
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
NETWORK = "198.51.100"


def shell(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``guardgate intel ARGS`` in a process of its own."""
    return subprocess.run([sys.executable, "-m", "guardgate", "intel", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "GUARDGATE_ADMIN_TOKEN": ADMIN_TOKEN, **(env or {})})


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
        ) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``guardgate intel ARGS`` in this process (as quick, and as a shell sees it)."""

    def run(*args: str, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        with monkeypatch.context() as patched:
            for name, value in {"GUARDGATE_ADMIN_TOKEN": ADMIN_TOKEN, **(env or {})}.items():
                patched.setenv(name, value)
            capsys.readouterr()
            code = main(["intel", *args])
            out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return run


def failed_cleanly(result: subprocess.CompletedProcess[str], words: str) -> bool:
    lines = result.stderr.strip().splitlines()
    return (result.returncode == 1 and len(lines) == 1 and words in lines[0]
            and "Traceback" not in result.stderr + result.stdout)


def test_the_operator_sees_which_indicators_matched_which_callers(tmp_path: Path) -> None:
    peer = json.dumps(bundle(time.time(), [NETWORK]))
    gate = GuardGate(create_toy_app(), policy=policy())
    with serve_in_thread(gate) as base:
        refused = httpx.post(base + "/_guardgate/intel/import?name=peer", content=b"{nope",
                             headers=ADMIN)
        loaded = httpx.post(base + "/_guardgate/intel/import?name=peer", content=peer,
                            headers=ADMIN)
        anonymous = httpx.get(base + "/_guardgate/intel")
        for n in range(3):
            httpx.post(base + "/v1/chat/completions",
                       json={"model": "toy-1", "messages": [{"role": "user", "content": "Hi"}]},
                       headers={"x-account-id": f"newcomer-{n}",
                                "x-forwarded-for": f"{NETWORK}.{10 + n}",
                                "x-account-created": str(int(time.time()))})
        status = httpx.get(base + "/_guardgate/intel", headers=ADMIN).json()
        account = httpx.get(base + "/_guardgate/accounts/acct:newcomer-0", headers=ADMIN).json()
        page = httpx.get(base + "/_guardgate/", cookies={"guardgate-admin": _session()}).text
        exported = httpx.get(base + "/_guardgate/intel/export?since=1h&min_tier=high",
                             headers=ADMIN)
        wrong_tier = httpx.get(base + "/_guardgate/intel/export?min_tier=severe",
                               headers=ADMIN)
    assert refused.status_code == 400 and "malformed" in refused.json()["error"]["message"]
    assert loaded.status_code == 200 and loaded.json()["indicators"] == 2
    assert anonymous.status_code == 401
    [feed] = status["feeds"]
    assert feed["name"] == "import:peer" and feed["in_force"] == 2
    [matched] = status["matched"]
    assert matched["kind"] == "prefix" and matched["value"] == f"{NETWORK}.0/24"
    assert matched["callers"] == [f"acct:newcomer-{n}" for n in (2, 1, 0)]
    signal = next(s for s in account["signals"] if s["name"] == "shared_intel")
    assert signal["contribution"] > 0
    assert account["intel"][0]["value"] == f"{NETWORK}.0/24"
    assert "Shared intelligence" in page and "acct:newcomer-1" in page
    assert exported.status_code == 200
    stix2.parse(exported.text, allow_custom=False)
    assert wrong_tier.status_code == 400 and "severe" in wrong_tier.json()["error"]["message"]


def _session() -> str:
    from guardgate.ops.dashboard import _session

    return _session(ADMIN_TOKEN)


def test_the_commands_export_import_and_push(taxii: Taxii, tmp_path: Path,
                                             cli: Callable[..., Any]) -> None:
    records, _ = traffic(7, 0.05)
    recorded = tmp_path / "a.jsonl"
    recorded.write_text("".join(json.dumps(r) + "\n" for r in records))
    policy_file = tmp_path / "a.yaml"
    policy_file.write_text(json.dumps({"upstream": "http://127.0.0.1:8000",
                                       **policy(name="provider-a")}))
    out = tmp_path / "bundle.json"

    exported = shell("export", "--policy", str(policy_file), "--replay", str(recorded),
                     "--since", "24h", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    assert "exported 1 campaign(s)" in exported.stderr
    made: dict[str, Any] = json.loads(out.read_text())
    stix2.parse(out.read_text(), allow_custom=False)
    indicators = sum(o["type"] == "indicator" for o in made["objects"])
    assert indicators >= 3

    # Recorded on 2026-01-01 and valid for a week: expired by now, said in one line.
    assert failed_cleanly(cli("import", str(out), "--policy", str(policy_file)), "expired")

    creds = {"GUARDGATE_TAXII_USER": taxii.user, "GUARDGATE_TAXII_PASSWORD": taxii.password}
    pushed = shell("push", str(out), "--collection", taxii.collection, "--json", env=creds)
    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(pushed.stdout)["failed"] == 0
    held = client.fetch(taxii.collection, taxii.user, taxii.password, 10)
    assert {o["id"] for o in made["objects"]} <= {o["id"] for o in held}

    wrong = cli("push", str(out), "--collection", taxii.collection,
                env={**creds, "GUARDGATE_TAXII_PASSWORD": "wrong-password"})
    assert failed_cleanly(wrong, "HTTP 401")
    garbage = tmp_path / "garbage.json"
    garbage.write_text('{"type": "bundle", "objects": [{"type": "indicator"}]}')
    assert failed_cleanly(cli("import", str(garbage)), "malformed")
    assert failed_cleanly(cli("push", str(garbage), "--collection", taxii.collection,
                              env=creds), "malformed")
    assert failed_cleanly(cli("import", str(tmp_path / "missing.json")), "cannot read")
    assert failed_cleanly(cli("export", "--policy", str(policy_file), "--out", str(out)),
                          "--gateway")
    assert failed_cleanly(cli("push", str(out), "--policy", str(policy_file)),
                          "no intel.publish")


def test_export_and_import_through_a_running_gateway(tmp_path: Path,
                                                     cli: Callable[..., Any]) -> None:
    peer = tmp_path / "peer.json"
    peer.write_text(json.dumps(bundle(time.time(), [NETWORK])))
    out = tmp_path / "caught.json"
    with serve_in_thread(GuardGate(create_toy_app(), policy=policy())) as base:
        exported = cli("export", "--gateway", base, "--since", "1h", "--out", str(out))
        loaded = cli("import", str(peer), "--gateway", base, "--name", "peer")
        status = httpx.get(base + "/_guardgate/intel", headers=ADMIN).json()
        unauthorized = cli("export", "--gateway", base, "--out", str(out),
                           env={"GUARDGATE_ADMIN_TOKEN": "not-the-token-0123456"})
    assert exported.returncode == 0, exported.stderr
    assert "0 indicator(s)" in exported.stderr
    stix2.parse(out.read_text(), allow_custom=False)
    assert loaded.returncode == 0 and "2 indicator(s) in force" in loaded.stdout
    assert [f["in_force"] for f in status["feeds"]] == [2]
    assert failed_cleanly(unauthorized, "401")
