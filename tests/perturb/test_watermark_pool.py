"""A deployment's private synonym table: the candidate pool WordNet offers,
the keyed choice of groups from it, and ``guardgate watermark keygen``.

The pool's tests read Debian's WordNet (``apt-get install wordnet-base``)
with nltk (``pip install 'guardgate[keygen]'``), and are skipped, saying
which is missing, where either is; the choice and the command's tests use
pools of their own."""

from __future__ import annotations

import argparse
import importlib.util
import os
import stat
import sys
from collections import Counter
from pathlib import Path

import pytest

from guardgate.cli import keygen
from guardgate.perturb.watermark import pool, table
from guardgate.perturb.watermark.pool import (
    Candidate,
    PoolError,
    candidate_groups,
    private_table,
    shipped_words,
)

WORDNET = Path(os.environ.get("GUARDGATE_TEST_WORDNET", "/usr/share/wordnet"))
KEY = b"pool-test-key-0123456789"
OTHER_KEY = b"pool-test-key-9876543210"


def _synthetic(count: int) -> list[Candidate]:
    """Candidates of made-up words, no two sharing one."""
    letters = "bcdfghjklmnpqrstvwxz"

    def word(i: int, j: int) -> str:
        return f"zq{letters[i % 20]}{letters[i // 20 % 20]}{letters[i // 400 % 20]}{'aeiou'[j]}"

    contexts = (None, None, "verb", "det")
    return [Candidate((word(i, 0), word(i, 1)), contexts[i % 4], "noun", 100 - i % 7)
            for i in range(count)]


@pytest.fixture(scope="module")
def wordnet_pool() -> list[Candidate]:
    if importlib.util.find_spec("nltk") is None:
        pytest.skip("nltk is not installed: pip install 'guardgate[keygen]'")
    if not (WORDNET / "data.noun").is_file():
        pytest.skip(f"no WordNet in {WORDNET}: apt-get install wordnet-base")
    return candidate_groups(WORDNET)


# -- the keyed choice ------------------------------------------------------------


def test_the_private_table_parses_and_holds_the_groups_asked_for() -> None:
    candidates = _synthetic(300)
    text = private_table(KEY, candidates, 120)
    members, after, names, _ = table.parse(text)
    assert len(members) == 120
    by_name = {c.name: c for c in candidates}
    for group, needs, name in zip(members, after, names, strict=True):
        candidate = by_name[name]
        assert group == candidate.members
        sets = pool.shipped_sets()
        assert needs == (None if candidate.context is None
                         else frozenset(sets[candidate.context]))


def test_the_word_sets_are_the_shipped_tables() -> None:
    text = private_table(KEY, _synthetic(40), 40)
    shipped = pool.shipped_sets()
    written = [line for line in text.splitlines() if line.startswith("@")]
    assert {line.partition(":")[0][1:] for line in written} == {"verb", "det"}
    for line in written:
        name, _, words = line[1:].partition(":")
        assert tuple(words.split()) == shipped[name]


def test_the_choice_is_keyed() -> None:
    candidates = _synthetic(300)
    one = private_table(KEY, candidates, 100)
    assert private_table(KEY, list(reversed(candidates)), 100) == one
    other = private_table(OTHER_KEY, candidates, 100)
    assert other != one
    chosen = set(table.parse(one)[2])
    overlap = len(chosen & set(table.parse(other)[2]))
    assert 15 < overlap < 60  # a third of the pool each: about 33 in common


def test_shipped_words_are_never_chosen() -> None:
    shipped = shipped_words()
    assert {"improve", "enhance", "use", "the", "to", "not"} <= shipped
    candidates = [Candidate(("improve", "zqbetter"), None, "verb", 10_000),
                  *_synthetic(20)]
    text = private_table(KEY, candidates, 20)
    members, _, _, _ = table.parse(text)
    assert not shipped.intersection(word for group in members for word in group)
    with pytest.raises(ValueError, match="pool has 20"):
        private_table(KEY, candidates, 21)


