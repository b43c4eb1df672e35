"""Pipeline step 1: who is calling.

The client IP comes from forwarding headers only when the socket peer is a
trusted proxy; otherwise it is the peer, whatever the headers say. Raw API
keys never leave this module: the principal id carries a hash prefix.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from guardgate.errors import BadRequest
from guardgate.policy.model import IdentityConfig, IPNetwork


@dataclass(frozen=True, slots=True)
class Identity:
    principal: str      # "key:<16 hex>", "acct:<value>" or "ip:<address>"
    client_ip: str
    ip_prefix: str      # the client's network, e.g. "203.0.113.0/24"
    user_agent: str
    trusted_peer: bool  # the socket peer is a trusted proxy
    key_sha256: str | None = None  # sha256 hex of the API key, when the principal is one
    org: str | None = None         # from the trusted org header
    created: float | None = None   # account creation (unix seconds), from a trusted header


def key_digest(api_key: bytes) -> str:
    return hashlib.sha256(api_key).hexdigest()


# Headers that name the caller: sent twice, the gateway and the upstream
# could each believe a different one.
_CREDENTIALS = frozenset({b"authorization", b"x-api-key", b"api-key"})


def refuse_repeated_credentials(raw: list[tuple[bytes, bytes]],
                                headers: Mapping[bytes, bytes]) -> None:
    """`BadRequest` when a header naming the caller comes more than once.
    ``headers``: ``raw`` as a dict; as long as ``raw``, nothing repeats."""
    if len(headers) == len(raw):
        return
    seen: set[bytes] = set()
    for name, _ in raw:
        if name in _CREDENTIALS:
            if name in seen:
                raise BadRequest(
                    f"The {name.decode()} header may be sent only once.",
                    reason=f"repeated {name.decode()} header",
                )
            seen.add(name)


# Identities remembered, by peer and header values (see Identifier.identify),
# and the most header bytes one may be remembered by: a few MB at most.
_KNOWN = 4096
_KNOWN_BYTES = 1024


class Identifier:
    """Resolves an `Identity` from an ASGI scope under one identity config."""

    def __init__(self, config: IdentityConfig) -> None:
        self._config = config
        self._trusted: tuple[IPNetwork, ...] = config.trusted_proxies
        # Header names as the ASGI scope has them, encoded once.
        self._sources = tuple(
            (s.kind, (s.header or "").encode("latin-1"), s.holds == "key") for s in config.principal
        )
        self._org_header = (config.org_header or "").encode("latin-1")
        self._created_header = (config.created_header or "").encode("latin-1")
        # Peers and client addresses repeat; parsing them once each keeps
        # identification to a few dict lookups on the hot path.
        self.is_trusted = lru_cache(maxsize=4096)(self._is_trusted)
        self.prefix_of = lru_cache(maxsize=65536)(self._prefix_of)
        # Every header an identity is derived from: the same peer sending the
        # same values is the same identity, so it is derived once (the key
        # hashed once) and looked up after that.
        read = [b"x-forwarded-for", b"user-agent", b"authorization"]
        read += [header for _, header, _ in self._sources if header]
        read += [h for h in (self._org_header, self._created_header) if h]
        self._read = tuple(dict.fromkeys(read))
        self._known: dict[tuple[object, ...], Identity] = {}

    def _is_trusted(self, address: str) -> bool:
        if not self._trusted:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self._trusted)

    def _prefix_of(self, address: str) -> str:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return address
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        bits = self._config.ipv4_prefix if ip.version == 4 else self._config.ipv6_prefix
        return str(ipaddress.ip_network((ip, bits), strict=False))

    def client_ip(self, peer: str, forwarded_for: str | None, trusted_peer: bool) -> str:
        if not trusted_peer or not forwarded_for:
            return peer
        # Walk right to left: each hop was appended by the one after it; the
        # first address not ours is the client.
        hops = [h.strip() for h in forwarded_for.split(",")]
        for hop in reversed(hops):
            if not hop:
                continue
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                break
            if not self.is_trusted(hop):
                return hop
            peer = hop
        return peer

    def identify(
        self, scope: Mapping[str, Any], headers: Mapping[bytes, bytes], *, trusted: bool | None = None
    ) -> Identity:
        """``trusted`` believes (or not) the peer whatever the policy says,
        for traffic replayed from the gateway's own records."""
        client = scope.get("client")
        peer = client[0] if isinstance(client, (tuple, list)) and client else ""
        if trusted is not None:
            return self._derive(peer, headers, trusted)
        key = (peer, *map(headers.get, self._read))
        identity = self._known.get(key)
        if identity is None:
            identity = self._derive(peer, headers, self.is_trusted(peer))
            if sum(len(v) for v in key if v) <= _KNOWN_BYTES:
                if len(self._known) >= _KNOWN:
                    # The oldest goes first: dicts keep insertion order.
                    del self._known[next(iter(self._known))]
                self._known[key] = identity
        return identity

    def _derive(self, peer: str, headers: Mapping[bytes, bytes], trusted: bool) -> Identity:
        xff = headers.get(b"x-forwarded-for")
        ip = self.client_ip(peer, xff.decode("latin-1") if xff else None, trusted)
        principal, digest = self._principal(headers, ip, trusted)
        agent = headers.get(b"user-agent", b"").decode("latin-1")
        org = created = None
        if trusted:
            if self._org_header:
                value = headers.get(self._org_header)
                org = value.decode("latin-1")[:128] if value else None
            if self._created_header:
                created = _timestamp(headers.get(self._created_header))
        return Identity(principal, ip, self.prefix_of(ip), agent, trusted, digest, org, created)

    def _principal(
        self, headers: Mapping[bytes, bytes], ip: str, trusted: bool
    ) -> tuple[str, str | None]:
        for kind, header, holds_key in self._sources:
            if kind == "bearer":
                auth = headers.get(b"authorization")
                if auth and auth[:7].lower() == b"bearer ":
                    token = auth[7:].strip()
                    if token:
                        digest = key_digest(token)
                        return "key:" + digest[:16], digest
            elif kind == "header":
                value = headers.get(header)
                if not value:
                    continue
                if holds_key:
                    digest = key_digest(value)
                    return "key:" + digest[:16], digest
                if trusted:
                    return "acct:" + value.decode("latin-1")[:128], None
            elif kind == "ip":
                return "ip:" + ip, None
        return "ip:" + ip, None


def _timestamp(value: bytes | None) -> float | None:
    """Unix seconds or ISO 8601, as an auth layer may write a creation time."""
    if not value:
        return None
    text = value.decode("latin-1").strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
