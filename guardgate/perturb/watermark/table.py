"""The watermark's vocabulary: the synonym groups of ``synonyms.txt``, the
negations and pronoun contractions that are slots as well, and the word
lists that say where a slot may begin."""

from __future__ import annotations

import re
from importlib import resources

Table = tuple[tuple[tuple[str, ...], ...], tuple[frozenset[str] | None, ...], tuple[str, ...],
              tuple[frozenset[str], ...]]


def parse(text: str, sets: dict[str, frozenset[str]] | None = None) -> Table:
    """The groups of ``synonyms.txt``; for each, the words it must follow
    (None: it holds after any word), its name, and the words it must not
    follow ("in particular" is no "in specific"). ``sets``: word sets
    defined elsewhere (the shipped table's, for a private one), added to
    in place by the text's own."""
    sets = {} if sets is None else sets
    members: list[tuple[str, ...]] = []
    after: list[frozenset[str] | None] = []
    names: list[str] = []
    excepts: list[frozenset[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            name, _, words = line[1:].partition(":")
            sets[name.strip()] = frozenset(words.split())
            continue
        name, colon, words = line.rpartition(":")
        name = name.strip()
        members.append(tuple(word.strip() for word in words.split(",")))
        negated = name.startswith("!")
        after.append(sets[name] if colon and not negated else None)
        excepts.append(sets[name[1:]] if negated else frozenset())
        names.append(f"{name}:{','.join(sorted(members[-1]))}")
    return tuple(members), tuple(after), tuple(names), tuple(excepts)


GROUPS, _AFTER, _SYNONYM_NAMES, _EXCEPT = parse(
    resources.files("guardgate.perturb.watermark").joinpath("synonyms.txt").read_text()
)
# For each word, the groups it belongs to (more than one only where their
# contexts are disjoint).
GROUP_OF: dict[str, tuple[int, ...]] = {}
for _index, _members in enumerate(GROUPS):
    for _word in _members:
        GROUP_OF[_word] = (*GROUP_OF.get(_word, ()), _index)


def groups() -> tuple[tuple[str, ...], ...]:
    return GROUPS


def contexts() -> tuple[frozenset[str] | None, ...]:
    """For each group of `groups`, the words it must follow (None: any)."""
    return _AFTER


# Words spelt with a vowel that start with a consonant sound, and silent h.
_CONSONANT_SOUND = ("use", "usa", "usu", "uti", "ubi", "uni", "eu", "one")
_SILENT_H = ("honest", "hour", "heir", "honor", "honour")


def takes_an(word: str) -> bool:
    """Whether ``word`` takes "an" rather than "a"."""
    w = word.lower()
    if w.startswith(_SILENT_H):
        return True
    return w[:1] in "aeiou" and not w.startswith(_CONSONANT_SOUND)


# Negations: "do not" and "don't" are one slot written either way ("cannot"
# and "can't" too). The expanded form is two words, so a stream holds an
# auxiliary back until the next word shows whether "not" follows: the
# one-word look-ahead. Either way, the word after it has "not" for context.
_NEGATIONS: dict[str, str] = {
    "do": "don't", "does": "doesn't", "did": "didn't", "is": "isn't", "are": "aren't",
    "was": "wasn't", "were": "weren't", "has": "hasn't", "have": "haven't",
    "had": "hadn't", "will": "won't", "would": "wouldn't", "should": "shouldn't",
    "could": "couldn't", "must": "mustn't", "can": "can't",
}
AUXILIARIES = frozenset(_NEGATIONS) - {"can"}  # "can not" is not "cannot"

# A pronoun and the verb after it are one slot as well: "it is" or "it's",
# "you will" or "you'll". A stream holds the pronoun back until the next word
# shows whether the verb follows. "'s" may stand for "has" ("it's been"), so
# a contraction in "'s" is a slot only when the word after it is not one
# that says so: it is held until that word is seen.
PAIRS: dict[tuple[str, str], str] = {
    ("it", "is"): "it's", ("that", "is"): "that's", ("there", "is"): "there's",
    ("here", "is"): "here's", ("you", "are"): "you're", ("we", "are"): "we're",
    ("they", "are"): "they're", ("i", "am"): "i'm", ("you", "will"): "you'll",
    ("we", "will"): "we'll", ("they", "will"): "they'll", ("i", "will"): "i'll",
}
PRONOUNS = frozenset(pronoun for pronoun, _ in PAIRS)
# After these the verb may end a clause that has no comma ("than it is in
# C", "what it is and"), where it cannot be contracted.
NOT_BEFORE_PRONOUN = frozenset({"than", "as", "what", "where", "how", "who", "whom", "which",
                                "why", "whatever", "wherever", "however", "whoever",
                                "whichever"})
# "there" and "here" begin a clause ("there is a way"), or follow a word that
# opens one; after a noun they are adverbs ("the file there is old").
OPENERS = frozenset({"and", "but", "or", "if", "when", "whether", "that", "because",
                     "since", "unless", "while", "so", "then", "now"})
# After these "'s" is "has" ("it's been", "it's become"), or may be ("it's
# already run", "it's changed").
HAS = frozenset({
    "been", "got", "gotten", "had", "become", "come", "gone", "taken", "made", "grown",
    "changed", "happened", "worked", "improved", "moved", "stopped", "started", "failed",
    "succeeded", "ended", "increased", "decreased", "fallen", "risen", "arrived", "appeared",
    "disappeared", "seemed", "managed", "already", "never", "ever", "always", "since",
    "recently", "finally", "long", "yet",
})
# Before these a negation asks ("Why don't you", "how can't it"); at a
# sentence's start or after a comma it may too ("Isn't it?", ", doesn't it?").
QUESTION_WORDS = frozenset({"why", "how", "what", "where", "when", "who", "whom", "whose",
                            "which"})

# Each contraction, a slot of its own, and the two words it stands for:
# "don't" is "do not", "it's" is "it is", "can't" is "cannot" (one word:
# "can not" is no negation of "can").
SPELLED: dict[str, tuple[str, str]] = {
    **{short: (aux, "not") for aux, short in _NEGATIONS.items()},
    **{short: pair for pair, short in PAIRS.items()},
}
FORMS = {short: ("cannot" if short == "can't" else " ".join(words), short)
         for short, words in SPELLED.items()}
SPANS = {words: short for short, words in SPELLED.items() if short != "can't"}
# What the key hashes for a group: its name, not its place in the table, so
# that editing one group leaves every other group's choices as they were
# (marks made before the edit are still found after it).
NAMES = (*_SYNONYM_NAMES, *(f"{'negation' if words[1] == 'not' else 'contraction'}:"
                            f"{','.join(FORMS[short])}" for short, words in SPELLED.items()))
APOSTROPHE = str.maketrans({"\u2019": "'"})


def _sets(text: str) -> dict[str, frozenset[str]]:
    sets: dict[str, frozenset[str]] = {}
    parse(text, sets)
    return sets


_SHIPPED_TEXT = resources.files("guardgate.perturb.watermark").joinpath("synonyms.txt").read_text()
_SHIPPED_SETS = _sets(_SHIPPED_TEXT)
_WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")


def check_private(text: str) -> list[str]:
    """What is wrong with a private table (``watermark.groups``), one line
    each: its lines are groups in the format of ``synonyms.txt``, which may
    name the shipped word sets (``verb: ...``, ``det: ...``); a group needs
    two members or more, lower-case words, none of them a word of another
    group (shipped or private)."""
    problems: list[str] = []
    sets = dict(_SHIPPED_SETS)
    taken = set(GROUP_OF) | set(SPELLED) | {w for pair in SPELLED.values() for w in pair}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            name, colon, words = line[1:].partition(":")
            if not colon or not name.strip() or not words.split():
                problems.append(f"line {number}: a word set is '@NAME: word word ...'")
            else:
                sets[name.strip()] = frozenset(words.split())
            continue
        name, _, words = line.rpartition(":")
        name = name.strip().removeprefix("!")
        members = [word.strip() for word in words.split(",")]
        if name and name not in sets:
            problems.append(f"line {number}: no word set named {name!r} (define it with "
                            f"'@{name}: ...' or use one of {', '.join(sorted(_SHIPPED_SETS))})")
        if len(members) < 2:
            problems.append(f"line {number}: a group needs two members or more, "
                            "separated by commas")
        for word in members:
            if not _WORD.fullmatch(word):
                problems.append(f"line {number}: {word!r} is not a lower-case word")
            elif word in taken:
                problems.append(f"line {number}: {word!r} is already a word of another group")
            taken.add(word)
    return problems


class Vocabulary:
    """The slots a deployment marks: the shipped groups, then the groups of
    its private table (``watermark.groups``, which no adversary holding the
    package can enumerate), then the negations and pronoun contractions.
    What the key hashes for a private group is its name prefixed
    ``private:``."""

    def __init__(self, private: str = "") -> None:
        problems = check_private(private) if private else []
        if problems:
            raise ValueError("; ".join(problems))
        own, own_after, own_names, own_excepts = parse(private, dict(_SHIPPED_SETS))
        self.groups: tuple[tuple[str, ...], ...] = (*GROUPS, *own)
        self.after: tuple[frozenset[str] | None, ...] = (*_AFTER, *own_after)
        self.excepts: tuple[frozenset[str], ...] = (*_EXCEPT, *own_excepts)
        self.shipped = len(GROUPS)  # groups below this index are the package's
        self.private = len(own)
        self.group_of: dict[str, tuple[int, ...]] = {}
        for index, members in enumerate(self.groups):
            for word in members:
                self.group_of[word] = (*self.group_of.get(word, ()), index)
        self.contraction_group = {short: len(self.groups) + i for i, short in enumerate(SPELLED)}
        self.names: tuple[str, ...] = (
            *_SYNONYM_NAMES, *(f"private:{name}" for name in own_names), *NAMES[len(GROUPS):])

    def group_after(self, word: str, previous: str) -> int | None:
        """The group ``word`` is a slot of when it follows ``previous``, if any."""
        for index in self.group_of.get(word, ()):
            needs = self.after[index]
            if (needs is None or previous in needs) and previous not in self.excepts[index]:
                return index
        return None

    def candidates(self, group: int, previous: str) -> tuple[str, ...]:
        """The members of ``group`` a slot after ``previous`` may be written as:
        after "a" or "an" only those taking the same article, so that no
        article disagreement is introduced."""
        members = self.groups[group]
        if previous in ("a", "an"):
            wants_an = previous == "an"
            return tuple(m for m in members if takes_an(m) == wants_an)
        return members

    def is_private(self, group: int) -> bool:
        return self.shipped <= group < self.shipped + self.private

    def is_synonym(self, group: int) -> bool:
        """A synonym group (shipped or private), not a contraction."""
        return group < self.shipped + self.private


SHIPPED = Vocabulary()


def enumerable_groups() -> tuple[tuple[str, ...], ...]:
    """Every synonym group the package itself can ever mark: what an
    adversary holding it can enumerate (a deployment's private groups are
    not among them)."""
    return GROUPS


def enumerable_contexts() -> tuple[frozenset[str] | None, ...]:
    return _AFTER
