"""Pass-through throughput: direct vs a minimal aiohttp proxy vs guardgate.

All three are measured in one run, in alternating rounds, against the same
static upstream (nginx serving a chat completion body), so the ratios hold
on a noisy machine even when the absolute figures move.

    apt-get install -y nginx-light wrk
    python bench/proxy_bench.py [--duration 10] [--rounds 3] [--connections 32]

Needs nginx and wrk on PATH. Prints a table and a JSON line of the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHAT_BODY = json.dumps(
    {
        "model": "toy-1",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Explain what a reverse proxy does, in two sentences."},
        ],
        "max_tokens": 64,
    }
)

COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "toy-1",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "A reverse proxy accepts requests on behalf of servers behind it "
                    "and forwards them. It can balance load, terminate TLS and cache answers.",
                },
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 24, "completion_tokens": 28, "total_tokens": 52},
    }
)

NGINX_CONF = """
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log crit;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type application/json;
            return 200 '{body}';
        }}
    }}
}}
"""

WRK_GET = """
wrk.headers["Authorization"] = "Bearer sk-bench"
"""

WRK_POST = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port}")


@contextmanager
def process(cmd: list[str], port: int, env: dict[str, str] | None = None,
            log: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """``cmd`` in a session of its own until it listens on ``port``; its output
    goes to ``log`` (or nowhere); stopped with SIGTERM on leaving."""
    with open(log or os.devnull, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
        try:
            wait_port(port)
            yield proc
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


@contextmanager
def nginx(port: int) -> Iterator[None]:
    prefix = tempfile.mkdtemp(prefix="guardgate-bench-")
    conf = Path(prefix) / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=prefix, port=port, body=COMPLETION))
    with process(["nginx", "-p", prefix, "-c", str(conf), "-g", "daemon off;"], port):
        yield


def wrk(url: str, duration: int, connections: int, script: Path) -> float:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"errors during the run against {url}:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match:
        raise RuntimeError(f"cannot read wrk output:\n{out}")
    return float(match.group(1))


def measured(command: list[str], path: str, duration: int, connections: int, script: Path,
             env: dict[str, str] | None = None, warm_up: int = 2) -> float:
    """Requests per second of ``command`` (given ``--port``), started for the
    measurement: a warm-up run, then one of ``duration`` seconds."""
    port = free_port()
    with process([*command, "--port", str(port)], port, env=env):
        url = f"http://127.0.0.1:{port}{path}"
        wrk(url, warm_up, connections, script)
        return wrk(url, duration, connections, script)


def median_rates(commands: dict[str, list[str]], rounds: int, path: str, duration: int,
                 connections: int, script: Path, env: dict[str, str] | None = None,
                 warm_up: int = 2) -> dict[str, float]:
    """Each command's median requests per second over ``rounds``, the
    commands taking turns within each round (so load on the machine falls
    on all of them alike)."""
    results: dict[str, list[float]] = {name: [] for name in commands}
    for rnd in range(rounds):
        for name, command in commands.items():
            rps = measured(command, path, duration, connections, script, env, warm_up)
            results[name].append(rps)
            print(f"round {rnd + 1} {name:20s} {rps:8.0f} req/s", file=sys.stderr)
    return {name: statistics.median(v) for name, v in results.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            print(f"{tool} not found: apt-get install -y nginx-light wrk", file=sys.stderr)
            return 2

    upstream_port, base_port, gate_port = free_port(), free_port(), free_port()
    upstream = f"http://127.0.0.1:{upstream_port}"
    post = Path(tempfile.mkstemp(suffix=".lua")[1])
    post.write_text(WRK_POST.format(body=json.dumps(CHAT_BODY)))
    get = Path(tempfile.mkstemp(suffix=".lua")[1])
    get.write_text(WRK_GET)
    # A model route (body read and checked) and a plain pass-through route.
    workloads = {"POST /v1/chat/completions": ("/v1/chat/completions", post),
                 "GET /v1/models": ("/v1/models", get)}
    uvicorn_opts = ["--log-level", "warning", "--no-access-log", "--loop", "uvloop", "--http", "httptools"]
    results: dict[tuple[str, str], list[float]] = {}
    with (
        nginx(upstream_port),
        process(
            [sys.executable, "-m", "uvicorn", "bench.baseline_proxy:app", "--port", str(base_port),
             *uvicorn_opts],
            base_port,
            env={"UPSTREAM": upstream},
        ),
        process(
            [sys.executable, "-m", "guardgate.cli", "serve", "--upstream", upstream,
             "--port", str(gate_port)],
            gate_port,
        ),
    ):
        targets = {
            "direct": upstream_port,
            "baseline": base_port,
            "guardgate": gate_port,
        }
        for name, port in targets.items():  # warm-up
            for path, script in workloads.values():
                wrk(f"http://127.0.0.1:{port}{path}", 2, args.connections, script)
        for rnd in range(args.rounds):
            for workload, (path, script) in workloads.items():
                for name, port in targets.items():
                    rps = wrk(f"http://127.0.0.1:{port}{path}", args.duration, args.connections,
                              script)
                    results.setdefault((workload, name), []).append(rps)
                    print(f"round {rnd + 1} {workload:28s} {name:10s} {rps:10.0f} req/s",
                          file=sys.stderr)
    med = {key: statistics.median(v) for key, v in results.items()}
    print(f"\n{args.connections} connections, one worker each, "
          f"median of {args.rounds} x {args.duration}s\n")
    print("| workload | target | req/s | vs baseline |")
    print("| --- | --- | ---: | ---: |")
    summary: dict[str, float] = {}
    for (workload, name), value in med.items():
        ratio = value / med[(workload, "baseline")]
        print(f"| {workload} | {name} | {value:.0f} | {ratio:.2f} |")
        summary[f"{workload} {name}"] = round(value)
        if name == "guardgate":
            summary[f"{workload} ratio"] = round(ratio, 3)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
