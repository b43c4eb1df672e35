"""The scanner: walks text chunk by chunk and finds its slots, the words
the key may choose: a synonym group's member, a negation ("do not" or
"don't"), a pronoun and its verb ("it is" or "it's")."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from guardgate.perturb.watermark.table import (
    APOSTROPHE,
    AUXILIARIES,
    FORMS,
    HAS,
    NOT_BEFORE_PRONOUN,
    OPENERS,
    PAIRS,
    PRONOUNS,
    QUESTION_WORDS,
    SHIPPED,
    SPANS,
    SPELLED,
    Vocabulary,
)
from guardgate.perturb.watermark.zones import SENTENCE_END, Position

CHUNK = re.compile(r"\s+|\S+")
# White space with a line break in it: a chunk of its own (matched from
# the run's start only, so that a long run takes linear time).
_BREAKS = re.compile(r"((?<!\s)\s*\n\s*)")
_WORD = re.compile(r"^([^A-Za-z0-9]*)([A-Za-z]+)([^A-Za-z0-9]*)$")
# "don't", "it's", "you're", "I'm", "we'll" (and possessives, which are no slots).
_CONTRACTION = re.compile(
    r"^([^A-Za-z0-9]*)([A-Za-z]+['\u2019](?:[Tt]|[Ss]|[Rr][Ee]|[Mm]|[Ll][Ll]))([^A-Za-z0-9]*)$")
_CLAUSE_END = frozenset(".!?,;:")


@dataclass(slots=True)
class Slot:
    context: str
    group: int
    candidates: tuple[str, ...]
    word: str  # as written, lower case
    spans: bool = False  # "do not": the slot began with the word before


def parts(chunk: str) -> tuple[str, str, str]:
    """(leading punctuation, the word, trailing punctuation) of a markable chunk."""
    match = _WORD.match(chunk) or _CONTRACTION.match(chunk)
    assert match is not None
    lead, core, trail = match.groups()
    return lead, core, trail


def _states(previous: str) -> bool:
    """Whether a negation after ``previous`` states rather than asks: only
    those are slots, for "isn't it?" cannot become "is not it?"."""
    return bool(previous) and previous not in QUESTION_WORDS


def _name_like(core: str, start: bool, pronoun: bool) -> bool:
    """Capitals inside a sentence: a name (the pronoun "I" is none); all
    capitals: an acronym, a keyword (SQL's SELECT) or emphasis. Neither is
    touched."""
    return (core[0].isupper() and not start and not pronoun) or (len(core) > 1 and core.isupper())


def _ends_sentence(trail: str) -> bool:
    return bool(trail) and trail[-1] in SENTENCE_END


class Scanner:
    """Walks text chunk by chunk, knowing what may be marked: the state
    (the zones left open, the previous word) carries over from one call to
    the next, so a stream is scanned as the whole text would be. ``json``:
    the text is JSON (tool-call arguments), only its string values are prose.
    In a fence whose info string is empty, a line is read whole before its
    first chunk is scanned (`chunks`), to tell prose from code."""

    __slots__ = ("_at", "_boundary", "_contractions", "_first", "_group_of", "_last",
                 "_previous", "_resolved", "_short", "_vocabulary",
                 "apostrophe", "rest")

    def __init__(self, json: bool = False, vocabulary: Vocabulary = SHIPPED) -> None:
        self._at = Position(json)
        self._vocabulary = vocabulary  # the groups marked: shipped, and private ones
        self._group_of = vocabulary.group_of
        self._contractions = vocabulary.contraction_group
        self._previous = ""
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
        # What the last `chunks` left out: a line of a fence with no info
        # string that its text did not end, from its first chunk on.
        self.rest = ""

    @property
    def waiting(self) -> bool:
        """Whether the last word is held until the next one shows what it
        is: an auxiliary before "not", a pronoun before its verb, an "'s"."""
        return self._first is not None or self._short is not None

    @property
    def wants_line(self) -> bool:
        """Whether the next chunk starts a line of a fence whose info string
        is empty, which must be read whole before it is scanned."""
        return self._at.wanted

    def chunks(self, text: str, final: bool = True) -> Iterable[str]:
        """``text`` split into chunks, to be scanned (`step`) one by one, in
        order. A line of a fence whose info string is empty is read whole
        (`Position.read_line`) before its first chunk comes; a line that
        ``text`` does not end, and that may go on (not ``final``: more of
        the stream follows), is left out, from its first chunk on, as
        `rest`."""
        self.rest = ""
        at = self._at
        if at.fence or at.bare or "```" in text or "~~~" in text:
            return self._lines(text, final)
        return CHUNK.findall(text)  # no such fence is open or opens: no line to read

    def _lines(self, text: str, final: bool) -> Iterator[str]:
        """The chunks of ``text``, where a fence may be, line by line: as
        the line break before a line is scanned, the position says whether
        the line must be read first."""
        at = self._at
        parts = _BREAKS.split(text)  # a line, the space that ends it, the next line...
        last = len(parts) - 1
        for i, part in enumerate(parts):
            if i % 2:
                yield part
                continue
            if at.wanted and part:
                if i == last and not final:
                    self.rest = part
                    return
                at.read_line(part)
            yield from CHUNK.findall(part)

    def take_resolved(self) -> Slot | None:
        """The slot of the "'s" contraction held before the chunk just
        scanned, if the chunk showed it to be one (once)."""
        slot, self._resolved = self._resolved, None
        return slot

    def scan(self, text: str) -> list[tuple[str, Slot | None]]:
        """``text`` split into chunks, each with its slot when it is markable."""
        out: list[tuple[str, Slot | None]] = []
        held = 0
        for chunk in self.chunks(text):
            slot = self.step(chunk)
            resolved = self.take_resolved()
            if resolved is not None:
                out[held] = (out[held][0], resolved)
            if self._short is not None and not chunk.isspace():
                held = len(out)
            out.append((chunk, slot))
        return out

    def step(self, chunk: str) -> Slot | None:
        """Scans ``chunk`` (a word and its punctuation, or white space): its
        slot, when it is one that need not wait for the next word."""
        if chunk.isspace():
            if self._at.space(chunk):
                self._previous, self._first, self._last = "", None, ""
            return None
        first, self._first = self._first, None
        self._boundary = not self._last or self._last[-1] in _CLAUSE_END
        self._last = chunk
        if self._short is not None:
            self._resolve(chunk)
        if self._at.skips(chunk):
            self._previous = self._at.carry  # a word of a JSON string too short to mark
            return None
        match = _WORD.match(chunk)
        if match is not None:
            lead, core, trail = match.groups()
            return self._word(lead, core, trail, first)
        if "'" in chunk or "\u2019" in chunk:
            contraction = _CONTRACTION.match(chunk)
            if contraction is not None:
                return self._contraction(*contraction.groups())
        # Digits or inner punctuation: a number, a version, an identifier.
        self._previous = ""
        self._at.start = chunk[-1] in SENTENCE_END
        return None

    def _resolve(self, chunk: str) -> None:
        """The word after a held "'s" contraction says whether it was a slot:
        not when "'s" stands for "has" ("it's been")."""
        if chunk.strip(".,;:!?\"'()").lower() not in HAS:
            self._resolved = self._short
        self._short = None

    def _word(self, lead: str, core: str, trail: str,
              first: tuple[str, str] | None) -> Slot | None:
        """A word with its punctuation: its slot, if it has one. ``first`` is
        the word held before it; an auxiliary or a pronoun that may begin a
        two-word slot is held in turn."""
        lower = core.lower()
        slot = None
        if not lead and not _name_like(core, self._at.start, core == "I"):
            slot = self._two_words(first, lower, trail)
            if slot is not None:
                self._at.start = _ends_sentence(trail)
                # The word after it has "not" (or the verb) for context, either way.
                self._previous = "" if trail else lower if slot.spans else "not"  # "cannot"
                return slot
            slot = self._synonym(lower)
            if not trail and (lower in AUXILIARIES or lower in PRONOUNS) and self._begins(lower):
                self._first = (lower, self._previous)
        self._at.start = _ends_sentence(trail)
        self._previous = "" if (trail or lead) else lower
        return slot

    def _two_words(self, first: tuple[str, str] | None, lower: str, trail: str) -> Slot | None:
        """The slot of a negation or a pronoun's verb: ``lower`` completing the
        held ``first`` ("do" then "not", "it" then "is"), or "cannot"."""
        if first is not None and (not trail or lower == "not"):
            short = SPANS.get((first[0], lower))
            if short is not None:
                forms = FORMS[short]
                return Slot(first[1], self._contractions[short], forms, forms[0], spans=True)
        if lower == "cannot" and self._begins("can"):
            return Slot(self._previous, self._contractions["can't"], FORMS["can't"], lower)
        return None

    def _synonym(self, lower: str) -> Slot | None:
        """The slot of a synonym group's member, if ``lower`` is one here."""
        if lower not in self._group_of:
            return None
        previous = self._previous
        group = self._vocabulary.group_after(lower, previous)
        if group is None:
            return None
        members = self._vocabulary.candidates(group, previous)
        if len(members) > 1 and lower in members:
            return Slot(previous, group, members, lower)
        return None

    def _begins(self, first: str) -> bool:
        """Whether ``first``, an auxiliary or a pronoun not taken for a name,
        may begin a contraction's slot after the previous word: a negation
        that states (not "Why don't you"), a pronoun whose verb cannot end a
        clause (not "than it is in C"), "there" and "here" at a clause's
        start."""
        previous = self._previous
        if first not in PRONOUNS:
            # "it isn't" is the pronoun's slot ("it is not", "it's not").
            return _states(previous) and (previous, first) not in PAIRS
        if first in ("here", "there"):
            # "The `path` there is" is no clause's start.
            return previous in OPENERS if previous else self._boundary
        return previous not in NOT_BEFORE_PRONOUN

    def _contraction(self, lead: str, core: str, trail: str) -> Slot | None:
        short = core.lower().translate(APOSTROPHE)
        self.apostrophe = "\u2019" if "\u2019" in core else "'"
        name_like = _name_like(core, self._at.start, short.startswith("i'"))
        self._at.start = _ends_sentence(trail)
        words = SPELLED.get(short)
        # A negation may end a clause ("I don't."), a pronoun's verb may not.
        if words is None or lead or name_like or (trail and words[1] != "not") \
                or not self._begins(words[0]):
            self._previous = ""
            return None
        slot = Slot(self._previous, self._contractions[short], FORMS[short], short)
        self._previous = "" if trail else words[1]
        if short.endswith("'s"):
            self._short = slot  # a slot only if "been" and the like do not follow
            return None
        return slot

    def replaced(self, word: str) -> None:
        """The chunk just scanned was written as ``word`` (lower case): it is
        the context of the next one."""
        if self._previous:
            self._previous = word
