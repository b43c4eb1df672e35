"""Where no word is marked: fenced code, code lines, inline code, URLs,
paths and e-mail addresses, and in JSON everything but the prose of its
string values; and where prose sits inside other things.

Prose is prose wherever it sits: in a fence whose info string is ``text``,
``markdown`` or ``md`` (the fence lines themselves are skipped; a fence
with any other info string holds code), on those lines of a fence whose
info string is empty that read as prose (`reads_as_prose`: the scan is
told each whole line before its first chunk, `Position.read_line`; the
other lines are code lines), and in the string values of JSON (an object
or array in the text, a ``json`` fence, or a text that is JSON, such as
tool-call arguments: `Position` with ``json``). In JSON
the keys, numbers, literals and structure are never marked, nor a string
value that is no prose: a value's words are markable from its third on,
while few of its words so far looked like code (a path, a URL, an
identifier, an assignment), and never a word with an escape in it
(``\\n``, ``\\"``, ``\\u2019``) or one in inline code. A JSON value is read as
JSON while it is one: what proves it none (a bare word where a value
should be, a line break in a string) makes it a bracket zone as before,
where no word is marked for 64 chunks or to the paragraph's end; in a text
that is JSON, nothing more is marked.

The rules of `RULES` are functions over the scan's `Position`, tried in
order on every chunk that is not white space: each takes the chunk (it lies
in the rule's zone; `in_json` takes a word of a prose string value as
`Position.free`, to be marked) or passes it on, keeping its zone's state
as it goes; `expire` takes none, it closes what a stray opener left open. The order
matters: a fence marker counts even on a code line, a JSON value goes on
across lines indented as code, and a chunk inside a code fence or on a code
line does not wear down an open "[" or "`"."""

from __future__ import annotations

import re
from collections.abc import Callable

SENTENCE_END = frozenset(".!?")
_TICKS = re.compile(r"`+")
_SPAN = 64  # chunks
_PROMPTS = (">>>", "...", "$ ", "$")
_FENCES = ("```", "~~~")
# What a chunk outside every zone must hold for a rule to take it.
_OPENS = re.compile(r"[`{}\[\]/@]|^(?:~~~|www\.)")
_OPENERS = ("{", "[")

# What a fence holds, by its info string; PENDING: its opening chunk had
# none, the next chunk on its line may be it.
CODE, PROSE, JSON, PENDING = 0, 1, 2, 3
_INFO = {"text": PROSE, "markdown": PROSE, "md": PROSE, "json": JSON}

# In a JSON value, what may come next.
_VALUE, _FIRST_VALUE, _KEY, _FIRST_KEY, _COLON, _NEXT = range(6)
# The string a JSON value is in, if any; which one a quote opens, by what may come next.
_KEY_STRING, _VALUE_STRING = 1, 2
_STRING_AT = {_KEY: _KEY_STRING, _FIRST_KEY: _KEY_STRING, _VALUE: _VALUE_STRING,
              _FIRST_VALUE: _VALUE_STRING}
_BRACKETS = frozenset("{[]}")
_OPENER_OF = {"}": "{", "]": "["}
# A value's words before this one are context only: one or two words are a
# label or a name more often than prose.
_WORDS = 3
# A value stops being prose at a word that looks like code when more than
# one in this many of its words so far did: prose names a function now and
# then ("use os.rename() to ..."), code does on every line.
_CODE_SHARE = 8
# A string's body up to its closing quote, or to a bad escape.
_BODY = re.compile(r'(?:[^"\\]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*')
_LITERAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null")
_ESCAPE = re.compile(r"\\(?:u[0-9a-fA-F]{4}|.)")
# What prose has little of: code, paths and URLs, identifiers, markup, an
# escaped backslash ("e.g." passes, "os.path" does not). Inline code in
# backticks is prose's own.
_CODE = re.compile(r"[=_{}\[\]<>|#$@/]|\\\\|\w\(|\w::|[A-Za-z]{2}\.[A-Za-z]|[A-Za-z]\.[A-Za-z]{2}")


def _columns(space: str) -> int:
    return len(space.expandtabs(4))


