"""A keyed lexical watermark on answer text, and its detector.

Where the text uses a word from a group of the synonym table
(``synonyms.txt``), the marker writes the group member that a keyed hash of
its context (the word before it) selects. Some groups hold only after
certain words (a base verb after "to" or a modal, a noun after a
determiner), which the table names. Negations are slots as well: "do not"
or "don't", "cannot" or "can't", written as the key chooses, and so are a
pronoun and its verb: "it is" or "it's", "you will" or "you'll". Text
marked this way, and any
model trained on enough of it, prefers the keyed member after each context
far more often than chance; the detector counts, over distinct (context,
group) slots, how often the keyed member appears, and reports a z-score and
the one-sided p-value of that count under the null (a text written without
the key hits each slot with probability 1 / its number of candidates).

What is never touched: fenced and inline code, lines indented as code or
starting with a prompt (>>>, ..., $), URLs, paths and e-mail addresses,
anything between braces or brackets (JSON; a stray one stops counting after
64 chunks or at a paragraph's end), words with digits or inner punctuation,
capitalized words inside a sentence (likely names), words in capitals,
negations that ask ("doesn't it?", "Why don't you"), and a pronoun's verb
where it may end a clause ("than it is in C", "what it is") or where "there"
is an adverb ("the file there is old"). Case and surrounding
punctuation are kept, and a contraction is written with the apostrophe the
text uses (straight or curly). After "a" or "an" only the members
that take the same article are candidates, so no article disagreement is
introduced.

`Marker` works on a stream: `feed` returns the text up to the last complete
word and holds back the space after it and the word in progress (and an auxiliary, a pronoun or a
contraction in "'s", until the next word shows whether "not" or the verb
follows, or whether "'s" stands for "has"); `flush` returns the rest.
Marking a stream chunk by chunk gives exactly the text marking it whole
does.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

_Table = tuple[tuple[tuple[str, ...], ...], tuple[frozenset[str] | None, ...], tuple[str, ...],
               tuple[frozenset[str], ...]]


def _table(text: str) -> _Table:
    """The groups of ``synonyms.txt``; for each, the words it must follow
    (None: it holds after any word), its name, and the words it must not
    follow ("in particular" is no "in specific")."""
    sets: dict[str, frozenset[str]] = {}
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


_GROUPS, _AFTER, _NAMES, _EXCEPT = _table(
    resources.files("guardgate.perturb").joinpath("synonyms.txt").read_text()
)
# For each word, the groups it belongs to (more than one only where their
# contexts are disjoint).
GROUP_OF: dict[str, tuple[int, ...]] = {}
for _index, _members in enumerate(_GROUPS):
    for _word in _members:
        GROUP_OF[_word] = (*GROUP_OF.get(_word, ()), _index)


def group_after(word: str, previous: str) -> int | None:
    """The group ``word`` is a slot of when it follows ``previous``, if any."""
    for index in GROUP_OF.get(word, ()):
        needs = _AFTER[index]
        if (needs is None or previous in needs) and previous not in _EXCEPT[index]:
            return index
    return None


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
_AUXILIARIES = frozenset(_NEGATIONS) - {"can"}  # "can not" is not "cannot"

# A pronoun and the verb after it are one slot as well: "it is" or "it's",
# "you will" or "you'll". A stream holds the pronoun back until the next word
# shows whether the verb follows. "'s" may stand for "has" ("it's been"), so
# a contraction in "'s" is a slot only when the word after it is not one
# that says so: it is held until that word is seen.
_PAIRS: dict[tuple[str, str], str] = {
    ("it", "is"): "it's", ("that", "is"): "that's", ("there", "is"): "there's",
    ("here", "is"): "here's", ("you", "are"): "you're", ("we", "are"): "we're",
    ("they", "are"): "they're", ("i", "am"): "i'm", ("you", "will"): "you'll",
    ("we", "will"): "we'll", ("they", "will"): "they'll", ("i", "will"): "i'll",
}
_PRONOUNS = frozenset(pronoun for pronoun, _ in _PAIRS)
# After these the verb may end a clause that has no comma ("than it is in
# C", "what it is and"), where it cannot be contracted.
_NOT_BEFORE_PRONOUN = frozenset({"than", "as", "what", "where", "how", "who", "whom", "which",
                                 "why", "whatever", "wherever", "however", "whoever",
                                 "whichever"})
# "there" and "here" begin a clause ("there is a way"), or follow a word that
# opens one; after a noun they are adverbs ("the file there is old").
_OPENERS = frozenset({"and", "but", "or", "if", "when", "whether", "that", "because",
                      "since", "unless", "while", "so", "then", "now"})
# After these "'s" is "has" ("it's been", "it's become"), or may be ("it's
# already run", "it's changed").
_HAS = frozenset({
    "been", "got", "gotten", "had", "become", "come", "gone", "taken", "made", "grown",
    "changed", "happened", "worked", "improved", "moved", "stopped", "started", "failed",
    "succeeded", "ended", "increased", "decreased", "fallen", "risen", "arrived", "appeared",
    "disappeared", "seemed", "managed", "already", "never", "ever", "always", "since",
    "recently", "finally", "long", "yet",
})
# Each contraction, a slot of its own, and the two words it stands for:
# "don't" is "do not", "it's" is "it is", "can't" is "cannot" (one word:
# "can not" is no negation of "can").
_SPELLED: dict[str, tuple[str, str]] = {
    **{short: (aux, "not") for aux, short in _NEGATIONS.items()},
    **{short: pair for pair, short in _PAIRS.items()},
}
_FORMS = {short: ("cannot" if short == "can't" else " ".join(words), short)
          for short, words in _SPELLED.items()}
_CONTRACTION_GROUP = {short: len(_GROUPS) + i for i, short in enumerate(_SPELLED)}
_SPANS = {words: short for short, words in _SPELLED.items() if short != "can't"}
# What the key hashes for a group: its name, not its place in the table, so
# that editing one group leaves every other group's choices as they were
# (marks made before the edit are still found after it).
_NAMES = (*_NAMES, *(f"{'negation' if words[1] == 'not' else 'contraction'}:"
                     f"{','.join(_FORMS[short])}" for short, words in _SPELLED.items()))
_APOSTROPHE = str.maketrans({"\u2019": "'"})

_CHUNK = re.compile(r"\s+|\S+")
_TICKS = re.compile(r"`+")
_SPAN = 64  # chunks
_PROMPTS = (">>>", "...", "$ ", "$")
# Before these a negation asks ("Why don't you", "how can't it"); at a
# sentence's start or after a comma it may too ("Isn't it?", ", doesn't it?").
_QUESTION_WORDS = frozenset({"why", "how", "what", "where", "when", "who", "whom", "whose",
                             "which"})


def _states(previous: str) -> bool:
    """Whether a negation after ``previous`` states rather than asks: only
    those are slots, for "isn't it?" cannot become "is not it?"."""
    return bool(previous) and previous not in _QUESTION_WORDS


def _columns(space: str) -> int:
    return len(space.expandtabs(4))
_WORD = re.compile(r"^([^A-Za-z0-9]*)([A-Za-z]+)([^A-Za-z0-9]*)$")
# "don't", "it's", "you're", "I'm", "we'll" (and possessives, which are no slots).
_CONTRACTION = re.compile(
    r"^([^A-Za-z0-9]*)([A-Za-z]+['\u2019](?:[Tt]|[Ss]|[Rr][Ee]|[Mm]|[Ll][Ll]))([^A-Za-z0-9]*)$")
_SENTENCE_END = frozenset(".!?")
_CLAUSE_END = frozenset(".!?,;:")
# Words spelt with a vowel that start with a consonant sound, and silent h.
_CONSONANT_SOUND = ("use", "usa", "usu", "uti", "ubi", "uni", "eu", "one")
_SILENT_H = ("honest", "hour", "heir", "honor", "honour")


def takes_an(word: str) -> bool:
    """Whether ``word`` takes "an" rather than "a"."""
    w = word.lower()
    if w.startswith(_SILENT_H):
        return True
    return w[:1] in "aeiou" and not w.startswith(_CONSONANT_SOUND)


def groups() -> tuple[tuple[str, ...], ...]:
    return _GROUPS


def contexts() -> tuple[frozenset[str] | None, ...]:
    """For each group of `groups`, the words it must follow (None: any)."""
    return _AFTER


class Key:
    """The keyed choice: for a context and a group's candidates, one member."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self.choice = lru_cache(maxsize=65536)(self._choice)

    def _choice(self, context: str, group: int, candidates: tuple[str, ...]) -> str:
        message = f"{context}\x1f{_NAMES[group]}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        ordered = sorted(candidates)  # as the name has them: a line's order does not count
        return ordered[int.from_bytes(digest[:8], "big") % len(ordered)]


