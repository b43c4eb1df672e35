"""A deployment's private groups (``watermark.groups``): slots that an
adversary holding the package cannot enumerate. Canonicalizing every form
the package lists leaves their evidence; the detector says which kind of
slot carried it; a table that is wrong is refused at load."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.adversary import canonicalize
from bench.corpus import documents
from guardgate import load_policy
from guardgate.errors import PolicyError
from guardgate.perturb.watermark import Detector, Key, Marker
from guardgate.perturb.watermark.table import Vocabulary, check_private

KEY = b"private-groups-key-0001"
# Groups no table of the package holds: base verbs after "to" or a modal,
# nouns after a determiner, and words that hold anywhere.
PRIVATE = """\
# a deployment's own groups
verb: show, display
verb: find, locate
verb: keep, retain
verb: get, gain
verb: fix, repair
verb: buy, purchase
verb: talk, speak
det: way, manner
det: part, portion
det: result, outcome
det: value, sum
det: answer, reply
first, initial
main, principal
also, besides
"""


def marked_corpus(vocabulary: Vocabulary) -> str:
    texts = documents(120, words=400, seed=3, source="docstrings")
    out = []
    for text in texts:
        marker = Marker(Key(KEY, vocabulary))
        out.append(marker.feed(text) + marker.flush())
    return "\n\n".join(out)


def test_private_groups_survive_canonicalizing_everything_the_package_lists() -> None:
    vocabulary = Vocabulary(PRIVATE)
    rewritten = canonicalize(marked_corpus(vocabulary))
    detector = Detector(KEY, vocabulary)
    detector.feed(rewritten)
    evidence = detector.evidence()
    assert evidence.kinds["private"].p_value < 1e-6, evidence.as_dict()
    assert evidence.kinds["shipped"].p_value > 1e-3  # what the package lists is gone
    assert evidence.groups[0][0].startswith("private:")  # the group carrying the most
    # The package's own detector, without the private table, finds nothing.
    shipped = Detector(KEY)
    shipped.feed(rewritten)
    assert shipped.evidence().p_value > 1e-3


def test_a_private_group_is_a_slot_only_where_its_context_says() -> None:
    vocabulary = Vocabulary(PRIVATE)
    assert vocabulary.group_after("display", "to") is not None
    assert vocabulary.group_after("display", "the") is None  # a noun there
    assert vocabulary.group_after("manner", "the") is not None
    assert vocabulary.is_private(vocabulary.group_after("initial", "it") or 0)


def test_the_key_names_private_groups_apart_from_shipped_ones() -> None:
    vocabulary = Vocabulary(PRIVATE)
    names = vocabulary.names[vocabulary.shipped:vocabulary.shipped + vocabulary.private]
    assert len(names) == 15 and all(name.startswith("private:") for name in names)
    assert Vocabulary().private == 0


@pytest.mark.parametrize(("table", "problem"), [
    ("nouns: way, manner\n", "no word set named 'nouns'"),
    ("large, massive\n", "'large' is already a word of another group"),
    ("solitary\n", "two members or more"),
    ("Fast, Speedy\n", "not a lower-case word"),
    ("quick2, speedy\n", "not a lower-case word"),
])
def test_a_wrong_private_table_is_refused_with_its_line(table: str, problem: str) -> None:
    problems = check_private(table)
    assert any(problem in p and p.startswith("line 1:") for p in problems), problems


def test_the_policy_reads_and_checks_the_private_table(tmp_path: Path) -> None:
    good = tmp_path / "groups.txt"
    good.write_text(PRIVATE)
    policy = load_policy({"upstream": "http://upstream.invalid",
                          "watermark": {"key": "k" * 16, "groups": str(good)}})
    assert policy.watermark_groups == PRIVATE
    bad = tmp_path / "bad.txt"
    bad.write_text("fast, quick\n")
    with pytest.raises(PolicyError, match="quick.*already a word of another group"):
        load_policy({"upstream": "http://upstream.invalid",
                     "watermark": {"key": "k" * 16, "groups": str(bad)}})
    with pytest.raises(PolicyError, match="cannot read the private groups"):
        load_policy({"upstream": "http://upstream.invalid",
                     "watermark": {"key": "k" * 16, "groups": str(tmp_path / "none.txt")}})


def test_detect_reads_the_private_table_and_says_where_the_evidence_is(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from guardgate.cli import main

    table = tmp_path / "groups.txt"
    table.write_text(PRIVATE)
    text = tmp_path / "answers.txt"
    text.write_text(canonicalize(marked_corpus(Vocabulary(PRIVATE))))
    assert main(["detect", "--key", KEY.decode(), "--groups", str(table), str(text),
                 "--json"]) == 0
    evidence = json.loads(capsys.readouterr().out)
    assert evidence["channel"] == "lexical"
    assert evidence["kinds"]["private"]["p_value"] < 1e-6
    assert evidence["groups"][0]["group"].startswith("private:")
    bad = tmp_path / "bad.txt"
    bad.write_text("fast, quick\n")
    assert main(["detect", "--key", KEY.decode(), "--groups", str(bad), str(text)]) == 1
    assert "already a word of another group" in capsys.readouterr().err
