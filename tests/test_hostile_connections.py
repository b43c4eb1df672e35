"""Slow clients against a real ``guardgate serve`` process: a head sent a
byte at a time, a body that stops, a connection that says nothing. Each is
closed after its read deadline, and while they wait, normal clients are
served as usual.
"""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from guardgate.toy import create_toy_app
from tests.servers import free_port, running, serve_in_thread

HEADER_TIMEOUT = 3.0
BODY_TIMEOUT = 2.0
SLOW_CLIENTS = 1000
CHAT = {"model": "toy-1", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 16}
BODY = httpx.Request("POST", "http://x", json=CHAT).content
HEAD = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\n"
        b"Content-Type: application/json\r\nAuthorization: Bearer sk-slow-client\r\n"
        b"Content-Length: %d\r\n\r\n" % len(BODY))


@pytest.fixture(scope="module")
def gateway(toy: str) -> Iterator[tuple[str, int]]:
    _enough_descriptors(SLOW_CLIENTS + 500)
    port = free_port()
    with running("serve", "--upstream", toy, "--header-timeout", f"{HEADER_TIMEOUT:g}s",
                 "--body-timeout", f"{BODY_TIMEOUT:g}s", port=port):
        yield f"http://127.0.0.1:{port}", port


def _enough_descriptors(needed: int) -> None:
    """This process's descriptor limit, and so the gateway's it starts,
    raised to ``needed`` when the soft limit is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"the descriptor limit is {hard}, below the {needed} this test needs")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(4096) == b""
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True


def _send(sock: socket.socket, data: bytes) -> None:
    try:
        sock.send(data)
    except OSError:
        pass  # closed by the server, seen by _closed_by_server


def _served_in(base: str) -> float:
    """Seconds for a normal client, on a new connection, to get its answer."""
    began = time.monotonic()
    response = httpx.post(f"{base}/v1/chat/completions", json=CHAT, timeout=10)
    took = time.monotonic() - began
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"]
    return took


def _answer(sock: socket.socket) -> bytes:
    """One whole answer with a Content-Length, read from a blocking socket."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(65536)
    head, _, body = answer.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return answer[:len(head) + 4] + body


def test_a_thousand_slow_heads_neither_lock_out_normal_clients_nor_stay_open(
    gateway: tuple[str, int],
) -> None:
    base, port = gateway
    slow: list[socket.socket] = []
    opened: list[float] = []
    closed: dict[int, float] = {}
    try:
        for _ in range(SLOW_CLIENTS):
            slow.append(_connect(port))
            opened.append(time.monotonic())
            _send(slow[-1], HEAD[:1])
        sent = 1
        # While every slow client is still sending its head, a byte at a
        # time, new normal clients are served within a second.
        took = []
        while time.monotonic() < opened[0] + HEADER_TIMEOUT - 0.6 or not took:
            for sock in slow:
                _send(sock, HEAD[sent:sent + 1])
            sent += 1
            took.append(_served_in(base))
            time.sleep(0.15)
        held = [sock for sock in slow if not _closed_by_server(sock)]
        assert len(held) == SLOW_CLIENTS, "slow clients were closed before their deadline"
        assert max(took) < 1.0, took
        # They keep trickling bytes; the server closes each after the deadline.
        deadline = opened[-1] + HEADER_TIMEOUT + 3.0
        while len(closed) < SLOW_CLIENTS and time.monotonic() < deadline:
            for i, sock in enumerate(slow):
                if i not in closed:
                    if _closed_by_server(sock):
                        closed[i] = time.monotonic()
                    else:
                        _send(sock, HEAD[sent:sent + 1])
            sent += 1
            time.sleep(0.1)
        assert sent < len(HEAD), "a head was completed: the test sent too fast"
        assert len(closed) == SLOW_CLIENTS, f"{SLOW_CLIENTS - len(closed)} still open"
        early = [closed[i] - opened[i] for i in closed if closed[i] - opened[i] < HEADER_TIMEOUT - 0.2]
        assert not early, f"{len(early)} closed before the header timeout"
        assert _served_in(base) < 1.0
    finally:
        for sock in slow:
            sock.close()


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    gateway: tuple[str, int],
) -> None:
    _, port = gateway
    with socket.create_connection(("127.0.0.1", port), timeout=HEADER_TIMEOUT + 3) as sock:
        began = time.monotonic()
        assert sock.recv(4096) == b""
        assert HEADER_TIMEOUT - 0.2 < time.monotonic() - began < HEADER_TIMEOUT + 0.8


