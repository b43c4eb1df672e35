"""``guardgate init``: a commented starter policy, and what to do next.

``examples/policies/starter.yaml`` is what ``guardgate init`` writes by
default (a test keeps them equal).
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

import yaml

from guardgate.errors import PolicyError, PolicyProblem
from guardgate.policy import load_policy_text

DEFAULT_UPSTREAM = "http://127.0.0.1:8000"
DEFAULT_OUTPUT = "policy.yaml"

STARTER = """\
# A guardgate policy, written by `guardgate init`: fair quotas for every key,
# and risk tiers that ask for proof of work, then degrade and watermark, then
# refuse callers who look like they are distilling the model.
#
# guardgate check policy.yaml   every problem, with its line
# guardgate schema              the JSON Schema, for an editor's completion
#
# Secrets come from the environment and never appear here:
#   GUARDGATE_SECRET          signs challenges and the clearances they buy
#   GUARDGATE_WATERMARK_KEY   marks answers; keep it to detect them later
#   GUARDGATE_ADMIN_TOKEN     bearer token of the operator API, /_guardgate/
version: 1

upstream: {upstream}    # the model server guardgate protects

# shadow: every decision is made and logged (action: would_throttle,
# would_challenge, would_block, ...) but nothing is enforced. Read the log,
# backtest recorded traffic with `guardgate replay`, tune the tiers, then
# set mode: enforce.
mode: shadow

storage: memory://               # this process only; redis://HOST:6379/0 shares
                                 # counters and risk state between replicas or --workers
on_storage_error: open           # storage down: let traffic through (closed: refuse, 503)

identity:
  principal: [bearer, {header: x-api-key}, {header: api-key}, ip]   # who a caller is: the first present wins
  trusted_proxies: [127.0.0.1/32]                # whose X-Forwarded-For is believed

quotas:
  - {name: rpm, limit: 600/minute}                          # requests per key
  - {name: tpm, limit: 200000/minute, cost: total_tokens}   # tokens per key
  - {name: parallel, concurrency: 16}                       # requests in flight per key

# Tiers by risk score, from 0 to 1; below the lowest, a caller is "normal".
# A tier's quota_factor scales every quota for its callers.
tiers:
  watch: {score: 0.3, quota_factor: 0.5}
  suspicious:
    score: 0.5
    quota_factor: 0.25
    challenge: {difficulty: 16}  # proof of work: scripts solve it with guardgate.client
                                 # or `guardgate solve`, browsers get a page
  high:
    score: 0.7
    quota_factor: 0.1
    challenge: {difficulty: 20}
    degrade: [drop_logprobs, drop_reasoning, {clamp_max_tokens: 512}]
    mark: true                   # watermark the answers: `guardgate detect` finds it
  blocked: {score: 0.9, deny: true}

challenge:
  secret: ${GUARDGATE_SECRET}

watermark:
  key: ${GUARDGATE_WATERMARK_KEY}

admin:
  token: ${GUARDGATE_ADMIN_TOKEN}
"""

SECRETS = tuple(re.findall(r"\$\{(\w+)\}", STARTER))


def add_command(sub: Any) -> None:
    init = sub.add_parser("init", help="write a commented starter policy to edit")
    init.add_argument("--upstream", metavar="URL", default=DEFAULT_UPSTREAM,
                      help=f"the model server to protect (default {DEFAULT_UPSTREAM})")
    init.add_argument("--output", "-o", metavar="FILE", default=DEFAULT_OUTPUT,
                      help=f"where to write it (default {DEFAULT_OUTPUT}; - for standard output)")
    init.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    init.set_defaults(run=init_command)


def starter_policy(upstream: str = DEFAULT_UPSTREAM) -> str:
    """The starter policy for ``upstream``, checked to load once its secrets are set."""
    text = STARTER.replace("{upstream}", _yaml_scalar(upstream), 1)
    # Any value will do for a secret here: this checks the rest.
    load_policy_text(text, source="the starter policy", env=dict.fromkeys(SECRETS, "x" * 32))
    return text


def _yaml_scalar(value: str) -> str:
    try:
        plain = yaml.safe_load(f"v: {value}") == {"v": value}
    except yaml.YAMLError:
        plain = False
    return value if plain else yaml.safe_dump(value, default_style='"').strip()


def init_command(args: argparse.Namespace) -> int:
    try:
        text = starter_policy(args.upstream)
    except PolicyError as err:
        for problem in err.problems:
            print(f"guardgate init: {_upstream_problem(problem)}", file=sys.stderr)
        return 1
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    try:
        with open(args.output, "w" if args.force else "x", encoding="utf-8") as out:
            out.write(text)
    except FileExistsError:
        print(f"guardgate init: {args.output} exists; pass --force to overwrite it, "
              "or --output to write elsewhere", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"guardgate init: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
        return 1
    print(next_steps(args.output, args.upstream))
    return 0


def _upstream_problem(problem: PolicyProblem) -> str:
    # The only value taken from the command line is the upstream.
    if problem.where.startswith("upstream"):
        hint = f" ({problem.hint})" if problem.hint else ""
        return f"--upstream: {problem.message}{hint}"
    return str(problem)


def next_steps(path: str, upstream: str) -> str:
    quoted = f"'{path}'" if re.search(r"[^\w./-]", path) else path
    exports = "\n".join(
        f"       export {name}=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
        for name in SECRETS
    )
    return f"""\
Wrote {path}: quotas and risk tiers for {upstream},
in shadow mode (every decision is logged, none is enforced yet).

Next:
  1. Set the secrets it reads from the environment (keep them: answers marked
     with one watermark key are detected with that same key):
{exports}
  2. guardgate check {quoted}
  3. guardgate serve --policy {quoted}
     and point clients at http://127.0.0.1:8080 instead of {upstream}.
     No model server yet? guardgate toy runs a toy one on {DEFAULT_UPSTREAM}.
  4. Read the log's would_* actions, or backtest recorded traffic with
     guardgate replay --policy {quoted} TRAFFIC.jsonl; then set mode: enforce."""
