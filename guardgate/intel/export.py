"""From the caught ledger to a STIX 2.1 bundle: ``guardgate intel export``.

Which fingerprints leave:

1. of a kind the policy shares (``intel.share``), caught at the asked tier
   or above since the asked time;
2. specific to the campaign: carried by ``intel.min_accounts`` caught
   accounts at least, and risky on their own in ``intel.min_share`` of the
   accounts that carried it in the risk window, at least. A popular SDK's
   client string or a carrier's network is carried by many ordinary
   callers too: it stays home. The indicator's confidence is that share,
   with two ordinary accounts added (as the risk engine's shares count two
   neutral requests): 3 of 3 accounts risky is 60, 40 of 40 is 95.

Networks are cut to ``intel.prefix``; with ``intel.salt`` values leave as
keyed digests. Fingerprints whose caught accounts overlap (their sketches
share a principal's hash) belong to one campaign: one ``campaign`` per
connected group, an ``indicator`` per fingerprint, ``indicates``
relationships, and an ``observed-data`` per campaign with its timing and
demand. Nothing else leaves: no prompt, no answer, no key, no principal
(the sketch's hashes stay home too; only their count leaves).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
import stix2  # type: ignore[import-untyped]

from guardgate.intel.fingerprints import Network, canonical, salt_id, salted
from guardgate.intel.stix import EXTENSION_ID, pattern, stamp, timestamp
from guardgate.policy.intel_config import IntelConfig
from guardgate.store.ledger import SKETCH, LedgerEntry

PRIOR = 2  # ordinary accounts added to a fingerprint's when its confidence is taken
NAMES = {
    "template": "prompt template (skeleton MinHash band)",
    "system": "system prompt (CRC32)",
    "setup": "system prompt sent from one network",
    "prefix": "network",
    "agent": "client string (CRC32)",
}
OBJECTIVE = "Harvest a model's answers at scale to train another model on them (distillation)."


@dataclass(slots=True)
class Shared:
    """One fingerprint that leaves."""

    kind: str
    value: str            # as it leaves: canonical, or its keyed digest
    network: Network | None
    entry: LedgerEntry    # merged over the local values it stands for
    confidence: int = 0
    campaign: int = 0


@dataclass(slots=True)
class Export:
    """What an export holds, for the command's summary."""

    bundle: dict[str, Any]
    campaigns: int = 0
    indicators: int = 0
    considered: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> fingerprints


def _merge(into: LedgerEntry, entry: LedgerEntry) -> None:
    into.first = min(into.first, entry.first)
    into.last = max(into.last, entry.last)
    into.accounts += entry.accounts
    into.risky += entry.risky
    into.requests += entry.requests
    for tier, seen in entry.tiers.items():
        into.tiers[tier] = max(into.tiers.get(tier, 0.0), seen)
    into.sketch = sorted(set(into.sketch) | set(entry.sketch))[:SKETCH]
    for name, count in entry.signals.items():
        into.signals[name] = into.signals.get(name, 0) + count
    for name, total in entry.demand.items():
        into.demand[name] = into.demand.get(name, 0.0) + total


def _copy(entry: LedgerEntry) -> LedgerEntry:
    return LedgerEntry(entry.kind, entry.value, entry.first, entry.last, entry.accounts,
                       entry.risky, entry.requests, dict(entry.tiers), list(entry.sketch),
                       dict(entry.signals), dict(entry.demand))


