"""Watermark detection power, null and quality, and what an adversary holding
the installed package can do to it without the key.

- Power: marked text cut into windows, each checked alone: answers of the
  demo's toy upstream (one per prompt, 500 tokens each), and the prose
  corpora of `bench/corpus.py` (documents of 500 words): the answers of
  Python's FAQ, tutorial and HOWTOs (needs Debian's python3-doc), and the
  standard library's docstrings (terse reference prose, the hard case). Then
  per corpus, with Jane Austen's novels (narrative prose the table was never
  tuned on; needs Debian's r-cran-janeaustenr): documents of 1,000 words cut
  into windows of 250, 500 and 1,000 words.
- Null: 1,000 unmarked documents of each corpus, each checked with ten
  keys, and the marked ones checked with ten wrong keys (10,000 checks each):
  the share reaching p < 1e-3 (at most 0.1 % expected).
- Attacks (`bench/adversary.py`), on 100,000 marked words of each corpus
  (fewer where the corpus has fewer: no paragraph is used twice): every form
  of every group the package can write canonicalized, or written as a random
  member of its group; and the answer asked for inside a fenced code block,
  as JSON string values or in capitals, marked there, then taken out. For
  each: the share of words changed, the share of 500-word windows still at
  p < 1e-4, and the p-value of the whole corpus (slots de-duplicated).
- Student: a word trigram model (`adversary.Trigram`) trained on that
  corpus, marked, rewritten by each attack, and unmarked (the control);
  50,000 words sampled from each and checked.
- Quality: the share of words the marker changed; ``--review N`` prints N
  sentences the marker changed, drawn at random, the original and the marked
  one side by side as A and B in a random order, and writes which is which
  to a file, for a reader to rate them blind (only the review runs unless
  ``--parts`` says otherwise).
- Speed: words marked per second (one core, best of three passes over the
  answers corpus).

Prints markdown tables, then the whole report as one line of JSON.

    python bench/watermark_bench.py [--documents 1000] [--seed 1]
        [--corpus toy,answers,docstrings,narrative]
        [--parts power,null,attacks,student,speed]
        [--attacks canonicalize,random_synonym,unwrap]
        [--attack-words 100000] [--student-words 50000]
    python bench/watermark_bench.py --review 30 --seed 5 [--review-key FILE]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.adversary import (
    CONTAINERS,
    Trigram,
    canonicalize,
    random_synonym,
    words_changed,
)
from bench.corpus import documents
from guardgate.perturb.watermark import Detector, Evidence, Key, Marker, detect
from guardgate.toy import toy_answer

KEY = b"watermark-bench-key-0001"
WRONGS = [f"watermark-bench-key-99{i:02d}".encode() for i in range(10)]
CORPORA = ("toy", "answers", "docstrings", "narrative")
PROSE = ("answers", "docstrings", "narrative")
PARTS = ("power", "null", "attacks", "student", "speed", "review")
ATTACKS = ("canonicalize", "random_synonym", "unwrap")
NAMES = {"toy": "toy upstream answers", "answers": "FAQ, tutorial and HOWTO answers",
         "docstrings": "stdlib docstrings", "narrative": "Austen's novels"}
REWRITES: dict[str, Callable[[str], str]] = {"canonicalize": canonicalize,
                                              "random_synonym": random_synonym}

Report = dict[str, object]


def windows(text: str, size: int = 500) -> list[str]:
    """Consecutive runs of ``size`` words, cut from ``text`` with its own
    spacing (paragraph breaks kept)."""
    spans = [m.span() for m in re.finditer(r"\S+", text)]
    return [text[spans[i][0] : spans[i + size - 1][1]]
            for i in range(0, len(spans) - size + 1, size)]


def marked(texts: list[str]) -> tuple[list[str], float]:
    out, changed, total = [], 0, 0
    for text in texts:
        marker = Marker(Key(KEY))
        out.append(marker.feed(text) + marker.flush())
        changed += marker.changed
        total += len(text.split())
    return out, changed / total


def speed(texts: list[str]) -> float:
    """Words marked per second, the best of three passes."""
    words = sum(len(text.split()) for text in texts)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        marked(texts)
        best = min(best, time.perf_counter() - start)
    return words / best


def power(texts: list[str], size: int = 500) -> dict[str, float]:
    ps = sorted(detect(w, KEY).p_value for text in texts for w in windows(text, size))
    if not ps:
        return {"windows": 0, "below_1e-4": 0.0, "median_p": 1.0, "worst_p": 1.0}
    return {"windows": len(ps), "below_1e-4": sum(p < 1e-4 for p in ps) / len(ps),
            "median_p": statistics.median(ps), "worst_p": ps[-1]}


def whole(texts: list[str], key: bytes = KEY) -> Evidence:
    """The evidence of a corpus as one body: slots de-duplicated across it."""
    detector = Detector(key)
    for text in texts:
        detector.feed(text)
    return detector.evidence()


def share_changed(before: list[str], after: list[str]) -> float:
    """The share of the words of ``before`` that ``after`` changed."""
    changed = total = 0
    for old, new in zip(before, after, strict=True):
        c, t = words_changed(old, new)
        changed += c
        total += t
    return changed / total


def below(ps: list[float], alpha: float = 1e-3) -> float:
    return sum(p < alpha for p in ps) / len(ps)


def split(values: str, allowed: tuple[str, ...]) -> list[str]:
    """A comma-separated option's values ("none": no value)."""
    chosen = [v.strip() for v in values.split(",") if v.strip() and v.strip() != "none"]
    unknown = sorted(set(chosen) - set(allowed))
    if unknown:
        raise SystemExit(f"unknown {', '.join(unknown)}: choose from {', '.join(allowed)}")
    return chosen


