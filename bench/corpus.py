"""Corpora of explanatory English prose, built on this machine with nothing
downloaded, grouped into documents of a few hundred words:

- ``docstrings``: the paragraphs of the Python standard library's
  documentation strings (what modules, classes and functions do: terse
  reference prose, the hardest case for a lexical watermark).
- ``answers``: the paragraphs of Python's FAQ, tutorial and HOWTOs, as
  Debian's ``python3-doc`` package installs them (answers to questions,
  written for a reader, as an assistant's are; inline code kept in
  backticks). Needs ``apt-get install python3-doc``.
- ``narrative``: Jane Austen's six novels (1811 to 1818, about 715,000
  words), as Debian's ``r-cran-janeaustenr`` package installs them: long-form
  narrative prose with dialogue, which the synonym table was not written for.
  A document is a run of consecutive paragraphs of one novel. The novels are
  read with R, which the package depends on. Needs
  ``apt-get install --no-install-recommends r-cran-janeaustenr``.

Code, doctest lines, tables, lists and headings are left out (of the novels:
titles, chapter headings, editors' notes in brackets, indented letters and
verse; the underscores that mark italics are dropped, the "--" dashes kept).

    from bench.corpus import documents
    docs = documents(1000, words=400, seed=1)
    docs = documents(300, words=500, seed=1, source="answers")
    docs = documents(300, words=500, seed=1, source="narrative")
"""

from __future__ import annotations

import importlib
import inspect
import random
import re
import shutil
import subprocess
import sys
import warnings
from functools import lru_cache
from pathlib import Path

_SKIP = re.compile(r"^\s*(>>>|\.\.\.|[-=~*]{3,}|:\w+|\w+\s*:\s*$|[\w.]+\(.*\)\s*$)")
_PROSE = re.compile(r"^[A-Z][^\n]*[a-z][.!?]$")


def _paragraphs(doc: str) -> list[str]:
    out = []
    for block in re.split(r"\n\s*\n", inspect.cleandoc(doc)):
        lines = block.splitlines()
        if not lines or any(_SKIP.match(line) or line.startswith("    ") for line in lines):
            continue
        text = " ".join(line.strip() for line in lines)
        if len(text.split()) >= 20 and _PROSE.match(text) and "`" not in text:
            out.append(text)
    return out


@lru_cache(maxsize=1)
def paragraphs() -> tuple[str, ...]:
    """Every prose paragraph of the standard library's docstrings, in a fixed order."""
    found: dict[str, None] = {}
    names = sorted(sys.stdlib_module_names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            if name.startswith(("_", "test", "idlelib", "tkinter", "turtle", "antigravity",
                                "this", "guardgate", "bench", "tests")):
                continue
            try:
                module = importlib.import_module(name)
            except BaseException:  # noqa: BLE001, S112 (some modules refuse to import here)
                continue
            objects: list[object] = [module]
            for _, value in inspect.getmembers(module):
                if inspect.isclass(value) or inspect.isfunction(value):
                    objects.append(value)
                    if inspect.isclass(value):
                        objects += [v for _, v in inspect.getmembers(value, inspect.isfunction)]
            for obj in objects:
                doc = getattr(obj, "__doc__", None)
                if isinstance(doc, str):
                    for paragraph in _paragraphs(doc):
                        found[paragraph] = None
    sys.stdout.flush()
    return tuple(found)


_DOCS = "/usr/share/doc/python3*/html/_sources"
_ROLE = re.compile(r":[\w:.-]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`")
_LINK = re.compile(r"`([^`<]+?)\s*<[^>]+>`__?")
_LITERAL = re.compile(r"``([^`]+)``")
_REFERENCE = re.compile(r"`([^`]+)`_+")
_NOT_PROSE = (" ", "\t", "..", "*", "-", "+", "|", "#", "=", ">>>")
_RULE = re.compile(r"[=\-~^\"'*+#]{3,}")


def _rst_paragraphs(text: str) -> list[str]:
    """The prose paragraphs of a reStructuredText file, roles and links
    reduced to their text, literals to `code`."""
    out = []
    literal = False  # inside the indented block after "::"
    for block in re.split(r"\n\s*\n", text):
        lines = block.splitlines()
        if not lines or (literal and lines[0].startswith((" ", "\t"))):
            continue
        literal = False
        if any(line.startswith(_NOT_PROSE) or _RULE.fullmatch(line.strip()) for line in lines):
            literal = lines[-1].rstrip().endswith("::")
            continue
        paragraph = " ".join(line.strip() for line in lines)
        if paragraph.endswith("::"):
            literal, paragraph = True, paragraph[:-1]
        paragraph = _ROLE.sub(lambda m: f"`{m.group(1).strip()}`", paragraph)
        paragraph = _REFERENCE.sub(r"\1", _LITERAL.sub(r"`\1`", _LINK.sub(r"\1", paragraph)))
        paragraph = paragraph.replace("\\", "")
        if len(paragraph.split()) >= 15 and paragraph[0].isupper() and paragraph[-1] in ".!?:":
            out.append(paragraph)
    return out


@lru_cache(maxsize=1)
def answers() -> tuple[str, ...]:
    """Every prose paragraph of Python's FAQ, tutorial and HOWTOs."""
    roots = sorted(Path("/").glob(_DOCS.lstrip("/")))
    if not roots:
        raise SystemExit("the answers corpus needs Python's documentation sources: "
                         "apt-get install python3-doc")
    found: dict[str, None] = {}
    for part in ("faq", "tutorial", "howto"):
        for path in sorted((roots[-1] / part).glob("*.rst.txt")):
            for paragraph in _rst_paragraphs(path.read_text(encoding="utf-8")):
                found[paragraph] = None
    return tuple(found)


_NOVELS = ("sensesensibility", "prideprejudice", "mansfieldpark", "emma", "northangerabbey",
           "persuasion")
_NOT_NARRATIVE = re.compile(r"^(CHAPTER|Chapter|VOLUME|Volume)\b|^[^a-z]*$|^[(\[*]|[^.!?\"',:;-]$")
_ITALICS = re.compile(r"_([^_]*)_")


def _novel_paragraphs(text: str) -> list[str]:
    """The paragraphs of a novel's text (one line of the book a line), but
    titles, headings, notes and indented passages (letters, verse): a
    paragraph ends as a sentence or a clause does. Italics' underscores are
    dropped."""
    out = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line for line in block.splitlines() if line.strip()]
        if not lines or any(line.startswith((" ", "\t")) for line in lines):
            continue
        paragraph = _ITALICS.sub(r"\1", " ".join(line.strip() for line in lines))
        if not _NOT_NARRATIVE.search(paragraph):
            out.append(paragraph)
    return out