class Position:
    """What the chunks scanned so far left open, and whether a line or a
    sentence starts here: carried from one chunk to the next, so that a
    stream is scanned as the whole text would be. ``json``: the text is
    JSON (tool-call arguments): only its string values may be marked."""

    __slots__ = ("bare", "broken", "budget", "carry", "code", "code_line", "depth", "expect",
                 "fence", "fence_line", "free", "indent", "inline", "json_only", "kind",
                 "line_start", "outer", "prose", "prose_line", "since", "stack", "start",
                 "string", "wanted", "words")

    def __init__(self, json: bool = False) -> None:
        self.fence = ""  # the backtick (or tilde) run that opened the fence the scan is in
        self.kind = CODE  # what that fence holds
        self.fence_line = False  # on the fence's opening line
        self.outer = ""  # the run that opened a prose fence the scan is in
        # That fence's info string is empty: each of its lines is prose or
        # code as a whole (`read_line`). Whether the line starting next wants
        # reading, and whether the line read is prose.
        self.bare = False
        self.wanted = False
        self.prose_line = False
        self.inline = 0  # inside inline code: the length of the backtick run that opened it
        self.depth = 0  # of open "[" and "{" of a bracket zone
        self.budget = 0  # chunks an open "[", "{" or "`" may still span
        self.line_start = True
        self.indent = 0  # of the line, in columns, until its first word
        self.code_line = False  # indented 4 or more, or a prompt (>>>, ..., $)
        self.start = True  # at the start of a sentence
        # A JSON value: its open "{" and "[", what may come next, the string
        # the scan is in (0: none), that string's words so far, how many of
        # them looked like code and whether it is still prose, the chunks
        # since the value opened.
        self.stack = ""
        self.expect = _VALUE
        self.string = 0
        self.words = 0
        self.code = 0
        self.prose = True
        self.since = 0
        self.json_only = json  # the text is JSON: nothing outside its values is marked
        self.broken = False  # JSON text (or a json fence) that turned out no JSON
        self.carry = ""  # the word a skipped chunk leaves as the next one's context
        self.free = False  # the chunk a rule took is a word of prose (in a JSON string)

    def space(self, chunk: str) -> bool:
        """``chunk``, white space, was scanned: whether it ended a line."""
        if "\n" not in chunk:
            if self.line_start:
                self.indent += _columns(chunk)
            return False
        self.start = True
        self.line_start, self.code_line = True, False
        self.indent = _columns(chunk.rpartition("\n")[2])
        if self.fence_line:
            _fence_opened(self)
        self.wanted, self.prose_line = self.bare and not self.fence, False
        if self.string:
            _no_json(self)  # a JSON string holds no line break
        if chunk.count("\n") > 1:
            # A paragraph ends what an unbalanced "[", "{" or "`" opened.
            self.depth, self.inline = 0, 0
        return True

    def read_line(self, line: str) -> None:
        """The line that starts at the next chunk, in a fence whose info
        string is empty (`wanted`), is ``line``, to its end (or the
        text's): it is prose if it reads as prose, else a code line. A line
        not read is a code line."""
        self.wanted = False
        self.prose_line = self.indent < 4 and reads_as_prose(line, self.indent)

    def skips(self, chunk: str) -> bool:
        """Whether ``chunk``, no white space, lies in a zone no word is marked
        in; when it does, `carry` is the context it leaves to the next word."""
        if self.line_start:
            self.line_start = self.wanted = False
            self.code_line = self.indent >= 4 or chunk.startswith(_PROMPTS) or (
                self.bare and not self.prose_line)
        # Most chunks are words outside every zone, and no rule opens its
        # zone without one of `_OPENS`: those need not be put to the rules.
        if not (self.fence or self.code_line or self.inline or self.depth or self.stack
                or self.json_only) and (chunk.isalpha() or _OPENS.search(chunk) is None):
            return False
        self.carry = ""
        if self.string == _VALUE_STRING and '"' not in chunk and "\\" not in chunk:
            # A word inside a JSON string value (`in_json` written out: most
            # chunks of a JSON answer are these). No fence opens or closes
            # on the string's line.
            self.since += 1
            return not _piece(self, chunk)
        for rule in RULES:
            if rule(self, chunk):
                if self.free:
                    self.free = False
                    return False
                return True
        return False


