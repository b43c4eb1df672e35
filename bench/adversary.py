"""What an adversary holding the installed package can do to marked text,
without the key.

The package ships its vocabulary: the synonym groups, negations and pronoun
contractions the marker may write, in `guardgate.perturb.watermark.table`.
An adversary reads the same data (`pool`: the package's
``enumerable_groups()`` where it has one, every group it can ever use, else
the shipped table; with the contractions of ``FORMS`` and the contexts of
``contexts()``) and rewrites every place where a form of a group stands:

- `canonicalize`: every form to its group's one fixed form, and so every
  contraction expanded ("don't" to "do not", "it's" to "it is", "can't" to
  "cannot"). The detector then finds the keyed member at a slot by chance
  only.
- `random_synonym`: every form to a member of its group drawn at random.
- `CONTAINERS`: the answer asked for inside a container (a fenced code
  block, JSON string values, capitals), marked as the marker marks what it
  finds there, then taken out of it: ``wrap`` is what the upstream writes
  when asked, ``unwrap`` the adversary's function from the marked container
  to plain text.

Each rewrite is a function of the text alone. It keeps the text's case,
punctuation and apostrophes, turns "a" into "an" (or back) where the word
after it changed, leaves code (fenced, inline) alone, and writes no form
where it would not read: a negation asking ("Don't you", "isn't it"), a
contracted pronoun and verb ending a clause ("than it is."), "it's" before
"been" (that one is "it has").

    from bench.adversary import canonicalize, random_synonym, words_changed
    plain = canonicalize(marked_text)
    changed, total = words_changed(marked_text, plain)
"""

from __future__ import annotations

import difflib
import json
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from guardgate.perturb.watermark import table

# The contractions the package writes, each with its two forms ("don't":
# "do not", "don't") and the two words it stands for ("do", "not").
_FORMS: dict[str, tuple[str, ...]] = getattr(table, "FORMS", {})
_SPELLED: dict[str, tuple[str, ...]] = getattr(table, "SPELLED", {})


@dataclass(frozen=True, slots=True)
class Group:
    """Forms written interchangeably: lower case, a form may be two words
    ("do not") or a contraction ("don't")."""

    forms: tuple[str, ...]
    after: frozenset[str] | None = None  # the words it must follow, where the package says so
    not_after: frozenset[str] = frozenset()  # and those it must not ("in particular")


def _groups_of(found: Iterable[Iterable[str]],
               contexts: Sequence[frozenset[str] | None] | None) -> list[Group]:
    """Groups of forms, with the contexts given or, for a group of the
    shipped table, the table's."""
    shipped = [frozenset(group) for group in table.groups()]
    known = dict(zip(shipped, table.contexts(), strict=True))
    excepts = dict(zip(shipped, getattr(table, "_EXCEPT", [frozenset()] * len(shipped)),
                       strict=True))
    out = []
    for index, forms in enumerate(found):
        members = tuple(str(form).lower() for form in forms)
        after = contexts[index] if contexts is not None else known.get(frozenset(members))
        out.append(Group(members, after, excepts.get(frozenset(members), frozenset())))
    return out


def pool() -> tuple[Group, ...]:
    """Every group the installed package can write: its
    ``enumerable_groups()`` where it has one (groups of forms, as `groups()`
    gives them; with ``enumerable_contexts()`` alongside, or the shipped
    table's contexts for the groups it shares), else its table's groups; and
    the negations and pronoun contractions."""
    enumerable = getattr(table, "enumerable_groups", None)
    if callable(enumerable):
        listing = getattr(table, "enumerable_contexts", None)
        contexts = tuple(listing()) if callable(listing) else None
        groups = _groups_of(enumerable(), contexts)
    else:
        groups = _groups_of(table.groups(), tuple(table.contexts()))
    seen = {frozenset(group.forms) for group in groups}
    for forms in _FORMS.values():
        if frozenset(forms) not in seen:
            seen.add(frozenset(forms))
            groups.append(Group(tuple(forms)))
    return tuple(groups)