def shareable(entries: Iterable[LedgerEntry], config: IntelConfig, ranks: dict[str, int],
              min_rank: int, since: float) -> tuple[list[Shared], dict[str, int], int]:
    """The fingerprints that may leave, the others counted by why they stay,
    and how many were considered."""
    merged: dict[tuple[str, str], tuple[LedgerEntry, Network | None]] = {}
    dropped: dict[str, int] = {}
    considered = 0
    for entry in entries:
        if entry.kind not in config.share or not any(
                ranks.get(tier, 0) >= min_rank and seen >= since
                for tier, seen in entry.tiers.items()):
            continue
        considered += 1
        named = canonical(entry.kind, entry.value, config.ipv4_prefix, config.ipv6_prefix)
        if named is None:
            dropped["unreadable"] = dropped.get("unreadable", 0) + 1
            continue
        held = merged.get((entry.kind, named[0]))
        if held is None:
            merged[entry.kind, named[0]] = (_copy(entry), named[1])
        else:
            _merge(held[0], entry)
    shared: list[Shared] = []
    for (kind, value), (entry, network) in merged.items():
        reason = _unspecific(entry, config)
        if reason is not None:
            dropped[reason] = dropped.get(reason, 0) + 1
            continue
        risky = min(entry.risky, entry.accounts)
        confidence = round(100 * risky / (entry.accounts + PRIOR))
        if config.salt is not None:
            value = salted(config.salt, kind, value)
        shared.append(Shared(kind, value, network, entry, confidence))
    return shared, dropped, considered


def _unspecific(entry: LedgerEntry, config: IntelConfig) -> str | None:
    if entry.caught < config.min_accounts:
        return "too_few_caught_accounts"
    if entry.accounts <= 0 or min(entry.risky, entry.accounts) / entry.accounts < config.min_share:
        return "shared_with_ordinary_callers"
    return None