def _candidates(group: int, previous: str) -> tuple[str, ...]:
    members = _GROUPS[group]
    if previous in ("a", "an"):
        wants_an = previous == "an"
        return tuple(m for m in members if takes_an(m) == wants_an)
    return members


def _cased(word: str, like: str) -> str:
    if len(like) > 1 and like.isupper():
        return word.upper()
    if like[0].isupper():
        return word[0].upper() + word[1:]
    return word


@dataclass(slots=True)
class Slot:
    context: str
    group: int
    candidates: tuple[str, ...]
    word: str  # as written, lower case
    spans: bool = False  # "do not": the slot began with the word before


def _parts(chunk: str) -> tuple[str, str, str]:
    """(leading punctuation, the word, trailing punctuation) of a markable chunk."""
    match = _WORD.match(chunk) or _CONTRACTION.match(chunk)
    assert match is not None
    lead, core, trail = match.groups()
    return lead, core, trail


class Scanner:
    """Walks text chunk by chunk, knowing what may be marked: the state
    (code fences, inline code, braces, the previous word) carries over from
    one call to the next, so a stream is scanned as the whole text would be."""

    __slots__ = ("_boundary", "_budget", "_code_line", "_depth", "_fence", "_first", "_indent",
                 "_inline", "_last", "_line_start", "_previous", "_resolved",
                 "_short", "_start", "apostrophe")

    def __init__(self) -> None:
        self._fence = False
        self._inline = 0  # inside inline code: the length of the backtick run that opened it
        self._depth = 0
        self._budget = 0  # chunks an open "[", "{" or "`" may still span
        self._line_start = True
        self._indent = 0         # of the line, in columns, until its first word
        self._code_line = False  # indented 4 or more, or a prompt (>>>, ..., $)
        self._previous = ""
        self._start = True  # at the start of a sentence
        self._last = ""  # the line's last chunk but spaces
        self.apostrophe = "'"  # as the text writes it in "don't" or "Python's" ("'" or "\u2019")
        self._boundary = True  # a clause may start: after punctuation or at a line's start
        # The first of two words that may be one slot, an auxiliary "not" may
        # follow or a pronoun its verb: (lower case, its context).
        self._first: tuple[str, str] | None = None
        # A contraction in "'s", a slot unless the next word is "been" and the like.
        self._short: Slot | None = None
        # Set by the word after a held "'s" contraction: that contraction's
        # slot, when it is one (see `take_resolved`).
        self._resolved: Slot | None = None

    @property
    def waiting(self) -> bool:
        """Whether the last word is held until the next one shows what it
        is: an auxiliary before "not", a pronoun before its verb, an "'s"."""
        return self._first is not None or self._short is not None

    def take_resolved(self) -> Slot | None:
        """The slot of the "'s" contraction held before the chunk just
        scanned, if the chunk showed it to be one (once)."""
        slot, self._resolved = self._resolved, None
        return slot

    def scan(self, text: str) -> list[tuple[str, Slot | None]]:
        """``text`` split into chunks, each with its slot when it is markable."""
        out: list[tuple[str, Slot | None]] = []
        held = 0
        for chunk in _CHUNK.findall(text):
            slot = self._step(chunk)
            resolved = self.take_resolved()
            if resolved is not None:
                out[held] = (out[held][0], resolved)
            if self._short is not None and not chunk.isspace():
                held = len(out)
            out.append((chunk, slot))
        return out

    def _step(self, chunk: str) -> Slot | None:
        if chunk.isspace():
            if "\n" in chunk:
                self._start = True
                self._previous = ""
                self._first = None
                self._last = ""
                self._line_start, self._code_line = True, False
                self._indent = _columns(chunk.rpartition("\n")[2])
                if chunk.count("\n") > 1:
                    # A paragraph ends what an unbalanced "[", "{" or "`" opened.
                    self._depth, self._inline = 0, 0
            elif self._line_start:
                self._indent += _columns(chunk)
            return None
        first, self._first = self._first, None
        self._boundary = not self._last or self._last[-1] in _CLAUSE_END
        self._last = chunk
        if self._short is not None:
            word = chunk.strip(".,;:!?\"'()").lower()
            if word not in _HAS:
                self._resolved = self._short
            self._short = None
        if self._line_start:
            self._line_start = False
            self._code_line = self._indent >= 4 or chunk.startswith(_PROMPTS)
        if chunk.startswith("```"):
            self._fence = not self._fence
            self._previous = ""
            return None
        if self._fence or self._code_line:
            self._previous = ""
            return None
        if self._inline or self._depth:
            # One left open (a stray "[" or "`") ends after a while: inline
            # code and JSON in a sentence are short, the answer may not be.
            self._budget -= 1
            if self._budget <= 0:
                self._inline = self._depth = 0
        runs = _TICKS.findall(chunk)
        if runs or self._inline:
            # Inline code closes with a run of as many backticks as opened it.
            for run in runs:
                if not self._inline:
                    self._inline, self._budget = len(run), _SPAN
                elif len(run) == self._inline:
                    self._inline = 0
            self._previous = ""
            # A sentence may end with code: "... use `x`. Then ..."
            self._start = not self._inline and chunk[-1] in _SENTENCE_END
            return None
        opens = chunk.count("{") + chunk.count("[")
        closes = chunk.count("}") + chunk.count("]")
        if opens or closes or self._depth:
            if not self._depth:
                self._budget = _SPAN
            self._depth = max(0, self._depth + opens - closes)
            self._previous = ""
            self._start = not self._depth and chunk[-1] in _SENTENCE_END
            return None
        if "://" in chunk or "@" in chunk or "/" in chunk or chunk.startswith("www."):
            self._previous = ""
            self._start = chunk[-1] in _SENTENCE_END
            return None
        match = _WORD.match(chunk)
        if match is None:
            contraction = _CONTRACTION.match(chunk) if ("'" in chunk or "\u2019" in chunk) \
                else None
            if contraction is not None:
                return self._contraction(*contraction.groups())
            self._previous = ""
            self._start = chunk[-1] in _SENTENCE_END
            return None
        lead, core, trail = match.groups()
        lower = core.lower()
        slot = None
        # Capitals inside a sentence: a name ("I" is none); all capitals: an
        # acronym, a keyword (SQL's SELECT) or emphasis. Neither is touched.
        name_like = (core[0].isupper() and not self._start and core != "I") \
            or (len(core) > 1 and core.isupper())
        if first is not None and not lead and not name_like \
                and (short := _SPANS.get((first[0], lower))) is not None \
                and (not trail or lower == "not"):
            slot = Slot(first[1], _CONTRACTION_GROUP[short], _FORMS[short], _FORMS[short][0],
                        spans=True)
        elif lower == "cannot" and not lead and self._begins("can", name_like):
            slot = Slot(self._previous, _CONTRACTION_GROUP["can't"], _FORMS["can't"], lower)
        if slot is not None:
            self._start = bool(trail) and trail[-1] in _SENTENCE_END
            # The word after it has "not" (or the verb) for context, either way.
            self._previous = "" if trail else lower if slot.spans else "not"  # "cannot"
            return slot
        group = group_after(lower, self._previous) if lower in GROUP_OF else None
        if group is not None and not lead and not name_like:
            candidates = _candidates(group, self._previous)
            if len(candidates) > 1 and lower in candidates:
                slot = Slot(self._previous, group, candidates, lower)
        if (lower in _AUXILIARIES or lower in _PRONOUNS) and not lead and not trail \
                and self._begins(lower, name_like):
            self._first = (lower, self._previous)
        self._start = bool(trail) and trail[-1] in _SENTENCE_END
        self._previous = "" if (trail or lead) else lower
        return slot

    def _begins(self, first: str, name_like: bool) -> bool:
        """Whether ``first``, an auxiliary or a pronoun, may begin a
        contraction's slot after the previous word: a negation that states
        (not "Why don't you"), a pronoun whose verb cannot end a clause (not
        "than it is in C"), "there" and "here" at a clause's start."""
        previous = self._previous
        if name_like:
            return False
        if first not in _PRONOUNS:
            # "it isn't" is the pronoun's slot ("it is not", "it's not").
            return _states(previous) and (previous, first) not in _PAIRS
        if first in ("here", "there"):
            # "The `path` there is" is no clause's start.
            return previous in _OPENERS if previous else self._boundary
        return previous not in _NOT_BEFORE_PRONOUN

    def _contraction(self, lead: str, core: str, trail: str) -> Slot | None:
        short = core.lower().translate(_APOSTROPHE)
        self.apostrophe = "\u2019" if "\u2019" in core else "'"
        name_like = (core[0].isupper() and not self._start and not short.startswith("i'")) \
            or core.isupper()
        self._start = bool(trail) and trail[-1] in _SENTENCE_END
        words = _SPELLED.get(short)
        slot = None
        # A negation may end a clause ("I don't."), a pronoun's verb may not.
        if words is not None and not lead and (not trail or words[1] == "not") \
                and self._begins(words[0], name_like):
            slot = Slot(self._previous, _CONTRACTION_GROUP[short], _FORMS[short], short)
        self._previous = "" if (trail or lead or words is None or slot is None) else words[1]
        if slot is not None and short.endswith("'s"):
            self._short = slot  # a slot only if "been" and the like do not follow
            return None
        return slot

    def replaced(self, word: str) -> None:
        """The chunk just scanned was written as ``word`` (lower case): it is
        the context of the next one."""
        if self._previous:
            self._previous = word


