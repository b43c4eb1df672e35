"""The watermark's zones, rule by rule: which chunks no word is marked in,
what opens and closes each zone, and the order the rules are tried in."""

from __future__ import annotations

import re

import pytest

from guardgate.perturb.watermark.zones import RULES, Position, Rule


def free(text: str) -> list[str]:
    """The chunks of ``text`` that lie in no zone."""
    at = Position()
    out = []
    for chunk in re.findall(r"\s+|\S+", text):
        if chunk.isspace():
            at.space(chunk)
        elif not at.skips(chunk):
            out.append(chunk)
    return out


def state(at: Position) -> tuple[object, ...]:
    return tuple(getattr(at, name) for name in Position.__slots__)


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.__name__)
def test_no_rule_opens_its_zone_on_letters_alone(rule: Rule) -> None:
    # What lets `Position.skips` pass plain words by without the rules.
    for word in ("a", "I", "www", "Quickly", "caf\u00e9", "SELECT"):
        at = Position()
        before = state(at)
        assert not rule(at, word)
        assert state(at) == before


def test_code_urls_and_json_are_skipped_and_prose_around_them_is_not() -> None:
    assert free("Use `x` or ``a ` b`` then go.") == ["Use", "or", "then", "go."]
    assert free("See www.example.com, a/b, me@example.com and https://x.io/y now.") == \
        ["See", "and", "now."]
    assert free('Send {"big": [1, 2], "quick": "rapid"} today.') == ["Send", "today."]
    assert free("Run:\n\n    big = quick\n>>> big\n$ big\nDone.") == ["Run:", "Done."]
    assert free("```python\nbig quick\n```\nDone.") == ["Done."]


def test_a_fence_marker_counts_on_a_code_line() -> None:
    # The fence is tried before the code line: an indented ``` still opens one.
    assert free("    ```\nbig quick\n```\nDone.") == ["Done."]


def test_chunks_in_a_fence_do_not_wear_down_an_open_bracket() -> None:
    fenced = " ".join(["word"] * 100)
    assert free(f"A [ stray\n```\n{fenced}\n```\nstill inside.") == ["A"]
    assert free(f"A [ stray {fenced}") == ["A", *["word"] * 38]


def test_a_stray_opener_ends_after_64_chunks_or_at_a_paragraphs_end() -> None:
    words = [f"w{i}" for i in range(70)]
    for opener in ("[", "{", "`"):
        assert free(f"{opener} {' '.join(words)}") == words[63:]
        assert free(f"{opener} a b\n\nNext one.") == ["Next", "one."]
        assert free(f"{opener} a b\nstill inside.") == []


def test_inline_code_closes_with_a_run_as_long_as_the_one_that_opened_it() -> None:
    assert free("``a ` b`` c") == ["c"]
    assert free("`a `` b` c") == ["c"]
    assert free("``a` b` c`` d") == ["d"]


def test_a_sentence_may_end_with_code() -> None:
    for text, start in (("Use `x`.", True), ("Use `x`,", False), ("See [1].", True),
                        ("See [1", False), ("At a/b.", True), ("At a/b", False)):
        at = Position()
        for chunk in re.findall(r"\s+|\S+", text):
            if chunk.isspace():
                at.space(chunk)
            else:
                at.skips(chunk)
        assert at.start is start, text
