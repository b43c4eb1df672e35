"""A tier's ``degrade`` list: written as operators write it, validated once into
`Transforms`, every problem placed at its item, and every transform and its
fields in the JSON Schema."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator

from guardgate.errors import PolicyError, PolicyProblem
from guardgate.perturb.transforms import TRANSFORM_NAMES, TRANSFORMS, Transforms
from guardgate.policy import load_policy_text, policy_schema

TIER = "watermark: {key: 0123456789abcdef0123}\ntiers:\n  t:\n    score: 0.5\n    degrade: %s\n"


def degrade_of(items: str) -> Transforms | None:
    return load_policy_text(TIER % items, env={}).tiers[0].degrade


def problems_of(items: str) -> list[PolicyProblem]:
    with pytest.raises(PolicyError) as info:
        load_policy_text(TIER % items, env={})
    return info.value.problems


def test_the_list_operators_write_means_what_it_meant() -> None:
    written = ("[drop_logprobs, drop_reasoning, {clamp_max_tokens: 512}, {tarpit: 2s},"
               " {reroute: 'http://slow:8000/v1'}]")
    assert degrade_of(written) == Transforms(
        drop_logprobs=True, drop_reasoning=True, clamp_max_tokens=512, tarpit=2.0,
        reroute="http://slow:8000/v1")
    every = ("[drop_logprobs, {cap_top_logprobs: 0}, coarsen_logprobs, drop_logit_bias,"
             " {force_n1: null}, {clamp_max_tokens: 9}, {drop_reasoning: true},"
             " {tarpit: 500ms}, {reroute: 'https://x'}]")
    t = degrade_of(every)
    assert t is not None and t.names() == TRANSFORM_NAMES
    assert (t.cap_top_logprobs, t.tarpit, t.force_n1) == (0, 0.5, True)
    assert degrade_of("[{tarpit: 3}]") == Transforms(tarpit=3.0)
    assert degrade_of("[]") is None


@pytest.mark.parametrize(("items", "where", "message", "hint"), [
    ("[drop_logprobz]", "tiers.t.degrade[0]", "unknown degrade transform 'drop_logprobz'",
     "did you mean 'drop_logprobs'?"),
    ("[drop_logprobs, {clamp_max_tokens: 0}]", "tiers.t.degrade[1].clamp_max_tokens",
     "clamp_max_tokens must be an integer of at least 1, not 0", None),
    ("[{cap_top_logprobs: 1.5}]", "tiers.t.degrade[0].cap_top_logprobs", "at least 0", None),
    ("[{tarpit: 2 parsecs}]", "tiers.t.degrade[0].tarpit", "expected a duration", None),
    ("[{tarpit: 0}]", "tiers.t.degrade[0].tarpit", "longer than 0s", None),
    ("[{reroute: 'ftp://u:secret@x'}]", "tiers.t.degrade[0].reroute", "http:// or https://",
     None),
    ("[clamp_max_tokens]", "tiers.t.degrade[0]", "needs a value: {clamp_max_tokens: ...}",
     None),
    ("[{drop_reasoning: 3}]", "tiers.t.degrade[0].drop_reasoning", "takes no value", None),
    ("[{tarpit: 1s, reroute: 'http://x'}]", "tiers.t.degrade[0]", "a mapping of one name",
     None),
    ("[force_n1, force_n1]", "tiers.t.degrade", "'force_n1' is listed twice", None),
    ("force_n1", "tiers.t.degrade", "expected a list", None),
])
def test_each_problem_is_placed_at_its_item(items: str, where: str, message: str,
                                            hint: str | None) -> None:
    [problem] = problems_of(items)
    assert (problem.where, problem.hint) == (where, hint)
    assert message in problem.message
    assert problem.line == 5 and problem.column is not None
    assert "secret" not in str(problem)  # a URL is never echoed


def test_every_problem_of_a_list_is_reported_at_once() -> None:
    problems = problems_of("[drop_logprobz, {clamp_max_tokens: -1}, {tarpit: soon}]")
    assert [p.where for p in problems] == [
        "tiers.t.degrade[0]", "tiers.t.degrade[1].clamp_max_tokens", "tiers.t.degrade[2].tarpit"]
    assert [p.column for p in problems] == sorted(p.column or 0 for p in problems)


def test_a_keyed_transform_needs_the_watermark_key() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy_text("tiers: {t: {score: 0.5, degrade: [{coarsen_logprobs: true}]}}\n",
                         env={})
    [problem] = info.value.problems
    assert problem.where == "tiers.t.degrade"
    assert "coarsen_logprobs needs the watermark section's key" in problem.message


def test_the_schema_lists_every_transform_and_its_fields() -> None:
    schema = policy_schema()
    items = schema["$defs"]["TierSection"]["properties"]["degrade"]["anyOf"][0]["items"]
    listed = [ref["$ref"].rsplit("/", 1)[1] for ref in items["oneOf"]]
    assert listed == [t.__name__ for t in TRANSFORMS]
    for name, model in zip(listed, TRANSFORMS, strict=True):
        definition = schema["$defs"][name]
        assert definition["description"]
        assert model.name in str(definition)
    tarpit = schema["$defs"]["TarpitDelay"]["properties"]["tarpit"]
    assert {"type": "string"} == {"type": tarpit["anyOf"][0]["type"]}  # a duration, as written
    validator = Draft202012Validator(schema)
    good = {"tiers": {"t": {"score": 0.5, "degrade": [
        "drop_logprobs", {"drop_reasoning": None}, {"clamp_max_tokens": 512},
        {"tarpit": "2s"}, {"reroute": "http://slow:8000"}]}}}
    assert validator.is_valid(good)
    for bad in (["drop_logprobz"], [{"clamp_max_tokens": 0}], [{"tarpit": "soon"}],
                ["clamp_max_tokens"], [{"drop_logprobs": 3}], [{"force_n1": True, "x": 1}]):
        assert not validator.is_valid({"tiers": {"t": {"score": 0.5, "degrade": bad}}}), bad
