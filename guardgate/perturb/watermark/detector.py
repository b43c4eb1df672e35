"""The detector: how often a text holds the keyed member of its slots, and
how unlikely that is for a text written without the key."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from guardgate.perturb.watermark.key import Key
from guardgate.perturb.watermark.scanner import Scanner
from guardgate.perturb.watermark.table import SHIPPED, Vocabulary


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the detector found in a text."""

    slots: int       # distinct (context, group) slots scored
    hits: int        # slots holding the keyed member
    expected: float  # hits expected without the key
    z: float
    p_value: float   # one-sided: probability of at least ``hits`` without the key
    channel: str = "lexical"
    # Where the evidence came from: by kind of slot ("shipped" groups,
    # "private" groups, "contractions"), each as slots, hits, expected, p;
    # and the groups that carried the most, by hits beyond expected.
    kinds: dict[str, Evidence] = field(default_factory=dict)
    groups: tuple[tuple[str, int, int, float], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "channel": self.channel, "slots": self.slots, "hits": self.hits,
            "expected": round(self.expected, 3), "z": round(self.z, 3), "p_value": self.p_value}
        if self.kinds:
            out["kinds"] = {kind: {k: v for k, v in found.as_dict().items()
                                   if k in ("slots", "hits", "expected", "z", "p_value")}
                            for kind, found in self.kinds.items()}
        if self.groups:
            out["groups"] = [{"group": name, "slots": slots, "hits": hits,
                              "expected": round(expected, 3)}
                             for name, slots, hits, expected in self.groups]
        return out


def _evidence(probabilities: list[float], hits: int) -> Evidence:
    expected = sum(probabilities)
    variance = sum(p * (1 - p) for p in probabilities)
    z = (hits - expected) / math.sqrt(variance) if variance else 0.0
    return Evidence(len(probabilities), hits, expected, z, upper_tail(probabilities, hits))


class Detector:
    """Scores texts for the watermark of ``key``. Slots are de-duplicated
    across everything fed to one detector (a corpus is one body of evidence):
    a (context, group) pair counts once, as first seen."""

    TOP = 10  # groups reported

    def __init__(self, key: bytes, vocabulary: Vocabulary = SHIPPED) -> None:
        self._key = Key(key, vocabulary)
        self._vocabulary = vocabulary
        self._seen: set[tuple[str, int]] = set()
        self._probabilities: list[float] = []
        self._hits = 0
        # Per group: [slots, hits, expected hits]; per kind of slot: each
        # slot's chance, and the hits.
        self._groups: dict[int, list[float]] = {}
        self._kinds: dict[str, tuple[list[float], list[int]]] = {}

    def feed(self, text: str) -> None:
        scanner = Scanner(vocabulary=self._vocabulary)
        for _, slot in scanner.scan(text):
            if slot is None or (slot.context, slot.group) in self._seen:
                continue
            self._seen.add((slot.context, slot.group))
            p = 1 / len(slot.candidates)
            self._probabilities.append(p)
            tally = self._groups.setdefault(slot.group, [0, 0, 0.0])
            tally[0] += 1
            tally[2] += p
            ps, hits = self._kinds.setdefault(self._kind(slot.group), ([], [0]))
            ps.append(p)
            if self._key.choice(slot.context, slot.group, slot.candidates) == slot.word:
                self._hits += 1
                tally[1] += 1
                hits[0] += 1

    def _kind(self, group: int) -> str:
        vocabulary = self._vocabulary
        if vocabulary.is_private(group):
            return "private"
        return "shipped" if vocabulary.is_synonym(group) else "contractions"

    def evidence(self) -> Evidence:
        found = _evidence(self._probabilities, self._hits)
        vocabulary = self._vocabulary
        ranked = sorted(self._groups.items(), key=lambda item: item[1][2] - item[1][1])
        top = tuple((vocabulary.names[group], int(slots), int(hits), expected)
                    for group, (slots, hits, expected) in ranked[:self.TOP] if hits > expected)
        return Evidence(found.slots, found.hits, found.expected, found.z, found.p_value,
                        kinds={kind: _evidence(ps, hits[0]) for kind, (ps, hits) in
                               sorted(self._kinds.items())}, groups=top)


def detect(text: str, key: bytes, vocabulary: Vocabulary = SHIPPED) -> Evidence:
    detector = Detector(key, vocabulary)
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
