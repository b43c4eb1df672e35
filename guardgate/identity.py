"""Pipeline step 1: who is calling.

The client IP comes from forwarding headers only when the socket peer is a
trusted proxy; otherwise it is the peer, whatever the headers say. Raw API
keys never leave this module: the principal id carries a hash prefix.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from guardgate.errors import BadRequest
from guardgate.policy.model import KEY_HEADERS, IdentityConfig, IPNetwork

if TYPE_CHECKING:
    from guardgate.apis.base import Adapter


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
    # Two of its credential headers carry different keys: on every route (ALWAYS),
    # or where an Authorization of any scheme is a credential (WHOLE); see Credentials.
    mixed: int = 0


def key_digest(api_key: bytes) -> str:
    return hashlib.sha256(api_key).hexdigest()


# RFC 9110 section 11.4: the scheme is case-insensitive and separated from
# its token by one or more spaces; upstreams differ in how much whitespace
# they forgive, so any amount, tabs included, is read. The token itself is
# one word (a token68): were words after it read as part of it, rotating
# them would make a new principal of one key an upstream reads by its first.
# RFC 9110: ``Bearer`` (any case), whitespace, one token68.
_BEARER = re.compile(rb"[ \t]*bearer[ \t]+([A-Za-z0-9._~+/-]+=*)[ \t]*", re.IGNORECASE)
_BEARER_SCHEME = re.compile(rb"[ \t]*bearer(?:[ \t]|$)", re.IGNORECASE)


def bearer_token(authorization: bytes) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` value; None for
    another scheme or no token."""
    match = _BEARER.fullmatch(authorization)
    return match.group(1) if match else None


# Identity.mixed: the credentials of a request differ on every route, or only
# where an Authorization of any scheme is a key.
ALWAYS = 1
WHOLE = 2
MALFORMED = 3


class Credentials:
    """One caller, one credential: the headers that may carry an API key,
    compiled once per policy. Sent twice, or two of them with different
    keys, the gateway could count the caller by one and the upstream
    authenticate it by the other."""

    def __init__(self, config: IdentityConfig) -> None:
        keys = {s.header for s in config.principal if s.kind == "header" and s.holds == "key"}
        keys |= {h for h in KEY_HEADERS if not any(
            s.header == h and s.holds == "account" for s in config.principal)}
        if config.credential not in ("auto", "authorization"):
            keys.add(config.credential)
        self.keys = tuple(sorted(k.encode("latin-1") for k in keys if k))
        self._names = frozenset((b"authorization", *self.keys))
        # Where Authorization is what the upstream authenticates by, a value of
        # any scheme is a credential; elsewhere only a Bearer token is one.
        # Pass-through (None) follows the OpenAI conventions, as its errors do.
        by_api = config.credential == "auto"
        whole = config.credential == "authorization"
        self._whole: dict[str | None, bool] = {
            "openai": whole or by_api, "anthropic": whole, None: whole or by_api,
        }

    def mixed(self, headers: Mapping[bytes, bytes]) -> tuple[int, str]:
        """Whether the request's credential headers carry different keys
        (0, `ALWAYS` or `WHOLE`), and the two headers that differ; or
        `MALFORMED`: a Bearer token that is no token68, which an upstream
        may trim into another's (a no-break space after it), so that one key
        would be many callers here."""
        authorization = headers.get(b"authorization")
        if (authorization and bearer_token(authorization) is None
                and _BEARER_SCHEME.match(authorization)):
            return MALFORMED, "authorization"
        found: bytes | None = None
        found_in = b""
        for name in self.keys:
            value = headers.get(name)
            if value:
                if found is None:
                    found, found_in = value, name
                elif value != found:
                    return ALWAYS, _pair(found_in, name)
        if found is None or not authorization or authorization == found:
            return 0, ""
        token = bearer_token(authorization)
        if token is None:
            return WHOLE, _pair(b"authorization", found_in)
        return (ALWAYS if token != found else 0), _pair(b"authorization", found_in)

    def refuse(self, identity: Identity | None, raw: list[tuple[bytes, bytes]],
               headers: Mapping[bytes, bytes], adapter: Adapter | None) -> None:
        """`BadRequest` when a credential header comes twice, or two carry
        different keys (``identity.mixed``, found when it was derived).
        ``headers``: ``raw`` as a dict; as long as ``raw``, nothing repeats.
        ``adapter``: the route's API, None for pass-through."""
        if len(headers) != len(raw):
            self._refuse_repeated(raw)
        mixed = identity.mixed if identity is not None else 0
        if mixed == MALFORMED:
            raise BadRequest("The Authorization header's Bearer token is malformed.",
                             reason="malformed bearer token")
        if mixed and (mixed == ALWAYS
                      or self._whole[adapter.family if adapter is not None else None]):
            raise BadRequest(
                "The request carries two different API keys: send one.",
                reason=f"different credentials in {self.mixed(headers)[1]}",
            )

    def _refuse_repeated(self, raw: list[tuple[bytes, bytes]]) -> None:
        seen: set[bytes] = set()
        for name, _ in raw:
            if name in self._names:
                if name in seen:
                    raise BadRequest(
                        f"The {name.decode()} header may be sent only once.",
                        reason=f"repeated {name.decode()} header",
                    )
                seen.add(name)


def _pair(one: bytes, other: bytes) -> str:
    return f"{one.decode('latin-1')} and {other.decode('latin-1')}"


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
        self.credentials = Credentials(config)
        read = [b"x-forwarded-for", b"user-agent", b"authorization"]
        read += [header for _, header, _ in self._sources if header]
        read += [h for h in (self._org_header, self._created_header) if h]
        read += self.credentials.keys
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
        mixed = self.credentials.mixed(headers)[0]
        return Identity(principal, ip, self.prefix_of(ip), agent, trusted, digest, org, created,
                        mixed)

    def _principal(
        self, headers: Mapping[bytes, bytes], ip: str, trusted: bool
    ) -> tuple[str, str | None]:
        for kind, header, holds_key in self._sources:
            if kind == "bearer":
                auth = headers.get(b"authorization")
                if auth:
                    token = bearer_token(auth)
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
