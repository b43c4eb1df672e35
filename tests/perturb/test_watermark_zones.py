"""The watermark's zones, rule by rule: which chunks no word is marked in,
what opens and closes each zone, and the order the rules are tried in."""

from __future__ import annotations

import itertools
import re

import pytest

from guardgate.perturb.watermark import Scanner
from guardgate.perturb.watermark.zones import RULES, Position, Rule, reads_as_prose


def free(text: str, json: bool = False) -> list[str]:
    """The chunks of ``text`` that lie in no zone (a line of a fence with no
    info string read whole first, as the scanner does)."""
    at = Position(json)
    out = []
    chunks = re.findall(r"\s+|\S+", text)
    for i, chunk in enumerate(chunks):
        if chunk.isspace():
            at.space(chunk)
            continue
        if at.wanted:
            at.read_line("".join(itertools.takewhile(lambda c: "\n" not in c, chunks[i:])))
        if not at.skips(chunk):
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


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.__name__)
def test_no_rule_takes_a_chunk_without_an_opener_outside_every_zone(rule: Rule) -> None:
    # What lets `Position.skips` pass words with punctuation by without the rules.
    for chunk in ("word,", "end.", "(see", "it's", "3.5", "e.g.", "x=1", "\"quoted\"", "~~",
                  "a-b", "100%", "C++", "don\u2019t", "wait...", "!?", "(1)", "#tag", "$5"):
        at = Position()
        before = state(at)
        assert not rule(at, chunk), chunk
        assert state(at) == before, chunk


def test_code_urls_and_json_are_skipped_and_prose_around_them_is_not() -> None:
    assert free("Use `x` or ``a ` b`` then go.") == ["Use", "or", "then", "go."]
    assert free("See www.example.com, a/b, me@example.com and https://x.io/y now.") == \
        ["See", "and", "now."]
    assert free('Send {"big": [1, 2], "quick": "rapid"} today.') == ["Send", "today."]
    assert free("Run:\n\n    big = quick\n>>> big\n$ big\nDone.") == ["Run:", "Done."]
    assert free("```python\nbig quick\n```\nDone.") == ["Done."]


def test_a_fence_marker_counts_on_a_code_line() -> None:
    # The fence is tried before the code line: an indented ``` still opens one.
    assert free("    ```sh\nbig quick\n```\nDone.") == ["Done."]


def test_chunks_in_a_fence_do_not_wear_down_an_open_bracket() -> None:
    fenced = " ".join(["word"] * 100)
    assert free(f"A [ stray\n```sh\n{fenced}\n```\nstill inside.") == ["A"]
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


def test_a_fence_holds_prose_or_code_as_its_info_string_says() -> None:
    for info in ("text", "markdown", "md", "Text", " md", "~~~md"):
        fence = "~~~" if info.startswith("~~~") else "```"
        text = f"{fence}{info.removeprefix('~~~')}\nbig quick\n{fence}\nDone."
        assert free(text) == ["big", "quick", "Done."], info
    # With no info string, a line is prose only if it reads as prose.
    for fence in ("```", "~~~", "````"):
        text = f"{fence}\nwe often need big plans\nbig quick\n{fence}\nDone."
        assert free(text) == ["we", "often", "need", "big", "plans", "Done."], fence
    for info in ("python", "sh", "json5", "text2"):
        assert free(f"```{info}\nbig quick\n```\nDone.") == ["Done."], info
    # The fence lines are never marked, the info string's line included.
    assert free("```text big quick\nbig\n```\nDone.") == ["big", "Done."]
    # A closing fence is a run of as many or more marks, alone.
    assert free("````md\nbig\n```\nquick\n````\nDone.") == ["big", "Done."]
    assert free("```md\nbig\n```` \nDone.") == ["big", "Done."]


def test_a_fence_opened_in_a_prose_fence_holds_code() -> None:
    text = "````md\nbig\n```\nquick\n```\nlarge\n```text\nrapid\n```\nfast\n````\nDone."
    assert free(text) == ["big", "large", "fast", "Done."]


def test_in_json_only_the_words_of_prose_string_values_are_free() -> None:
    # Keys, numbers and structure never; a value's words from its third on.
    assert free('{"we often need": "we often need big plans", "n": 1}') == \
        ["need", "big", 'plans",']
    assert free('["one two", "a b c", {"k": ["x y z w"]}]') == ['c",', 'z', 'w"]}]']
    # Prose stops at what looks like code, an escape is never free.
    assert free('{"c": "x = big if quick else large"}') == []
    assert free('{"c": "we often need\\nbig plans \\"now\\" here"}') == ["plans", 'here"}']
    # Inline code in a value is as in prose.
    assert free('{"c": "we often need `big quick` plans"}') == ["need", 'plans"}']


def test_json_goes_on_across_lines_indented_as_code() -> None:
    text = '{\n    "note": "we often need big plans",\n    "n": [\n        1\n    ]\n}\nDone.'
    assert free(text) == ["need", "big", 'plans",', "Done."]