def test_a_body_that_stops_is_closed_after_the_body_timeout(gateway: tuple[str, int]) -> None:
    _, port = gateway
    with socket.create_connection(("127.0.0.1", port), timeout=BODY_TIMEOUT + 3) as sock:
        sock.sendall(HEAD + BODY[:10])
        began = time.monotonic()
        assert sock.recv(4096) == b""  # no answer: the connection is closed
        assert BODY_TIMEOUT - 0.2 < time.monotonic() - began < BODY_TIMEOUT + 0.8


def test_a_slow_body_that_keeps_moving_is_served(gateway: tuple[str, int]) -> None:
    """The body deadline is for silence, not for the whole body: a third of
    it at a time, for longer than the timeout, and the answer comes."""
    _, port = gateway
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(HEAD)
        third = len(BODY) // 3 + 1
        began = time.monotonic()
        for i in range(0, len(BODY), third):
            time.sleep(BODY_TIMEOUT * 0.4)
            sock.sendall(BODY[i:i + third])
        assert time.monotonic() - began > BODY_TIMEOUT
        assert _answer(sock).startswith(b"HTTP/1.1 200 ")


def test_a_head_split_across_reads_on_a_kept_alive_connection_is_served(
    gateway: tuple[str, int],
) -> None:
    """The deadline times each request from its first byte: a second request
    on the connection, sent in pieces after the first was answered, is served."""
    _, port = gateway
    request = HEAD + BODY
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for _ in range(2):
            time.sleep(0.5)
            for i in range(0, len(request), 40):
                sock.sendall(request[i:i + 40])
                time.sleep(0.05)
            assert _answer(sock).startswith(b"HTTP/1.1 200 ")


def test_a_response_longer_than_the_timeouts_is_not_cut() -> None:
    """The deadlines are for reading requests: a stream that takes longer
    than both is relayed whole."""
    port = free_port()
    with (
        serve_in_thread(create_toy_app(token_delay=0.1)) as slow_toy,
        running("serve", "--upstream", slow_toy, "--header-timeout", "1s", "--body-timeout", "1s",
                port=port),
    ):
        began = time.monotonic()
        with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/chat/completions",
                          json={**CHAT, "stream": True, "max_tokens": 30}, timeout=20) as response:
            text = "".join(response.iter_text())
        assert time.monotonic() - began > 2.0
        assert response.status_code == 200
        assert text.rstrip().endswith("data: [DONE]")


def test_closures_make_one_log_line_not_one_each(toy: str) -> None:
    port = free_port()
    with running("serve", "--upstream", toy, "--header-timeout", "500ms", port=port) as proc:
        quiet = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(20)]
        try:
            for sock in quiet:
                assert sock.recv(4096) == b""
        finally:
            for sock in quiet:
                sock.close()
    out, _ = proc.communicate(timeout=10)
    lines = [json.loads(line) for line in out.splitlines() if "slow clients closed" in line]
    assert len(lines) == 1, lines
    assert lines[0]["level"] == "warning"
    assert lines[0]["reason"] == "header_timeout"
    assert lines[0]["seconds"] == 0.5


@pytest.mark.parametrize("value", ["0", "-1s", "soon"])
def test_a_timeout_that_is_not_a_positive_duration_is_refused(value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "guardgate.cli", "serve", "--upstream", "http://127.0.0.1:9",
         f"--header-timeout={value}"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    assert "--header-timeout: a duration above zero" in result.stderr
    assert "Traceback" not in result.stderr