def campaigns(shared: list[Shared]) -> list[list[Shared]]:
    """Fingerprints grouped by the accounts they share (connected through
    their sketches), the largest group first."""
    parent = list(range(len(shared)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[int, int] = {}
    for i, item in enumerate(shared):
        for hashed in item.entry.sketch:
            j = owner.setdefault(hashed, i)
            if j != i:
                parent[root(i)] = root(j)
    groups: dict[int, list[Shared]] = {}
    for i, item in enumerate(shared):
        groups.setdefault(root(i), []).append(item)
    return sorted(groups.values(), key=lambda group: (-len(group), group[0].entry.first))


def _summary(group: list[Shared]) -> dict[str, Any]:
    """The campaign's whole: accounts, observations, tiers, signals, demand."""
    union = LedgerEntry("", "", min(s.entry.first for s in group),
                        max(s.entry.last for s in group))
    for item in group:
        union.sketch = sorted(set(union.sketch) | set(item.entry.sketch))[:SKETCH]
        for tier, seen in item.entry.tiers.items():
            union.tiers[tier] = max(union.tiers.get(tier, 0.0), seen)
    # Each observation counts in every fingerprint it carried: the most
    # observed fingerprint's counts stand for the campaign's.
    busiest = max((item.entry for item in group), key=lambda entry: entry.requests)
    observations = max(1, busiest.requests)
    signals = sorted(busiest.signals.items(), key=lambda item: (-item[1], item[0]))
    return {
        "first": union.first, "last": union.last,
        "caught_accounts": round(union.caught),
        "observations": observations,
        "tiers": _tiers(union.tiers),
        "signals": [{"name": name, "share": round(count / observations, 3)}
                    for name, count in signals[:6]],
        "demand": [{"signal": name, "mean": round(total / observations, 4)}
                   for name, total in sorted(busiest.demand.items())],
    }


def _tiers(tiers: dict[str, float]) -> list[dict[str, Any]]:
    return [{"tier": tier, "last_seen": stamp(seen)}
            for tier, seen in sorted(tiers.items(), key=lambda item: item[1])]


def _indicator(item: Shared, config: IntelConfig, producer: Any) -> Any:
    entry, network = item.entry, item.network
    salted_value = config.salt is not None
    extension: dict[str, Any] = {
        "extension_type": "property-extension",
        "kind": item.kind, "value": item.value,
        "caught_accounts": round(entry.caught), "accounts": entry.accounts,
        "risky_accounts": min(entry.risky, entry.accounts),
        "first_seen": stamp(entry.first), "last_seen": stamp(entry.last),
        "tiers": _tiers(entry.tiers),
        "signals": [{"name": name, "count": count}
                    for name, count in sorted(entry.signals.items(), key=lambda i: -i[1])[:6]],
    }
    if network is not None:
        extension["network"] = {"version": network.version, "length": network.length}
    if config.salt is not None:
        extension["salt_id"] = salt_id(config.salt)
    until = max(entry.last + config.valid_for, entry.first + 1)
    return stix2.v21.Indicator(
        created_by_ref=producer.id,
        name=f"{NAMES[item.kind]} of a distillation campaign",
        description=(f"Carried by {round(entry.caught)} accounts caught for distillation; "
                     f"{min(entry.risky, entry.accounts)} of the {entry.accounts} accounts "
                     "that carried it in the risk window were risky on their own."),
        indicator_types=["malicious-activity"],
        pattern=pattern(item.kind, item.value, network.version if network else None,
                        salted_value),
        pattern_type="stix",
        valid_from=timestamp(entry.first),
        valid_until=timestamp(until),
        confidence=item.confidence,
        extensions={EXTENSION_ID: extension},
    )


def _campaign_objects(number: int, group: list[Shared], config: IntelConfig,
                      producer: Any) -> list[Any]:
    summary = _summary(group)
    first, last = summary.pop("first"), summary.pop("last")
    extension = {"extension_type": "property-extension", **summary}
    campaign = stix2.v21.Campaign(
        created_by_ref=producer.id,
        name=f"distillation campaign {timestamp(first):%Y-%m-%d} #{number}",
        description=(f"{summary['caught_accounts']} accounts caught harvesting model answers, "
                     f"{len(group)} shared fingerprints."),
        first_seen=timestamp(first), last_seen=timestamp(last),
        objective=OBJECTIVE, confidence=max(item.confidence for item in group),
        extensions={EXTENSION_ID: extension},
    )
    objects: list[Any] = [campaign]
    refs: list[str] = []
    for item in group:
        indicator = _indicator(item, config, producer)
        relation = stix2.v21.Relationship(created_by_ref=producer.id,
                                          relationship_type="indicates",
                                          source_ref=indicator.id, target_ref=campaign.id)
        objects += [indicator, relation]
        refs.append(relation.id)
        net = item.network
        if item.kind == "prefix" and net is not None and config.salt is None:
            address = (stix2.v21.IPv4Address if net.version == 4 else stix2.v21.IPv6Address)(
                value=item.value)
            objects.append(address)
            refs.insert(0, address.id)
    objects.append(stix2.v21.ObservedData(
        created_by_ref=producer.id,
        first_observed=timestamp(first), last_observed=timestamp(max(last, first)),
        number_observed=min(summary["observations"], 999_999_999),
        object_refs=refs, extensions={EXTENSION_ID: extension},
    ))
    return objects


def build(entries: Iterable[LedgerEntry], config: IntelConfig, tiers: list[str],
          min_tier: str, since: float) -> Export:
    """The bundle of what was caught at ``min_tier`` or above since ``since``
    (``tiers``: the policy's, lowest first)."""
    ranks = {name: i + 1 for i, name in enumerate(tiers)}
    shared, dropped, considered = shareable(entries, config, ranks, ranks.get(min_tier, 1),
                                            since)
    producer = stix2.v21.Identity(
        name=config.name, identity_class="organization",
        description="A model provider sharing what its guardgate caught.")
    objects: list[Any] = [producer]
    groups = campaigns(shared)
    for number, group in enumerate(groups, 1):
        objects += _campaign_objects(number, group, config, producer)
    bundle = stix2.v21.Bundle(objects=objects, allow_custom=False)
    data: dict[str, Any] = orjson.loads(bundle.serialize())
    return Export(data, len(groups), len(shared), considered, dropped)
