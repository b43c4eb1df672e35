"""The ``intel`` section: every key compiles, the defaults are what the
reference says, and its mistakes are reported like every other section's
(tests/policies/bad/intel_mistakes.yaml)."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardgate.errors import PolicyError
from guardgate.policy import load_policy, load_policy_text, policy_schema
from guardgate.policy.intel_config import (
    KINDS,
    FeedConfig,
    IntelConfig,
    IntelSignalConfig,
    PublishConfig,
)

POLICIES = Path(__file__).resolve().parent.parent / "policies"
TIERS = "tiers:\n  watch: {score: 0.3}\n  suspicious: {score: 0.5}\n  high: {score: 0.7}\n"


def test_every_intel_key_compiles() -> None:
    intel = load_policy(POLICIES / "good" / "full.yaml").intel
    assert intel == IntelConfig(
        name="Provider A", share=("template", "system"), match=("template", "prefix"),
        salt="a-salt-shared-by-peers", ipv4_prefix=16, ipv6_prefix=32, min_tier="blocked",
        min_accounts=5, min_share=0.9, valid_for=2 * 86400.0, ledger_size=500,
        ledger_ttl=86400.0,
        feeds=(
            FeedConfig("isac", None, "https://taxii.example.org/api1/collections/"
                       "91a7b528-80eb-42ed-a74d-c6fbd5a26116/", "reader", "reader-password",
                       60.0, 5.0),
            FeedConfig("peer.json", "/etc/guardgate/peer.json"),
        ),
        publish=PublishConfig("https://taxii.example.org/api1/collections/"
                              "00000000-0000-4000-8000-000000000001/", "writer",
                              "writer-password", 60.0),
        signal=IntelSignalConfig(0.3, 86400.0, 50),
    )


def test_the_defaults_share_every_kind_from_the_first_tier_at_half() -> None:
    intel = load_policy_text(TIERS + "intel: {}\n").intel
    assert intel == IntelConfig(min_tier="suspicious")
    assert intel.share == intel.match == KINDS and "org" not in KINDS
    low = load_policy_text("tiers: {watch: {score: 0.2}, hot: {score: 0.4}}\nintel: {}\n").intel
    assert low is not None and low.min_tier == "hot"  # none at 0.5: the highest
    assert load_policy_text(TIERS).intel is None


def test_intel_needs_tiers() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy_text("intel: {}\n")
    [problem] = info.value.problems
    assert (problem.where, problem.message) == ("intel", "intel needs risk scoring: define tiers")


def test_credentials_come_from_the_environment() -> None:
    text = TIERS + ("intel:\n  feeds:\n    - taxii: https://t.example/api1/collections/c/\n"
                    "      user: ${TAXII_USER}\n      password: ${TAXII_PASSWORD}\n")
    intel = load_policy_text(text, env={"TAXII_USER": "u", "TAXII_PASSWORD": "p"}).intel
    assert intel is not None and (intel.feeds[0].user, intel.feeds[0].password) == ("u", "p")
    assert intel.feeds[0].name == "t.example/c"
    with pytest.raises(PolicyError) as info:
        load_policy_text(text, env={})
    assert {p.where for p in info.value.problems} == {"intel.feeds[0].user",
                                                      "intel.feeds[0].password"}


def test_the_schema_names_the_kinds() -> None:
    schema = policy_schema()
    share = schema["$defs"]["IntelSection"]["properties"]["share"]
    assert share["items"]["enum"] == list(KINDS)
