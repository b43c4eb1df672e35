"""Policies: YAML -> validated (every problem, with its place) -> frozen runtime objects.

    load_policy(path | dict | Policy)   a file, already-parsed data, or a Policy as is
    load_policy_text(text)              YAML text
    policy_schema()                     the JSON Schema that `guardgate schema` prints
    minimal_policy(url)                 what `guardgate serve --upstream URL` runs

Each raises `guardgate.errors.PolicyError` listing every problem found.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from guardgate.errors import PolicyError, PolicyProblem
from guardgate.policy.compile import compile_policy
from guardgate.policy.model import (
    API_NAMES,
    IdentityConfig,
    Policy,
    PrincipalSource,
    Route,
    UpstreamConfig,
)
from guardgate.policy.schema import PolicyDocument
from guardgate.policy.validate import validate_document
from guardgate.policy.yamlsrc import Decoded, decode_yaml

__all__ = [
    "API_NAMES",
    "IdentityConfig",
    "Policy",
    "PrincipalSource",
    "Route",
    "UpstreamConfig",
    "load_policy",
    "load_policy_text",
    "minimal_policy",
    "policy_schema",
]

PolicySource = str | os.PathLike[str] | Mapping[str, Any] | Policy


def load_policy(source: PolicySource, *, env: Mapping[str, str] | None = None) -> Policy:
    """Load a policy from a YAML file path, from already-parsed data, or return a Policy as is.

    ``${NAME}`` references in a file are taken from ``env`` (default
    ``os.environ``); already-parsed data is used as given, without references.
    """
    if isinstance(source, Policy):
        return source
    if isinstance(source, Mapping):
        data = dict(source)
        return _finish(Decoded(data=data), "<policy>", lambda: _canonical_digest(data))
    name = os.fspath(source)
    try:
        raw = Path(name).read_bytes()
        text = raw.decode("utf-8")
    except OSError as exc:
        hint = None
        if isinstance(source, str) and ("\n" in source or ": " in source):
            hint = "this looks like YAML text: use load_policy_text"
        reason = exc.strerror or str(exc)
        problem = PolicyProblem("", f"cannot read the policy file: {reason}", hint=hint)
        raise PolicyError([problem], name) from None
    except UnicodeDecodeError as exc:
        problem = PolicyProblem("", f"the policy file is not UTF-8 text (byte {exc.start})")
        raise PolicyError([problem], name) from None
    decoded = decode_yaml(text, os.environ if env is None else env)
    return _finish(decoded, name, lambda: hashlib.sha256(raw).hexdigest())


def load_policy_text(
    text: str, *, source: str = "<policy>", env: Mapping[str, str] | None = None
) -> Policy:
    """Load a policy from YAML text; ``source`` names it in errors and in `Policy.source`."""
    decoded = decode_yaml(text, os.environ if env is None else env)
    return _finish(decoded, source, lambda: hashlib.sha256(text.encode()).hexdigest())


def minimal_policy(upstream_url: str) -> Policy:
    """Every default, forwarding to ``upstream_url``."""
    return load_policy({"upstream": upstream_url})


def policy_schema() -> dict[str, Any]:
    """The policy's JSON Schema (draft 2020-12), for editors and `guardgate schema`."""
    schema = PolicyDocument.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def _finish(decoded: Decoded, source: str, digest: Callable[[], str]) -> Policy:
    document, problems = validate_document(decoded)
    if document is None:
        raise PolicyError(problems, source)
    return compile_policy(document, source=source, digest=digest())


def _canonical_digest(data: Mapping[str, Any]) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()