def test_a_candidate_is_named_as_the_table_names_its_group() -> None:
    candidate = Candidate(("vanish", "disappear"), "verb", "verb", 51)
    text = f"@verb: to\n{candidate.line()}\n"
    assert table.parse(text)[2] == (candidate.name,)
    plain = Candidate(("damp", "moist"), None, "adjective", 12)
    assert table.parse(plain.line())[2] == (plain.name,)


def test_regular_forms_are_spelt_by_the_rules() -> None:
    assert [pool._suffix_s(w) for w in ("wander", "fix", "bury", "stay", "echo")] == [
        "wanders", "fixes", "buries", "stays", None]
    assert [pool._regular_ing(w) for w in ("wander", "tie", "decorate", "flee")] == [
        "wandering", "tying", "decorating", "fleeing"]
    assert [pool._regular_past(w) for w in ("wander", "decorate", "bury", "stay")] == [
        "wandered", "decorated", "buried", "stayed"]
    # Exception lists give doubled consonants; a word of two syllables or
    # more that doubles may not (spelling varies), an irregular one has no past.
    assert pool._verb_form("plod", "past", ["plodded", "plodding"]) == "plodded"
    assert pool._verb_form("plod", "ing", ["plodded", "plodding"]) == "plodding"
    assert pool._verb_form("travel", "past", ["travelled", "travelling"]) is None
    assert pool._verb_form("choose", "past", ["chose", "chosen"]) is None
    assert pool._verb_form("choose", "third person", ["chose", "chosen"]) == "chooses"


# -- the pool ------------------------------------------------------------------


def test_the_pool_is_groups_of_distinct_lower_case_words(wordnet_pool: list[Candidate]) -> None:
    assert len(wordnet_pool) >= 300
    seen: Counter[str] = Counter()
    for candidate in wordnet_pool:
        assert len(candidate.members) >= 2
        assert all(word.isalpha() and word.islower() for word in candidate.members)
        assert candidate.context in (None, "verb", "det")
        assert candidate.pos in ("noun", "verb", "adjective", "adverb")
        assert candidate.count > 0
        seen.update(candidate.members)
    assert max(seen.values()) == 1  # a word belongs to one group
    assert not shipped_words() & set(seen)
    assert not (pool.TECHNICAL | pool.UNSAFE | pool.FUNCTION_WORDS) & set(seen)


def test_the_pool_keeps_meaning_and_forms(wordnet_pool: list[Candidate]) -> None:
    groups = {frozenset(c.members): c for c in wordnet_pool}
    for members, context, form in [
        ({"disappear", "vanish"}, None, "base"),
        ({"disappears", "vanishes"}, None, "third person"),
        ({"begged", "implored"}, None, "past"),
        ({"groaning", "moaning"}, None, "ing"),
        ({"films", "movies"}, None, "plural"),
        ({"conceal", "hide"}, "verb", "base"),  # "hide" is a noun too
        ({"couch", "sofa"}, "det", "base"),  # so is "couch" a verb
    ]:
        candidate = groups[frozenset(members)]
        assert (candidate.context, candidate.form) == (context, form)
    words = {word for c in wordnet_pool for word in c.members}
    # A second sense, a construction, a register, a technical sense.
    assert not {"string", "thread", "effect", "happen", "help", "papa", "metropolis"} & words
    # No inflected form of another word, no plural of a mass noun.
    assert not {"learned", "cows", "grinning", "bitternesses", "madmans"} & words


def test_a_private_table_from_the_pool_is_one_the_gateway_loads(
        wordnet_pool: list[Candidate]) -> None:
    text = private_table(KEY, wordnet_pool, 200)
    assert len(table.parse(text)[0]) == 200
    check = getattr(table, "check_private", None)
    if check is not None:  # the loader's own checks, where this table has them
        assert check(text) == []


