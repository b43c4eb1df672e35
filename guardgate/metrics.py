"""Prometheus metrics, served on /_guardgate/metrics.

One registry per gateway, so several gateways in one process (tests, an
app that mounts two) never mix their counts.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST.encode()


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "guardgate_requests", "Requests answered, by API and status class.",
            ["api", "status"], registry=self.registry,
        )
        self.quota_decisions = Counter(
            "guardgate_quota_decisions", "Quota checks, by quota and outcome.",
            ["quota", "outcome"], registry=self.registry,
        )
        self.storage_errors = Counter(
            "guardgate_storage_errors", "State backend failures, by operation.",
            ["operation"], registry=self.registry,
        )
        self.decisions = Counter(
            "guardgate_decisions", "Decisions by tier and action.",
            ["tier", "action"], registry=self.registry,
        )

        self.challenges_issued = Counter(
            "guardgate_challenges_issued", "Proof-of-work challenges issued.",
            registry=self.registry,
        )
        self.challenges_solved = Counter(
            "guardgate_challenges_solved", "Challenges solved and redeemed.",
            registry=self.registry,
        )
        self.challenges_failed = Counter(
            "guardgate_challenges_failed",
            "Solutions refused, by reason: malformed, bad_signature, expired, wrong_binding, "
            "insufficient_work, replay.",
            ["reason"], registry=self.registry,
        )
        self.clearances_spent = Counter(
            "guardgate_clearances_spent", "Clearances presented after their budget was used up.",
            registry=self.registry,
        )
        self.solve_seconds = Histogram(
            "guardgate_challenge_solve_seconds",
            "Time from issuing a challenge to redeeming its solution, measured by the server.",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
            registry=self.registry,
        )
        self._request_children: dict[tuple[str, int], Any] = {}
        self._decision_children: dict[tuple[str, str], Any] = {}

    def count_request(self, api: str | None, status: int) -> None:
        key = (api or "passthrough", status // 100)
        child = self._request_children.get(key)
        if child is None:
            child = self.requests.labels(key[0], f"{key[1]}xx")
            self._request_children[key] = child
        child.inc()

    def count_decision(self, tier: str, action: str) -> None:
        child = self._decision_children.get((tier, action))
        if child is None:
            child = self._decision_children[tier, action] = self.decisions.labels(tier, action)
        child.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
