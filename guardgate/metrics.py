"""Prometheus metrics, served on /_guardgate/metrics.

One registry per gateway, so several gateways in one process (tests, an
app that mounts two) never mix their counts. With several worker processes
(``guardgate serve --workers N`` sets ``PROMETHEUS_MULTIPROC_DIR``),
prometheus-client's multiprocess mode keeps the values in shared files and
every worker's endpoint answers with the sum over all workers.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
    multiprocess,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = CONTENT_TYPE_LATEST.encode()


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        # Requests are counted in a plain dict, an addition per request,
        # and added to `requests` when the registry is collected (in one
        # process; with several, straight into the shared counter).
        self._counts: dict[tuple[str | None, int], int] = {}
        self._folded: dict[tuple[str | None, int], int] = {}
        self.latencies: Latencies | SharedLatencies
        if self.multiprocess:
            self.latencies = SharedLatencies(Histogram(
                "guardgate_latency_seconds", Latencies.DOC, ["stage"],
                buckets=LATENCY_BUCKETS, registry=self.registry,
            ))
        else:
            # Registered first, so every collection of the registry sees the
            # requests counted since the last one.
            self.registry.register(_Fold(self))
            self.latencies = Latencies()
            self.registry.register(self.latencies)
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
        self.upstream_failures = Counter(
            "guardgate_upstream_failures",
            "Upstream failures, by kind: unavailable (no connection, 502), timeout (504), "
            "cut (failed after the response started).",
            ["kind"], registry=self.registry,
        )
        self.clients_gone = Counter(
            "guardgate_clients_gone",
            "Clients that left before their answer was complete, by stage: request (before "
            "the response started) or response (while it was being sent).",
            ["stage"], registry=self.registry,
        )
        self.reservations_open = Gauge(
            "guardgate_reservations_open",
            "Quota reservations made and not yet settled or released (0 when idle: "
            "anything else is a leak).",
            registry=self.registry, multiprocess_mode="livesum",
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
            "insufficient_work, replay, too_easy.",
            ["reason"], registry=self.registry,
        )
        self.clearances_spent = Counter(
            "guardgate_clearances_spent", "Clearances presented after their budget was used up.",
            registry=self.registry,
        )
        self.transforms = Counter(
            "guardgate_transforms", "Degrade transforms applied, by name.",
            ["name"], registry=self.registry,
        )
        self.marked = Counter(
            "guardgate_marked_answers", "Answers watermarked.", registry=self.registry,
        )
        self.policy_reloads = Counter(
            "guardgate_policy_reloads", "Policy reloads, by outcome: ok or invalid (refused).",
            ["outcome"], registry=self.registry,
        )
        self.policy: Info | Gauge
        if self.multiprocess:  # Info has no multiprocess mode: a gauge of 1 per version
            self.policy = Gauge(
                "guardgate_policy_info",
                "The active policy's version (its SHA-256, first 12 hex digits).",
                ["version"], registry=self.registry, multiprocess_mode="liveall",
            )
        else:
            self.policy = Info(
                "guardgate_policy",
                "The active policy's version (its SHA-256, first 12 hex digits).",
                registry=self.registry,
            )
        self.intel_polls = Counter(
            "guardgate_intel_polls",
            "Polls of threat intelligence feeds, by feed and outcome: ok, unreachable, "
            "malformed or expired (a failed poll leaves the feed's last good indicators).",
            ["feed", "outcome"], registry=self.registry,
        )
        self.intel_indicators = Gauge(
            "guardgate_intel_indicators", "Imported indicators in force, by feed.",
            ["feed"], registry=self.registry, multiprocess_mode="max",
        )
        self.intel_matches = Counter(
            "guardgate_intel_matches",
            "Requests that matched imported indicators, by kind of fingerprint.",
            ["kind"], registry=self.registry,
        )
        self.solve_seconds = Histogram(
            "guardgate_challenge_solve_seconds",
            "Time from issuing a challenge to redeeming its solution, measured by the server.",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
            registry=self.registry,
        )
        self._decision_children: dict[tuple[str, str], Any] = {}

    def count_request(self, api: str | None, status: int) -> None:
        key = (api, status // 100)
        if self.multiprocess:
            self._child(key).inc()
            return
        counts = self._counts
        count = counts.get(key)
        if count is None:
            self._child(key)  # created now, as a counter's child is when first counted
            count = 0
        counts[key] = count + 1

    def _child(self, key: tuple[str | None, int]) -> Any:
        return self.requests.labels(key[0] or "passthrough", f"{key[1]}xx")

    def fold(self) -> None:
        """Add the requests counted since the last fold to `requests`."""
        # A copy made in one step: requests may be counted meanwhile.
        for key, count in list(self._counts.items()):
            done = self._folded.get(key, 0)
            if count > done:
                self._folded[key] = count
                self._child(key).inc(count - done)

    def set_policy(self, digest: str) -> None:
        if isinstance(self.policy, Gauge):
            self.policy.clear()
            self.policy.labels(digest).set(1)
        else:
            self.policy.info({"version": digest})

    def count_decision(self, tier: str, action: str) -> None:
        child = self._decision_children.get((tier, action))
        if child is None:
            child = self._decision_children[tier, action] = self.decisions.labels(tier, action)
        child.inc()

    def render(self) -> bytes:
        if self.multiprocess:
            shared = CollectorRegistry()
            multiprocess.MultiProcessCollector(shared)  # type: ignore[no-untyped-call]
            return generate_latest(shared)
        return generate_latest(self.registry)


LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0, 120.0, 300.0)


class Latencies(Collector):
    """Latency histograms kept as plain counts (a bisect and two additions per
    request) and rendered as Prometheus histograms when collected:
    ``guardgate_latency_seconds{stage="gateway"|"upstream"}``."""

    STAGES = ("gateway", "upstream")
    DOC = ("Request latency: the whole exchange through the gateway, and the upstream's "
           "part of it (to its response start).")

    def __init__(self) -> None:
        self._counts = {stage: [0] * (len(LATENCY_BUCKETS) + 1) for stage in self.STAGES}
        self._sums = dict.fromkeys(self.STAGES, 0.0)

    def observe(self, stage: str, seconds: float) -> None:
        self._counts[stage][bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._sums[stage] += seconds

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily("guardgate_latency_seconds", self.DOC, labels=["stage"])
        for stage in self.STAGES:
            counts = list(self._counts[stage])
            cumulative, buckets = 0, []
            for bound, count in zip(LATENCY_BUCKETS, counts, strict=False):
                cumulative += count
                buckets.append((repr(bound), cumulative))
            buckets.append(("+Inf", cumulative + counts[-1]))
            family.add_metric([stage], buckets, sum_value=self._sums[stage])
        yield family

    def describe(self) -> list[Metric]:
        return []


class SharedLatencies:
    """`Latencies` over a real histogram, for multiprocess mode."""

    def __init__(self, histogram: Histogram) -> None:
        self._children = {stage: histogram.labels(stage) for stage in Latencies.STAGES}

    def observe(self, stage: str, seconds: float) -> None:
        self._children[stage].observe(seconds)


class _Fold(Collector):
    """Collects nothing itself: brings `requests` up to date first."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        self._metrics.fold()
        return iter(())

    def describe(self) -> list[Metric]:
        return []