class Marker:
    """Marks text with ``key``, as a stream: `feed` then `flush`."""

    def __init__(self, key: Key) -> None:
        self._key = key
        self._scanner = Scanner()
        self._held = ""
        self._pending: list[str] = []  # a word held back and the space after it
        self.slots = 0     # markable words seen
        self.changed = 0   # words replaced

    def feed(self, text: str) -> str:
        held = self._held + text
        cut = len(held)
        while cut and not held[cut - 1].isspace():
            cut -= 1  # the word in progress
        while cut and held[cut - 1].isspace():
            cut -= 1  # and the space before it, which may go on: "\n" then "\n" ends a paragraph
        self._held = held[cut:]
        return self._mark(held[:cut]) if cut else ""

    def flush(self) -> str:
        held, self._held = self._held, ""
        out = self._mark(held) + "".join(self._pending)
        self._pending.clear()
        return out

    def _mark(self, text: str) -> str:
        out: list[str] = []
        scanner = self._scanner
        pending = self._pending
        for chunk in _CHUNK.findall(text):
            slot = scanner._step(chunk)
            if pending:
                if scanner.waiting and chunk.isspace():
                    pending.append(chunk)
                    continue
                if slot is not None and slot.spans:
                    out.append(self._span(slot, pending, chunk))
                    pending.clear()
                    continue
                resolved = scanner.take_resolved()
                if resolved is not None:
                    pending[0] = self._write(pending[0], resolved)
                out.extend(pending)
                pending.clear()
            if scanner.waiting:
                pending.append(chunk)  # held until the next word: "not", a verb, "been"?
                continue
            out.append(chunk if slot is None else self._write(chunk, slot))
        return "".join(out)

    def _write(self, chunk: str, slot: Slot) -> str:
        """``chunk``, a slot's one word, written as the key chooses."""
        self.slots += 1
        chosen = self._key.choice(slot.context, slot.group, slot.candidates)
        if chosen == slot.word:
            return chunk
        self.changed += 1
        lead, core, trail = _parts(chunk)
        if slot.group < len(_GROUPS):
            self._scanner.replaced(chosen)
        return lead + _cased(self._typeset(chosen), core) + trail

    def _typeset(self, form: str) -> str:
        """``form`` ("don't") with the apostrophe the text uses."""
        apostrophe = self._scanner.apostrophe
        return form if apostrophe == "'" else form.replace("'", apostrophe)

    def _span(self, slot: Slot, pending: list[str], chunk: str) -> str:
        """A held word ("do", "it"), the space after it and the word that
        completes the slot ("not", "is"): written as the key chooses."""
        self.slots += 1
        chosen = self._key.choice(slot.context, slot.group, slot.candidates)
        if chosen == slot.word:
            return "".join(pending) + chunk
        self.changed += 1
        _, _, trail = _parts(chunk)
        return _cased(self._typeset(chosen), pending[0]) + trail