def test_the_copy_of_wordnet_is_removed(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("nltk") is None:
        pytest.skip("nltk is not installed: pip install 'guardgate[keygen]'")
    if not (WORDNET / "data.noun").is_file():
        pytest.skip(f"no WordNet in {WORDNET}: apt-get install wordnet-base")
    import nltk

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    before = list(nltk.data.path)
    with pool.open_wordnet(WORDNET) as reader:
        private = [p for p in nltk.data.path if p not in before]
        assert len(private) == 1 and private[0].startswith(str(tmp_path))
        assert stat.S_IMODE(os.stat(private[0]).st_mode) == 0o700
        assert reader.synsets("vanish")
    assert nltk.data.path == before
    assert list(tmp_path.iterdir()) == []


# -- guardgate watermark keygen ----------------------------------------------------


def _args(tmp_path: Path, **given: object) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="guardgate")
    keygen.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["watermark", "keygen", "--out", str(tmp_path / "private.txt")])
    for name, value in given.items():
        setattr(args, name, value)
    return args


def test_keygen_writes_the_table_for_its_owner_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GUARDGATE_WATERMARK_KEY", KEY.decode())
    monkeypatch.setattr(keygen, "candidate_groups", lambda directory: _synthetic(500))
    args = _args(tmp_path)
    assert (args.wordnet, args.groups, args.key_env) == (
        "/usr/share/wordnet", 200, "GUARDGATE_WATERMARK_KEY")
    args.groups = 400
    assert args.run(args) == 0
    out = tmp_path / "private.txt"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.read_text() == private_table(KEY, _synthetic(500), 400)
    printed = capsys.readouterr().out
    assert "400 groups" in printed and str(out) in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["private.txt"]


@pytest.mark.parametrize(("key", "says"), [
    (None, "GUARDGATE_WATERMARK_KEY is not set"),
    ("short-key", "needs 16 or more"),
])
def test_keygen_wants_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str], key: str | None,
                            says: str) -> None:
    monkeypatch.delenv("GUARDGATE_WATERMARK_KEY", raising=False)
    if key is not None:
        monkeypatch.setenv("GUARDGATE_WATERMARK_KEY", key)
    args = _args(tmp_path)
    assert args.run(args) == 1
    assert says in capsys.readouterr().err
    assert not (tmp_path / "private.txt").exists()


def test_keygen_reads_the_key_from_the_variable_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTHER_KEY", KEY.decode())
    monkeypatch.setattr(keygen, "candidate_groups", lambda directory: _synthetic(50))
    args = _args(tmp_path, key_env="OTHER_KEY", groups=10)
    assert args.run(args) == 0
    assert len(table.parse((tmp_path / "private.txt").read_text())[0]) == 10


def test_keygen_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GUARDGATE_WATERMARK_KEY", KEY.decode())
    args = _args(tmp_path, wordnet=str(tmp_path / "no-wordnet"))
    if importlib.util.find_spec("nltk") is not None:
        assert args.run(args) == 1
        err = capsys.readouterr().err
        assert "apt-get install wordnet-base" in err and "Traceback" not in err
    monkeypatch.setitem(sys.modules, "nltk", None)  # as if not installed
    assert args.run(args) == 1
    err = capsys.readouterr().err
    assert "pip install" in err and "nltk" in err
    with pytest.raises(PoolError, match="nltk"):
        candidate_groups(tmp_path)


def test_keygen_refuses_more_groups_than_the_pool_has(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GUARDGATE_WATERMARK_KEY", KEY.decode())
    monkeypatch.setattr(keygen, "candidate_groups", lambda directory: _synthetic(30))
    args = _args(tmp_path, groups=31)
    assert args.run(args) == 1
    assert "--groups 30 or fewer" in capsys.readouterr().err
    args = _args(tmp_path, out=str(tmp_path / "missing" / "private.txt"), groups=5)
    assert args.run(args) == 1
    assert "cannot write" in capsys.readouterr().err
