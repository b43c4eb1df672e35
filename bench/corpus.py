"""A corpus of explanatory English prose, built on this machine with nothing
downloaded: the paragraphs of the Python standard library's documentation
strings (what modules, classes and functions do, written by people for
readers, as an assistant's answers to programming questions are), grouped
into documents of a few hundred words. Code, doctest lines, tables and
reference lists are left out.

    from bench.corpus import documents
    docs = documents(1000, words=400, seed=1)
"""

from __future__ import annotations

import importlib
import inspect
import random
import re
import sys
import warnings
from functools import lru_cache

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


def documents(count: int, *, words: int = 400, seed: int = 0) -> list[str]:
    """``count`` documents of about ``words`` words, from shuffled paragraphs;
    documents reuse paragraphs only once every paragraph has been used."""
    pool = list(paragraphs())
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
