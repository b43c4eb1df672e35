"""The imported indicators, as the request path looks them up.

Built once per feed change (`guardgate.intel.feeds`), never on the request
path: dictionaries keyed by the fingerprints a request already carries, so
a request costs a few dictionary lookups (its skeleton's bands, its system
prompt's digest, its client string's digest, its network at each prefix
length the indicators name), and nothing at all while no indicator is in
force. Salted indicators add a keyed digest per fingerprint, only when some
are in force.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from guardgate.intel.fingerprints import Network, address_of, agent_digest, salted, within


@dataclass(frozen=True, slots=True)
class Indicator:
    """One imported indicator: a peer's fingerprint of a campaign."""

    id: str                    # the STIX indicator's id
    feed: str                  # the feed it came from
    kind: str                  # template, system, setup, prefix or agent
    value: str                 # the canonical fingerprint, or its keyed digest when salted
    confidence: float          # 0 to 1, as the peer gave it
    last_seen: float           # when the peer last saw the campaign carry it (unix seconds)
    valid_until: float | None  # unix seconds; None: no end
    network: Network | None = None  # for prefixes and setups: the network it names
    salted: bool = False
    campaign: str | None = None  # the campaign it indicates, by name

    def strength(self, now: float, half_life: float) -> float:
        """The confidence, halved every ``half_life`` since last seen; 0 once expired."""
        if self.valid_until is not None and now >= self.valid_until:
            return 0.0
        age = now - self.last_seen
        return self.confidence if age <= 0 else self.confidence * 2 ** (-age / half_life)


Match = tuple[Indicator, float]  # an indicator and its strength now


class IntelIndex:
    """Indicators by the fingerprints a request carries."""

    def __init__(self, indicators: Iterable[Indicator] = (), salt: str | None = None,
                 half_life: float = 3 * 86400.0) -> None:
        self.indicators = _strongest(indicators)
        self.size = len(self.indicators)
        self.half_life = half_life
        self._salt = salt
        self._exact: dict[tuple[str, str], list[Indicator]] = {}
        self._prefixes: dict[tuple[int, int], dict[int, list[Indicator]]] = {}
        self._setups: dict[tuple[int, int], dict[str, list[Indicator]]] = {}
        self._salted: dict[str, list[Indicator]] = {}
        self._salted_kinds: set[str] = set()
        self._salted_nets: set[tuple[str, int, int]] = set()
        for indicator in self.indicators:
            self._add(indicator)
        self._agents = any(kind == "agent" for kind, _ in self._exact)

    def _add(self, indicator: Indicator) -> None:
        net = indicator.network
        if indicator.salted:
            self._salted.setdefault(indicator.value, []).append(indicator)
            if net is not None:
                self._salted_nets.add((indicator.kind, net.version, net.length))
            else:
                self._salted_kinds.add(indicator.kind)
        elif indicator.kind == "prefix" and net is not None:
            table = self._prefixes.setdefault((net.version, net.length), {})
            table.setdefault(net.address, []).append(indicator)
        elif indicator.kind == "setup" and net is not None:
            system = indicator.value.partition("@")[0]
            setups = self._setups.setdefault((net.version, net.length), {})
            setups.setdefault(f"{system}@{net.address}", []).append(indicator)
        else:
            self._exact.setdefault((indicator.kind, indicator.value), []).append(indicator)

    def match(self, bands: tuple[str, ...], system: str | None, user_agent: str,
              client_ip: str, now: float) -> list[Match]:
        """The indicators in force that a request with these fingerprints
        matches, each with its strength now."""
        hits: list[Indicator] = []
        exact = self._exact
        if exact:
            for band in bands:
                hits += exact.get(("template", band), ())
            if system is not None:
                hits += exact.get(("system", system), ())
            if self._agents and user_agent:
                hits += exact.get(("agent", agent_digest(user_agent)), ())
        if self._prefixes or self._setups:
            hits += self._networks(system, client_ip)
        if self._salted:
            hits += self._keyed(bands, system, user_agent, client_ip)
        found: list[Match] = []
        for indicator in hits:
            strength = indicator.strength(now, self.half_life)
            if strength > 0:
                found.append((indicator, strength))
        return found

    def _networks(self, system: str | None, client_ip: str) -> list[Indicator]:
        address = address_of(client_ip)
        if address is None:
            return []
        version, value = address
        hits: list[Indicator] = []
        for (net_version, length), table in self._prefixes.items():
            if net_version == version:
                hits += table.get(within(value, version, length), ())
        if system is not None:
            for (net_version, length), setups in self._setups.items():
                if net_version == version:
                    hits += setups.get(f"{system}@{within(value, version, length)}", ())
        return hits

    def _keyed(self, bands: tuple[str, ...], system: str | None, user_agent: str,
               client_ip: str) -> list[Indicator]:
        salt = self._salt
        if salt is None:
            return []
        candidates: list[tuple[str, str]] = []
        kinds = self._salted_kinds
        if "template" in kinds:
            candidates += (("template", band) for band in bands)
        if "system" in kinds and system is not None:
            candidates.append(("system", system))
        if "agent" in kinds and user_agent:
            candidates.append(("agent", agent_digest(user_agent)))
        address = address_of(client_ip) if self._salted_nets else None
        if address is not None:
            version, value = address
            for kind, net_version, length in self._salted_nets:
                if net_version != version or (kind == "setup" and system is None):
                    continue
                text = Network(version, length, within(value, version, length)).text
                candidates.append((kind, text if kind == "prefix" else f"{system}@{text}"))
        hits: list[Indicator] = []
        for kind, canonical in candidates:
            for indicator in self._salted.get(salted(salt, kind, canonical), ()):
                if indicator.kind == kind:
                    hits.append(indicator)
        return hits


def _strongest(indicators: Iterable[Indicator]) -> tuple[Indicator, ...]:
    """One indicator per fingerprint (kind and value, or network shape when
    salted): the most confident, then the most recently seen, then the
    longest valid."""
    kept: dict[tuple[str, bool, str, Network | None], Indicator] = {}
    for indicator in indicators:
        key = (indicator.kind, indicator.salted, indicator.value, indicator.network)
        held = kept.get(key)
        if held is None or _rank(indicator) > _rank(held):
            kept[key] = indicator
    return tuple(kept.values())


def _rank(indicator: Indicator) -> tuple[float, float, float]:
    until = indicator.valid_until
    return indicator.confidence, indicator.last_seen, float("inf") if until is None else until


EMPTY = IntelIndex()
