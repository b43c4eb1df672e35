"""Fuzzing every parser the gateway has, with hypothesis, reproducibly.

Targets, each fed generated inputs and allowed only its documented outcome:

- ``body``: the four API adapters on raw bodies (JSON of any shape, deep
  nesting, huge arrays, giant strings, invalid UTF-8, duplicate keys, numbers
  at the limits): a `ModelCall`, or `RequestError` (a 400 in the API's shape).
  Parsed calls then go through the risk features.
- ``headers``: identification from arbitrary header values and peers: an
  `Identity`, always.
- ``policy``: YAML policy text: a `Policy`, or `PolicyError`.
- ``tokens``: challenge solutions and clearance tokens: `TokenError` or
  ValueError (malformed), never anything else.
- ``operator``: the operator API on arbitrary paths, methods, headers and
  bodies: a reply, never an exception.

    python bench/fuzz.py [--examples 100000] [--seed 1]

``--examples`` is the total, shared among the targets by `SHARES`. A failure
raises with the input that caused it (hypothesis prints it, shrunk).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from guardgate.apis import ADAPTERS
from guardgate.challenge import puzzle
from guardgate.challenge.tokens import Signer, TokenError
from guardgate.decide import Decider
from guardgate.errors import PolicyError, RequestError
from guardgate.identity import Identifier
from guardgate.ops.admin import Operator
from guardgate.policy import load_policy, load_policy_text
from guardgate.policy.model import IdentityConfig
from guardgate.risk.features import extract
from guardgate.store.overrides import MemoryOverrides

_scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=200),
    st.sampled_from(["user", "system", "assistant", "developer", "text", "image_url",
                     "thinking", "tool_result", "message", "input_text"]),
)
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=8),
        st.dictionaries(
            st.sampled_from(["model", "messages", "role", "content", "prompt", "input", "type",
                             "text", "max_tokens", "max_completion_tokens", "stream",
                             "stream_options", "logprobs", "top_logprobs", "logit_bias", "n",
                             "temperature", "seed", "reasoning", "reasoning_effort", "thinking",
                             "budget_tokens", "system", "tools", "x"]) | st.text(max_size=10),
            inner, max_size=8),
    ),
    max_leaves=40,
)


@st.composite
def bodies(draw: Any) -> bytes:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.binary(max_size=400))  # anything, invalid UTF-8 included
    if kind == 1:
        depth = draw(st.integers(1, 3000))
        return b'{"messages":' + b"[" * depth + b"]" * depth + b"}"
    if kind == 2:
        size = draw(st.integers(1, 20000))
        return orjson.dumps({"messages": [{"role": "user", "content": "x"}] * size})
    if kind == 3:
        return b'{"messages": [], "messages": 5, "max_tokens": 1, "max_tokens": -1}'
    value = draw(_json)
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return b"{}"


def _run(check: Callable[..., None], examples: int, at: int, *strategies: Any) -> int:
    """``check`` on ``examples`` inputs drawn from ``strategies`` with the
    seed ``at``; returns how many it ran (an exception fails the run)."""
    ran = 0

    def counted(*args: Any, **kwargs: Any) -> None:
        nonlocal ran
        ran += 1
        check(*args, **kwargs)

    counted.__signature__ = inspect.signature(check)  # type: ignore[attr-defined]
    settle = settings(max_examples=examples, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
    seed(at)(settle(given(*strategies)(counted)))()
    return ran


def fuzz_body(examples: int, at: int) -> int:
    adapters = list(ADAPTERS.values())

    def check(adapter: Any, body: bytes) -> None:
        try:
            call = adapter.parse(body)
        except RequestError:
            return
        extract(call)

    return _run(check, examples, at, st.sampled_from(adapters), bodies())


def fuzz_headers(examples: int, at: int) -> int:
    from ipaddress import ip_network

    identifier = Identifier(IdentityConfig(trusted_proxies=(ip_network("10.0.0.0/8"),)))
    names = st.sampled_from([b"authorization", b"x-api-key", b"x-forwarded-for", b"user-agent",
                             b"x-org-id", b"x-account-created", b"x-account-id", b"cookie"])

    def check(headers: dict[bytes, bytes], peer: str) -> None:
        identifier.identify({"client": (peer, 0)}, headers)

    return _run(check, examples, at,
                st.dictionaries(names, st.binary(max_size=300), max_size=8),
                st.one_of(st.just("10.1.2.3"), st.just("::1"), st.text(max_size=40)))


_policy_keys = st.sampled_from([
    "version", "upstream", "storage", "mode", "identity", "routes", "quotas", "tiers",
    "overrides", "risk", "challenge", "watermark", "admin", "max_body", "on_storage_error",
])


def fuzz_policy(examples: int, at: int) -> int:
    import yaml

    def check(text: str) -> None:
        try:
            load_policy_text(text, env={})
        except PolicyError:
            pass

    return _run(check, examples, at, st.one_of(
        st.text(max_size=300),
        st.dictionaries(_policy_keys, _json, max_size=6).map(
            lambda d: yaml.safe_dump(d, allow_unicode=True)),
    ))


def fuzz_tokens(examples: int, at: int) -> int:
    signer = Signer("k1", "fuzzing-secret-0123456789")
    pieces = st.text(alphabet="ggck1.-_=+/ABCDEFabcdef0123456789\x00\u00e9", max_size=200)

    def check(text: str) -> None:
        for kind in (signer.open_challenge, signer.open_clearance):
            try:
                kind(text)
            except TokenError:
                pass
        try:
            puzzle.split(text)
        except ValueError:
            pass

    return _run(check, examples, at, st.one_of(pieces, st.text(max_size=300)))


def fuzz_operator(examples: int, at: int) -> int:
    decider = Decider(load_policy({"tiers": {"watch": {"score": 0.3}}}))
    operator = Operator("operator-token-0123456789", None, None, MemoryOverrides(), decider)
    token = [(b"authorization", b"Bearer operator-token-0123456789")]

    def check(path: str, method: str, authorized: bool, body: bytes) -> None:
        asyncio.run(operator.handle(path, method, token if authorized else [], body))

    paths = st.one_of(st.text(max_size=80), st.sampled_from(
        ["accounts", "accounts/", "accounts/x/revoke", "overrides", "overrides/x"]))
    return _run(check, examples, at, paths,
                st.sampled_from(["GET", "PUT", "POST", "DELETE", "PATCH"]),
                st.booleans(), st.binary(max_size=200))


TARGETS = {"body": fuzz_body, "headers": fuzz_headers, "policy": fuzz_policy,
           "tokens": fuzz_tokens, "operator": fuzz_operator}
# Policy validation is the slowest target (about 15 ms an input): it gets fewer.
SHARES = {"body": 0.3, "headers": 0.2, "policy": 0.1, "tokens": 0.2, "operator": 0.2}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100_000, help="inputs in all")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    total = 0
    for name, target in TARGETS.items():
        began = time.perf_counter()
        count = target(max(1, round(args.examples * SHARES[name])), args.seed)
        total += count
        print(f"{name}: {count} inputs, no failure ({time.perf_counter() - began:.0f} s)",
              file=sys.stderr)
    print(f"{total} generated inputs across {len(TARGETS)} targets (seed {args.seed}): "
          f"no unhandled exception")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