def in_fence(at: Position, chunk: str) -> bool:
    """A fence, from a chunk starting with ``` (or ~~~) to a chunk of as many
    or more of them alone. Its lines and the code it holds are skipped; the
    prose a prose fence holds is left to the other rules (a fence opened in
    it holds code, whatever its info string), and so is the JSON of a json
    fence (`in_json`)."""
    fence = at.fence
    if not fence:
        if not chunk.startswith(_FENCES) or at.stack or at.json_only:
            return False
        mark = chunk[0]
        info = chunk.lstrip(mark)
        if mark == "`" and "`" in info:
            return False  # ```x```: inline code
        if at.outer and not info and chunk.startswith(at.outer):
            at.outer, at.bare = "", False  # the prose fence closes
            return True
        at.fence, at.fence_line = chunk[: len(chunk) - len(info)], True
        kind = _INFO.get(info.lower(), CODE) if info else PENDING
        at.kind = CODE if at.outer and kind != JSON else kind
        return True
    if at.fence_line:
        if fence[0] == "`" and "`" in chunk:
            # ```x is not None```: inline code, for no info string holds a backtick
            at.fence, at.fence_line = "", False
            at.start = chunk[-1] in SENTENCE_END
        elif at.kind == PENDING:
            at.kind = _INFO.get(chunk.lower(), CODE)
        return True
    if chunk.startswith(fence) and not chunk.strip(fence[0]):
        at.fence = ""
        if at.kind == JSON:
            _reset_json(at)
            at.broken = False
        return True
    return at.kind != JSON


def _fence_opened(at: Position) -> None:
    """The fence's opening line ended: a prose fence leaves its text to the
    rules (with no info string, its lines that read as prose)."""
    at.fence_line = False
    if at.kind == PENDING or at.kind == PROSE:
        at.bare, at.kind = at.kind == PENDING, PROSE
        at.outer, at.fence = at.fence, ""


def in_json(at: Position, chunk: str) -> bool:
    """A JSON value that is open (`opens_json`), or a text that is JSON (or
    a json fence), where nothing outside a value is marked and a value opens
    at a chunk starting with "{" or "["."""
    if at.stack:
        at.since += 1
        return _value(at, chunk)
    if not (at.json_only or (at.fence and at.kind == JSON)):
        return False
    if at.broken or not chunk.startswith(_OPENERS):
        return True
    at.since = 0
    return _value(at, chunk)


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


def opens_json(at: Position, chunk: str) -> bool:
    """A JSON object or array in prose, from a chunk starting with "{" or "[":
    read by `in_json` while it is JSON; a bracket zone (`in_brackets`) from
    where it proves none ("[1]" is JSON, "[see 1]" is not)."""
    if at.depth or not chunk.startswith(_OPENERS):
        return False
    at.since = 0
    return _value(at, chunk) or in_brackets(at, chunk)


def in_brackets(at: Position, chunk: str) -> bool:
    """Anything between brackets or braces that is no JSON: lists, links."""
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
RULES: tuple[Rule, ...] = (in_fence, in_json, on_code_line, expire, in_inline_code, opens_json,
                           in_brackets, is_address)


# -- the lines of a fence with no info string


# A list item's marker: "- ", "+ ", "1. ", "2) ", "* " (but at an odd
# indent: " * " goes on a comment in C or Java).
_ITEM = re.compile(r"(?:[-+*]|\d{1,3}[.)])\s+")
# What prose holds in shapes of its own, that code holds otherwise: inline
# code; a quotation ('as "is",', not 'print("x")' or '"key": 1'); a
# parenthesis around words ("(see below)", not "f(x)", "()" or nested
# ones); a semicolon between clauses (not one ending a statement). These
# are taken out before the line is read.
_INLINE = re.compile(r"(`+)[^`]+?\1(?!`)")
_QUOTE = re.compile(r'(?:(?<=[\s(])|^)"(?=\w)[^"]*(?<=[\w.,!?\u2019])"(?=[\s.,;!?\u2019)-]|$)')
_PAREN = re.compile(r"(?:(?<=\s)|^)\((?=[\w\u2018\u201c])[^()]*(?<=[\w.!?\u2019\u201d])\)"
                    r"(?=[\s.,;:!?\u2019\u201d]|$)")
