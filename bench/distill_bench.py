"""Does the watermark survive distillation? A student we can train here.

The student is a word trigram language model (NLTK's maximum-likelihood
model) trained on answers, then sampled for 50,000 words; the detector looks
for the key in what it writes. The answers are the prose corpus of
`bench/corpus.py`. Three students:

- trained on marked answers only;
- trained on a mix where only a quarter of the answers are marked (the rest
  unmarked, as a distiller mixing sources would have);
- trained on unmarked answers only (the control), and the marked student
  checked with a wrong key (a second control).

    python bench/distill_bench.py [--words 50000] [--seed 3]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nltk.lm import MLE
from nltk.lm.preprocessing import padded_everygram_pipeline

from bench.corpus import paragraphs
from guardgate.perturb.watermark import Detector, Evidence, mark

KEY = b"distillation-bench-key-0001"
WRONG = b"some-other-key-entirely-0002"


def student(texts: list[str]) -> MLE:
    train, vocab = padded_everygram_pipeline(3, [t.split() for t in texts])
    model = MLE(3)
    model.fit(train, vocab)
    return model


def sample(model: MLE, words: int, seed: int) -> str:
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < words:
        seq = model.generate(120, text_seed=["<s>", "<s>"], random_seed=rng.randrange(1 << 30))
        seq = [w for w in seq if w != "<s>"]
        if "</s>" in seq:
            seq = seq[: seq.index("</s>")]
        out += seq
    return " ".join(out[:words])


def detect(text: str, key: bytes) -> Evidence:
    detector = Detector(key)
    detector.feed(text)
    return detector.evidence()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    answers = list(paragraphs())
    random.Random(args.seed).shuffle(answers)
    quarter = len(answers) // 4
    marked = [mark(a, KEY) for a in answers]
    students = {
        "all answers marked": marked,
        "a quarter of the answers marked": marked[:quarter] + answers[quarter:],
        "no answer marked (control)": answers,
    }
    rows = []
    for name, texts in students.items():
        began = time.perf_counter()
        text = sample(student(texts), args.words, args.seed)
        evidence = detect(text, KEY)
        rows.append((name, "right key", evidence))
        if name == "all answers marked":
            rows.append((name, "wrong key (control)", detect(text, WRONG)))
        print(f"{name}: {time.perf_counter() - began:.1f} s", file=sys.stderr)
    words = sum(len(a.split()) for a in answers)
    print(f"Students: word trigram models on {len(answers)} answers ({words:,} words); "
          f"{args.words:,} words sampled from each.\n")
    print("| student trained on | key | slots | hits | expected | z | p-value |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, key, e in rows:
        print(f"| {name} | {key} | {e.slots} | {e.hits} | {e.expected:.1f} | {e.z:.1f} | "
              f"{e.p_value:.2g} |")
    print(json.dumps([{"student": n, "key": k, **e.as_dict()} for n, k, e in rows]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