def mark(text: str, key: bytes) -> str:
    """``text`` marked whole."""
    marker = Marker(Key(key))
    return marker.feed(text) + marker.flush()


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the detector found in a text."""

    slots: int       # distinct (context, group) slots scored
    hits: int        # slots holding the keyed member
    expected: float  # hits expected without the key
    z: float
    p_value: float   # one-sided: probability of at least ``hits`` without the key

    def as_dict(self) -> dict[str, float | int]:
        return {"slots": self.slots, "hits": self.hits, "expected": round(self.expected, 3),
                "z": round(self.z, 3), "p_value": self.p_value}


class Detector:
    """Scores texts for the watermark of ``key``. Slots are de-duplicated
    across everything fed to one detector (a corpus is one body of evidence):
    a (context, group) pair counts once, as first seen."""

    def __init__(self, key: bytes) -> None:
        self._key = Key(key)
        self._seen: set[tuple[str, int]] = set()
        self._probabilities: list[float] = []
        self._hits = 0

    def feed(self, text: str) -> None:
        scanner = Scanner()
        for _, slot in scanner.scan(text):
            if slot is None or (slot.context, slot.group) in self._seen:
                continue
            self._seen.add((slot.context, slot.group))
            self._probabilities.append(1 / len(slot.candidates))
            if self._key.choice(slot.context, slot.group, slot.candidates) == slot.word:
                self._hits += 1

    def evidence(self) -> Evidence:
        ps = self._probabilities
        expected = sum(ps)
        variance = sum(p * (1 - p) for p in ps)
        z = (self._hits - expected) / math.sqrt(variance) if variance else 0.0
        return Evidence(len(ps), self._hits, expected, z, upper_tail(ps, self._hits))


def detect(text: str, key: bytes) -> Evidence:
    detector = Detector(key)
    detector.feed(text)
    return detector.evidence()


_EXACT_UP_TO = 3000


def upper_tail(probabilities: list[float], hits: int) -> float:
    """P(X >= hits) for X a sum of independent Bernoulli(p) (Poisson
    binomial): exact for up to a few thousand slots, normal beyond."""
    n = len(probabilities)
    if hits <= 0:
        return 1.0
    if hits > n:
        return 0.0
    if n <= _EXACT_UP_TO:
        dist = [1.0]
        for p in probabilities:
            nxt = [0.0] * (len(dist) + 1)
            q = 1 - p
            for k, mass in enumerate(dist):
                nxt[k] += mass * q
                nxt[k + 1] += mass * p
            dist = nxt
        return min(1.0, math.fsum(dist[hits:]))
    mean = sum(probabilities)
    sd = math.sqrt(sum(p * (1 - p) for p in probabilities))
    return 0.5 * math.erfc((hits - 0.5 - mean) / (sd * math.sqrt(2)))
