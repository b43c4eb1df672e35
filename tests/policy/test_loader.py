"""The policy loader: YAML -> every problem with its place -> frozen runtime objects."""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from guardgate.errors import PolicyError, PolicyProblem
from guardgate.policy import load_policy, load_policy_text, minimal_policy, policy_schema
from guardgate.policy.catalogue import SIGNALS
from guardgate.policy.model import (
    IdentityConfig,
    Policy,
    PrincipalSource,
    Route,
    RoutingConfig,
    UpstreamConfig,
)
from guardgate.policy.units import parse_duration, parse_rates, parse_size

POLICIES = Path(__file__).resolve().parent.parent / "policies"
GOOD = sorted((POLICIES / "good").glob("*.yaml"))
BAD = sorted((POLICIES / "bad").glob("*.yaml"))
EXPECT = re.compile(r"^# expect: line (\d+): (.+)$", re.MULTILINE)


def problems_of(text: str, env: dict[str, str] | None = None) -> list[PolicyProblem]:
    with pytest.raises(PolicyError) as info:
        load_policy_text(text, env=env or {})
    return info.value.problems


def only_problem(text: str, env: dict[str, str] | None = None) -> PolicyProblem:
    problems = problems_of(text, env)
    assert len(problems) == 1, problems
    return problems[0]


# --- the policy files -------------------------------------------------------


def test_policy_files_exist() -> None:
    assert len(GOOD) >= 4
    assert len(BAD) >= 10


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_good_policy_loads(path: Path) -> None:
    policy = load_policy(path, env={})
    assert isinstance(policy, Policy)
    assert policy.source == str(path)
    assert policy.digest == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_bad_policy_fails_where_its_comments_say(path: Path) -> None:
    text = path.read_text()
    assert text.startswith("# "), "a bad policy says what is wrong on its first line"
    expected = [(int(line), what) for line, what in EXPECT.findall(text)]
    assert expected, "a bad policy lists its problems in '# expect: line N: ...' comments"
    with pytest.raises(PolicyError) as info:
        load_policy(path, env={})
    assert info.value.source == str(path)
    problems = info.value.problems
    assert len(problems) == len(expected), problems
    for (line, what), problem in zip(expected, problems, strict=True):
        assert problem.line == line, problem
        assert what in str(problem)


def test_three_mistakes_are_reported_together_each_at_its_line() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(POLICIES / "bad" / "three_mistakes.yaml")
    problems = info.value.problems
    assert [(p.where, p.line) for p in problems] == [
        ("upstream.read_timeout", 6),
        ("identity.ip_prefix.ipv4", 10),
        ("mode", 11),
    ]
    assert all(p.column is not None for p in problems)
    assert "3 problem(s)" in str(info.value)


# --- problems, their places and hints ------------------------------------------


def test_unknown_key_is_placed_at_the_key_with_the_closest_valid_key_as_hint() -> None:
    problem = only_problem("mode: shadow\nupstrem: http://127.0.0.1:8000\n")
    assert problem.where == "upstrem"
    assert problem.message == "unknown key 'upstrem'"
    assert problem.hint == "did you mean 'upstream'?"
    assert (problem.line, problem.column) == (2, 1)


def test_unknown_nested_key_hint_comes_from_its_own_section() -> None:
    problem = only_problem("identity:\n  ip_prefix:\n    ip4: 24\n")
    assert problem.where == "identity.ip_prefix.ip4"
    assert problem.hint == "did you mean 'ipv4'?"
    assert (problem.line, problem.column) == (3, 5)


def test_unknown_key_without_a_close_match_has_no_hint() -> None:
    problem = only_problem("zebra: 1\n")
    assert problem.message == "unknown key 'zebra'"
    assert problem.hint is None


def test_misspelt_key_is_not_also_reported_missing() -> None:
    problem = only_problem("identity:\n  principal:\n    - hedaer: x-api-key\n")
    assert problem.where == "identity.principal[0].hedaer"
    assert problem.hint == "did you mean 'header'?"


def test_missing_key_is_placed_at_its_parent() -> None:
    problem = only_problem("mode: shadow\nupstream:\n  connect_timeout: 5s\n")
    assert problem.where == "upstream.url"
    assert problem.message == "missing required key 'url'"
    assert problem.line == 2


