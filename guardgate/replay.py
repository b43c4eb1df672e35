"""Backtest a policy on recorded traffic: ``guardgate replay``.

Each traffic line is one request as the gateway saw it::

    {"ts": 1764460800.25, "method": "POST", "path": "/v1/chat/completions",
     "client_ip": "203.0.113.7", "headers": {"authorization": "Bearer ..."},
     "body": {...}, "usage": {"input_tokens": 12, "output_tokens": 480}}

``usage`` is optional (what the answer cost, fed back into the caller's
state as the gateway does after an answer); other fields are ignored. The
recorded ``ts`` is the clock. Requests go through the same identification,
parsing, risk assessment and decision as in the gateway, on memory state of
their own; the headers are believed as if set by a trusted proxy, since the
records are the operator's own. Quota counters are not replayed (they run
on the wall clock): ``throttle`` here means the caller's tier scales its
quotas down.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from guardgate.apis import ADAPTERS, Adapter
from guardgate.apis.base import ModelCall
from guardgate.apis.usage import CHARS_PER_TOKEN
from guardgate.decide import Decider
from guardgate.errors import RequestError
from guardgate.identity import Identifier
from guardgate.intel.feeds import IntelFeeds
from guardgate.policy.intel_config import IntelConfig
from guardgate.policy.model import Policy
from guardgate.policy.schema_intel import default_min_tier
from guardgate.quota import estimate_input
from guardgate.risk.engine import RiskEngine
from guardgate.store.ledger import MemoryLedger
from guardgate.store.risk import MemoryRisk, RiskStore


@dataclass(slots=True)
class Summary:
    requests: int = 0
    decided: int = 0
    skipped: int = 0   # not a model request (another path or method)
    invalid: int = 0   # not a traffic line, or a body the API would refuse
    by_tier: Counter[str] = field(default_factory=Counter)
    by_action: Counter[str] = field(default_factory=Counter)
    by_tier_action: Counter[tuple[str, str]] = field(default_factory=Counter)

    def text(self) -> str:
        lines = [
            (
                f"{self.requests} requests: {self.decided} decided, {self.skipped} not model "
                f"requests, {self.invalid} invalid"
            ),
            "",
            f"{'tier':<14}{'action':<12}{'requests':>10}{'share':>9}",
        ]
        total = max(self.decided, 1)
        for (tier, action), count in sorted(self.by_tier_action.items()):
            lines.append(f"{tier:<14}{action:<12}{count:>10}{count / total:>9.1%}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "decided": self.decided,
            "skipped": self.skipped,
            "invalid": self.invalid,
            "by_tier": dict(self.by_tier),
            "by_action": dict(self.by_action),
        }


class Replay:
    """One policy's decisions over a stream of traffic records."""

    def __init__(self, policy: Policy, state: RiskStore | None = None,
                 intel: list[tuple[str, bytes]] | None = None) -> None:
        """``state``: the risk state to decide on; by default memory of its own.
        ``intel``: STIX bundles (name, content) whose indicators are in force
        (at the recorded times), as if a feed had brought them. With the
        policy's ``intel`` section, callers it catches go to `ledger`."""
        self.policy = policy
        self.identifier = Identifier(policy.identity)
        self.decider = Decider(policy)
        self.adapters: dict[str, Adapter] = {r.path: ADAPTERS[r.api] for r in policy.routes}
        self.engine: RiskEngine | None = None
        self.ledger = MemoryLedger()
        self.feeds = IntelFeeds()
        if policy.tiers and policy.risk.enabled:
            if state is None:
                state = MemoryRisk(RiskEngine.clock_of(policy))
            self.engine = RiskEngine(policy, state)
            config = policy.intel
            if config is None and intel:
                tiers = [(tier.name, tier.score) for tier in policy.tiers]
                config = IntelConfig(min_tier=default_min_tier(tiers))
            if config is not None:
                self.ledger.bound(config.ledger_size, config.ledger_ttl)
                self.feeds.configure(config)
                for name, data in intel or ():
                    # In force at any recorded time, their validity checked at each.
                    self.feeds.load(name, data, now=0.0, quiet=True)
                self.engine.use_intel(config, self.feeds, self.ledger)
        self.summary = Summary()

    async def decide(self, record: Any) -> dict[str, Any] | None:
        """The decision line for one traffic record, None when it is not a
        model request or not valid."""
        summary = self.summary
        summary.requests += 1
        try:
            ts, method, path, client_ip, headers, body = _fields(record)
        except (TypeError, ValueError, KeyError, AttributeError):
            summary.invalid += 1
            return None
        adapter = self.adapters.get(path) if method == "POST" else None
        if adapter is None:
            summary.skipped += 1
            return None
        try:
            call = adapter.parse(orjson.dumps(body))
        except (RequestError, TypeError, orjson.JSONEncodeError):
            summary.invalid += 1
            return None
        identity = self.identifier.identify({"client": (client_ip, 0)}, headers, trusted=True)
        decision = self.decider.override(identity)
        score = 0.0
        reasons = [decision.reason] if decision is not None else []
        if decision is None:
            decision = self.decider.normal
            if self.engine is not None:
                assessment = await self.engine.assess(identity, call, ts)
                decision = self.decider.for_tier(assessment.tier)
                score = assessment.score
                reasons = assessment.scored.top()
                tokens = None
                if not decision.deny:
                    tokens = _usage(record, call)
                await self.engine.record(assessment, tokens)
        action = decision.action
        summary.decided += 1
        summary.by_tier[decision.tier] += 1
        summary.by_action[action] += 1
        summary.by_tier_action[decision.tier, action] += 1
        return {
            "ts": ts,
            "principal": identity.principal,
            "tier": decision.tier,
            "score": round(score, 4),
            "action": action,
            "reasons": reasons,
        }


def _fields(record: Any) -> tuple[float, str, str, str, dict[bytes, bytes], Any]:
    ts = float(record["ts"])
    method = str(record.get("method", "POST")).upper()
    path = str(record["path"])
    client_ip = str(record.get("client_ip", ""))
    raw = record.get("headers") or {}
    # The forwarding chain is already resolved into client_ip.
    headers = {
        str(k).lower().encode("latin-1"): str(v).encode("latin-1", "replace")
        for k, v in raw.items()
        if str(k).lower() != "x-forwarded-for"
    }
    return ts, method, path, client_ip, headers, record.get("body")


def _usage(record: Any, call: ModelCall) -> tuple[int, int] | None:
    """What the answer cost, as the gateway feeds it back: the upstream's
    counts, or, without them, the answer's text measured as the gateway
    measures it; None when the record holds neither."""
    usage = record.get("usage")
    if isinstance(usage, dict):
        try:
            return int(usage["input_tokens"]), int(usage["output_tokens"])
        except (KeyError, TypeError, ValueError):
            pass
    text = record.get("answer_text")
    if isinstance(text, str):
        return estimate_input(call), math.ceil(len(text) / CHARS_PER_TOKEN)
    return None


def read_records(lines: Iterable[bytes]) -> Iterator[Any]:
    """Traffic records from JSON lines; a line that is not JSON yields None."""
    for line in lines:
        if not line.strip():
            continue
        try:
            yield orjson.loads(line)
        except orjson.JSONDecodeError:
            yield None