@lru_cache(maxsize=1)
def novels() -> tuple[tuple[str, ...], ...]:
    """Each of Jane Austen's six novels, as its paragraphs in order."""
    names = ", ".join(f'"{name}"' for name in _NOVELS)
    program = (f"for (name in c({names})) "
               '{ writeLines(enc2utf8(getExportedValue("janeaustenr", name))); cat("\\f") }')
    rscript = shutil.which("Rscript")
    run = None if rscript is None else subprocess.run(
        [rscript, "--vanilla", "-e", program], capture_output=True, check=False)
    if run is None or run.returncode:
        raise SystemExit("the narrative corpus needs Jane Austen's novels: "
                         "apt-get install --no-install-recommends r-cran-janeaustenr")
    books = run.stdout.decode("utf-8").split("\f")[: len(_NOVELS)]
    return tuple(tuple(_novel_paragraphs(book)) for book in books)


def narrative() -> tuple[str, ...]:
    """Every paragraph of the six novels, in order."""
    return tuple(paragraph for book in novels() for paragraph in book)


def _passages(words: int) -> list[str]:
    """The novels cut into runs of consecutive paragraphs of at least
    ``words`` words (a novel's last, shorter run left out)."""
    out = []
    for book in novels():
        run: list[str] = []
        size = 0
        for paragraph in book:
            run.append(paragraph)
            size += len(paragraph.split())
            if size >= words:
                out.append("\n\n".join(run))
                run, size = [], 0
    return out


SOURCES = ("docstrings", "answers", "narrative")


def documents(count: int, *, words: int = 400, seed: int = 0, source: str = "docstrings",
              repeat: bool = True) -> list[str]:
    """``count`` documents of about ``words`` words, from shuffled paragraphs
    (of the novels, shuffled passages of consecutive paragraphs); documents
    reuse paragraphs only once every paragraph has been used, and with
    ``repeat`` false there are fewer documents than ``count`` rather than
    any paragraph used twice."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}: one of {', '.join(SOURCES)}")
    pool = list(paragraphs() if source == "docstrings" else answers() if source == "answers"
                else _passages(words))
    rng = random.Random(seed)
    order: list[str] = []
    docs: list[str] = []
    used = 0
    for _ in range(count):
        doc: list[str] = []
        size = 0
        while size < words:
            if not order:
                if used and not repeat:
                    return docs
                order = pool[:]
                rng.shuffle(order)
                used += 1
            paragraph = order.pop()
            doc.append(paragraph)
            size += len(paragraph.split())
        docs.append("\n\n".join(doc))
    return docs