_SEMICOLON = re.compile(r"(?<=\w);(?=\s+\w)")
# What code has and prose has not (in the shapes left): operators,
# brackets, quotes, comments, variables, escapes and pipes; paths,
# decorators and identifiers ("max_size"), "::", "&&", an operator between
# spaces; dotted names ("os.path"; "e.g." passes) and command-line flags.
_CODE_SIGNS = re.compile(r"""[=(){}\[\];<>#$|\\`"/@_]|::|&&|\s[+*%^&]{1,2}\s""")
_DOT = re.compile(r"[A-Za-z]\.[A-Za-z]")
_DOTTED = re.compile(r"[A-Za-z]{2}\.[A-Za-z]|[A-Za-z]\.[A-Za-z]{2}")
_FLAG = re.compile(r"(?<!\S)--?[A-Za-z]")
# A word of letters, with an apostrophe or a hyphen inside ("don't",
# "well-known").
_LETTERS = re.compile(r"[^\W\d_]+(?:['\u2019-][^\W\d_]+)*")
_STRIP = ".,;:!?'\u2018\u2019\u201c\u201d*"
_SENTENCE_STOPS = frozenset(".!?:")
# A line that starts with one of these (as written) is code: statements
# and declarations, commands.
_KEYWORD_WORDS = """
    if for while def class return import from select let const var function print echo
    else elif try except with async await fn pub use switch catch finally throw raise yield
    lambda assert del struct enum impl trait mod export foreach goto unset sudo cd ls cat
    mkdir rm cp mv git pip npm npx yarn cargo docker kubectl curl wget brew apt grep sed awk
    chmod chown ssh scp tar puts
"""
_KEYWORDS = frozenset(_KEYWORD_WORDS.split())
# Words in capitals that are keywords (SQL's, a shell's, BASIC's): a line
# holding one is code.
_CAPS_WORDS = """
    SELECT FROM WHERE INSERT INTO UPDATE DELETE CREATE DROP ALTER TABLE VALUES SET JOIN INNER
    OUTER LEFT RIGHT FULL ON AND OR NOT NULL IS IN AS ORDER GROUP BY HAVING LIMIT OFFSET UNION
    ALL DISTINCT LIKE BETWEEN EXISTS CASE WHEN THEN ELSE END BEGIN COMMIT ROLLBACK PRIMARY KEY
    FOREIGN REFERENCES INDEX VIEW DEFAULT RETURNING GRANT REVOKE TRUNCATE DECLARE IF FOR WHILE
    DO LOOP RETURN PRINT ECHO GOTO GOSUB DIM REM TRUE FALSE ASC DESC COUNT SUM MAX MIN AVG
"""
_CAPS = frozenset(_CAPS_WORDS.split())
# A line holding one of these after its first word is code.
_LITERALS = frozenset(("None", "True", "False", "null", "nil", "undefined", "NaN"))
# A line is prose from this many words on; fewer say too little.
_LINE_WORDS = 4


def reads_as_prose(line: str, indent: int = 0) -> bool:
    """Whether ``line``, a line of a fence whose info string is empty
    (``indent``: the columns before it), clearly reads as prose: it starts
    (after a list item's marker, and an opening quote) with a letter, has
    `_LINE_WORDS` words or more, two in three of them or more lower case
    words of letters (`_lower`), and nothing of code: no `_CODE_SIGNS`
    (once inline code, quotations, parentheses and semicolons in prose's
    own shapes are taken out), no start of a statement (`_starts_code`), no
    keyword in capitals (`_CAPS`), no literal such as None after its first
    word. When unsure, it is code."""
    text = line.strip()
    item = _ITEM.match(text)
    if item is not None and not (text[0] == "*" and indent % 2):
        text = text[item.end():]
    if not text.lstrip('"\u201c')[:1].isalpha():
        return False
    text = _plain(text)
    words = text.split()
    if len(words) < _LINE_WORDS or _has_code_signs(text) or _starts_code(text, words[0]):
        return False
    cores = [word.strip(_STRIP) for word in words]
    if not (_CAPS.isdisjoint(cores) and _LITERALS.isdisjoint(cores[1:])):
        return False
    return 3 * _lower(words, cores) >= 2 * len(words)


