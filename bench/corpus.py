"""Corpora of explanatory English prose, built on this machine with nothing
downloaded, grouped into documents of a few hundred words:

- ``docstrings``: the paragraphs of the Python standard library's
  documentation strings (what modules, classes and functions do: terse
  reference prose, the hardest case for a lexical watermark).
- ``answers``: the paragraphs of Python's FAQ, tutorial and HOWTOs, as
  Debian's ``python3-doc`` package installs them (answers to questions,
  written for a reader, as an assistant's are; inline code kept in
  backticks). Needs ``apt-get install python3-doc``.

Code, doctest lines, tables, lists and headings are left out.

    from bench.corpus import documents
    docs = documents(1000, words=400, seed=1)
    docs = documents(300, words=500, seed=1, source="answers")
"""

from __future__ import annotations

import importlib
import inspect
import random
import re
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


def documents(count: int, *, words: int = 400, seed: int = 0,
              source: str = "docstrings") -> list[str]:
    """``count`` documents of about ``words`` words, from shuffled paragraphs;
    documents reuse paragraphs only once every paragraph has been used."""
    pool = list(paragraphs() if source == "docstrings" else answers())
    rng = random.Random(seed)
    order: list[str] = []
    docs = []
    for _ in range(count):
        doc: list[str] = []
        size = 0
        while size < words:
            if not order:
                order = pool[:]
                rng.shuffle(order)
            paragraph = order.pop()
            doc.append(paragraph)
            size += len(paragraph.split())
        docs.append("\n\n".join(doc))
    return docs