# The existing figures: toy answers, answers and docstrings, as published.


def legacy(corpora: list[str], parts: list[str], args: argparse.Namespace,
           report: Report) -> None:
    """The bench's first figures, computed and printed as they always were:
    toy answers, answers and docstrings at 500 words (docstrings at 1,000 and
    1,500 too), the docstrings' null, the marking speed."""
    rows: list[tuple[str, str, int, object]] = []
    null = ""
    if "power" in parts and "toy" in corpora:
        prompts = [f"Question {i}: how should I plan project number {i}?" for i in range(200)]
        # 560 tokens, so that 500 words remain after contractions.
        toy = [" ".join("".join(toy_answer(p, max_tokens=560).tokens).split()) for p in prompts]
        toy_marked, report["words_changed_toy"] = marked(toy)
        report["toy_power"] = power(toy_marked)
        rows.append(("toy upstream answers", "toy_power", 500, report["words_changed_toy"]))
    if "power" in parts and "answers" in corpora:
        answers_marked, report["words_changed_answers"] = marked(
            documents(300, words=500, seed=args.seed, source="answers"))
        report["answers_power"] = power(answers_marked)
        rows.append(("FAQ, tutorial and HOWTO answers", "answers_power", 500,
                     report["words_changed_answers"]))
    if {"power", "null"} & set(parts) and "docstrings" in corpora:
        prose = documents(args.documents, words=500, seed=args.seed)
        prose_marked, prose_changed = marked(prose)
        if "power" in parts:
            long_prose, _ = marked(documents(300, words=1500, seed=args.seed + 1))
            report["prose_power"] = power(prose_marked)
            report["prose_power_1000"] = power(long_prose, 1000)
            report["prose_power_1500"] = power(long_prose, 1500)
            report["words_changed_prose"] = prose_changed
            rows += [("stdlib docstrings", f"prose_power{suffix}", size, prose_changed)
                     for suffix, size in (("", 500), ("_1000", 1000), ("_1500", 1500))]
        if "null" in parts:
            null_unmarked = [detect(d, key).p_value for key in [KEY, *WRONGS[1:]] for d in prose]
            null_wrong = [detect(d, key).p_value for key in WRONGS for d in prose_marked]
            report["null_unmarked_below_1e-3"] = below(null_unmarked)
            report["null_wrong_key_below_1e-3"] = below(null_wrong)
            null = (f"Null, {len(prose)} documents, ten keys each ({len(null_wrong)} checks): "
                    f"unmarked reaching p < 1e-3: {report['null_unmarked_below_1e-3']:.2%}; "
                    "marked, checked with a wrong key: "
                    f"{report['null_wrong_key_below_1e-3']:.2%}")
    if rows:
        print("| text | window | windows | p < 1e-4 | median p | worst p | words changed |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, key, size, changed in rows:
            r = report[key]
            assert isinstance(r, dict) and isinstance(changed, float)
            print(f"| {name} | {size} words | {r['windows']} | {r['below_1e-4']:.1%} | "
                  f"{r['median_p']:.2g} | {r['worst_p']:.2g} | {changed:.1%} |")
        print()
    if null:
        print(null)
    if "speed" in parts:
        rate = speed(documents(300, words=500, seed=args.seed, source="answers"))
        report["words_marked_per_second"] = rate
        print(f"Marking: {rate / 1e6:.2f} million words a second (one core)")
    if null or "speed" in parts:
        print()


# Per corpus: power at three window sizes, the null, attacks and students.


def corpus_power(name: str, args: argparse.Namespace) -> Report:
    """Windows of 250, 500 and 1,000 words cut from 300 marked documents of
    1,000 words."""
    texts, changed = marked(documents(300, words=1000, seed=args.seed, source=name))
    return {"words_changed": changed,
            "power": {str(size): power(texts, size) for size in (250, 500, 1000)}}


def corpus_null(name: str, args: argparse.Namespace) -> Report:
    """Unmarked documents checked with ten keys, marked ones with ten wrong keys."""
    plain = documents(args.documents, words=500, seed=args.seed, source=name)
    marks, _ = marked(plain)
    unmarked = [detect(d, key).p_value for key in [KEY, *WRONGS[1:]] for d in plain]
    wrong = [detect(d, key).p_value for key in WRONGS for d in marks]
    return {"checks": len(unmarked), "unmarked_below_1e-3": below(unmarked),
            "wrong_key_below_1e-3": below(wrong)}


def attacked(texts: list[str], changed: float) -> Report:
    """The evidence left in texts after an attack that changed ``changed``
    of their words."""
    checked = power(texts)
    return {"words_changed": changed, "windows": checked["windows"],
            "windows_below_1e-4": checked["below_1e-4"], "median_p": checked["median_p"],
            "corpus": whole(texts).as_dict()}


def corpus_attacks(plain: list[str], marks: list[str], marker_changed: float,
                   attacks: list[str], seed: int) -> tuple[Report, dict[str, list[str]]]:
    """Each attack's effect on the marked corpus (the marker having changed
    ``marker_changed`` of its words), and the rewritten corpora (for
    students). Words changed: by a rewrite, of the marked text; after
    unwrapping, of the original."""
    reference = attacked(marks, share_changed(plain, marks))
    reference["marker_changed"] = marker_changed
    out: Report = {"marked (no attack)": reference}
    rewritten = {}
    for attack in attacks:
        if attack == "random_synonym":
            texts = [random_synonym(t, seed=seed + i) for i, t in enumerate(marks)]
        elif attack == "canonicalize":
            texts = [canonicalize(t) for t in marks]
        else:
            for container_name, container in CONTAINERS.items():
                texts, in_container = marked([container.wrap(t) for t in plain])
                unwrapped = [container.unwrap(t) for t in texts]
                result = attacked(unwrapped, share_changed(plain, unwrapped))
                result["marker_changed"] = in_container
                out[f"unwrap: {container_name}"] = result
            continue
        out[attack] = attacked(texts, share_changed(marks, texts))
        rewritten[attack] = texts
    return out, rewritten


def corpus_students(plain: list[str], marks: list[str], rewritten: dict[str, list[str]],
                    words: int, seed: int) -> Report:
    trained = {"marked": marks, **rewritten, "unmarked (control)": plain}
    out: Report = {}
    for name, texts in trained.items():
        began = time.perf_counter()
        sample = Trigram(texts).sample(words, seed)
        out[name] = {"training_words": sum(len(t.split()) for t in texts),
                     "sampled_words": len(sample.split()), **whole([sample]).as_dict()}
        print(f"  student trained on {name}: {time.perf_counter() - began:.1f} s",
              file=sys.stderr)
    return out


def per_corpus(corpora: list[str], parts: list[str], attacks: list[str],
               args: argparse.Namespace) -> dict[str, Report]:
    """The parts asked for, for each prose corpus asked for."""
    results: dict[str, Report] = {}
    if not {"power", "null", "attacks", "student"} & set(parts):
        return results
    for name in (c for c in corpora if c in PROSE):
        began = time.perf_counter()
        result: Report = {}
        if "power" in parts:
            result.update(corpus_power(name, args))
        if "null" in parts:
            result["null"] = corpus_null(name, args)
        if {"attacks", "student"} & set(parts):
            count = -(-args.attack_words // 500)
            plain = documents(count, words=500, seed=args.seed + 2, source=name, repeat=False)
            marks, marker_changed = marked(plain)
            result["attack_words"] = sum(len(t.split()) for t in marks)
            chosen = attacks if "attacks" in parts else [a for a in attacks if a in REWRITES]
            found, rewritten = corpus_attacks(plain, marks, marker_changed, chosen, args.seed)
            if "attacks" in parts:
                result["attacks"] = found
            if "student" in parts:
                result["students"] = corpus_students(plain, marks, rewritten,
                                                     args.student_words, args.seed)
        results[name] = result
        print(f"{name}: {time.perf_counter() - began:.1f} s", file=sys.stderr)
    return results


def print_corpora(results: dict[str, Report]) -> None:
    """The per-corpus figures as markdown tables."""
    powered = {n: r for n, r in results.items() if "power" in r}
    if powered:
        print("Power per corpus (marked documents of 1,000 words, windows checked alone):\n")
        print("| corpus | window | windows | p < 1e-4 | median p | worst p | words changed |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, r in powered.items():
            sizes = r["power"]
            assert isinstance(sizes, dict)
            for size, p in sizes.items():
                print(f"| {NAMES[name]} | {size} words | {p['windows']} | "
                      f"{p['below_1e-4']:.1%} | {p['median_p']:.2g} | {p['worst_p']:.2g} | "
                      f"{r['words_changed']:.1%} |")
        print()
    nulls = {n: r["null"] for n, r in results.items() if "null" in r}
    if nulls:
        print("| corpus | checks | unmarked, ten keys: p < 1e-3 | marked, wrong keys: p < 1e-3 |")
        print("| --- | ---: | ---: | ---: |")
        for name, null in nulls.items():
            assert isinstance(null, dict)
            print(f"| {NAMES[name]} | {null['checks']} | {null['unmarked_below_1e-3']:.2%} | "
                  f"{null['wrong_key_below_1e-3']:.2%} |")
        print()
    attacked_ = {n: r for n, r in results.items() if "attacks" in r}
    if attacked_:
        print("Attacks without the key. Words changed: by the marker (the first row), by a "
              "rewrite of the marked text, or after unwrapping, of the original; marker "
              "changed: as the marker counts them. Windows of 500 words; the whole corpus "
              "with slots de-duplicated.\n")
        print("| corpus | attack | words changed | marker changed | windows p < 1e-4 | "
              "median p | corpus slots | z | corpus p |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, r in attacked_.items():
            found = r["attacks"]
            assert isinstance(found, dict)
            label = f"{NAMES[name]} ({r['attack_words']:,} words)"
            for attack, a in found.items():
                c = a["corpus"]
                inside = f"{a['marker_changed']:.2%}" if "marker_changed" in a else ""
                print(f"| {label} | {attack} | {a['words_changed']:.2%} | {inside} | "
                      f"{a['windows_below_1e-4']:.1%} | {a['median_p']:.2g} | {c['slots']} | "
                      f"{c['z']:.1f} | {c['p_value']:.2g} |")
        print()
    taught = {n: r for n, r in results.items() if "students" in r}
    if taught:
        print("Trigram students (sampled text checked with the key):\n")
        print("| corpus | student trained on | training words | sampled | slots | hits | "
              "expected | z | p |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, r in taught.items():
            students = r["students"]
            assert isinstance(students, dict)
            for student, e in students.items():
                print(f"| {NAMES[name]} | {student} | {e['training_words']:,} | "
                      f"{e['sampled_words']:,} | {e['slots']} | {e['hits']} | "
                      f"{e['expected']:.1f} | {e['z']:.1f} | {e['p_value']:.2g} |")
        print()


# The blind review of what the marker changed.

_SENTENCE = re.compile(r"(?<=[.!?])\s+|(?<=[.!?][\"')])\s+")


def changed_sentences(plain: list[str], marks: list[str]) -> list[tuple[str, str]]:
    """The (original, marked) sentences the marker changed."""
    out = []
    for before, after in zip(plain, marks, strict=True):
        for old_paragraph, new_paragraph in zip(before.split("\n\n"), after.split("\n\n"),
                                                strict=True):
            old, new = _SENTENCE.split(old_paragraph), _SENTENCE.split(new_paragraph)
            if len(old) == len(new):
                out += [(o, n) for o, n in zip(old, new, strict=True) if o != n]
    return out


def review(count: int, seed: int, corpora: list[str], path: Path) -> Report:
    """Prints ``count`` changed sentences drawn at random, A and B in a random
    order, and writes which one is marked to ``path``."""
    rng = random.Random(seed)
    pool: list[tuple[str, str, str]] = []
    changed: dict[str, float] = {}
    for name in (c for c in corpora if c in PROSE):
        plain = documents(100, words=500, seed=seed, source=name)
        marks, changed[name] = marked(plain)
        pool += [(name, o, n) for o, n in changed_sentences(plain, marks)]
    drawn = rng.sample(pool, min(count, len(pool)))
    items = []
    print(f"Review: {len(drawn)} sentences the marker changed (seed {seed}); one of A and B "
          "is marked. Words changed: "
          + ", ".join(f"{NAMES[n]} {share:.1%}" for n, share in changed.items()) + "\n")
    print("| # | A | B |")
    print("| ---: | --- | --- |")
    for number, (name, original, marked_) in enumerate(drawn, 1):
        first_marked = rng.random() < 0.5
        a, b = (marked_, original) if first_marked else (original, marked_)
        print(f"| {number} | {a.replace('|', '/')} | {b.replace('|', '/')} |")
        items.append({"item": number, "corpus": name, "marked": "A" if first_marked else "B"})
    path.write_text(json.dumps({"seed": seed, "items": items}, indent=1) + "\n")
    print(f"\nWhich is marked: {path}\n")
    return {"items": len(items), "key_file": str(path), "words_changed": changed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=1000,
                        help="unmarked documents per corpus for the null")
    parser.add_argument("--seed", type=int, default=1,
                        help="which documents are drawn from the corpora")
    parser.add_argument("--corpus", default=",".join(CORPORA),
                        help=f"comma-separated, of {', '.join(CORPORA)}")
    parser.add_argument("--parts", default=None,
                        help=f"comma-separated, of {', '.join(PARTS)} (default: all but review)")
    parser.add_argument("--attacks", default=",".join(ATTACKS),
                        help=f"comma-separated, of {', '.join(ATTACKS)}, or none")
    parser.add_argument("--attack-words", type=int, default=100_000,
                        help="marked words per corpus the attacks rewrite and students learn")
    parser.add_argument("--student-words", type=int, default=50_000,
                        help="words sampled from each student")
    parser.add_argument("--review", type=int, nargs="?", const=30, default=0, metavar="N",
                        help="print N changed sentences for a blind rating (N: 30)")
    parser.add_argument("--review-key", type=Path, default=Path("watermark-review-key.json"),
                        help="where the review's order is written")
    args = parser.parse_args()
    corpora = split(args.corpus, CORPORA)
    attacks = split(args.attacks, ATTACKS)
    if args.parts is None:
        parts = ["review"] if args.review else [p for p in PARTS if p != "review"]
    else:
        parts = split(args.parts, PARTS)
    report: Report = {}
    if "review" in parts:
        report["review"] = review(args.review or 30, args.seed, corpora, args.review_key)
    legacy(corpora, parts, args, report)
    results = per_corpus(corpora, parts, attacks, args)
    if results:
        report["corpora"] = results
        print_corpora(results)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
