"""The watermark: what it changes, what it never touches, streaming, and the
detector's power and null."""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

import pytest

from guardgate.perturb.watermark import (
    GROUP_OF,
    Detector,
    Key,
    Marker,
    Scanner,
    contexts,
    detect,
    groups,
    mark,
    takes_an,
    upper_tail,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.corpus import documents

KEY = b"watermark-test-key-0123456789"


@pytest.fixture(scope="module")
def docs() -> list[str]:
    return documents(120, words=500, seed=11)


def test_the_table_is_curated_groups_of_distinct_words() -> None:
    table, after = groups(), contexts()
    assert len(table) >= 230 and len(after) == len(table)
    for group in table:
        assert 2 <= len(group) <= 4 and len(set(group)) == len(group)
        assert all(re.fullmatch(r"[a-z]+", w) for w in group), group
    # A word in several groups only where their contexts share no word, so
    # that one context always picks one group.
    for word, ids in GROUP_OF.items():
        for i in ids:
            for j in ids:
                if i < j:
                    first, second = after[i], after[j]
                    assert first is not None and second is not None, word
                    assert not first & second, word


def test_set_phrases_keep_their_words() -> None:
    text = "The public at large reads. A large crowd came."
    for i in range(8):
        assert mark(text, f"phrase-key-{i}".encode()).startswith("The public at large reads.")
    assert any("A big crowd" in mark(text, f"phrase-key-{i}".encode()) for i in range(8))


def test_collocations_keep_their_words() -> None:
    """Pairs a synonym breaks are no slots: "a particular friend", "very
    different", "a good idea", "installed using French"."""
    text = ("She was a particular friend of mine, very different from her sister. "
            "It was a good idea, and the ideas were installed using French. She was in "
            "excellent spirits; it can take advantage of any order. Set the most "
            "significant bit, evaluate the expression and construct the instance. The "
            "process exits normally; extending IOBase is a class.")
    for i in range(16):
        assert mark(text, f"collocation-key-{i}".encode()) == text


def test_groups_that_hold_after_certain_words_only() -> None:
    scanner = Scanner()
    slots = {chunk: slot for chunk, slot in scanner.scan(
        "You can use it. The use of it. For example this. An instance of the class "
        "issues a warning and is used by the module. The issues are known.")
        if slot is not None}
    assert set(slots) == {"use", "example", "used", "issues"}
    verb, noun = (groups()[slot.group] for _, slot in Scanner().scan("to use the use") if slot)
    assert "utilize" in verb and "usage" in noun
    marked = mark("An instance of the class issues a warning.", KEY)
    assert marked == "An instance of the class issues a warning."
    # Replacing a context word keeps the marked text consistent: the
    # detector finds every marked slot.
    text = "You should use it; we often use lists and they are often used to help."
    assert detect(mark(text, KEY), KEY).hits == detect(mark(text, KEY), KEY).slots


def test_code_numbers_urls_json_and_names_are_untouched() -> None:
    key = Key(KEY)
    protected = [
        "```python\nbig = large_value  # a big large quick rapid\n```",
        "`big large quick`",
        "https://example.com/big/large?quick=rapid",
        "www.big-large.example",
        "mail big@large.example",
        '{"big": "large", "nested": {"quick": "rapid"}}',
        "3 big 4",
        "Example:\n\n    if x is not None and big:\n        quickly()\n",
        ">>> x is not None\n... big = quickly\n$ do not run quickly",
        "SELECT x FROM t WHERE a IS NOT NULL AND b CANNOT BE NULL",
        '["it is not here", "big", "quickly"]',
        "``x do not y quickly``",
    ]
    for text in protected:
        marker = Marker(key)
        marked = marker.feed(text) + marker.flush()
        if "3 big 4" in text:
            continue
        assert marked == text
    # Inside a sentence a capitalized group word is taken for a name.
    sentence = "We met at the Big Apple and the Large Hadron Collider yesterday."
    assert mark(sentence, KEY) == sentence


_SHORT = {"'s": " is", "'re": " are", "'m": " am", "'ll": " will"}


def expanded(text: str) -> str:
    """``text`` with its negations and pronoun contractions written out
    ("don't" as "do not", "it's" as "it is")."""
    def out(match: re.Match[str]) -> str:
        word = match.group(0)
        lower = word.lower().replace("\u2019", "'")
        if lower.endswith("n't"):
            full = {"can't": "cannot", "won't": "will not"}.get(lower, lower[:-3] + " not")
        else:
            pronoun, _, short = lower.partition("'")
            full = pronoun + _SHORT["'" + short]
        if word.isupper():
            return full.upper()
        return full[0].upper() + full[1:] if word[0].isupper() else full
    return re.sub(r"\b(?:[A-Za-z]+n['\u2019]t|(?:it|that|there|here)['\u2019]s"
                  r"|(?:you|we|they)['\u2019]re|i['\u2019]m|(?:you|we|they|i)['\u2019]ll)\b",
                  out, text, flags=re.IGNORECASE)


def test_case_punctuation_and_articles_are_kept(docs: list[str]) -> None:
    for text in docs[:60]:
        marked = mark(text, KEY)
        # Negations written either way ("does not", "doesn't") count as one word.
        before, after = expanded(text).split(), expanded(marked).split()
        assert len(before) == len(after)
        for old, new in zip(before, after, strict=True):
            if old != new:
                assert old.lower().strip(".,;:!?()\"'") in GROUP_OF, (old, new)
                assert re.sub(r"[A-Za-z]", "", old) == re.sub(r"[A-Za-z]", "", new)
                assert old[0].isupper() == new[0].isupper()
        for article, word in re.findall(r"\b(a|an) ([A-Za-z]+)", marked):
            if word.lower() in GROUP_OF:
                assert (article == "an") == takes_an(word), (article, word)


def test_at_most_five_percent_of_words_change(docs: list[str]) -> None:
    changed = total = 0
    for text in docs:
        marker = Marker(Key(KEY))
        marker.feed(text)
        marker.flush()
        changed += marker.changed
        total += len(text.split())
    assert changed / total <= 0.05


def test_a_stream_marked_in_pieces_is_the_text_marked_whole(docs: list[str]) -> None:
    rng = random.Random(5)
    for text in docs[:20]:
        marker = Marker(Key(KEY))
        pieces = []
        at = 0
        while at < len(text):
            step = rng.randint(1, 12)
            pieces.append(marker.feed(text[at : at + step]))
            at += step
        pieces.append(marker.flush())
        assert "".join(pieces) == mark(text, KEY)


def test_a_paragraph_break_split_across_pieces_is_still_one() -> None:
    # A stray backtick is closed by the paragraph's end, however the stream
    # cuts the blank line.
    text = "Use ` carefully.\n\nThen we often need quick answers, as it is usual."
    for i in range(8):
        key = f"split-key-{i}".encode()
        whole = mark(text, key)
        assert detect(whole, key).slots >= 2
        for cut in range(len("Use ` carefully.") + 1, len("Use ` carefully.\n\n")):
            marker = Marker(Key(key))
            assert marker.feed(text[:cut]) + marker.feed(text[cut:]) + marker.flush() == whole


def test_a_stream_holds_back_at_most_the_word_in_progress() -> None:
    marker = Marker(Key(KEY))
    # The space after the last complete word is held too: more may follow
    # ("\n" then "\n" is a paragraph's end).
    assert marker.feed("The main") == "The"
    out = marker.feed(" goal is")
    assert out.split()[0] in ("main", "primary") and out.endswith(" goal")
    out = marker.feed(" to improve")
    assert out == " is to"
    assert marker.flush() in (" improve", " enhance")


def test_marked_text_is_detected_and_the_null_holds(docs: list[str]) -> None:
    marked = [mark(text, KEY) for text in docs]
    strong = [detect(text, KEY).p_value for text in marked]
    # Documents of 500 words of this (terse, technical) prose: most reach
    # p < 1e-4, nine in ten p < 1e-3 (a few hold only four or five slots).
    assert sorted(strong)[len(strong) // 2] < 1e-4
    assert sum(p < 1e-3 for p in strong) >= 0.9 * len(strong)
    wrong_key = [detect(text, b"another-key-entirely").p_value for text in marked]
    unmarked = [detect(text, KEY).p_value for text in docs]
    # 240 checks at a level of 1e-3: more than two would be a broken null.
    assert sum(p < 1e-3 for p in wrong_key + unmarked) <= 2
    # A corpus is one body of evidence: slots de-duplicated across texts.
    detector = Detector(KEY)
    for text in marked[:10]:
        detector.feed(text)
    evidence = detector.evidence()
    assert evidence.hits == evidence.slots and evidence.p_value < 1e-30


def test_the_exact_tail_matches_the_binomial() -> None:
    from math import comb

    n, k = 30, 22
    exact = sum(comb(n, i) for i in range(k, n + 1)) / 2**n
    assert upper_tail([0.5] * n, k) == pytest.approx(exact, rel=1e-9)
    assert upper_tail([0.5] * 10, 0) == 1.0 and upper_tail([0.5] * 10, 11) == 0.0


def test_negations_are_one_slot_written_either_way() -> None:
    text = ("Then you do not need it. He isn't here; we cannot go. So they don't panic! "
            "I DO NOT care. He does NOT agree, and `do not` is code. Why don't you? "
            "It works, doesn't it? Don't you see?")
    untouched = ("I DO NOT care", "He does NOT agree", "`do not` is code", "Why don't you?",
                 "It works, doesn't it?", "Don't you see?")
    seen: set[str] = set()
    for i in range(12):
        key = f"negation-key-{i}".encode()
        marked = mark(text, key)
        assert expanded(marked).lower() == expanded(text).lower()  # same words, either form
        for part in untouched:  # emphasis, capitals, code and questions stay as written
            assert part in marked, (part, marked)
        evidence = detect(marked, key)
        assert evidence.slots == 4 and evidence.hits == 4
        seen.update(re.findall(r"you do not|you don't|they do not|they don't|can't|cannot",
                               marked))
    assert seen == {"you do not", "you don't", "they do not", "they don't", "can't", "cannot"}


def test_an_auxiliary_is_held_one_word_at_most() -> None:
    key = Key(KEY)
    marker = Marker(key)
    assert marker.feed("Users do") == "Users"
    assert marker.feed(" not") == " "         # "do" waits: is "not" next?
    out = marker.feed(" need it")
    assert out in ("do not need", "don't need")
    assert marker.flush() == " it"
    marker = Marker(key)
    assert marker.feed("Users do ") == "Users "
    assert marker.feed("this ") == "do this"  # not a negation: "do" goes out as it was


def test_a_pronoun_and_its_verb_are_one_slot_written_either_way() -> None:
    text = ("Now it is easy, and you will see that it's fine. There is a way; here's how. "
            "They are done and I'm sure. I will go, we're here.")
    seen: set[str] = set()
    for i in range(12):
        key = f"contraction-key-{i}".encode()
        marked = mark(text, key)
        assert expanded(marked).lower() == expanded(text).lower()  # same words, either form
        evidence = detect(marked, key)
        assert evidence.slots == 9 and evidence.hits == 9, marked
        assert detect(expanded(marked), key).slots == 9  # either form, the same slots
        seen.update(re.findall(r"it is|it's|you will|you'll|There is|There's|I'm|I am", marked))
    assert seen == {"it is", "it's", "you will", "you'll", "There is", "There's", "I'm", "I am"}
    # Where the verb may end a clause, stands for "has", is stressed, code or
    # a name, or "there" is an adverb, nothing changes.
    untouched = ("So it's been a while. It's got a flag. It's never failed. It's changed. "
                 "Speed here is lower than it is in C. "
                 "Say what it is and go. The file there is old. The `path` there is old. "
                 "It IS. Run `it is` now. "
                 "Yes, it is. As you will see, it is, we are.")
    for i in range(12):
        key = f"contraction-key-{i}".encode()
        assert detect(untouched, key).slots == 0
        assert mark(untouched, key) == untouched


def test_a_contraction_is_written_with_the_texts_apostrophe() -> None:
    text = "Python\u2019s rules: you do not need it, and it is fine. We will see."
    forms = set()
    for i in range(16):
        key = f"apostrophe-key-{i}".encode()
        marked = mark(text, key)
        assert "'" not in marked  # the text's own apostrophe, not a straight one
        assert detect(marked, key).hits == detect(marked, key).slots == 3
        forms.update(re.findall(r"\w+\u2019\w+", marked))
    assert {"don\u2019t", "it\u2019s", "We\u2019ll"} <= forms
    assert "don't" in {mark("So you do not.", f"k{i}".encode())[7:12] for i in range(16)}


def test_a_pronoun_is_held_one_word_at_most() -> None:
    marker = Marker(Key(KEY))
    assert marker.feed("So it") == "So"
    assert marker.feed(" is") == " "           # "it" waits: is its verb next?
    assert marker.feed(" easy") in ("it is", "it's")
    assert marker.flush() == " easy"
    marker = Marker(Key(KEY))
    assert marker.feed("So it's ") == "So "     # "it's" waits: "it has been"?
    assert marker.feed("been ") == "it's been"
    marker = Marker(Key(KEY))
    assert marker.feed("So it does ") == "So it "  # no verb of its own: "it" goes out


def test_a_groups_choices_do_not_depend_on_its_place_in_the_table() -> None:
    """The key hashes a group's name, so removing or adding a group leaves the
    others' choices as they were: marks made before an edit are still found."""
    import hashlib
    import hmac
    from importlib import resources

    from guardgate.perturb.watermark import table

    text = resources.files("guardgate.perturb.watermark").joinpath("synonyms.txt").read_text()
    lines = text.splitlines()
    first_group = next(i for i, line in enumerate(lines)
                       if line and not line.startswith(("#", "@")))
    names = table.parse(text)[2]
    fewer = table.parse("\n".join(lines[:first_group] + lines[first_group + 1:]))[2]
    assert fewer == names[1:]
    group = GROUP_OF["quickly"][0]
    candidates = groups()[group]
    digest = hmac.new(KEY, f"the\x1f{names[group]}".encode(), hashlib.sha256).digest()
    expected = sorted(candidates)[int.from_bytes(digest[:8], "big") % len(candidates)]
    assert Key(KEY).choice("the", group, candidates) == expected


def test_a_stray_bracket_or_backtick_does_not_end_marking() -> None:
    prose = " ".join(["We often need several quick answers."] * 40)
    for stray in ("See [1 for details. ", "Use ` carefully. "):
        text = stray + prose
        evidence = detect(mark(text, KEY), KEY)
        assert evidence.slots >= 3, stray  # the prose after the stray mark is still marked
