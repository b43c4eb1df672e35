"""``guardgate replay`` and ``guardgate detect``: commands over recorded
files (plain or gzip), with progress on a terminal."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

import orjson

from guardgate.cli.inputs import Progress, Source, Unreadable
from guardgate.policy import load_policy

# How often the progress bar is told where reading is: often enough to move
# smoothly, rarely enough to cost nothing against a line's work.
_EVERY = 1024


def add_commands(sub: Any) -> None:
    replay = sub.add_parser(
        "replay", help="backtest a policy on recorded traffic (JSON lines); print decisions"
    )
    replay.add_argument("--policy", metavar="FILE", required=True, help="policy file (YAML)")
    replay.add_argument("traffic", metavar="TRAFFIC.jsonl",
                        help="recorded traffic, gzipped or not; - for standard input")
    replay.add_argument(
        "--out", metavar="DECISIONS.jsonl", help="write decisions here (default: standard output)"
    )
    replay.add_argument("--json", action="store_true", help="print the summary as JSON")
    replay.set_defaults(run=replay_command)

    detect = sub.add_parser(
        "detect", help="look for the watermark of a key in texts or JSON lines of answers"
    )
    detect.add_argument("--key", required=True, help="the watermark key (as in watermark.key)")
    detect.add_argument("files", metavar="FILE", nargs="+",
                        help="text files, or .jsonl files of answers (OpenAI or Anthropic); "
                             "gzipped or not")
    detect.add_argument("--json", action="store_true", help="print the evidence as JSON")
    detect.set_defaults(run=detect_command)


def replay_command(args: argparse.Namespace) -> int:
    import asyncio

    from guardgate.replay import Replay, read_records

    replay = Replay(load_policy(args.policy))
    try:
        source = Source(args.traffic)
    except Unreadable as exc:
        print(f"guardgate replay: {exc}", file=sys.stderr)
        return 1
    out = open(args.out, "wb") if args.out else sys.stdout.buffer  # noqa: SIM115
    summary_to = sys.stdout if args.out else sys.stderr
    # Decisions written to this terminal show the progress themselves.
    quiet = args.out is None and sys.stdout.isatty()

    async def run(progress: Progress) -> None:
        for count, record in enumerate(read_records(source.lines()), 1):
            line = await replay.decide(record)
            if line is not None:
                out.write(orjson.dumps(line) + b"\n")
            if count % _EVERY == 0:
                position = source.position()
                progress.at(count if position is None else position)

    try:
        name = "standard input" if args.traffic == "-" else args.traffic
        with Progress(f"replay {name}", source.size, quiet=quiet) as progress:
            asyncio.run(run(progress))
    except Unreadable as exc:
        print(f"guardgate replay: {exc}", file=sys.stderr)
        return 1
    finally:
        out.flush()
        if args.out:
            out.close()
        source.close()
    if args.json:
        print(json.dumps(replay.summary.as_dict()), file=summary_to)
    else:
        print(replay.summary.text(), file=summary_to)
    return 0


def detect_command(args: argparse.Namespace) -> int:
    from guardgate.perturb.watermark import Detector

    detector = Detector(args.key.encode())
    try:
        # Every file is looked at before the work starts: a missing one is
        # reported at once, and the sizes make the progress bar's total.
        sizes = [_size(name) for name in args.files]
        with Progress("detect", sum(sizes)) as progress:
            done = 0
            for name, size in zip(args.files, sizes, strict=True):
                source = Source(name)
                try:
                    for position in _feed(detector, source):
                        progress.at(done + position)
                finally:
                    source.close()
                done += size
                progress.at(done)
    except Unreadable as exc:
        print(f"guardgate detect: {exc}", file=sys.stderr)
        return 1
    evidence = detector.evidence()
    if args.json:
        print(json.dumps(evidence.as_dict()))
    else:
        print(f"slots scored: {evidence.slots}\nhits: {evidence.hits} "
              f"(expected without the key: {evidence.expected:.1f})\n"
              f"z-score: {evidence.z:.2f}\np-value: {evidence.p_value:.3g}")
    return 0


def _size(name: str) -> int:
    try:
        return os.stat(name).st_size
    except OSError as exc:
        raise Unreadable(f"cannot read {name}: {exc.strerror or exc}") from None


def _feed(detector: Any, source: Source) -> Iterator[int]:
    """Feeds the answers in ``source`` to ``detector``, yielding how far
    into the file it has read."""
    from guardgate.perturb.texts import answer_texts

    if not source.name.removesuffix(".gz").endswith((".jsonl", ".ndjson")):
        for text in answer_texts(source.read(), jsonl=False):
            detector.feed(text)
        return
    for batch in source.batches():
        for text in answer_texts(b"".join(batch), jsonl=True):
            detector.feed(text)
        yield source.position() or 0