def test_messages_are_short_and_human() -> None:
    problems = problems_of(
        "max_body: -1\non_storage_error: maybe\nidentity:\n  ip_prefix: {ipv6: x}\n"
        "  principal: []\nroutes: {path: /x}\n"
    )
    assert [(p.where, p.message) for p in problems] == [
        ("max_body", "expected a size like 64KiB, 8MiB or 1GiB"),
        ("on_storage_error", "expected 'open' or 'closed'"),
        ("identity.ip_prefix.ipv6", "expected a whole number"),
        ("identity.principal", "needs at least 1 item(s)"),
        ("routes", "expected a list"),
    ]
    assert not any("Input should" in p.message or "pydantic" in p.message for p in problems)


def test_duplicate_keys_are_reported_even_nested() -> None:
    problem = only_problem("upstream:\n  url: http://a:1\n  url: http://b:2\n")
    assert problem.where == "upstream.url"
    assert problem.message == "duplicate key 'url' (first given on line 2)"
    assert (problem.line, problem.column) == (3, 3)


def test_duplicate_routes_are_reported_alongside_other_route_problems() -> None:
    problems = problems_of(
        "routes:\n"
        "  - {path: /a, api: openai.chat}\n"
        "  - {path: /b, api: nope}\n"
        "  - {path: /a, api: openai.responses}\n"
    )
    assert [(p.where, p.line) for p in problems] == [("routes[1].api", 3), ("routes[2].path", 4)]


def test_yaml_syntax_error_has_line_and_column() -> None:
    problem = only_problem("upstream: http://127.0.0.1:8000\nmode: [shadow\n")
    assert problem.message.startswith("YAML syntax error")
    assert problem.line == 3
    assert problem.column is not None


def test_tabs_get_a_hint() -> None:
    problem = only_problem("identity:\n\tip_prefix: {}\n")
    assert problem.line == 2
    assert problem.hint == "indent with spaces, not tabs"


@pytest.mark.parametrize("text", ["- a\n- b\n", "just words\n", "42\n"])
def test_top_level_must_be_a_mapping(text: str) -> None:
    problem = only_problem(text)
    assert problem.where == ""
    assert problem.message.startswith("a policy is a mapping of keys")


def test_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    problem = only_problem("\n".join(lines) + "\n")
    assert "too large" in problem.message


def test_errors_from_dict_data_have_paths_but_no_places() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy({"identity": {"trusted_proxies": ["nope"]}})
    [problem] = info.value.problems
    assert problem.where == "identity.trusted_proxies[0]"
    assert problem.line is None


# --- environment references ----------------------------------------------------


def test_env_reference_is_replaced() -> None:
    policy = load_policy_text(
        "upstream: http://${HOST}:8000\nmax_body: ${BODY}\n",
        env={"HOST": "10.1.2.3", "BODY": "1KiB"},
    )
    assert policy.upstream is not None
    assert policy.upstream.url == "http://10.1.2.3:8000"
    assert policy.max_body == 1024


def test_unset_env_reference_is_a_problem_at_its_place_not_an_empty_string() -> None:
    problem = only_problem("mode: shadow\nupstream:\n  url: ${UPSTREAM_URL}\n", env={})
    assert problem.where == "upstream.url"
    assert problem.message == "environment variable UPSTREAM_URL is not set"
    assert (problem.line, problem.column) == (3, 8)


def test_double_dollar_escapes_a_literal_reference() -> None:
    policy = load_policy_text("upstream: http://127.0.0.1:8000/$${X}\n", env={"X": "no"})
    assert policy.upstream is not None
    assert policy.upstream.url == "http://127.0.0.1:8000/${X}"


def test_malformed_reference_is_a_problem() -> None:
    problem = only_problem("upstream: http://${not closed\n")
    assert problem.where == "upstream"
    assert problem.hint == "write '$${' for a literal '${'"


def test_env_defaults_to_the_process_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GUARDGATE_TEST_UPSTREAM", "https://upstream.test")
    path = tmp_path / "policy.yaml"
    path.write_text("upstream: ${GUARDGATE_TEST_UPSTREAM}\n")
    policy = load_policy(path)
    assert policy.upstream is not None
    assert policy.upstream.url == "https://upstream.test"
    monkeypatch.delenv("GUARDGATE_TEST_UPSTREAM")
    with pytest.raises(PolicyError):
        load_policy(path)


