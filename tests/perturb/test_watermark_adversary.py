"""The adversary of the watermark bench: rewrites made with the package's
own vocabulary and no key, the containers, and the trigram student."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from guardgate.perturb.watermark import Detector, detect, groups, mark, table

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.adversary import (
    CONTAINERS,
    Trigram,
    Vocabulary,
    canonicalize,
    from_capitals,
    pool,
    random_synonym,
    vocabulary,
    words_changed,
)
from bench.corpus import documents

KEY = b"watermark-adversary-test-key"


@pytest.fixture(scope="module")
def docs() -> list[str]:
    return documents(40, words=500, seed=7)


def test_the_pool_is_every_group_and_contraction_the_package_ships() -> None:
    forms = {frozenset(group.forms) for group in pool()}
    assert all(frozenset(group) in forms for group in groups())
    assert {"do not", "don't"} <= max(forms, key=lambda f: "don't" in f)
    assert frozenset({"cannot", "can't"}) in forms and frozenset({"it is", "it's"}) in forms
    # Groups that hold after certain words keep their contexts.
    sure = next(group for group in pool() if "certain" in group.forms)
    assert sure.after is not None and "make" in sure.after


def test_a_larger_pool_the_package_lists_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = Vocabulary(pool())
    monkeypatch.setattr(table, "enumerable_groups",
                        lambda: (*groups(), ("house", "home")))
    monkeypatch.setattr(table, "enumerable_contexts",
                        lambda: (*table.contexts(), None))
    larger = Vocabulary(pool())
    assert canonicalize("My home is warm.", shipped) == "My home is warm."
    assert canonicalize("My home is warm.", larger) == "My house is warm."
    assert len(larger.groups) == len(shipped.groups) + 1


def test_canonicalize_writes_one_form_and_expands_contractions() -> None:
    text = ("It's been a long day, and I don't think it's over. An enormous dog can't "
            "utilize an enormous bone. Don't you see? IT ISN'T. In particular, the `don't` "
            "stays.\n\n```\nx = \"don't\"\n```\nThey\u2019ll employ it.")
    assert canonicalize(text) == (
        "It has been a long day, and I do not think it is over. A huge dog cannot "
        "use a huge bone. Don't you see? IT IS NOT. In particular, the `don't` "
        "stays.\n\n```\nx = \"don't\"\n```\nThey will use it.")


def test_canonical_text_keeps_no_trace_of_the_key(docs: list[str]) -> None:
    first = [canonicalize(mark(d, KEY)) for d in docs]
    second = [canonicalize(mark(d, b"another-key")) for d in docs]
    assert first == second
    detector = Detector(KEY)
    for text in first:
        detector.feed(text)
    assert detector.evidence().slots > 300 and detector.evidence().p_value > 1e-3


def test_random_synonyms_are_seeded_and_erase_the_mark(docs: list[str]) -> None:
    marked = [mark(d, KEY) for d in docs]
    assert random_synonym(marked[0], seed=3) == random_synonym(marked[0], seed=3)
    rewritten = [random_synonym(t, seed=i) for i, t in enumerate(marked)]
    changed, total = 0, 0
    for before, after in zip(marked, rewritten, strict=True):
        c, t = words_changed(before, after)
        changed, total = changed + c, total + t
    assert 0.005 < changed / total < 0.06
    assert detect("\n\n".join(rewritten), KEY).p_value > 1e-3
    assert detect("\n\n".join(marked), KEY).p_value < 1e-20


def test_containers_unwrap_to_the_answer(docs: list[str]) -> None:
    for name in ("fenced code block", "JSON string values"):
        container = CONTAINERS[name]
        assert container.unwrap(container.wrap(docs[0])) == docs[0]
    assert CONTAINERS["capitals"].wrap("It is.") == "IT IS."
    assert from_capitals("IT IS LATE. I THINK SO, SAID I.\nNO") == (
        "It is late. I think so, said I.\nNo")


def test_words_changed_counts_replaced_and_expanded_words() -> None:
    assert words_changed("we don't use it", "we do not utilize it") == (2, 4)
    assert words_changed("same text", "same text") == (0, 2)


def test_a_student_of_marked_text_carries_the_mark(docs: list[str]) -> None:
    marked = [mark(d, KEY) for d in docs]
    sample = Trigram(marked).sample(8000, seed=1)
    assert len(sample.split()) == 8000 and sample == Trigram(marked).sample(8000, seed=1)
    assert detect(sample, KEY).p_value < 1e-6
    assert detect(Trigram(docs).sample(8000, seed=1), KEY).p_value > 1e-3


def test_the_shipped_vocabulary_is_cached() -> None:
    assert vocabulary() is vocabulary()
