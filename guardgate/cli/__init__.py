"""The ``guardgate`` command: one module per group of subcommands.

    serving    serve, toy (and the app each server worker builds)
    demo       demo
    starter    init
    offline    replay, calibrate, detect (work on recorded files, with progress)
    intel      intel export, import, push (threat intelligence between providers)
    keygen     watermark keygen (a deployment's private synonym table)

This module holds the parser and the small commands.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from guardgate.cli.serving import CannotListen, app_factory, resolve_policy
from guardgate.errors import PolicyError
from guardgate.policy import load_policy, policy_schema

__all__ = ["app_factory", "main", "resolve_policy"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        result: int = args.run(args)
    except PolicyError as err:
        print(err, file=sys.stderr)
        return 1
    except CannotListen as err:
        print(f"guardgate {args.command}: {err}", file=sys.stderr)
        return 1
    return result


def version() -> str:
    from guardgate import __version__

    return __version__


def _parser() -> argparse.ArgumentParser:
    from guardgate.cli import demo, intel, keygen, offline, serving, starter

    parser = argparse.ArgumentParser(
        prog="guardgate",
        description="A gateway that protects model APIs from distillation.",
        epilog="Start with: guardgate demo (everything in one command), or guardgate init "
               "(a policy to edit), then guardgate serve --policy policy.yaml.",
    )
    parser.add_argument("--version", action="version", version=f"guardgate {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serving.add_commands(sub)
    demo.add_command(sub)
    starter.add_command(sub)
    keygen.add_parser(sub)

    check = sub.add_parser("check", help="validate a policy file; print every problem")
    check.add_argument("file", metavar="FILE")
    check.set_defaults(run=_check)

    schema = sub.add_parser("schema", help="print the policy's JSON Schema")
    schema.set_defaults(run=_schema)

    offline.add_commands(sub)
    intel.add_commands(sub)

    solve = sub.add_parser(
        "solve", help="solve a challenge; print the GuardGate-Solution header value"
    )
    solve.add_argument("challenge", metavar="CHALLENGE",
                       help='the token from WWW-Authenticate: GuardGate-PoW challenge="..."')
    solve.add_argument("--difficulty", type=float,
                       help="the challenge's difficulty (default: read from the token)")
    solve.set_defaults(run=_solve)
    return parser


def _check(args: argparse.Namespace) -> int:
    try:
        policy = load_policy(args.file)
    except PolicyError as err:
        for problem in err.problems:
            print(f"{args.file}: {problem}")
        print(f"{len(err.problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{args.file}: ok (policy {policy.digest[:12]})")
    return 0


def _schema(args: argparse.Namespace) -> int:
    print(json.dumps(policy_schema(), indent=2))
    return 0


def _solve(args: argparse.Namespace) -> int:
    from guardgate.challenge.puzzle import solve
    from guardgate.challenge.tokens import CHALLENGE, TokenError, read_difficulty

    token = args.challenge.strip().strip('"')
    difficulty = args.difficulty
    if difficulty is None:
        try:
            difficulty = read_difficulty(token)
        except TokenError as err:
            print(f"guardgate solve: not a {CHALLENGE} challenge token ({err.reason})",
                  file=sys.stderr)
            return 1
    print(solve(token, difficulty))
    return 0