def test_env_values_never_appear_in_problems() -> None:
    secret = "hunter2-very-secret"
    problems = problems_of(
        "upstream: ${UP}\nstorage: ${STORE}\n",
        env={"UP": f"ftp://user:{secret}@host", "STORE": f"mongodb://u:{secret}@db"},
    )
    assert len(problems) == 2
    assert all(secret not in str(p) for p in problems)


# --- compiled values -----------------------------------------------------------


def test_full_policy_compiles_every_value() -> None:
    policy = load_policy(POLICIES / "good" / "full.yaml")
    assert policy.upstream == UpstreamConfig(
        url="https://models.internal:8443/base",
        connect_timeout=1.5,
        read_timeout=900.0,
        max_connections=64,
    )
    assert policy.max_body == 64 * 1024
    assert policy.storage == "rediss://cache.internal:6380/2"
    assert policy.on_storage_error == "closed"
    assert policy.mode == "shadow"
    assert policy.identity == IdentityConfig(
        principal=(
            PrincipalSource("header", "x-account-id", "account"),
            PrincipalSource("bearer"),
            PrincipalSource("header", "x-api-key", "key"),
            PrincipalSource("header", "x-customer-key", "key"),
            PrincipalSource("header", "api-key", "account"),
            PrincipalSource("ip"),
        ),
        trusted_proxies=(
            ipaddress.ip_network("127.0.0.1/32"),
            ipaddress.ip_network("10.0.0.0/8"),
            ipaddress.ip_network("2001:db8::/32"),
            ipaddress.ip_network("::1/128"),
        ),
        ipv4_prefix=16,
        ipv6_prefix=64,
        org_header="x-tenant",
        created_header=None,
        credential="x-customer-key",
    )
    assert policy.routes[1] == Route("/openai/v1/completions", "openai.completions")
    assert len(policy.routes) == 4
    assert policy.routing == RoutingConfig(case_sensitive=True, unknown="deny")
    risk = policy.risk
    assert (risk.enabled, risk.half_life, risk.window, risk.hysteresis) == (
        True, 3 * 3600.0, 2 * 3600.0, 0.1)
    assert (risk.member_score, risk.cluster_risk) == (0.25, (0.2, 0.5))
    assert risk.max_callers == 5000
    signals = {s.name: s for s in risk.signals}
    assert len(signals) == len(SIGNALS)  # every signal, given or default
    assert (signals["logprob_harvest"].weight, signals["logprob_harvest"].low) == (0.5, 0.4)
    assert (signals["volume"].weight, signals["volume"].low, signals["volume"].high) == (
        0.15, 100, 1000)
    assert signals["agent_cluster"].weight == 0
    assert policy.admin.token == "full-policy-operator-token"


def test_anchors_merge_keys_and_overrides() -> None:
    policy = load_policy(POLICIES / "good" / "anchors.yaml")
    assert policy.upstream == UpstreamConfig("http://127.0.0.1:8000", 2.0, 2.0)
    assert policy.max_body == 1048576


@pytest.mark.parametrize("text", ["", "# only a comment\n", "{}\n", "---\n"])
def test_empty_document_means_every_default(text: str) -> None:
    policy = load_policy_text(text, source="empty.yaml")
    assert policy == dataclasses.replace(Policy(), source="empty.yaml", digest=policy.digest)
    assert policy.digest == hashlib.sha256(text.encode()).hexdigest()


