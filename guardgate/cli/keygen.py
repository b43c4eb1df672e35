"""``guardgate watermark keygen``: a deployment's private synonym table.

The key chooses ``--groups`` groups from the candidate pool WordNet offers
(`guardgate.perturb.watermark.pool`), and the table is written in the format
of the shipped ``synonyms.txt``, readable by its owner only, for the
policy's ``watermark.groups``. Keep the file out of the image, like the key,
and with the key: detecting the mark needs both.

Reading WordNet needs nltk (``pip install 'guardgate[keygen]'``) and
Debian's ``wordnet-base`` package; the gateway needs neither.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from guardgate.perturb.watermark.pool import PoolError, candidate_groups, private_table

DEFAULT_WORDNET = "/usr/share/wordnet"
# About half the pool WordNet 3.0 offers (some 370 groups): the key's choice
# then hides which half is live.
DEFAULT_GROUPS = 200
DEFAULT_KEY_ENV = "GUARDGATE_WATERMARK_KEY"
MIN_KEY = 16  # as the policy's watermark.key


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Declare ``watermark keygen`` on the ``guardgate`` command's
    subparsers; returns the ``watermark`` parser (its own subcommands are
    ``keygen``)."""
    watermark: argparse.ArgumentParser = subparsers.add_parser(
        "watermark", help="the watermark's private synonym table (keygen)"
    )
    watermark.set_defaults(run=lambda args: _usage(watermark))
    commands = watermark.add_subparsers(dest="watermark_command", metavar="COMMAND")
    keygen = commands.add_parser(
        "keygen",
        help="write a deployment's private synonym table, chosen by the watermark key "
             "from the groups WordNet offers",
    )
    keygen.add_argument("--wordnet", metavar="DIR", default=DEFAULT_WORDNET,
                        help="WordNet 3.0's database (default /usr/share/wordnet, "
                             "from apt-get install wordnet-base)")
    keygen.add_argument("--groups", metavar="N", type=int, default=DEFAULT_GROUPS,
                        help=f"how many groups the table holds (default {DEFAULT_GROUPS})")
    keygen.add_argument("--out", metavar="FILE", required=True,
                        help="write the table here (mode 0600), for watermark.groups")
    keygen.add_argument("--key-env", metavar="NAME", default=DEFAULT_KEY_ENV,
                        help=f"the environment variable holding the watermark key "
                             f"(default {DEFAULT_KEY_ENV})")
    keygen.set_defaults(run=keygen_command)
    return watermark


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _fail(message: str) -> int:
    print(f"guardgate watermark keygen: {message}", file=sys.stderr)
    return 1


def keygen_command(args: argparse.Namespace) -> int:
    """Exit 0 with the table written; 1 with the reason in one line (no
    key, no nltk, no WordNet, too many groups asked for, cannot write)."""
    key = os.environ.get(args.key_env, "")
    if not key:
        return _fail(f"{args.key_env} is not set: export it with the watermark key "
                     f"(the policy's watermark.key, {MIN_KEY} characters or more)")
    if len(key) < MIN_KEY:
        return _fail(f"the key in {args.key_env} has {len(key)} characters: "
                     f"the watermark key needs {MIN_KEY} or more")
    if args.groups < 1:
        return _fail("--groups must be 1 or more")
    try:
        candidates = candidate_groups(args.wordnet)
    except PoolError as err:
        return _fail(str(err))
    if args.groups > len(candidates):
        return _fail(f"the pool has {len(candidates)} groups: ask for --groups "
                     f"{len(candidates)} or fewer")
    text = private_table(key.encode(), candidates, args.groups)
    try:
        _write_private(Path(args.out), text)
    except OSError as err:
        return _fail(f"cannot write {args.out}: {err.strerror or err}")
    print(f"wrote {args.groups} groups (of a pool of {len(candidates)}) to {args.out}, "
          "mode 0600; name it in the policy's watermark.groups and keep it with the key")
    return 0


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only, whole or not
    at all (a temporary file beside it, renamed over it)."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
