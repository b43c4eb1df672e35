"""The ``guardgate`` command."""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from guardgate.errors import PolicyError, PolicyProblem
from guardgate.identity import key_digest
from guardgate.policy import load_policy, minimal_policy, policy_schema
from guardgate.policy.model import Policy

ENV_POLICY = "GUARDGATE_POLICY"
ENV_UPSTREAM = "GUARDGATE_UPSTREAM"
ENV_LOG_LEVEL = "GUARDGATE_LOG_LEVEL"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        result: int = args.run(args)
    except PolicyError as err:
        print(err, file=sys.stderr)
        return 1
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="guardgate",
        description="A gateway that protects model APIs from distillation.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the gateway as a reverse proxy")
    serve.add_argument("--policy", metavar="FILE", help="policy file (YAML)")
    serve.add_argument("--upstream", metavar="URL", help="model endpoint; overrides the policy's")
    _server_options(serve, port=8080)
    serve.set_defaults(run=_serve)

    demo = sub.add_parser("demo", help="the gateway in front of a built-in toy model server")
    _server_options(demo, port=8000)
    demo.set_defaults(run=_demo)

    check = sub.add_parser("check", help="validate a policy file; print every problem")
    check.add_argument("file", metavar="FILE")
    check.set_defaults(run=_check)

    schema = sub.add_parser("schema", help="print the policy's JSON Schema")
    schema.set_defaults(run=_schema)

    replay = sub.add_parser(
        "replay", help="backtest a policy on recorded traffic (JSON lines); print decisions"
    )
    replay.add_argument("--policy", metavar="FILE", required=True, help="policy file (YAML)")
    replay.add_argument("traffic", metavar="TRAFFIC.jsonl", help="recorded traffic, - for stdin")
    replay.add_argument(
        "--out", metavar="DECISIONS.jsonl", help="write decisions here (default: standard output)"
    )
    replay.add_argument("--json", action="store_true", help="print the summary as JSON")
    replay.set_defaults(run=_replay)

    solve = sub.add_parser(
        "solve", help="solve a challenge; print the GuardGate-Solution header value"
    )
    solve.add_argument("challenge", metavar="CHALLENGE",
                       help='the token from WWW-Authenticate: GuardGate-PoW challenge="..."')
    solve.add_argument("--difficulty", type=float,
                       help="the challenge's difficulty (default: read from the token)")
    solve.set_defaults(run=_solve)

    detect = sub.add_parser(
        "detect", help="look for the watermark of a key in texts or JSON lines of answers"
    )
    detect.add_argument("--key", required=True, help="the watermark key (as in watermark.key)")
    detect.add_argument("files", metavar="FILE", nargs="+",
                        help="text files, or .jsonl files of answers (OpenAI or Anthropic)")
    detect.add_argument("--json", action="store_true", help="print the evidence as JSON")
    detect.set_defaults(run=_detect)
    return parser


def _server_options(parser: argparse.ArgumentParser, *, port: int) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=port, help=f"port (default {port})")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )


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


def _run_server(args: argparse.Namespace) -> None:
    import uvicorn

    uvicorn.run(
        "guardgate.cli:app_factory",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers if args.workers > 1 else None,
        loop="auto",
        http="auto",
        lifespan="on",
        access_log=False,
        log_level="warning",
        # Identity reads forwarding headers itself, trusting only its own
        # trusted_proxies; the server must hand it the real socket peer.
        proxy_headers=False,
        # The upstream's own Server and Date headers pass through.
        server_header=False,
        date_header=False,
    )


def _serve(args: argparse.Namespace) -> int:
    resolve_policy(args.policy, args.upstream)  # fail fast, before any worker starts
    for name, value in ((ENV_POLICY, args.policy), (ENV_UPSTREAM, args.upstream)):
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = os.path.abspath(value) if name == ENV_POLICY else value
    os.environ.setdefault(ENV_LOG_LEVEL, args.log_level)
    if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Workers keep their metrics in shared files, so that any worker's
        # /_guardgate/metrics answers for all of them.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="guardgate-metrics-")
    print(f"guardgate listening on http://{args.host}:{args.port}", file=sys.stderr)
    _run_server(args)
    return 0


def _demo(args: argparse.Namespace) -> int:
    import uvicorn

    from guardgate.toy import create_toy_app

    config = uvicorn.Config(
        create_toy_app(), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
    )
    toy = uvicorn.Server(config)
    thread = threading.Thread(target=toy.run, daemon=True)
    thread.start()
    while not toy.started:
        if not thread.is_alive():
            print("the toy model server failed to start", file=sys.stderr)
            return 1
        threading.Event().wait(0.02)
    toy_port = toy.servers[0].sockets[0].getsockname()[1]
    upstream = f"http://127.0.0.1:{toy_port}"
    policy = Path(tempfile.mkstemp(prefix="guardgate-demo-", suffix=".yaml")[1])
    policy.write_text(_DEMO_POLICY.format(upstream=upstream, token=DEMO_TOKEN))
    args.policy, args.upstream = str(policy), upstream
    base = f"http://{args.host}:{args.port}"
    principal = "key:" + key_digest(b"sk-miner")[:16]
    print(_DEMO_BANNER.format(base=base, toy=args.upstream, token=DEMO_TOKEN,
                              principal=principal), file=sys.stderr)
    try:
        return _serve(args)
    finally:
        toy.should_exit = True


