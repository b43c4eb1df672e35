"""``guardgate intel export|import|push``: threat intelligence between providers.

    export   what this deployment caught, as a STIX 2.1 bundle: from a running
             gateway (--gateway), from the policy's Redis (--policy), or from
             recorded traffic replayed through the policy (--replay)
    import   check a bundle and say what it would put in force; with
             --gateway, put it in force in that gateway
    push     publish a bundle to a TAXII 2.1 collection

Every failure is one line on standard error and exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

ADMIN_TOKEN = "GUARDGATE_ADMIN_TOKEN"
TAXII_USER = "GUARDGATE_TAXII_USER"
TAXII_PASSWORD = "GUARDGATE_TAXII_PASSWORD"


class Failed(Exception):
    """The command cannot go on: the message says why."""


def add_commands(sub: Any) -> None:
    intel = sub.add_parser("intel", help="share threat intelligence with other providers "
                                         "(STIX 2.1, TAXII 2.1)")
    commands = intel.add_subparsers(dest="intel_command", metavar="COMMAND", required=True)

    export = commands.add_parser("export", help="what was caught, as a STIX 2.1 bundle")
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--gateway", metavar="URL",
                        help=f"a running gateway (its operator API, with ${ADMIN_TOKEN})")
    source.add_argument("--policy", metavar="FILE",
                        help="the policy: its storage (Redis) holds the caught ledger")
    export.add_argument("--replay", metavar="TRAFFIC.jsonl",
                        help="with --policy: replay recorded traffic through the policy and "
                             "export what it caught")
    export.add_argument("--since", default="24h", metavar="DURATION",
                        help="caught in the last DURATION (default 24h; with --replay, before "
                             "the last record)")
    export.add_argument("--min-tier", metavar="TIER",
                        help="caught at this tier or above (default the policy's intel.min_tier)")
    export.add_argument("--out", default="-", metavar="FILE",
                        help="write the bundle here (default standard output)")
    export.set_defaults(run=export_command)

    load = commands.add_parser("import", help="check a STIX 2.1 bundle; with --gateway, put "
                                              "its indicators in force there")
    load.add_argument("file", metavar="FILE", help="a STIX 2.1 bundle")
    load.add_argument("--policy", metavar="FILE",
                      help="judge it by this policy's intel section (salt, kinds, confidence)")
    load.add_argument("--gateway", metavar="URL",
                      help=f"a running gateway to load it into (with ${ADMIN_TOKEN})")
    load.add_argument("--name", default=None, help="its name there (default the file's name)")
    load.add_argument("--json", action="store_true", help="print the summary as JSON")
    load.set_defaults(run=import_command)

    push = commands.add_parser("push", help="publish a bundle to a TAXII 2.1 collection")
    push.add_argument("file", metavar="FILE", help="a STIX 2.1 bundle")
    target = push.add_mutually_exclusive_group(required=True)
    target.add_argument("--policy", metavar="FILE", help="publish where intel.publish says")
    target.add_argument("--collection", metavar="URL",
                        help=f"a collection URL (credentials from ${TAXII_USER} and "
                             f"${TAXII_PASSWORD})")
    push.add_argument("--json", action="store_true", help="print the status as JSON")
    push.set_defaults(run=push_command)


def _fail(command: str, exc: BaseException) -> int:
    print(f"guardgate intel {command}: {exc}", file=sys.stderr)
    return 1


def _read(name: str) -> bytes:
    try:
        with open(name, "rb") as source:
            return source.read()
    except OSError as exc:
        raise Failed(f"cannot read {name}: {exc.strerror or exc}") from None


def _token() -> str:
    token = os.environ.get(ADMIN_TOKEN)
    if not token:
        raise Failed(f"set {ADMIN_TOKEN} to the gateway's admin.token")
    return token


def _gateway(method: str, url: str, path: str, **kwargs: Any) -> bytes:
    import httpx

    try:
        response = httpx.request(method, url.rstrip("/") + "/_guardgate/" + path,
                                 headers={"authorization": f"Bearer {_token()}"},
                                 timeout=60, **kwargs)
    except httpx.HTTPError as exc:
        raise Failed(f"cannot reach {url}: {exc}") from None
    if response.status_code != 200:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        raise Failed(f"{url} answered {response.status_code}: {message}")
    return response.content


# --- export -----------------------------------------------------------------------------------


def export_command(args: argparse.Namespace) -> int:
    from guardgate.errors import StorageError
    from guardgate.intel.service import IntelError
    from guardgate.policy.units import parse_duration

    try:
        try:
            window = parse_duration(args.since)
        except (TypeError, ValueError):
            raise Failed(f"--since: expected a duration like 30m, 24h or 7d, not {args.since!r}")
        if args.gateway:
            if args.replay:
                raise Failed("--replay goes with --policy, not --gateway")
            query = {"since": args.since, **({"min_tier": args.min_tier} if args.min_tier else {})}
            text = _gateway("GET", args.gateway, "intel/export", params=query)
            bundle = json.loads(text)
        else:
            bundle = asyncio.run(_export_local(args.policy, args.replay, window, args.min_tier))
        _write(args.out, json.dumps(bundle, indent=2) + "\n")
    except (Failed, IntelError, StorageError) as exc:
        return _fail("export", exc)
    kinds: dict[str, int] = {}
    for obj in bundle.get("objects", []):
        if obj.get("type") == "indicator":
            extensions = list((obj.get("extensions") or {}).values())
            kind = str(extensions[0].get("kind", "other")) if extensions else "other"
            kinds[kind] = kinds.get(kind, 0) + 1
    campaigns = sum(1 for obj in bundle.get("objects", []) if obj.get("type") == "campaign")
    shown = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "none"
    where = "" if args.out == "-" else f" to {args.out}"
    print(f"exported {campaigns} campaign(s), {sum(kinds.values())} indicator(s) ({shown})"
          f"{where}", file=sys.stderr)
    return 0


async def _export_local(policy_file: str, replay: str | None, window: float,
                        min_tier: str | None) -> dict[str, Any]:
    from guardgate.intel.service import export
    from guardgate.policy import load_policy

    policy = load_policy(policy_file)
    if policy.intel is None:
        raise Failed(f"{policy_file} has no intel section")
    if replay is not None:
        return await _export_replayed(policy, replay, window, min_tier)
    if policy.storage.startswith("memory://"):
        raise Failed("with memory storage the caught ledger lives in the gateway's process: "
                     "export with --gateway URL")
    from guardgate.errors import StorageError
    from guardgate.store import open_store, redacted

    store = open_store(policy.storage)
    try:
        ledger = store.caught_ledger()
        ledger.bound(policy.intel.ledger_size, policy.intel.ledger_ttl)
        now = time.time()
        return (await export(policy, ledger, now - window, min_tier, now)).bundle
    except StorageError as exc:
        raise Failed(f"cannot read the caught ledger from {redacted(policy.storage)} "
                     f"({exc})") from None
    finally:
        await store.close()


async def _export_replayed(policy: Any, traffic: str, window: float,
                           min_tier: str | None) -> dict[str, Any]:
    from guardgate.cli.inputs import Source, Unreadable
    from guardgate.intel.service import export
    from guardgate.replay import Replay, read_records

    replay = Replay(policy)
    last = 0.0
    try:
        source = Source(traffic)
        try:
            for record in read_records(source.lines()):
                line = await replay.decide(record)
                if line is not None:
                    last = max(last, float(line["ts"]))
        finally:
            source.close()
    except Unreadable as exc:
        raise Failed(str(exc)) from None
    return (await export(policy, replay.ledger, last - window, min_tier, last)).bundle


def _write(name: str, text: str) -> None:
    if name == "-":
        sys.stdout.write(text)
        return
    try:
        with open(name, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        raise Failed(f"cannot write {name}: {exc.strerror or exc}") from None


# --- import -----------------------------------------------------------------------------------


def import_command(args: argparse.Namespace) -> int:
    from guardgate.intel.reader import FeedError, Terms, read

    try:
        data = _read(args.file)
        terms = Terms()
        if args.policy:
            from guardgate.policy import load_policy

            config = load_policy(args.policy).intel
            if config is not None:
                terms = Terms(config.salt, config.match, config.signal.min_confidence)
        name = args.name or os.path.basename(args.file)
        summary = read(data, name, time.time(), terms).summary()
        if args.gateway:
            summary = json.loads(_gateway("POST", args.gateway, "intel/import", content=data,
                                          params={"name": name}))
    except FeedError as err:
        return _fail("import", Failed(f"{args.file} refused ({err.reason}): {err.message}"))
    except Failed as exc:
        return _fail("import", exc)
    if args.json:
        print(json.dumps(summary))
        return 0
    kinds = ", ".join(f"{n} {k}" for k, n in summary["by_kind"].items()) or "none"
    skipped = ", ".join(f"{n} {why}" for why, n in summary["skipped"].items()) or "none"
    where = f" in force at {args.gateway}" if args.gateway else " would be in force"
    print(f"{args.file}: {summary['indicators']} indicator(s){where} ({kinds}); "
          f"{summary['campaigns']} campaign(s); skipped: {skipped}")
    return 0


# --- push -------------------------------------------------------------------------------------


def push_command(args: argparse.Namespace) -> int:
    from guardgate.intel import taxii
    from guardgate.intel.reader import FeedError, objects_of, parsed

    try:
        objects = objects_of(_read(args.file))
        parsed(objects)  # every object valid STIX 2.1, or nothing leaves
        if not any(isinstance(obj, dict) and obj.get("type") == "indicator" for obj in objects):
            print(f"guardgate intel push: {args.file} holds no indicator: nothing to push",
                  file=sys.stderr)
            return 0
        url, user, password, timeout = _target(args)
        status = taxii.push(url, user, password, timeout, objects)
    except FeedError as err:
        return _fail("push", Failed(f"{err.reason}: {err.message}"))
    except Failed as exc:
        return _fail("push", exc)
    if args.json:
        print(json.dumps(status))
    else:
        print(f"pushed {args.file} to {url}: {status['added']} of {status['total']} object(s) "
              f"added, {status['failed']} refused (status {status['status']})")
    return 0 if status["failed"] == 0 or status["added"] else 1


def _target(args: argparse.Namespace) -> tuple[str, str | None, str | None, float]:
    if args.collection:
        from guardgate.policy.schema_intel import PublishSection

        user, password = os.environ.get(TAXII_USER), os.environ.get(TAXII_PASSWORD)
        try:
            given = PublishSection.model_validate({"taxii": args.collection, "user": user,
                                                   "password": password})
        except ValueError:
            raise Failed(f"--collection: expected a TAXII 2.1 collection URL (and both "
                         f"{TAXII_USER} and {TAXII_PASSWORD}, or neither)") from None
        return given.taxii, given.user, given.password, given.timeout
    from guardgate.policy import load_policy

    config = load_policy(args.policy).intel
    if config is None or config.publish is None:
        raise Failed(f"{args.policy} has no intel.publish collection")
    publish = config.publish
    return publish.taxii, publish.user, publish.password, publish.timeout
