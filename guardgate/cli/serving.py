"""``guardgate serve`` and ``guardgate toy``: an app under uvicorn.

The address is bound before anything says "listening", so a port in use or
an address this machine does not have is reported in one line, and the
command exits non-zero having started nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import gc
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

from guardgate.errors import PolicyError, PolicyProblem
from guardgate.policy import load_policy, minimal_policy
from guardgate.policy.model import Policy
from guardgate.policy.units import duration_text, parse_duration

# The read deadlines' defaults (see guardgate/cli/timeouts.py).
HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 30.0

ENV_POLICY = "GUARDGATE_POLICY"
ENV_UPSTREAM = "GUARDGATE_UPSTREAM"
ENV_LOG_LEVEL = "GUARDGATE_LOG_LEVEL"
ENV_METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"

# What every server here runs with.
_UVICORN: dict[str, Any] = {
    "loop": "auto",
    "http": "auto",
    "access_log": False,
    "log_level": "warning",
    # Identity reads forwarding headers itself, trusting only its own
    # trusted_proxies; the server must hand it the real socket peer.
    "proxy_headers": False,
    # The upstream's own Server and Date headers pass through.
    "server_header": False,
    "date_header": False,
}


class CannotListen(Exception):
    """The server's address could not be bound; the message says why."""


def add_commands(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the gateway as a reverse proxy")
    serve.add_argument("--policy", metavar="FILE", help="policy file (YAML)")
    serve.add_argument("--upstream", metavar="URL", help="model endpoint; overrides the policy's")
    server_options(serve, port=8080)
    serve.set_defaults(run=serve_command)

    toy = sub.add_parser(
        "toy", help="run the toy OpenAI- and Anthropic-compatible model server alone"
    )
    toy.add_argument("--host", default="127.0.0.1", help="address to listen on")
    toy.add_argument("--port", type=_port, default=8000, help="port (default 8000)")
    toy.add_argument("--token-delay", type=float, default=0.0, metavar="SECONDS",
                     help="seconds between streamed tokens (default 0)")
    toy.add_argument("--seed", type=int, default=0, help="another seed gives other answers")
    toy.set_defaults(run=toy_command)


def server_options(parser: argparse.ArgumentParser, *, port: int) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=_port, default=port, help=f"port (default {port})")
    parser.add_argument("--workers", type=_workers, default=1,
                        help="worker processes (default 1)")
    parser.add_argument(
        "--header-timeout", type=_timeout, default=HEADER_TIMEOUT, metavar="DURATION",
        help=f"close a connection whose request head is not complete within this "
             f"(default {duration_text(HEADER_TIMEOUT)})",
    )
    parser.add_argument(
        "--body-timeout", type=_timeout, default=BODY_TIMEOUT, metavar="DURATION",
        help=f"close a connection whose request body stops arriving for this long "
             f"(default {duration_text(BODY_TIMEOUT)})",
    )
    parser.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"],
        help=f"default info, or ${ENV_LOG_LEVEL}",
    )


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("a port is a number from 0 to 65535")
    return port


def _workers(text: str) -> int:
    workers = int(text)
    if workers < 1:
        raise argparse.ArgumentTypeError("at least 1")
    return workers