def _fixed_forms(groups: Sequence[Group]) -> list[str]:
    """Each group's fixed form: groups sharing a form are one class ("use,
    utilize, employ" and "use, usage"), written as the form in most of its
    groups ("use"); then one without an apostrophe ("do not", "cannot"); then
    the first listed."""
    parent = list(range(len(groups)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for index, group in enumerate(groups):
        for form in group.forms:
            parent[root(index)] = root(first.setdefault(form, index))
    counts: dict[int, dict[str, int]] = {}
    for index, group in enumerate(groups):
        forms = counts.setdefault(root(index), {})
        for form in group.forms:
            forms[form] = forms.get(form, 0) + 1
    best = {}
    for cls, forms in counts.items():
        order = list(forms)
        best[cls] = max(order, key=lambda f: (forms[f], "'" not in f, -order.index(f)))
    return [best[root(index)] for index in range(len(groups))]


class Vocabulary:
    """A pool's groups, looked up by form."""

    def __init__(self, groups: Sequence[Group]) -> None:
        self.groups = tuple(groups)
        self.fixed = _fixed_forms(self.groups)
        self.of: dict[tuple[str, ...], tuple[int, ...]] = {}
        for index, group in enumerate(self.groups):
            for form in group.forms:
                words = tuple(form.split())
                self.of[words] = (*self.of.get(words, ()), index)
        self.longest = max((len(words) for words in self.of), default=1)

    def holds(self, group: int, previous: str) -> bool:
        """Whether a form of ``group`` after ``previous`` is one of it."""
        after = self.groups[group].after
        return (after is None or previous in after) and previous not in self.groups[group].not_after


@lru_cache(maxsize=1)
def vocabulary() -> Vocabulary:
    """The installed package's pool, looked up by form."""
    return Vocabulary(pool())


@dataclass(frozen=True, slots=True)
class Occurrence:
    """A form of a group found in a text."""

    form: str               # lower case, as written (curly apostrophes straightened)
    groups: tuple[int, ...]  # the groups it is a form of after ``previous``
    previous: str           # the word before it, lower case, when nothing stands between
    following: str          # the word after it, lower case ("" at a clause's end)


Choose = Callable[[Occurrence, Vocabulary], str]

_CHUNK = re.compile(r"\S+")
_PARTS = re.compile(r"^([^A-Za-z0-9]*)([A-Za-z]+(?:['\u2019][A-Za-z]+)?)([^A-Za-z0-9]*)$")
_CODE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]+`", re.DOTALL)
_SUBJECTS = frozenset({"i", "you", "he", "she", "it", "we", "they", "there", "this", "that"})
# The package's own word lists where it has them: after these "'s" is "has",
# a pronoun's verb may end a clause, "there" begins one.
_HAS = frozenset(getattr(table, "HAS", ())) | {"been", "got", "had"}
_CLAUSE = frozenset(getattr(table, "NOT_BEFORE_PRONOUN", ())) | {"than", "as", "what"}
_OPENERS = frozenset(getattr(table, "OPENERS", ())) | {"and", "but", "if", "that"}


@dataclass(slots=True)
class _Word:
    start: int  # of the word, after its leading punctuation
    end: int
    lead: str
    core: str
    trail: str
    gap: str  # the white space before it


def _words(text: str) -> list[_Word | None]:
    """The text's chunks as words (None: a chunk no rewrite touches, such
    as code, a number or an identifier)."""
    code = [m.span() for m in _CODE.finditer(text)]
    out: list[_Word | None] = []
    last = 0
    at = 0
    for match in _CHUNK.finditer(text):
        start, end = match.span()
        while at < len(code) and code[at][1] <= start:
            at += 1
        inside = at < len(code) and code[at][0] < end
        parts = None if inside else _PARTS.match(match.group())
        if parts is None:
            out.append(None)
        else:
            lead, core, trail = parts.groups()
            out.append(_Word(start + len(lead), start + len(lead) + len(core), lead, core, trail,
                             text[last:start]))
        last = end
    return out


def _cased(form: str, like: str) -> str:
    """``form`` in the case of the word it replaces (and "I" in capitals)."""
    if len(like) > 1 and like.isupper():
        return form.upper()
    words = ["I" + w[1:] if w == "i" or w.startswith("i'") else w for w in form.split()]
    text = " ".join(words)
    return text[0].upper() + text[1:] if like[0].isupper() else text


def reads(form: str, at: Occurrence) -> bool:
    """Whether ``form`` may be written at ``at``: not an expanded negation
    before its subject ("do not you"), not a contracted pronoun ending a
    clause ("than it's.") or with "there" for an adverb ("the file there's"),
    nor "it is" for an "it's" standing for "it has"."""
    if at.form.endswith("n't") and at.following in _SUBJECTS and "'" not in form:
        return False
    if "'" in form and not form.endswith("n't"):
        if not at.following or at.previous in _CLAUSE:
            return False
        if form.startswith(("there", "here")) and at.previous and at.previous not in _OPENERS:
            return False
    return not (at.form.endswith("'s") and at.following in _HAS and form != at.form)


def rewrite(text: str, choose: Choose, words: Vocabulary | None = None) -> str:
    """``text`` with each form of a group of ``words`` (the installed
    package's by default) written as ``choose`` says."""
    vocab = words or vocabulary()
    chunks = _words(text)
    edits: list[tuple[int, int, str]] = []
    i = 0
    while i < len(chunks):
        word = chunks[i]
        if word is None:
            i += 1
            continue
        found = _match(chunks, i, vocab)
        if found is None:
            i += 1
            continue
        size, occurrence = found
        last = chunks[i + size - 1]
        assert last is not None
        chosen = choose(occurrence, vocab)
        if chosen != occurrence.form:
            curly = "\u2019" in text[word.start : last.end]
            written = _cased(chosen, word.core)
            edits.append((word.start, last.end,
                          written.replace("'", "\u2019") if curly else written))
            before = chunks[i - 1] if i else None
            article = "an" if table.takes_an(chosen) else "a"
            if before is not None and not before.trail and not word.lead \
                    and before.core.lower() in ("a", "an") and before.core.lower() != article:
                edits.append((before.start, before.end, _cased(article, before.core)))
        i += size
    out = []
    done = 0
    for start, end, written in sorted(edits):
        out += [text[done:start], written]
        done = end
    return "".join(out) + text[done:]


def _match(chunks: list[_Word | None], i: int,
           vocab: Vocabulary) -> tuple[int, Occurrence] | None:
    """The longest form of a group starting at chunk ``i``, if any."""
    before = chunks[i - 1] if i else None
    first = chunks[i]
    assert first is not None
    previous = ""
    if before is not None and not before.trail and not first.lead and "\n" not in first.gap:
        previous = before.core.lower().replace("\u2019", "'")
        previous = _SPELLED[previous][1] if previous in _SPELLED else previous  # "can't": "not"
    for size in range(min(vocab.longest, len(chunks) - i), 0, -1):
        span = chunks[i : i + size]
        if any(w is None for w in span):
            continue
        words = [w for w in span if w is not None]
        if any(w.trail for w in words[:-1]) or any(w.lead or "\n" in w.gap for w in words[1:]):
            continue
        form = tuple(w.core.lower().replace("\u2019", "'") for w in words)
        groups = tuple(g for g in vocab.of.get(form, ()) if vocab.holds(g, previous))
        if not groups:
            continue
        after = chunks[i + size] if i + size < len(chunks) else None
        following = ""
        if after is not None and not words[-1].trail and not after.lead:
            following = after.core.lower().replace("\u2019", "'")
        return size, Occurrence(" ".join(form), groups, previous, following)
    return None


def _fixed(at: Occurrence, vocab: Vocabulary) -> str:
    """The fixed form of ``at``'s group, where it reads; "it's" before
    "been" expanded as "it has"."""
    form = vocab.fixed[at.groups[0]]
    if at.form.endswith("'s") and at.following in _HAS:
        pronoun = at.form[:-2]
        return f"{pronoun} has" if (pronoun, "is") in getattr(table, "PAIRS", {}) else at.form
    return form if reads(form, at) else at.form


def canonicalize(text: str, words: Vocabulary | None = None) -> str:
    """``text`` with every form of every group written as its group's fixed
    form: synonyms as one member, negations and pronoun contractions
    expanded."""
    return rewrite(text, _fixed, words)


def random_synonym(text: str, seed: int = 0, words: Vocabulary | None = None) -> str:
    """``text`` with every form of every group written as a member of its
    group drawn at random (``seed``)."""
    rng = random.Random(seed)

    def drawn(at: Occurrence, vocab: Vocabulary) -> str:
        forms = [f for f in vocab.groups[at.groups[0]].forms if reads(f, at)]
        return rng.choice(forms) if forms else at.form

    return rewrite(text, drawn, words)


# Containers: what the upstream writes when asked for the answer in one,
# and the adversary's way back to plain text.


def fenced(text: str) -> str:
    return f"```\n{text}\n```"


def unfenced(text: str) -> str:
    lines = text.strip().splitlines()
    return "\n".join(lines[1:-1] if lines and lines[-1].startswith("```") else lines[1:])


def as_json(text: str) -> str:
    """The answer's paragraphs as the string values of a JSON list, on one
    line, as a model asked for JSON writes it."""
    return json.dumps({"paragraphs": text.split("\n\n")}, ensure_ascii=False)


def from_json(text: str) -> str:
    values: list[str] = []

    def strings(value: object) -> None:
        if isinstance(value, str):
            values.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                strings(item)
        elif isinstance(value, list):
            for item in value:
                strings(item)

    strings(json.loads(text))
    return "\n\n".join(values)


def capitals(text: str) -> str:
    return text.upper()


_SENTENCE_START = re.compile(r"(^|[.!?][\"')\]]*\s+|\n\s*)([\"'(\[]*)([a-z])")
_PRONOUN_I = re.compile(r"\bi\b(?=$|[\s,.;:!?'\u2019\"])")


def from_capitals(text: str) -> str:
    """Text in capitals in sentence case: lower case but a sentence's first
    letter and the pronoun "I" (names stay in lower case: the adversary has
    no list of them)."""
    lower = _PRONOUN_I.sub("I", text.lower())
    return _SENTENCE_START.sub(lambda m: m.group(1) + m.group(2) + m.group(3).upper(), lower)


@dataclass(frozen=True, slots=True)
class Container:
    wrap: Callable[[str], str]
    unwrap: Callable[[str], str]


CONTAINERS = {
    "fenced code block": Container(fenced, unfenced),
    "JSON string values": Container(as_json, from_json),
    "capitals": Container(capitals, from_capitals),
}


def words_changed(before: str, after: str) -> tuple[int, int]:
    """How many of the words of ``before`` a rewrite into ``after`` changed
    (replaced or removed; an expansion such as "don't" to "do not" counts
    once), and how many words ``before`` has."""
    old, new = before.split(), after.split()
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    kept = sum(block.size for block in matcher.get_matching_blocks())
    return len(old) - kept, len(old)


# A student: what a model trained on the rewritten answers would write.

_START, _END = "<s>", "</s>"


class Trigram:
    """A word trigram language model trained on texts (a paragraph a
    sentence), sampled with Witten-Bell backoff: after a context seen N times
    followed by T distinct words, the next word is drawn from the trigram's
    counts with probability N / (N + T), else from the bigram's (likewise),
    else from the unigram's."""

    def __init__(self, texts: Iterable[str]) -> None:
        # By context length (0, 1, 2): each context's counts of the word after it.
        self._counts: tuple[dict[tuple[str, ...], dict[str, int]], ...] = ({}, {}, {})
        for text in texts:
            for paragraph in text.split("\n\n"):
                words = paragraph.split()
                if not words:
                    continue
                sequence = [_START, _START, *words, _END]
                for i in range(2, len(sequence)):
                    word = sequence[i]
                    for n, counts in enumerate(self._counts):
                        following = counts.setdefault(tuple(sequence[i - n : i]), {})
                        following[word] = following.get(word, 0) + 1
        self._drawn: dict[tuple[str, ...], tuple[list[str], list[int]]] = {}

    def _choices(self, context: tuple[str, ...]) -> tuple[list[str], list[int]] | None:
        """The words seen after ``context`` and their cumulative counts."""
        if context not in self._drawn:
            following = self._counts[len(context)].get(context)
            if following is None:
                return None
            total = 0
            cumulative = []
            for count in following.values():
                total += count
                cumulative.append(total)
            self._drawn[context] = (list(following), cumulative)
        return self._drawn[context]

    def _next(self, context: tuple[str, str], rng: random.Random) -> str:
        for n in (2, 1, 0):
            choices = self._choices(context[2 - n :])
            if choices is None:
                continue
            words, cumulative = choices
            seen = cumulative[-1]
            if n == 0 or rng.random() * (seen + len(words)) < seen:
                return rng.choices(words, cum_weights=cumulative)[0]
        raise ValueError("the model was trained on no text")

    def sample(self, words: int, seed: int) -> str:
        """``words`` words of text drawn from the model, in paragraphs."""
        rng = random.Random(seed)
        paragraphs: list[str] = []
        count = 0
        while count < words:
            context = (_START, _START)
            paragraph: list[str] = []
            while len(paragraph) < min(words - count, 1000):
                word = self._next(context, rng)
                if word == _END:
                    break
                paragraph.append(word)
                context = (context[1], word)
            count += len(paragraph)
            paragraphs.append(" ".join(paragraph))
        return "\n\n".join(p for p in paragraphs if p)
