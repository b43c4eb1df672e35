"""The quota sections: identity's key/account headers, quotas, ramp, tiers and overrides."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from guardgate.errors import PolicyError, PolicyProblem
from guardgate.policy import load_policy, load_policy_text, policy_schema
from guardgate.policy.model import (
    OverrideConfig,
    PrincipalSource,
    QuotaConfig,
    RampConfig,
    TierConfig,
    Window,
)

POLICIES = Path(__file__).resolve().parent.parent / "policies"
DIGEST = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def problems_of(text: str) -> list[PolicyProblem]:
    with pytest.raises(PolicyError) as info:
        load_policy_text(text, env={})
    return info.value.problems


def only_problem(text: str) -> PolicyProblem:
    problems = problems_of(text)
    assert len(problems) == 1, problems
    return problems[0]


# --- identity ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("{header: x-api-key}", PrincipalSource("header", "x-api-key", "key")),
        ("{header: X-API-Key}", PrincipalSource("header", "x-api-key", "key")),
        ("{header: Api-Key}", PrincipalSource("header", "api-key", "key")),
        ("{header: X-Account-Id}", PrincipalSource("header", "x-account-id", "account")),
        ("{header: x-user, as: key}", PrincipalSource("header", "x-user", "key")),
        ("{header: x-api-key, as: account}", PrincipalSource("header", "x-api-key", "account")),
    ],
)
def test_header_source_holds_a_key_or_an_account(item: str, expected: PrincipalSource) -> None:
    policy = load_policy_text(f"identity:\n  principal: [{item}]\n")
    assert policy.identity.principal == (expected,)


def test_header_source_as_takes_key_or_account() -> None:
    problem = only_problem("identity:\n  principal: [{header: x-user, as: token}]\n")
    assert problem.where == "identity.principal[0].as"
    assert problem.message == "expected 'key' or 'account'"


def test_metadata_headers_default_and_can_be_disabled() -> None:
    default = load_policy_text("").identity
    assert (default.org_header, default.created_header) == ("x-org-id", "x-account-created")
    identity = load_policy_text("identity: {org_header: X-Team, created_header: null}\n").identity
    assert (identity.org_header, identity.created_header) == ("x-team", None)
    assert only_problem("identity: {org_header: 'x org'}\n").where == "identity.org_header"


# --- quotas --------------------------------------------------------------------


def test_several_windows_compile_to_one_quota() -> None:
    [quota] = load_policy_text("quotas: [{name: rpm, limit: 10/minute;100/hour}]\n").quotas
    assert quota == QuotaConfig(
        "rpm", windows=(Window(10, 60, "10/minute"), Window(100, 3600, "100/hour"))
    )
    assert (quota.per, quota.cost, quota.strategy, quota.concurrency) == (
        "principal",
        "requests",
        "fixed-window",
        None,
    )


def test_concurrency_quota_has_no_windows() -> None:
    [quota] = load_policy_text("quotas: [{name: parallel, per: ip, concurrency: 4}]\n").quotas
    assert quota == QuotaConfig("parallel", per="ip", concurrency=4)


def test_full_policy_compiles_the_quota_sections() -> None:
    policy = load_policy(POLICIES / "good" / "full.yaml")
    assert policy.quotas == (
        QuotaConfig(
            "rpm",
            per="ip_prefix",
            windows=(Window(10, 60, "10/minute"), Window(100, 3600, "100/hour")),
            strategy="moving-window",
        ),
        QuotaConfig(
            "tpm",
            per="org",
            windows=(Window(200000, 120, "200000 per 2 minutes"),),
            cost="output_tokens",
            strategy="sliding-window-counter",
        ),
        QuotaConfig("parallel", per="global", concurrency=16),
    )
    assert policy.default_max_tokens == 1024
    assert policy.new_principals == RampConfig(start=0.25, full_after=3 * 86400.0)
    assert policy.tiers == (
        TierConfig("watch", 0.3, quota_factor=0.5),
        TierConfig("high", 0.7, quota_factor=0.1),
        TierConfig("blocked", 0.9, deny=True),
    )
    assert policy.overrides == (
        OverrideConfig(api_key_sha256=DIGEST, tier="high"),
        OverrideConfig(principal="key:1a2b3c4d5e6f7a8b", allow=True),
        OverrideConfig(principal="acct:team-42", tier="watch"),
        OverrideConfig(ip=ipaddress.ip_network("198.51.100.0/24"), deny=True),
        OverrideConfig(ip=ipaddress.ip_network("2001:db8::1/128"), tier="blocked"),
        OverrideConfig(org="acme", allow=True),
    )


def test_policy_md_example_compiles() -> None:
    policy = load_policy(POLICIES / "good" / "quotas.yaml")
    assert [(q.name, q.cost, q.concurrency) for q in policy.quotas] == [
        ("rpm", "requests", None),
        ("tpm", "total_tokens", None),
        ("parallel", "requests", 16),
    ]
    assert [t.name for t in policy.tiers] == ["watch", "suspicious", "high", "blocked"]
    assert policy.overrides[2].ip == ipaddress.ip_network("198.51.100.0/24")


def test_quota_sections_default_to_nothing() -> None:
    policy = load_policy_text("upstream: http://127.0.0.1:8000\n")
    assert (policy.quotas, policy.tiers, policy.overrides) == ((), (), ())
    assert policy.default_max_tokens == 4096
    assert policy.new_principals is None


def test_tiers_are_ordered_by_score_whatever_the_file_order() -> None:
    policy = load_policy_text("tiers: {b: {score: 0.9}, a: {score: 0}, c: {score: 0.5}}\n")
    assert [(t.name, t.score) for t in policy.tiers] == [("a", 0.0), ("c", 0.5), ("b", 0.9)]


def test_override_principal_ids_are_normalised() -> None:
    policy = load_policy_text(
        'overrides:\n  - {principal: "ip:2001:DB8:0::1", deny: true}\n'
        '  - {principal: "key:ABCDEF0123456789", allow: true}\n'
    )
    assert [o.principal for o in policy.overrides] == ["ip:2001:db8::1", "key:abcdef0123456789"]


# --- problems --------------------------------------------------------------------

QUOTA = "quotas:\n  - {name: q, %s}\n"
TIER = "tiers:\n  t: {%s}\n"
OVERRIDE = "tiers: {t: {score: 0.5}}\noverrides:\n  - {%s}\n"


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("quotas: [{name: q}]\n", "quotas[0]", "a quota needs limit"),
        (QUOTA % "concurrency: 2, cost: total_tokens", "quotas[0].cost", "rate quotas only"),
        (QUOTA % "concurrency: 2, strategy: moving-window", "quotas[0].strategy", "rate quotas"),
        (QUOTA % "concurrency: 0", "quotas[0].concurrency", "must be at least 1"),
        (QUOTA % "limit: 0/minute", "quotas[0].limit", "at least 1 per window"),
        (QUOTA % "limit: '10/minute, 5/hour'", "quotas[0].limit", "expected a rate"),
        (QUOTA % "limit: 60", "quotas[0].limit", "expected a rate"),
        (QUOTA % "limit: 1/second, per: user", "quotas[0].per", "expected 'principal'"),
        (QUOTA % "limit: 1/second, cost: tokens", "quotas[0].cost", "expected 'requests'"),
        ("quotas: [{name: RPM, limit: 1/second}]\n", "quotas[0].name", "a quota name is"),
        ("quotas: [{limit: 1/second}]\n", "quotas[0].name", "missing required key 'name'"),
        ("default_max_tokens: 0\n", "default_max_tokens", "must be at least 1"),
        ("new_principals: {start: 0, full_after: 7d}\n", "new_principals.start", "greater than"),
        ("new_principals: {start: 1.5, full_after: 7d}\n", "new_principals.start", "at most 1"),
        ("new_principals: {start: 0.1, full_after: 0s}\n", "new_principals.full_after", "0s"),
        ("new_principals: {start: 0.1}\n", "new_principals.full_after", "missing required"),
        (TIER % "score: 1.5", "tiers.t.score", "must be at most 1"),
        (TIER % "score: 0.5, quota_factor: 0", "tiers.t.quota_factor", "greater than 0"),
        (TIER % "quota_factor: 0.5", "tiers.t.score", "missing required key 'score'"),
        (TIER % "score: 0.5, challenge: {difficulty: 18}", "tiers.t.challenge",
         "needs the challenge section"),
        (TIER % "score: 0.5, degrade: [drop_logprobz]", "tiers.t.degrade[0]",
         "unknown degrade transform 'drop_logprobz'"),
        (TIER % "score: 0.5, mark: true", "tiers.t.mark", "needs the watermark section"),
        ("tiers: {Watch: {score: 0.5}}\n", "tiers.Watch", "a tier name starts with a-z"),
        (OVERRIDE % "tier: t", "overrides[0]", "an override needs api_key_sha256"),
        (OVERRIDE % "org: acme", "overrides[0]", "an override needs tier, allow"),
        (OVERRIDE % "org: acme, allow: true, deny: true", "overrides[0].deny", "only one of"),
        (OVERRIDE % "org: acme, allow: false", "overrides[0].allow", "write true"),
        (OVERRIDE % "api_key_sha256: 9f86d0, tier: t", "overrides[0].api_key_sha256", "64 hex"),
        (OVERRIDE % "principal: 'key:1a2b', deny: true", "overrides[0].principal", "key:<16"),
        (OVERRIDE % "principal: 'ip:1.2.3', deny: true", "overrides[0].principal", "ip:<address"),
        (OVERRIDE % "principal: 'team-42', deny: true", "overrides[0].principal", "acct:<"),
        (OVERRIDE % "ip: 10.1.2.3/8, deny: true", "overrides[0].ip", "host bits"),
        (OVERRIDE % "org: '', deny: true", "overrides[0].org", "at least 1 character"),
        (OVERRIDE % "org: acme, tier: normal", "overrides[0].tier", "use allow: true"),
        ("overrides: [{org: acme, tier: t}]\n", "overrides[0].tier", "(defined: none)"),
        (OVERRIDE % "org: acme, tirer: t", "overrides[0].tirer", "did you mean 'tier'?"),
        (QUOTA % "limt: 1/second", "quotas[0].limt", "did you mean 'limit'?"),
        (QUOTA % "concurency: 2", "quotas[0].concurency", "did you mean 'concurrency'?"),
    ],
)
def test_each_problem_is_reported_at_its_place(text: str, where: str, message: str) -> None:
    problem = only_problem(text)
    assert problem.where == where
    assert message in str(problem)
    assert problem.line is not None


def test_moving_window_with_a_token_cost_says_why() -> None:
    problem = only_problem(QUOTA % "limit: 1/second, cost: input_tokens, strategy: moving-window")
    assert problem.where == "quotas[0].strategy"
    assert "token reservations must be refundable" in problem.message
    load_policy_text(QUOTA % "limit: 1/second, strategy: moving-window")  # requests are fine


def test_a_bad_tier_name_is_placed_at_the_name() -> None:
    problem = only_problem("tiers:\n  watch:\n    score: 0.3\n  normal:\n    score: 0.1\n")
    assert problem.where == "tiers.normal"
    assert (problem.line, problem.column) == (4, 3)


def test_duplicate_names_show_alongside_problems_elsewhere_in_the_list() -> None:
    problems = problems_of(
        "quotas:\n"
        "  - {name: rpm, limit: 600/minute}\n"
        "  - {name: tpm, limit: lots}\n"
        "  - {name: rpm, concurrency: 2}\n"
    )
    assert [(p.where, p.line) for p in problems] == [
        ("quotas[1].limit", 3),
        ("quotas[2].name", 4),
    ]


def test_cross_checks_run_alongside_every_other_problem() -> None:
    problems = problems_of(
        "mode: sometimes\n"
        "tiers:\n  watch: {score: 0.5}\n  high: {score: 0.5}\n"
        "overrides:\n"
        "  - {org: acme, tier: hgih}\n"
        "  - {ip: 10.0.0.0/8, org: acme, deny: true}\n"
    )
    assert [(p.where, p.line) for p in problems] == [
        ("mode", 1),
        ("tiers.high.score", 4),
        ("overrides[0].tier", 6),
        ("overrides[1].org", 7),
    ]


def test_an_unknown_tier_is_not_reported_while_tiers_is_broken() -> None:
    problem = only_problem("tiers: [watch]\noverrides: [{org: acme, tier: watch}]\n")
    assert problem.where == "tiers"


# --- the JSON Schema -----------------------------------------------------------


def test_schema_refuses_what_the_loader_refuses_in_the_quota_sections() -> None:
    validator = Draft202012Validator(policy_schema())
    for data in (
        {"quotas": [{"name": "q"}]},
        {"quotas": [{"name": "q", "limit": "1/second", "concurrency": 1}]},
        {"quotas": [{"name": "q", "concurrency": 1, "cost": "total_tokens"}]},
        {"quotas": [{"name": "q", "limit": "1/s", "cost": "total_tokens"}]},
        {
            "quotas": [
                {
                    "name": "q",
                    "limit": "1/second",
                    "cost": "output_tokens",
                    "strategy": "moving-window",
                }
            ]
        },
        {"quotas": [{"name": "Q", "limit": "1/second"}]},
        {"tiers": {"normal": {"score": 0.5}}},
        {"tiers": {"Watch": {"score": 0.5}}},
        {"tiers": {"t": {"score": 0.5, "challenge": {"difficulty": 99}}}},
        {"overrides": [{"org": "acme"}]},
        {"overrides": [{"org": "acme", "ip": "10.0.0.0/8", "deny": True}]},
        {"overrides": [{"org": "acme", "allow": False}]},
        {"overrides": [{"api_key_sha256": "9f86d0", "deny": True}]},
        {"identity": {"principal": [{"header": "x-user", "as": "token"}]}},
        {"new_principals": {"start": 0, "full_after": "7d"}},
    ):
        assert not validator.is_valid(data), data
    assert validator.is_valid(
        {"quotas": [{"name": "q", "limit": "1/second", "strategy": "moving-window"}]}
    )
