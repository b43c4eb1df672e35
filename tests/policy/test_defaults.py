"""Each policy fact is written once: defaults, default routes, API and signal names.

The runtime dataclasses hold the defaults; the schema sections, and so the
JSON Schema that `guardgate schema` prints, take theirs from there. These
tests load what the JSON Schema says and compare it with the dataclasses.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from guardgate.apis import ADAPTERS
from guardgate.policy import load_policy, policy_schema
from guardgate.policy.catalogue import CLUSTER_KINDS, SIGNALS
from guardgate.policy.model import (
    API_NAMES,
    DEFAULT_ROUTES,
    ChallengeConfig,
    Policy,
    QuotaConfig,
    RiskConfig,
    TierConfig,
    UpstreamConfig,
    default_of,
)
from guardgate.policy.units import duration_text, parse_duration, parse_size, size_text
from guardgate.risk.signals import Scorer
from guardgate.store.risk import Snapshot

SECRET = "s" * 32


def schema_defaults(section: str | None = None) -> dict[str, Any]:
    """The defaults the JSON Schema gives a section (the document itself without one),
    leaving out keys whose default is null: absent and null mean the same there."""
    schema = policy_schema()
    properties = schema["properties"] if section is None else schema["$defs"][section]["properties"]
    return {
        key: spec["default"]
        for key, spec in properties.items()
        if "default" in spec and spec["default"] is not None
    }


def test_a_document_of_the_schema_defaults_is_the_default_policy() -> None:
    policy = load_policy(schema_defaults())
    assert policy == dataclasses.replace(Policy(), digest=policy.digest)


def test_the_upstream_defaults_in_the_schema_are_the_runtime_ones() -> None:
    url = "http://127.0.0.1:8000"
    written = schema_defaults("UpstreamSection")
    assert set(written) == {"connect_timeout", "read_timeout", "max_connections"}
    assert load_policy({"upstream": {"url": url, **written}}).upstream == UpstreamConfig(url)


def test_the_challenge_defaults_in_the_schema_are_the_runtime_ones() -> None:
    written = schema_defaults("ChallengeSection")
    assert {"key_id", "ttl", "difficulty", "issue_limit", "clearance"} <= set(written)
    challenge = load_policy({"challenge": {"secret": SECRET, **written}}).challenge
    assert challenge == ChallengeConfig(SECRET)
    # A section left at its defaults compiles to the same.
    assert load_policy({"challenge": {"secret": SECRET}}).challenge == ChallengeConfig(SECRET)


def test_a_partial_clearance_budget_keeps_the_runtime_default_for_the_rest() -> None:
    policy = load_policy(
        {"challenge": {"secret": SECRET, "clearance": {"budget": {"requests": 5}}}}
    )
    assert policy.challenge is not None
    assert policy.challenge.requests == 5
    assert policy.challenge.output_tokens == default_of(ChallengeConfig, "output_tokens")


def test_the_quota_and_tier_defaults_in_the_schema_are_the_runtime_ones() -> None:
    quota = {"name": "rpm", "limit": "10/minute", **schema_defaults("QuotaSection")}
    tier_defaults = schema_defaults("TierSection")
    tier = {
        "score": 0.5,
        "quota_factor": tier_defaults["quota_factor"],
        "deny": tier_defaults["deny"],
    }
    policy = load_policy({"quotas": [quota], "tiers": {"watch": tier}})
    assert dataclasses.replace(policy.quotas[0], windows=()) == QuotaConfig("rpm")
    assert policy.tiers == (TierConfig("watch", 0.5),)
    assert tier_defaults["mark"] == default_of(TierConfig, "mark")


def test_the_risk_defaults_in_the_schema_are_the_runtime_ones() -> None:
    written = schema_defaults("RiskSection")
    assert load_policy({"risk": written}).risk == RiskConfig()
    cluster = schema_defaults("ClusterRiskSection")
    assert (cluster["low"], cluster["high"]) == RiskConfig().cluster_risk


def test_durations_and_sizes_are_shown_as_a_policy_file_writes_them() -> None:
    document = policy_schema()["properties"]
    upstream = policy_schema()["$defs"]["UpstreamSection"]["properties"]
    assert document["max_body"]["default"] == "8MiB"
    assert upstream["connect_timeout"]["default"] == "5s"
    assert parse_duration(upstream["read_timeout"]["default"]) == default_of(
        UpstreamConfig, "read_timeout"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (5, "5s"),
        (120, "2m"),
        (900, "15m"),
        (21600, "6h"),
        (604800, "7d"),
        (0.5, "500ms"),
        (90, "90s"),
        (1.25, "1250ms"),
        (0, "0s"),
    ],
)
def test_duration_text(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("size", "text"),
    [(8 << 20, "8MiB"), (65536, "64KiB"), (1 << 30, "1GiB"), (1000, "1000B"), (1536, "1536B")],
)
def test_size_text(size: int, text: str) -> None:
    assert size_text(size) == text
    assert parse_size(text) == size


def test_route_apis_are_the_adapters() -> None:
    assert API_NAMES == tuple(ADAPTERS)
    route = policy_schema()["$defs"]["RouteSection"]["properties"]["api"]
    assert route["enum"] == list(ADAPTERS)
    assert {route.api for route in DEFAULT_ROUTES} <= set(ADAPTERS)
    assert Policy().routes == DEFAULT_ROUTES


def test_signal_names_are_the_catalogue() -> None:
    names = [signal.name for signal in SIGNALS]
    risk = policy_schema()["$defs"]["RiskSection"]["properties"]["signals"]
    assert risk["propertyNames"]["enum"] == names
    assert [signal.name for signal in RiskConfig().signals] == names
    assert [f"{kind}_cluster" for kind in CLUSTER_KINDS] == [s.name for s in SIGNALS if s.cluster]


def test_risk_computes_every_signal_of_the_catalogue() -> None:
    fresh = Snapshot(
        n=1,
        reasoning=0,
        harvest=0,
        single=1,
        input_tokens=0,
        output_tokens=0,
        answered=0,
        first=0,
        gaps=0,
        gap_mean=0,
        gap_var=0,
        tier="",
        requests=1,
        templates=1,
        prompts=1,
        hours=1,
        clusters=[],
    )
    raw = Scorer(RiskConfig()).raw(fresh, 0.0, None)
    assert sorted(raw) == sorted(signal.name for signal in SIGNALS if not signal.cluster)
