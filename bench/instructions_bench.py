"""Pass-through cost in CPU instructions: guardgate vs the minimal aiohttp
pass-through, counted by valgrind, so the ratio does not move with the load
of the machine the way requests per second do.

Each server (one uvicorn worker, as `bench/proxy_bench.py` runs them) runs
under ``valgrind --tool=callgrind`` in front of nginx; a client sends
keep-alive requests over 4 connections: 200 to warm up, then N. Two runs,
N = 800 and N = 2,400, and the difference divided by 1,600 is the cost of
one request, start-up and warm-up cancelled out. The kernel's work is not
counted (it is the same for both), so on a quiet machine the throughput
ratio comes out a little above the instruction ratio.

    apt-get install -y nginx-light valgrind
    python bench/instructions_bench.py
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.proxy_bench import CHAT_BODY, ROOT, free_port, nginx, wait_port

REQUESTS = {
    "POST": (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             b"Authorization: Bearer sk-bench\r\nContent-Type: application/json\r\n"
             b"Content-Length: %d\r\n\r\n" % len(CHAT_BODY)) + CHAT_BODY.encode(),
    "GET": b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer sk-bench\r\n\r\n",
}


def send(port: int, request: bytes, count: int, connections: int = 4) -> None:
    """``count`` keep-alive requests, each answered 200, over ``connections``."""
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
    left = {s: count // connections for s in socks}
    held = {s: b"" for s in socks}
    selector = selectors.DefaultSelector()
    for s in socks:
        s.sendall(request)
        selector.register(s, selectors.EVENT_READ)
    while left:
        for key, _ in selector.select():
            s = key.fileobj
            assert isinstance(s, socket.socket)
            held[s] += s.recv(65536)
            while s in left:
                data = held[s]
                end = data.find(b"\r\n\r\n")
                if end < 0:
                    break
                head = data[:end].lower()
                length = int(re.search(rb"content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
                if len(data) < end + 4 + length:
                    break
                if not head.startswith(b"http/1.1 200"):
                    raise RuntimeError(head[:60].decode())
                held[s] = data[end + 4 + length :]
                left[s] -= 1
                if left[s] == 0:
                    selector.unregister(s)
                    del left[s]
                else:
                    s.sendall(request)
    for s in socks:
        s.close()


def instructions(command: list[str], port: int, method: str, count: int,
                 env: dict[str, str]) -> int:
    out = Path(tempfile.mkstemp(suffix=".callgrind")[1])
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--trace-children=no", f"--callgrind-out-file={out}",
         *command],
        cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        wait_port(port, timeout=120)
        send(port, REQUESTS[method], 200)
        send(port, REQUESTS[method], count)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        out.unlink(missing_ok=True)
    match = re.search(r"Collected : (\d+)", err)
    if match is None:
        raise RuntimeError(f"no callgrind total:\n{err[-2000:]}")
    return int(match.group(1))


def per_request(target: str, method: str, upstream: str) -> float:
    counts = []
    for count in (800, 2400):
        port = free_port()
        if target == "baseline":
            command = [sys.executable, "-m", "uvicorn", "bench.baseline_proxy:app", "--port",
                       str(port), "--log-level", "warning", "--no-access-log", "--loop", "uvloop",
                       "--http", "httptools"]
        else:
            command = [sys.executable, "-m", "guardgate.cli", "serve", "--upstream", upstream,
                       "--port", str(port)]
        counts.append(instructions(command, port, method, count, {"UPSTREAM": upstream}))
    return (counts[1] - counts[0]) / 1600


def main() -> int:
    upstream_port = free_port()
    upstream = f"http://127.0.0.1:{upstream_port}"
    rows = {}
    with nginx(upstream_port):
        for method in ("POST", "GET"):
            base = per_request("baseline", method, upstream)
            gate = per_request("guardgate", method, upstream)
            rows[method] = (base, gate)
            print(f"{method}: baseline {base:,.0f}, guardgate {gate:,.0f} instructions",
                  file=sys.stderr)
    print("| workload | baseline | guardgate | ratio (baseline / guardgate) |")
    print("| --- | ---: | ---: | ---: |")
    for method, (base, gate) in rows.items():
        print(f"| {method} | {base:,.0f} | {gate:,.0f} | {base / gate:.3f} |")
    print(json.dumps({m: {"baseline": round(b), "guardgate": round(g), "ratio": round(b / g, 3)}
                      for m, (b, g) in rows.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
