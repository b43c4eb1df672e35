"""Watermark detection power, null and quality.

- Power: marked text cut into windows of 500 words, each checked alone:
  answers of the demo's toy upstream (one per prompt, 500 tokens each), and
  the two prose corpora of `bench/corpus.py` (documents of 500 words): the
  answers of Python's FAQ, tutorial and HOWTOs (needs Debian's python3-doc),
  and the standard library's docstrings (terse reference prose, the hard
  case).
- Null: 1,000 unmarked documents, and the marked ones checked with a wrong
  key, each with ten keys (10,000 checks each): the share reaching p < 1e-3
  (at most 0.1 % expected).
- Quality: the share of words the marker changed.
- Speed: words marked per second (one core, best of three passes over the
  answers corpus).

    python bench/watermark_bench.py [--documents 1000] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.corpus import documents
from guardgate.perturb.watermark import Key, Marker, detect
from guardgate.toy import toy_answer

KEY = b"watermark-bench-key-0001"
WRONGS = [f"watermark-bench-key-99{i:02d}".encode() for i in range(10)]


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
    return {"windows": len(ps), "below_1e-4": sum(p < 1e-4 for p in ps) / len(ps),
            "median_p": statistics.median(ps), "worst_p": ps[-1]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1,
                        help="which documents are drawn from the corpora")
    args = parser.parse_args()
    prompts = [f"Question {i}: how should I plan project number {i}?" for i in range(200)]
    # 560 tokens, so that 500 words remain after contractions.
    toy = [" ".join("".join(toy_answer(p, max_tokens=560).tokens).split()) for p in prompts]
    answers = documents(300, words=500, seed=args.seed, source="answers")
    answers_marked, answers_changed = marked(answers)
    prose = documents(args.documents, words=500, seed=args.seed)
    long_prose, _ = marked(documents(300, words=1500, seed=args.seed + 1))
    toy_marked, toy_changed = marked(toy)
    prose_marked, prose_changed = marked(prose)
    null_unmarked = [detect(d, key).p_value for key in [KEY, *WRONGS[1:]] for d in prose]
    null_wrong = [detect(d, key).p_value for key in WRONGS for d in prose_marked]
    report = {
        "toy_power": power(toy_marked),
        "answers_power": power(answers_marked),
        "prose_power": power(prose_marked),
        "prose_power_1000": power(long_prose, 1000),
        "prose_power_1500": power(long_prose, 1500),
        "null_unmarked_below_1e-3": sum(p < 1e-3 for p in null_unmarked) / len(null_unmarked),
        "null_wrong_key_below_1e-3": sum(p < 1e-3 for p in null_wrong) / len(null_wrong),
        "words_changed_toy": toy_changed,
        "words_changed_prose": prose_changed,
        "words_changed_answers": answers_changed,
        "words_marked_per_second": speed(answers),
    }
    print("| text | window | windows | p < 1e-4 | median p | worst p | words changed |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, key, size, changed in (
        ("toy upstream answers", "toy_power", 500, toy_changed),
        ("FAQ, tutorial and HOWTO answers", "answers_power", 500, answers_changed),
        ("stdlib docstrings", "prose_power", 500, prose_changed),
        ("stdlib docstrings", "prose_power_1000", 1000, prose_changed),
        ("stdlib docstrings", "prose_power_1500", 1500, prose_changed),
    ):
        r = report[key]
        assert isinstance(r, dict)
        print(f"| {name} | {size} words | {r['windows']} | {r['below_1e-4']:.1%} | "
              f"{r['median_p']:.2g} | {r['worst_p']:.2g} | {changed:.1%} |")
    print(f"\nNull, {len(prose)} documents, ten keys each ({len(null_wrong)} checks): "
          f"unmarked reaching p < 1e-3: {report['null_unmarked_below_1e-3']:.2%}; "
          f"marked, checked with a wrong key: {report['null_wrong_key_below_1e-3']:.2%}")
    print(f"Marking: {report['words_marked_per_second'] / 1e6:.2f} million words a second "
          "(one core)")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
