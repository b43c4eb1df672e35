"""``guardgate demo``: the gateway in front of the toy model server, in one
command, leaving nothing behind.

The banner's numbers are read from the demo's policy, so what it says is
what a caller meets.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

from guardgate.cli.serving import base_url, listen, run_gateway, server_options, stops_cleanly
from guardgate.identity import key_digest
from guardgate.policy import load_policy
from guardgate.policy.model import Policy

DEMO_TOKEN = "demo-operator-token"

_POLICY = """\
# The demo's policy: a few quotas, so every answer shows its rate-limit fields,
# and risk tiers, so that a caller mining logprobs is soon throttled, then
# refused; watch only marks its answers (the watermark costs nothing to see).
upstream: {upstream}
quotas:
  - {{name: rpm, limit: 60/minute}}
  - {{name: tpm, limit: 20000/minute, cost: total_tokens}}
  - {{name: parallel, concurrency: 4}}
watermark:
  key: {key}
tiers:
  watch: {{score: 0.3, mark: true}}
  suspicious: {{score: 0.4, quota_factor: 0.25}}
  blocked: {{score: 0.5, deny: true}}
admin:
  token: {token}
"""


def add_command(sub: Any) -> None:
    demo = sub.add_parser("demo", help="the gateway in front of a built-in toy model server")
    server_options(demo, port=8000)
    demo.set_defaults(run=demo_command)


def demo_command(args: argparse.Namespace) -> int:
    sock = listen(args.host, args.port)  # before anything starts or is written
    with stops_cleanly(), tempfile.TemporaryDirectory(prefix="guardgate-demo-") as workdir:
        toy = _ToyInThread()
        try:
            policy_file = Path(workdir) / "policy.yaml"
            policy_file.write_text(_POLICY.format(upstream=toy.base, token=DEMO_TOKEN,
                                                  key=secrets.token_urlsafe(32)))
            policy = load_policy(policy_file)
            args.policy, args.upstream = str(policy_file), None
            text = banner(base_url(sock), toy.base, policy, policy_file)
            run_gateway(args, sock, ready=lambda: print(text, file=sys.stderr, flush=True))
        finally:
            toy.stop()
    return 0


class _ToyInThread:
    """The toy model server in a thread of this process, on a free port."""

    def __init__(self) -> None:
        import uvicorn

        from guardgate.toy import create_toy_app

        sock = listen("127.0.0.1", 0)
        self.base = base_url(sock)
        self._server = uvicorn.Server(uvicorn.Config(
            create_toy_app(), log_level="warning", lifespan="off", timeout_graceful_shutdown=1
        ))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="guardgate-toy", daemon=True)
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the toy model server failed to start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(5)


def banner(base: str, toy: str, policy: Policy, policy_file: Path) -> str:
    principal = "key:" + key_digest(b"sk-miner")[:16]
    limits = textwrap.fill(
        f"Quotas per key: {_quotas(policy)}. The risk score scales them: {_tiers(policy)}. "
        "curl -i shows the x-ratelimit-* and RateLimit fields: the limits applied to that "
        "key, in its tier; past them comes a 429. Even a loop repeating the first curl "
        "above soon looks scripted, and lands in a tier with smaller quotas.",
        78,
    )
    return _BANNER.format(base=base, toy=toy, token=DEMO_TOKEN, principal=principal,
                          limits=limits, policy=policy_file)


def _quotas(policy: Policy) -> str:
    parts = []
    for quota in policy.quotas:
        if quota.concurrency is not None:
            parts.append(f"{quota.concurrency} at once")
            continue
        kind = "requests" if quota.cost == "requests" else "tokens"
        for window in quota.windows:
            parts.append(f"{window.amount:,} {kind} per {_span(window.seconds)}")
    return ", ".join(parts)


def _tiers(policy: Policy) -> str:
    parts = []
    for tier in policy.tiers:
        if tier.deny:
            treatment = "refused (403)"
        elif tier.quota_factor < 1:
            treatment = f"quotas x{tier.quota_factor:g}"
        elif tier.mark:
            treatment = "answers watermarked"
        else:
            treatment = "watched"
        parts.append(f"{tier.name} (score {tier.score:g} and up) {treatment}")
    return ", ".join(parts)


def _span(seconds: int) -> str:
    names = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}
    return names.get(seconds, f"{seconds} seconds")


_BANNER = """\
guardgate demo: the gateway on {base}, in front of a toy model server at {toy}.

Try it:

  curl -s {base}/v1/chat/completions -H 'Authorization: Bearer sk-demo' \\
    -H 'Content-Type: application/json' \\
    -d '{{"model": "toy-1", "messages": [{{"role": "user", "content": "Hello"}}]}}'

  curl -sN {base}/v1/chat/completions -H 'Authorization: Bearer sk-demo' \\
    -H 'Content-Type: application/json' \\
    -d '{{"model": "toy-1", "stream": true, "messages": [{{"role": "user", "content": "Hello"}}]}}'

  curl -s {base}/_guardgate/readyz
  curl -s {base}/_guardgate/metrics | grep guardgate_

With the OpenAI SDK (python3 -m pip install openai), unchanged but for its base URL:

  python3 -c 'from openai import OpenAI; c = OpenAI(base_url="{base}/v1", api_key="sk-demo"); \\
print(c.chat.completions.create(model="toy-1", messages=[{{"role": "user", "content": "Hello"}}]).choices[0].message.content)'

{limits}

Risk: mine logprobs fifteen times and watch the tier, score and reasons in
the log climb until the key is refused (403), then ask why:

  for i in $(seq 15); do curl -s -o /dev/null -w '%{{http_code}} ' \\
    {base}/v1/chat/completions -H 'Authorization: Bearer sk-miner' \\
    -H 'Content-Type: application/json' -d '{{"model": "toy-1", "logprobs": true,
    "top_logprobs": 20, "max_tokens": 1, "temperature": 0,
    "messages": [{{"role": "user", "content": "continue: '$i'"}}]}}'; done; echo

  curl -s {base}/_guardgate/accounts/{principal} \\
    -H 'Authorization: Bearer {token}'

The policy is {policy}: edit it and the gateway reloads it.
It is removed when the demo stops. Every request is logged as one JSON line
below. Ctrl-C stops.
"""
