"""Fingerprints as they leave one deployment and are matched at another.

A campaign's fingerprints are what guardgate computes anyway, and nothing
in them needs a secret to compare: a prompt skeleton's MinHash band
(``0.5c1d9e2a``: the band's index and the CRC32 of its bins), a system
prompt's CRC32 (``9f3a0c11``), a client string's CRC32, a network
(``203.0.113.0/24``), and a setup, a system prompt sent from a network
(``9f3a0c11@203.0.113.0/24``). The same campaign run through two gateways
gives the same values at both, since both hash the same text the same way.

Networks leave no more specific than the policy's ``intel.prefix`` (a /28
grouping is cut to /24 by default); a peer matches a network by
containment, so it need not group addresses as this deployment does.

With ``intel.salt``, every value leaves as a keyed digest of its canonical
form instead: only peers holding the same salt can match it, and nobody
else can test a guess (a client string, a system prompt) against it.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import socket
import zlib
from dataclasses import dataclass

AGENT_DIGEST = "{:08x}"


def agent_digest(user_agent: str) -> str:
    """A client string's fingerprint, as the risk engine's agent cluster names it."""
    return AGENT_DIGEST.format(zlib.crc32(user_agent.encode()))


def salt_id(salt: str) -> str:
    """Names a salt without revealing it: peers compare these to know they share one."""
    return hashlib.sha256(b"guardgate intel salt\x00" + salt.encode()).hexdigest()[:16]


def salted(salt: str, kind: str, canonical: str) -> str:
    """The keyed digest that leaves instead of ``canonical`` when the policy salts."""
    return hashlib.blake2b(f"{kind}:{canonical}".encode(), key=_salt_key(salt),
                           digest_size=16).hexdigest()


@functools.lru_cache(maxsize=16)
def _salt_key(salt: str) -> bytes:
    """The blake2b key of a salt: derived once, not on every request's lookups."""
    return hashlib.sha256(salt.encode()).digest()


@dataclass(frozen=True, slots=True)
class Network:
    """A network as matched: IP version, prefix length and the network's
    address as an integer."""

    version: int
    length: int
    address: int

    @property
    def text(self) -> str:
        if self.version == 4:
            return str(ipaddress.IPv4Network((self.address, self.length)))
        return str(ipaddress.IPv6Network((self.address, self.length)))


def network_of(cidr: str, ipv4: int = 32, ipv6: int = 128) -> Network | None:
    """``cidr`` (a network or an address) cut to at most ``ipv4`` or ``ipv6``
    bits; None when it is neither."""
    try:
        parsed = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return None
    most = ipv4 if parsed.version == 4 else ipv6
    if parsed.prefixlen > most:
        parsed = parsed.supernet(new_prefix=most)
    return Network(parsed.version, parsed.prefixlen, int(parsed.network_address))


def address_of(client_ip: str) -> tuple[int, int] | None:
    """(IP version, address as an integer) of a client address; None for
    anything else (a unix socket peer, an empty string). On the request
    path: the socket module's parser, a tenth of ``ipaddress``'s cost."""
    try:
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, client_ip), "big")
    except OSError:
        pass
    try:
        packed = socket.inet_pton(socket.AF_INET6, client_ip.partition("%")[0])
    except OSError:
        return None
    return 6, int.from_bytes(packed, "big")


def within(address: int, version: int, length: int) -> int:
    """The network of ``address`` at ``length`` bits, as an integer."""
    bits = 32 if version == 4 else 128
    return (address >> (bits - length)) << (bits - length)


def canonical(kind: str, value: str, ipv4: int, ipv6: int) -> tuple[str, Network | None] | None:
    """What a ledger's fingerprint leaves as (before any salt), and the network
    it names (prefixes and setups); None when it cannot leave (a malformed
    value)."""
    if kind == "prefix":
        net = network_of(value, ipv4, ipv6)
        return None if net is None else (net.text, net)
    if kind == "setup":
        system, _, cidr = value.partition("@")
        net = network_of(cidr, ipv4, ipv6)
        if net is None or not system:
            return None
        return f"{system}@{net.text}", net
    return value, None
