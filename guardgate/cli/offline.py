"""``guardgate replay``, ``guardgate calibrate`` and ``guardgate detect``:
commands over recorded files (plain or gzip), with progress on a terminal."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
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
    replay.add_argument("--intel", metavar="BUNDLE", action="append", default=[],
                        help="a STIX 2.1 bundle whose indicators are in force at the recorded "
                             "times (repeatable): backtest a feed on your own traffic")
    replay.set_defaults(run=replay_command)

    calibrate = sub.add_parser(
        "calibrate",
        help="fit the signals' ramps and the tiers' scores to recorded (mostly benign) traffic",
    )
    calibrate.add_argument("--policy", metavar="FILE", required=True, help="policy file (YAML)")
    calibrate.add_argument("traffic", metavar="TRAFFIC.jsonl",
                           help="recorded traffic, gzipped or not; - for standard input")
    calibrate.add_argument("--target-fpr", type=float, default=0.005, metavar="SHARE",
                           help="share of callers allowed to reach the tier (default 0.005)")
    calibrate.add_argument("--tier", default="suspicious",
                           help="the tier the target is about (default suspicious)")
    calibrate.add_argument("--out", metavar="FILE", required=True,
                           help="write the calibrated policy here (YAML)")
    calibrate.add_argument("--json", action="store_true", help="print the report as JSON")
    calibrate.set_defaults(run=calibrate_command)

    detect = sub.add_parser(
        "detect", help="look for the watermark of a key in texts or JSON lines of answers"
    )
    detect.add_argument("--key", required=True, help="the watermark key (as in watermark.key)")
    detect.add_argument("--groups", metavar="FILE",
                        help="the deployment's private groups (as in watermark.groups)")
    detect.add_argument("files", metavar="FILE", nargs="+",
                        help="text files, or .jsonl files of answers (OpenAI or Anthropic); "
                             "gzipped or not")
    detect.add_argument("--json", action="store_true", help="print the evidence as JSON")
    detect.set_defaults(run=detect_command)


def replay_command(args: argparse.Namespace) -> int:
    import asyncio

    from guardgate.intel.reader import FeedError
    from guardgate.replay import Replay, read_records

    try:
        bundles = [(os.path.basename(name), _bundle(name)) for name in args.intel]
        replay = Replay(load_policy(args.policy), intel=bundles)
        source = Source(args.traffic)
    except Unreadable as exc:
        print(f"guardgate replay: {exc}", file=sys.stderr)
        return 1
    except FeedError as err:
        print(f"guardgate replay: a bundle is refused ({err.reason}): {err.message}",
              file=sys.stderr)
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


def _bundle(name: str) -> bytes:
    try:
        with open(name, "rb") as source:
            return source.read()
    except OSError as exc:
        raise Unreadable(f"cannot read {name}: {exc.strerror or exc}") from None


def calibrate_command(args: argparse.Namespace) -> int:
    """Exit 0 when the calibrated policy meets the target on the traffic, 1
    when it does not (the policy is written all the same), 2 when it cannot
    calibrate (the reason in one line)."""
    import asyncio

    from guardgate.errors import PolicyError
    from guardgate.replay import Replay
    from guardgate.risk.calibrate import CalibrationError, calibrate, read_document

    try:
        policy = load_policy(args.policy)
        document = read_document(args.policy)
        records = _passes(args.traffic)
        header = (f"# Calibrated by guardgate calibrate from {args.policy} on {args.traffic} "
                  f"(target: at most {args.target_fpr:g} of callers reach {args.tier}).\n"
                  "# risk.signals and the tiers' scores are fitted; the rest is as written.\n")
        result = asyncio.run(calibrate(policy, document, records, Replay,
                                       target_fpr=args.target_fpr, tier=args.tier,
                                       header=header))
        with open(args.out, "w", encoding="utf-8") as out:
            out.write(result.text)
    except PolicyError as err:
        more = len(err.problems) - 1
        extra = f" (and {more} more: guardgate check {args.policy})" if more > 0 else ""
        problem = err.problems[0] if err.problems else None
        first = "invalid" if problem is None else (
            str(problem) if problem.where or problem.line else problem.message)
        print(f"guardgate calibrate: {err.source}: {first}{extra}", file=sys.stderr)
        return 2
    except (CalibrationError, Unreadable) as exc:
        print(f"guardgate calibrate: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"guardgate calibrate: cannot write {args.out}: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({**result.as_dict(), "out": args.out}))
    else:
        print(result.report() + f"\nwrote {args.out}")
    if not result.met:
        print(f"guardgate calibrate: {args.out} does not meet the target on this traffic",
              file=sys.stderr)
        return 1
    return 0


def _passes(name: str) -> Callable[[str], Iterator[Any]]:
    """Records of ``name`` afresh on every pass (standard input is read once,
    kept in memory), with progress on a terminal."""
    from guardgate.replay import read_records

    kept: list[bytes] | None = None
    if name == "-":
        source = Source(name)
        try:
            kept = list(source.lines())
        finally:
            source.close()
    else:
        Source(name).close()  # a missing file is reported before any work

    def records(label: str) -> Iterator[Any]:
        if kept is not None:
            yield from read_records(kept)
            return
        source = Source(name)
        try:
            with Progress(f"calibrate {label}", source.size) as progress:
                for count, record in enumerate(read_records(source.lines()), 1):
                    yield record
                    if count % _EVERY == 0:
                        progress.at(source.position() or 0)
        finally:
            source.close()

    return records


def detect_command(args: argparse.Namespace) -> int:
    from guardgate.perturb.watermark import Detector
    from guardgate.perturb.watermark.table import Vocabulary

    try:
        private = "" if args.groups is None else Path(args.groups).read_text(encoding="utf-8")
        detector = Detector(args.key.encode(), Vocabulary(private))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        print(f"guardgate detect: the private groups {args.groups}: {exc}", file=sys.stderr)
        return 1
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
        for kind, found in evidence.kinds.items():
            print(f"  {evidence.channel} {kind}: {found.hits} of {found.slots} slots "
                  f"(expected {found.expected:.1f}), p-value {found.p_value:.3g}")
        if evidence.groups:
            print("groups carrying the most: " + ", ".join(
                f"{name} ({hits}/{slots})" for name, slots, hits, _ in evidence.groups[:5]))
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