_DEMO_POLICY = """\
# The demo's policy: a few quotas, so every answer shows its rate-limit fields,
# and risk tiers, so that a caller mining logprobs is soon throttled, then refused.
upstream: {upstream}
quotas:
  - {{name: rpm, limit: 60/minute}}
  - {{name: tpm, limit: 20000/minute, cost: total_tokens}}
  - {{name: parallel, concurrency: 4}}
tiers:
  watch: {{score: 0.3, quota_factor: 0.5}}
  suspicious: {{score: 0.5, quota_factor: 0.25}}
  blocked: {{score: 0.6, deny: true}}
admin:
  token: {token}
"""
DEMO_TOKEN = "demo-operator-token"

_DEMO_BANNER = """\
guardgate demo: the gateway on {base}, in front of a toy model server at {toy}.

Try it:

  curl -s {base}/v1/chat/completions -H 'Authorization: Bearer sk-demo' \\
    -H 'Content-Type: application/json' \\
    -d '{{"model": "toy-1", "messages": [{{"role": "user", "content": "Hello"}}]}}'

  curl -sN {base}/v1/chat/completions -H 'Authorization: Bearer sk-demo' \\
    -H 'Content-Type: application/json' \\
    -d '{{"model": "toy-1", "stream": true, "messages": [{{"role": "user", "content": "Hello"}}]}}'

  python -c 'from openai import OpenAI; c = OpenAI(base_url="{base}/v1", api_key="sk-demo"); \\
print(c.chat.completions.create(model="toy-1", messages=[{{"role": "user", "content": "Hello"}}]).choices[0].message.content)'

  curl -s {base}/_guardgate/readyz
  curl -s {base}/_guardgate/metrics | grep guardgate_

Quotas: 60 requests and 20,000 tokens a minute per key, 4 at once; see the
x-ratelimit-* and RateLimit fields with curl -i, and a 429 past the limit.

Risk: mine logprobs fifteen times and watch the tier, score and reasons in
the log climb until the key is refused (403), then ask why:

  for i in $(seq 15); do curl -s -o /dev/null -w '%{{http_code}} ' \\
    {base}/v1/chat/completions -H 'Authorization: Bearer sk-miner' \\
    -H 'Content-Type: application/json' -d '{{"model": "toy-1", "logprobs": true,
    "top_logprobs": 20, "max_tokens": 1, "temperature": 0,
    "messages": [{{"role": "user", "content": "continue: '$i'"}}]}}'; done; echo

  curl -s {base}/_guardgate/accounts/{principal} \\
    -H 'Authorization: Bearer {token}'

Every request is logged as one JSON line below. Ctrl-C stops.
"""


def _check(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(args.file)
    except PolicyError as err:
        for problem in err.problems:
            print(f"{args.file}: {problem}")
        print(f"{len(err.problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{args.file}: ok (policy {policy.digest[:12]})")
    return 0


def _schema(args: argparse.Namespace) -> int:
    print(json.dumps(policy_schema(), indent=2))
    return 0



def _replay(args: argparse.Namespace) -> int:
    import asyncio

    from guardgate.replay import Replay, read_records

    policy = load_policy(args.policy)
    replay = Replay(policy)
    try:
        source = sys.stdin.buffer if args.traffic == "-" else open(args.traffic, "rb")  # noqa: SIM115
    except OSError as exc:
        print(f"guardgate replay: cannot read {args.traffic}: {exc.strerror}", file=sys.stderr)
        return 1
    out = open(args.out, "wb") if args.out else sys.stdout.buffer  # noqa: SIM115
    summary_to = sys.stdout if args.out else sys.stderr

    async def run() -> None:
        for record in read_records(source):
            line = await replay.decide(record)
            if line is not None:
                out.write(orjson.dumps(line) + b"\n")

    try:
        asyncio.run(run())
    finally:
        out.flush()
        if args.out:
            out.close()
        if source is not sys.stdin.buffer:
            source.close()
    if args.json:
        print(json.dumps(replay.summary.as_dict()), file=summary_to)
    else:
        print(replay.summary.text(), file=summary_to)
    return 0


def _solve(args: argparse.Namespace) -> int:
    from guardgate.challenge.puzzle import solve
    from guardgate.challenge.tokens import CHALLENGE, TokenError, read_difficulty

    token = args.challenge.strip().strip('"')
    difficulty = args.difficulty
    if difficulty is None:
        try:
            difficulty = read_difficulty(token)
        except TokenError as err:
            print(f"guardgate solve: not a {CHALLENGE} challenge token ({err.reason})",
                  file=sys.stderr)
            return 1
    print(solve(token, difficulty))
    return 0


def _detect(args: argparse.Namespace) -> int:
    from guardgate.perturb.texts import answer_texts
    from guardgate.perturb.watermark import Detector

    detector = Detector(args.key.encode())
    for name in args.files:
        try:
            raw = Path(name).read_bytes()
        except OSError as exc:
            print(f"guardgate detect: cannot read {name}: {exc.strerror}", file=sys.stderr)
            return 1
        for text in answer_texts(raw, jsonl=name.endswith((".jsonl", ".ndjson"))):
            detector.feed(text)
    evidence = detector.evidence()
    if args.json:
        print(json.dumps(evidence.as_dict()))
    else:
        print(f"slots scored: {evidence.slots}\nhits: {evidence.hits} "
              f"(expected without the key: {evidence.expected:.1f})\n"
              f"z-score: {evidence.z:.2f}\np-value: {evidence.p_value:.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