def test_policy_is_frozen_all_the_way_down() -> None:
    policy = load_policy(POLICIES / "good" / "full.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.mode = "enforce"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.identity.ipv4_prefix = 8  # type: ignore[misc]
    assert policy.upstream is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.upstream.read_timeout = 1.0  # type: ignore[misc]
    assert isinstance(policy.routes, tuple)
    assert isinstance(policy.identity.principal, tuple)
    assert isinstance(policy.identity.trusted_proxies, tuple)


# --- sources -------------------------------------------------------------------


def test_dict_source_and_its_digest_ignores_key_order() -> None:
    first = load_policy({"mode": "shadow", "upstream": "http://127.0.0.1:8000"})
    second = load_policy({"upstream": "http://127.0.0.1:8000", "mode": "shadow"})
    assert first.mode == "shadow"
    assert first.digest == second.digest
    assert len(first.digest) == 64
    assert first.digest != load_policy({"mode": "enforce"}).digest


def test_dict_data_is_used_as_given_without_env_references() -> None:
    policy = load_policy({"upstream": "http://127.0.0.1:8000/${X}"}, env={"X": "y"})
    assert policy.upstream is not None
    assert policy.upstream.url.endswith("/${X}")


def test_policy_source_is_returned_as_is() -> None:
    policy = minimal_policy("http://127.0.0.1:8000")
    assert load_policy(policy) is policy


def test_str_and_path_sources_are_files() -> None:
    path = POLICIES / "good" / "minimal.yaml"
    assert load_policy(str(path)) == load_policy(path)


def test_missing_file_is_one_problem(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    [problem] = info.value.problems
    assert problem.message.startswith("cannot read the policy file")
    assert info.value.source == str(path)


def test_yaml_text_passed_as_a_path_gets_a_hint() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy("upstream: http://127.0.0.1:8000")
    assert info.value.problems[0].hint == "this looks like YAML text: use load_policy_text"


def test_minimal_policy() -> None:
    policy = minimal_policy("http://127.0.0.1:8000")
    expected = Policy(upstream=UpstreamConfig("http://127.0.0.1:8000"))
    assert policy == dataclasses.replace(expected, digest=policy.digest)
    with pytest.raises(PolicyError):
        minimal_policy("127.0.0.1:8000")


# --- the JSON Schema -----------------------------------------------------------


def test_schema_is_valid_json_schema_and_accepts_the_good_policies() -> None:
    schema = policy_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "guardgate policy"
    validator = Draft202012Validator(schema)
    for path in GOOD:
        data = yaml.safe_load(path.read_text()) or {}
        errors = [e.message for e in validator.iter_errors(data)]
        assert not errors, (path.name, errors)


def test_schema_refuses_what_the_loader_refuses() -> None:
    validator = Draft202012Validator(policy_schema())
    for data in (
        {"upstrem": "http://127.0.0.1:8000"},
        {"max_body": "8 megs"},
        {"upstream": {"url": "http://x", "connect_timeout": "5 seconds"}},
        {"routes": [{"path": "/a", "api": "openai.chats"}]},
        {"identity": {"principal": ["cookie"]}},
        {"version": 2},
        {"storage": "mongodb://db"},
    ):
        assert not validator.is_valid(data), data


def test_every_schema_property_is_described() -> None:
    schema = policy_schema()

    def undescribed(node: dict[str, Any], where: str) -> list[str]:
        return [
            f"{where}.{name}" for name, p in node["properties"].items() if not p.get("description")
        ]

    missing = undescribed(schema, "policy")
    for name, definition in schema["$defs"].items():
        if "properties" in definition:
            missing += undescribed(definition, name)
    assert not missing


def test_duration_and_size_fields_show_editors_a_pattern() -> None:
    schema = policy_schema()
    timeout = schema["$defs"]["UpstreamSection"]["properties"]["read_timeout"]
    patterns = [option.get("pattern") for option in timeout["anyOf"]]
    assert any(p and re.fullmatch(p.strip("^$"), "15m") for p in patterns)
    sizes = [option.get("pattern") for option in schema["properties"]["max_body"]["anyOf"]]
    assert any(p and re.fullmatch(p.strip("^$"), "8MiB") for p in sizes)


# --- units ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30), ("15m", 900), ("6h", 21600), ("7d", 604800), ("1.5s", 1.5)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_plain_numbers_are_seconds() -> None:
    assert parse_duration(30) == 30.0
    assert parse_duration("45") == 45.0


@pytest.mark.parametrize("text", ["5 seconds", "s", "-1s", "1w", "1h30m", ""])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [("64KiB", 65536), ("8MiB", 8 << 20), ("1GiB", 1 << 30), ("1MB", 10**6), ("512", 512)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size
    assert parse_size(4096) == 4096


@pytest.mark.parametrize("text", ["8 megs", "1.5B", "KiB", "-1KiB"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_parse_rates() -> None:
    [per_minute] = parse_rates("60/minute")
    assert (per_minute.amount, per_minute.get_expiry()) == (60, 60)
    assert [r.amount for r in parse_rates("10/second; 1000/day")] == [10, 1000]
    with pytest.raises(ValueError):
        parse_rates("60 a minute")