def _lower(words: list[str], cores: list[str]) -> int:
    """How many of a line's ``words`` (``cores``: without their punctuation)
    are lower case words of letters, or capitalized ones starting a sentence
    or a quotation."""
    lower = 0
    start = True
    for word, core in zip(words, cores, strict=True):
        if (core.isalpha() or _LETTERS.fullmatch(core) is not None) and (core.islower() or (
                (start or word[0] == "\u201c") and core[1:] == core[1:].lower())):
            lower += 1
        start = word[-1] in _SENTENCE_STOPS
    return lower


def _has_code_signs(text: str) -> bool:
    """Whether ``text`` holds one of `_CODE_SIGNS`, a dotted name or a flag."""
    return _CODE_SIGNS.search(text) is not None or (
        _DOT.search(text) is not None and _DOTTED.search(text) is not None) or (
        "-" in text and _FLAG.search(text) is not None)


def _starts_code(text: str, first: str) -> bool:
    """Whether a line, ``text``, starts as a statement or a key does: with a
    keyword (`_KEYWORDS`, as written), with a word ending in ":" ("else:",
    "name:"), or with a lower case word when it ends in ":" ("for each
    item:")."""
    return first in _KEYWORDS or first.endswith(":") or (text.endswith(":") and first.islower())


def _plain(text: str) -> str:
    """``text``, a line, with what prose holds in shapes of its own taken
    out: inline code (as a word that is no lower case word), the straight
    quotes of a quotation (as curly ones), the parentheses around words and
    a semicolon between clauses."""
    if "`" in text:
        text = _INLINE.sub("0", text)
    if '"' in text:
        text = _QUOTE.sub(lambda quote: "\u201c" + quote.group()[1:-1] + "\u201d", text)
    if "(" in text:
        text = _PAREN.sub(lambda words: words.group()[1:-1], text)
    return _SEMICOLON.sub(",", text) if ";" in text else text


# -- JSON values


def _value(at: Position, chunk: str) -> bool:
    """A chunk of a JSON value (open, or opening at the chunk): whether it
    is taken (False: it is no JSON). A word of a prose string value, alone
    or with the value's closing quote and structure after it ("answers.\"},"),
    is taken as `free`."""
    depth = len(at.stack)
    markable = False
    at_word = 0
    if at.string:
        end = _body(chunk, 0)
        if end == len(chunk):
            at.free = at.string == _VALUE_STRING and _piece(at, chunk)
            return True
        if chunk[end] != '"':
            return _no_json(at, depth)
        if at.string == _VALUE_STRING:
            markable = end > 0 and _piece(at, chunk[:end])
            at.expect = _NEXT
        else:
            at.expect = _COLON
        at.string, at.inline, at.carry = 0, 0, ""
        at_word = end + 1
    rest = _lex(at, chunk, at_word)
    if rest < 0:
        return _no_json(at, depth)
    if at.string:  # the chunk ends in a string it opened
        _opened(at, chunk[rest:])
        return True
    if not at.stack:  # the value ended in the chunk
        _ended(at, chunk, rest)
    else:
        at.start = False
    at.free = markable
    return True


def _lex(at: Position, chunk: str, i: int) -> int:
    """Reads ``chunk`` from ``i``, outside strings, as JSON: where it stopped
    (the chunk's end, the end of the value, or the start of a string it
    ends in), or -1 where it is no JSON."""
    n = len(chunk)
    stack, expect = at.stack, at.expect
    while i < n:
        c = chunk[i]
        if c == '"':
            string = _STRING_AT.get(expect, 0)
            if not string:
                return -1
            end = _body(chunk, i + 1)
            if end == n:
                at.stack, at.expect, at.string = stack, expect, string
                return i + 1
            if chunk[end] != '"':
                return -1
            expect = _COLON if string == _KEY_STRING else _NEXT
            i = end + 1
        elif c in _BRACKETS:
            stack, expect = _bracket(c, stack, expect)
            if expect < 0:
                return -1
            i += 1
            if not stack:
                break
        else:
            i, expect = _token(chunk, i, stack, expect)
            if i < 0:
                return -1
    at.stack, at.expect = stack, expect if stack else _VALUE
    return i