def _timeout(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise argparse.ArgumentTypeError("a duration above zero, such as 10s, 500ms or 2m")
    return seconds


def resolve_policy(policy_file: str | None, upstream: str | None) -> Policy:
    """The policy ``serve`` runs: the file, the minimal policy, or the file with its
    upstream replaced."""
    if policy_file is None:
        if upstream is None:
            raise PolicyError([PolicyProblem("", "serve needs --policy FILE or --upstream URL")])
        return minimal_policy(upstream)
    policy = load_policy(policy_file)
    if upstream is not None:
        policy = replace(policy, upstream=minimal_policy(upstream).upstream)
    if policy.upstream is None:
        problem = PolicyProblem("upstream", "no upstream", hint="set upstream: or pass --upstream URL")
        raise PolicyError([problem], policy_file)
    return policy


def app_factory() -> Any:
    """Builds the app in each server worker, from the environment ``serve`` set."""
    from guardgate.gateway import GuardGate
    from guardgate.logs import configure_logging

    configure_logging(os.environ.get(ENV_LOG_LEVEL, "info"))
    policy_file, upstream = os.environ.get(ENV_POLICY), os.environ.get(ENV_UPSTREAM)
    # Given the file, the gateway watches it and reloads it when it changes.
    app = GuardGate(policy=Path(policy_file), upstream=upstream) if policy_file else \
        GuardGate(policy=resolve_policy(None, upstream))
    # Everything built so far lives as long as the process: keeping it out
    # of the collector's generations makes each collection cheaper. The
    # request path allocates many short-lived objects in reference cycles
    # (futures, tasks): collecting the youngest generation every 50,000
    # allocations rather than every 700 measured 3 to 6 % more throughput,
    # side by side in one benchmark run.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    return app


def serve_command(args: argparse.Namespace) -> int:
    policy = resolve_policy(args.policy, args.upstream)  # fail fast, before any worker starts
    sock = listen(args.host, args.port)
    if args.workers > 1 and policy.storage.startswith("memory:") and (policy.quotas or policy.tiers):
        print(f"guardgate serve: with storage {policy.storage} each of the {args.workers} "
              "workers keeps its own quota counters and risk state; set storage: "
              "redis://HOST:6379/0 to share them", file=sys.stderr)
    listening = f"guardgate listening on {base_url(sock)}"
    with stops_cleanly():
        run_gateway(args, sock, ready=lambda: print(listening, file=sys.stderr, flush=True))
    return 0


def run_gateway(args: argparse.Namespace, sock: socket.socket,
                ready: Callable[[], None] | None = None) -> None:
    """The gateway on ``sock`` in ``args.workers`` processes, each building
    its app from the environment set here."""
    for name, value in ((ENV_POLICY, args.policy), (ENV_UPSTREAM, args.upstream)):
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = os.path.abspath(value) if name == ENV_POLICY else value
    if args.log_level:
        os.environ[ENV_LOG_LEVEL] = args.log_level
    from guardgate.cli.timeouts import ReadTimeouts, timed_protocol

    timeouts = ReadTimeouts(header=args.header_timeout, body=args.body_timeout)
    _raise_descriptor_limit()
    with _shared_metrics(args.workers):
        run("guardgate.cli.serving:app_factory", sock, workers=args.workers, ready=ready,
            factory=True, lifespan="on", http=timed_protocol(timeouts))


def toy_command(args: argparse.Namespace) -> int:
    from guardgate.toy import TOY_MODEL, create_toy_app

    sock = listen(args.host, args.port)
    base = base_url(sock)
    print(_TOY_BANNER.format(base=base, model=TOY_MODEL), file=sys.stderr)
    with stops_cleanly():
        run(create_toy_app(token_delay=args.token_delay, seed=args.seed), sock, lifespan="off")
    return 0


_TOY_BANNER = """\
guardgate toy model server on {base}, model {model}.
OpenAI chat, completions and responses, Anthropic messages, streaming or not.
No model behind it: answers are sentences from a built-in bank, the same for
the same request.

  curl -s {base}/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{{"model": "{model}", "messages": [{{"role": "user", "content": "Hello"}}]}}'

Put the gateway in front of it: guardgate serve --upstream {base}
Ctrl-C stops."""


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` and listening, or `CannotListen`
    saying why not in words a person can act on."""
    where = _hostport(host, port)
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise CannotListen(
            f"cannot listen on {where}: no such address ({reason}); --host takes one of "
            "this machine's addresses, such as 127.0.0.1, or 0.0.0.0 for all of them"
        ) from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)  # uvicorn's default backlog
    except OSError as exc:
        sock.close()
        raise CannotListen(f"cannot listen on {where}: {_why(exc)}") from None
    sock.set_inheritable(True)
    return sock


def _why(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "the port is in use by another process (stop it, or choose another --port)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return ("this machine has no such address (use 127.0.0.1, 0.0.0.0 for all "
                "addresses, or one of its own)")
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges: choose --port 1024 or above)"
    return exc.strerror or str(exc)


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{_hostport(host, port)}"


def run(app: Any, sock: socket.socket, *, workers: int = 1,
        ready: Callable[[], None] | None = None, **options: Any) -> None:
    """Serve ``app`` on ``sock`` until stopped (Ctrl-C or SIGTERM); ``ready``
    is called once the app has started and connections are accepted."""
    import uvicorn

    host, port = sock.getsockname()[:2]
    settings = {**_UVICORN, **options}
    if workers > 1:
        # uvicorn's supervisor binds the socket its workers share itself, and
        # it accepts connections once a worker has started.
        sock.close()
        if ready is not None:
            threading.Thread(target=_when_accepting, args=(host, port, ready),
                             name="guardgate-ready", daemon=True).start()
        uvicorn.run(app, host=host, port=port, workers=workers, **settings)
        return

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started and ready is not None:
                ready()

    Server(uvicorn.Config(app, host=host, port=port, **settings)).run(sockets=[sock])


def _when_accepting(host: str, port: int, ready: Callable[[], None]) -> None:
    unspecified = {"0.0.0.0": "127.0.0.1", "::": "::1"}
    while True:
        try:
            socket.create_connection((unspecified.get(host, host), port), timeout=1).close()
        except OSError:
            time.sleep(0.1)
        else:
            ready()
            return


@contextlib.contextmanager
def stops_cleanly() -> Iterator[None]:
    """Ends on SIGTERM as on Ctrl-C, running the cleanup of the code inside.

    uvicorn stops gracefully on either signal, then raises it again to the
    handler it found: for SIGTERM the default one would end the process on
    the spot, leaving temporary files behind.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_descriptor_limit() -> None:
    """Every connection is a descriptor, and clients that are slow on
    purpose hold theirs until a timeout: the soft limit (often 1,024) is
    raised to the hard one, as far as the system lets it, so that they
    cannot exhaust it and lock normal clients out at accept."""
    try:
        import resource
    except ImportError:  # not on this platform
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


@contextlib.contextmanager
def _shared_metrics(workers: int) -> Iterator[None]:
    """With several workers, each keeps its metrics in files of a directory
    they share, so that any worker's /_guardgate/metrics answers for all of
    them. The directory is made for this run and removed after it."""
    if workers == 1 or os.environ.get(ENV_METRICS_DIR):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="guardgate-metrics-") as directory:
        os.environ[ENV_METRICS_DIR] = directory
        try:
            yield
        finally:
            os.environ.pop(ENV_METRICS_DIR, None)