def test_what_proves_no_json_is_a_bracket_zone() -> None:
    assert free("[1] big quick") == ["big", "quick"]
    assert free("[see big] quick") == ["quick"]
    assert free('{"a": "one two three" oops} big') == ["three\"", "big"]
    # A line break in a string: no JSON string holds one.
    assert free('{"a": "one two three\nfour five"} six') == ["three", "six"]


def test_a_text_that_is_json_frees_its_string_values_only() -> None:
    assert free('{"a": "we often need big"} more words', json=True) == ["need", 'big"}']
    assert free('[1, "a b c"] {"d": "e f g"}', json=True) == ['c"]', 'g"}']
    assert free('{"a": oops "we often need big"} more words', json=True) == []
    assert free("plain words only", json=True) == []


CODE_LINES = [
    "if value is not None:", "return value", 'print("do not use this")',
    "SELECT name FROM users WHERE id is not null", "select name from users where id is not null",
    "for item in items:", "else:", "def use_it(value):", "class Thing:", "from os import path",
    "let value = it is not;", 'const use = require("it")', "x is not None and y is not None",
    'echo "it is not a problem, we do not need it"', "git commit -m 'we do not need to use it'",
    "name: it is not a problem, we do not need it", 'description: "we do not need to use it"',
    '"key": "we do not need to use it",', "npm install it is not needed",
    ">>> it is not a problem, we do not", "$ it is not a problem we do",
    "-- we do not need to use it", "// we do not need to use it", "# we do not need to use it",
    "; we do not need to use it", "REM we do not need to use it", "fn use_it() -> bool {",
    "use std::io;", "it.is_not_a_problem(we, do)", "we do not need to use it && echo done",
    "| it is | not a | problem |", "<p>it is not a problem</p>", r"\section{it is not a problem}",
    "(if it is not a problem)", "(setq it-is not-a problem)", "it is not a problem;",
    "we do not use it; x = 1", "Usage: it is not a problem at all", "match value of it:",
    "we do not need a * b here", "we do not need to use `it", 'it is "not a problem',
    "it is not a problem \\", "END IF we do not need it", "we do not need it => here",
    "Dim it As Integer now", "we do not use null here at all", "it is not",
]
PROSE_LINES = [
    "it is not a problem, we do not need to use it",
    "We often need quick answers, and it is usual.", "- we do not need to use it here",
    "* we do not need to use it here", "1. First, we do not need it.", "2) we do not need it",
    "It is not a problem (we do not need it) at all.",
    'He said "it is not a problem" and we do not need it.',
    '"It is not a problem," said he, "we do not need it."',
    "It is simple; we do not need to use it.", "Use `x = 1` when you do not need the big one.",
    "If you do not need it, skip it.", "The API does not need JSON here.",
    "None of them is a problem here.", "It is not a problem: we do not need it.",
]


@pytest.mark.parametrize("line", CODE_LINES)
def test_a_line_of_code_does_not_read_as_prose(line: str) -> None:
    assert not reads_as_prose(line)


@pytest.mark.parametrize("line", PROSE_LINES)
def test_a_line_of_prose_reads_as_prose(line: str) -> None:
    assert reads_as_prose(line)


def test_a_star_item_at_an_odd_indent_goes_on_a_comment() -> None:
    assert reads_as_prose("* we do not need to use it here", 2)
    assert not reads_as_prose("* we do not need to use it here", 1)
    assert not reads_as_prose("* we do not need to use it here", 3)


def test_a_fence_with_no_info_string_is_read_line_by_line() -> None:
    text = "```\n" + "\n".join(CODE_LINES + PROSE_LINES) + "\n```\nDone."
    expected = [chunk for line in PROSE_LINES for chunk in free(line)]
    assert free(text) == [*expected, "Done."]
    # Indented four columns or a tab: code, whatever it reads like.
    assert free(f"```\n    {PROSE_LINES[0]}\n\t{PROSE_LINES[0]}\n```\nDone.") == ["Done."]
    # A fence opened in it holds code; the lines after it are read again.
    assert free(f"```\n```sh\n{PROSE_LINES[0]}\n```\n{PROSE_LINES[0]}\n```") == \
        free(PROSE_LINES[0])


def test_a_line_not_read_is_code() -> None:
    at = Position()
    for chunk in ("```", "\n"):
        assert chunk.isspace() or at.skips(chunk)
        if chunk.isspace():
            at.space(chunk)
    assert at.wanted
    assert at.skips("we") and at.skips("often")
    assert not at.wanted


def test_the_scanner_reads_each_line_whole() -> None:
    text = ("```\nif value is not None:\n    return value\nprint(\"do not use this\")\n"
            "it is not a problem, we do not need to use it\n```\nWe do not need it.")
    scanner = Scanner()
    slots = [chunk for chunk, slot in scanner.scan(text) if slot is not None]
    # "it is", "do not", "use" on the prose line (a slot of two words is
    # the second's), "do not" after the fence: none on the lines of code.
    assert slots == ["is", "not", "use", "not"]
    # A line a stream has not ended yet is left out until it ends.
    scanner = Scanner()
    seen = []
    for chunk in scanner.chunks("```\nit is not a problem", final=False):
        seen.append(chunk)
        scanner.step(chunk)
    assert seen == ["```", "\n"] and scanner.rest == "it is not a problem"
    assert scanner.wants_line
