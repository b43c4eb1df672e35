"""The detector: how often a text holds the keyed member of its slots, and
how unlikely that is for a text written without the key."""

from __future__ import annotations

import math
from dataclasses import dataclass

from guardgate.perturb.watermark.key import Key
from guardgate.perturb.watermark.scanner import Scanner


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the detector found in a text."""

    slots: int       # distinct (context, group) slots scored
    hits: int        # slots holding the keyed member
    expected: float  # hits expected without the key
    z: float
    p_value: float   # one-sided: probability of at least ``hits`` without the key

    def as_dict(self) -> dict[str, float | int]:
        return {"slots": self.slots, "hits": self.hits, "expected": round(self.expected, 3),
                "z": round(self.z, 3), "p_value": self.p_value}


class Detector:
    """Scores texts for the watermark of ``key``. Slots are de-duplicated
    across everything fed to one detector (a corpus is one body of evidence):
    a (context, group) pair counts once, as first seen."""

    def __init__(self, key: bytes) -> None:
        self._key = Key(key)
        self._seen: set[tuple[str, int]] = set()
        self._probabilities: list[float] = []
        self._hits = 0

    def feed(self, text: str) -> None:
        scanner = Scanner()
        for _, slot in scanner.scan(text):
            if slot is None or (slot.context, slot.group) in self._seen:
                continue
            self._seen.add((slot.context, slot.group))
            self._probabilities.append(1 / len(slot.candidates))
            if self._key.choice(slot.context, slot.group, slot.candidates) == slot.word:
                self._hits += 1

    def evidence(self) -> Evidence:
        ps = self._probabilities
        expected = sum(ps)
        variance = sum(p * (1 - p) for p in ps)
        z = (self._hits - expected) / math.sqrt(variance) if variance else 0.0
        return Evidence(len(ps), self._hits, expected, z, upper_tail(ps, self._hits))


def detect(text: str, key: bytes) -> Evidence:
    detector = Detector(key)
    detector.feed(text)
    return detector.evidence()


_EXACT_UP_TO = 3000


def upper_tail(probabilities: list[float], hits: int) -> float:
    """P(X >= hits) for X a sum of independent Bernoulli(p) (Poisson
    binomial): exact for up to a few thousand slots, normal beyond."""
    n = len(probabilities)
    if hits <= 0:
        return 1.0
    if hits > n:
        return 0.0
    if n <= _EXACT_UP_TO:
        dist = [1.0]
        for p in probabilities:
            nxt = [0.0] * (len(dist) + 1)
            q = 1 - p
            for k, mass in enumerate(dist):
                nxt[k] += mass * q
                nxt[k + 1] += mass * p
            dist = nxt
        return min(1.0, math.fsum(dist[hits:]))
    mean = sum(probabilities)
    sd = math.sqrt(sum(p * (1 - p) for p in probabilities))
    return 0.5 * math.erfc((hits - 0.5 - mean) / (sd * math.sqrt(2)))
