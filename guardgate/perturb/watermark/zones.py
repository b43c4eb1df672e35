"""Where no word is marked: fenced code, code lines, inline code, anything
between brackets or braces (JSON), URLs, paths and e-mail addresses.

The rules of `RULES` are functions over the scan's `Position`, tried in
order on every chunk that is not white space: each takes the chunk (it lies
in the rule's zone) or passes it on, keeping its zone's state as it goes;
`expire` takes none, it closes what a stray opener left open. The order
matters: a fence marker counts even on a code line, and a chunk inside a
fence or on a code line does not wear down an open "[" or "`"."""

from __future__ import annotations

import re
from collections.abc import Callable

SENTENCE_END = frozenset(".!?")
_TICKS = re.compile(r"`+")
_SPAN = 64  # chunks
_PROMPTS = (">>>", "...", "$ ", "$")


def _columns(space: str) -> int:
    return len(space.expandtabs(4))


class Position:
    """What the chunks scanned so far left open, and whether a line or a
    sentence starts here: carried from one chunk to the next, so that a
    stream is scanned as the whole text would be."""

    __slots__ = ("budget", "code_line", "depth", "fence", "indent", "inline", "line_start",
                 "start")

    def __init__(self) -> None:
        self.fence = False
        self.inline = 0  # inside inline code: the length of the backtick run that opened it
        self.depth = 0  # of open "[" and "{"
        self.budget = 0  # chunks an open "[", "{" or "`" may still span
        self.line_start = True
        self.indent = 0  # of the line, in columns, until its first word
        self.code_line = False  # indented 4 or more, or a prompt (>>>, ..., $)
        self.start = True  # at the start of a sentence

    def space(self, chunk: str) -> bool:
        """``chunk``, white space, was scanned: whether it ended a line."""
        if "\n" not in chunk:
            if self.line_start:
                self.indent += _columns(chunk)
            return False
        self.start = True
        self.line_start, self.code_line = True, False
        self.indent = _columns(chunk.rpartition("\n")[2])
        if chunk.count("\n") > 1:
            # A paragraph ends what an unbalanced "[", "{" or "`" opened.
            self.depth, self.inline = 0, 0
        return True

    def skips(self, chunk: str) -> bool:
        """Whether ``chunk``, no white space, lies in a zone no word is marked in."""
        if self.line_start:
            self.line_start = False
            self.code_line = self.indent >= 4 or chunk.startswith(_PROMPTS)
        # Most chunks are plain words outside every zone, and no rule opens
        # its zone on letters alone: those need not be put to the rules.
        if chunk.isalpha() and not (self.fence or self.code_line or self.inline or self.depth):
            return False
        for rule in RULES:
            if rule(self, chunk):
                return True
        return False


def in_fence(at: Position, chunk: str) -> bool:
    """Fenced code, from a chunk starting with ``` to the next."""
    if chunk.startswith("```"):
        at.fence = not at.fence
        return True
    return at.fence


def on_code_line(at: Position, chunk: str) -> bool:
    """A line indented as code or starting with a prompt (decided at its first chunk)."""
    return at.code_line


def expire(at: Position, chunk: str) -> bool:
    """Takes no chunk: ends inline code or brackets left open for `_SPAN`
    chunks. One left open by a stray "[" or "`" would otherwise run to the
    paragraph's end: inline code and JSON in a sentence are short, the
    answer may not be."""
    if at.inline or at.depth:
        at.budget -= 1
        if at.budget <= 0:
            at.inline = at.depth = 0
    return False


def in_inline_code(at: Position, chunk: str) -> bool:
    """Inline code: it closes with a run of as many backticks as opened it."""
    runs = _TICKS.findall(chunk)
    if not runs and not at.inline:
        return False
    for run in runs:
        if not at.inline:
            at.inline, at.budget = len(run), _SPAN
        elif len(run) == at.inline:
            at.inline = 0
    # A sentence may end with code: "... use `x`. Then ..."
    at.start = not at.inline and chunk[-1] in SENTENCE_END
    return True


def in_brackets(at: Position, chunk: str) -> bool:
    """Anything between brackets or braces: JSON, lists, links."""
    opens = chunk.count("{") + chunk.count("[")
    closes = chunk.count("}") + chunk.count("]")
    if not (opens or closes or at.depth):
        return False
    if not at.depth:
        at.budget = _SPAN
    at.depth = max(0, at.depth + opens - closes)
    at.start = not at.depth and chunk[-1] in SENTENCE_END
    return True


def is_address(at: Position, chunk: str) -> bool:
    """A URL, a path or an e-mail address."""
    if "/" in chunk or "@" in chunk or chunk.startswith("www."):
        at.start = chunk[-1] in SENTENCE_END
        return True
    return False


Rule = Callable[[Position, str], bool]
RULES: tuple[Rule, ...] = (in_fence, on_code_line, expire, in_inline_code, in_brackets,
                           is_address)