def _bracket(c: str, stack: str, expect: int) -> tuple[str, int]:
    """The open brackets and what may come next after the bracket ``c``;
    what comes next is -1 where it may not stand."""
    if c == "{" or c == "[":
        if expect != _VALUE and expect != _FIRST_VALUE:
            return stack, -1
        return stack + c, _FIRST_KEY if c == "{" else _FIRST_VALUE
    empty = _FIRST_KEY if c == "}" else _FIRST_VALUE
    if not stack or stack[-1] != _OPENER_OF[c] or (expect != _NEXT and expect != empty):
        return stack, -1
    return stack[:-1], _NEXT


def _token(chunk: str, i: int, stack: str, expect: int) -> tuple[int, int]:
    """A "," a ":" or a literal at ``i``: where it ends and what may come
    next; -1 where it may not stand."""
    c = chunk[i]
    if c == ",":
        if expect != _NEXT:
            return -1, expect
        return i + 1, _KEY if stack[-1] == "{" else _VALUE
    if c == ":":
        return (i + 1, _VALUE) if expect == _COLON else (-1, expect)
    literal = _LITERAL.match(chunk, i)
    if literal is None or (expect != _VALUE and expect != _FIRST_VALUE):
        return -1, expect
    return literal.end(), _NEXT


def _body(chunk: str, i: int) -> int:
    """Where the body of a string, from ``i``, ends: at its closing quote, a
    bad escape or the chunk's end."""
    body = _BODY.match(chunk, i)
    return i if body is None else body.end()


def _opened(at: Position, tail: str) -> None:
    """The chunk ends in a string it opened, ``tail`` of it."""
    at.words, at.code, at.prose = 0, 0, True
    if at.string == _VALUE_STRING and tail:
        _piece(at, tail)
    else:
        _context(at, tail)


def _piece(at: Position, piece: str) -> bool:
    """Whether ``piece``, the next word of a string value, may be marked:
    the value is prose so far, so is the piece, with no escape in it, and
    enough words came before it (`_WORDS`). Inline code is read as in prose;
    pieces that look like code end the value's prose (`_CODE_SHARE`). When
    it may not, the context it leaves is the one it would leave in prose."""
    at.words += 1
    if not at.prose:
        return False
    if at.inline or "`" in piece:
        for run in _TICKS.findall(piece):
            if not at.inline:
                at.inline = len(run)
            elif len(run) == at.inline:
                at.inline = 0
        at.start = not at.inline and piece[-1] in SENTENCE_END
        return False
    if _CODE.search(piece) is not None:
        at.code += 1
        at.prose = at.code * _CODE_SHARE <= at.words
        at.start = piece[-1] in SENTENCE_END
        return False
    if "\\" in piece or at.words < _WORDS:
        _context(at, piece)
        return False
    return True


def _context(at: Position, piece: str) -> None:
    """What a skipped word of a string leaves to the next one, as the word
    would in prose: its context (none after punctuation), and whether a
    sentence starts. After an escape, what follows the last one counts."""
    tail = _ESCAPE.split(piece)[-1] if "\\" in piece else piece
    at.carry = tail.lower() if tail.isascii() and tail.isalpha() else ""
    at.start = tail[-1] in SENTENCE_END if tail else True


def _ended(at: Position, chunk: str, rest: int) -> None:
    """The JSON value ended in ``chunk``, before ``rest``: in prose, brackets
    after it open a bracket zone."""
    after = chunk[rest:]
    if after and not (at.json_only or at.fence):
        opens = after.count("{") + after.count("[")
        closes = after.count("}") + after.count("]")
        at.depth = max(0, opens - closes)
        if at.depth:
            at.budget = _SPAN
    at.start = not at.depth and chunk[-1] in SENTENCE_END


def _reset_json(at: Position) -> None:
    if at.string:
        at.inline = 0  # inline code in a string ends with it
    at.stack, at.expect, at.string = "", _VALUE, 0


def _no_json(at: Position, depth: int | None = None) -> bool:
    """What was read as a JSON value is none: in a text that is JSON (or a
    json fence) nothing more is marked; in prose, its open brackets make a
    bracket zone, as if it had been one since it opened. Whether the chunk
    is taken (in prose, the rules after `in_json` decide)."""
    if depth is None:
        depth = len(at.stack)
    _reset_json(at)
    if at.json_only or at.fence:
        at.broken = True
        return True
    at.depth, at.budget = depth, _SPAN - at.since + 1
    return False
