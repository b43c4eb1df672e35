"""Signed challenge and clearance tokens.

A token is ``<kind>.<payload>.<mac>``: the payload is a canonical encoding of
its fields, each a 4-byte big-endian length and its UTF-8 bytes, in a fixed
order (so no field can be spliced into another), base64url without padding;
the MAC is HMAC-SHA256 over the kind and the payload under the secret its
key id names, base64url. The fields carry everything needed to check the
token (expiry, difficulty, binding), so nothing is stored until it is used.

Binding: the principal, the client's IP prefix (so a dual-stack or NATed
client keeps working when its address changes within the prefix) and a hash
of the user agent.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass

CHALLENGE = "ggc1"
CLEARANCE = "ggk1"
MAX_TOKEN = 2048  # longer tokens are refused unread


class TokenError(Exception):
    """A token that cannot be trusted; ``reason`` names the failed check."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def agent_hash(user_agent: str) -> str:
    return hashlib.sha256(user_agent.encode("utf-8", "replace")).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Binding:
    principal: str
    prefix: str
    agent: str  # `agent_hash` of the user agent


@dataclass(frozen=True, slots=True)
class Challenge:
    key_id: str
    id: str
    issued: float
    expires: float
    difficulty: float
    binding: Binding
    requests: int        # the clearance it buys
    output_tokens: int

    def fields(self) -> list[str]:
        b = self.binding
        return [self.key_id, self.id, f"{self.issued:.3f}", f"{self.expires:.3f}",
                repr(self.difficulty), b.principal, b.prefix, b.agent, str(self.requests),
                str(self.output_tokens)]

    @classmethod
    def from_fields(cls, f: list[str]) -> Challenge:
        return cls(f[0], f[1], float(f[2]), float(f[3]), float(f[4]), Binding(f[5], f[6], f[7]),
                   int(f[8]), int(f[9]))


@dataclass(frozen=True, slots=True)
class Clearance:
    key_id: str
    id: str
    issued: float
    expires: float
    binding: Binding
    epoch: int           # the principal's epoch when issued; a new epoch revokes it
    requests: int        # budget
    output_tokens: int
    difficulty: float    # of the challenge it was bought with

    def fields(self) -> list[str]:
        b = self.binding
        return [self.key_id, self.id, f"{self.issued:.3f}", f"{self.expires:.3f}", b.principal,
                b.prefix, b.agent, str(self.epoch), str(self.requests), str(self.output_tokens),
                repr(self.difficulty)]

    @classmethod
    def from_fields(cls, f: list[str]) -> Clearance:
        return cls(f[0], f[1], float(f[2]), float(f[3]), Binding(f[4], f[5], f[6]), int(f[7]),
                   int(f[8]), int(f[9]), float(f[10]))


_FIELDS = {CHALLENGE: 10, CLEARANCE: 11}


def new_id() -> str:
    return secrets.token_hex(16)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """Strict: only the URL-safe alphabet, and only the one encoding of the bytes."""
    data = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    if _b64(data) != text:
        raise ValueError("not canonical base64url")
    return data


def _encode(fields: list[str]) -> bytes:
    out = bytearray()
    for field in fields:
        raw = field.encode("utf-8")
        out += struct.pack(">I", len(raw))
        out += raw
    return bytes(out)


def _decode(payload: bytes, count: int) -> list[str]:
    fields: list[str] = []
    at = 0
    while at < len(payload):
        if at + 4 > len(payload):
            raise TokenError("malformed")
        (size,) = struct.unpack_from(">I", payload, at)
        at += 4
        if at + size > len(payload):
            raise TokenError("malformed")
        fields.append(payload[at : at + size].decode("utf-8"))
        at += size
    if len(fields) != count:
        raise TokenError("malformed")
    return fields


class Signer:
    """Signs with the current secret; verifies with it or a previous one."""

    def __init__(self, key_id: str, secret: str,
                 previous: tuple[tuple[str, str], ...] = ()) -> None:
        self.key_id = key_id
        self._keys = {kid: s.encode() for kid, s in previous}
        self._keys[key_id] = secret.encode()

    def _mac(self, key: bytes, kind: str, payload: str) -> bytes:
        return hmac.new(key, f"{kind}.{payload}".encode("ascii"), hashlib.sha256).digest()

    def sign(self, kind: str, fields: list[str]) -> str:
        payload = _b64(_encode(fields))
        return f"{kind}.{payload}.{_b64(self._mac(self._keys[self.key_id], kind, payload))}"

    def open(self, token: str, kind: str) -> list[str]:
        """The fields of a token of ``kind`` this signer signed; `TokenError` otherwise."""
        if len(token) > MAX_TOKEN or not token.isascii():
            raise TokenError("malformed")
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != kind:
            raise TokenError("malformed")
        _, payload, mac = parts
        try:
            fields = _decode(_unb64(payload), _FIELDS[kind])
            given = _unb64(mac)
        except (binascii.Error, ValueError, UnicodeDecodeError, struct.error):
            raise TokenError("malformed") from None
        key = self._keys.get(fields[0])
        if key is None or not hmac.compare_digest(self._mac(key, kind, payload), given):
            raise TokenError("bad_signature")
        return fields

    def challenge(self, c: Challenge) -> str:
        return self.sign(CHALLENGE, c.fields())

    def clearance(self, c: Clearance) -> str:
        return self.sign(CLEARANCE, c.fields())

    def open_challenge(self, token: str) -> Challenge:
        try:
            return Challenge.from_fields(self.open(token, CHALLENGE))
        except ValueError:
            raise TokenError("malformed") from None

    def open_clearance(self, token: str) -> Clearance:
        try:
            return Clearance.from_fields(self.open(token, CLEARANCE))
        except ValueError:
            raise TokenError("malformed") from None


def read_difficulty(token: str) -> float:
    """A challenge's difficulty, read without checking its signature (for a
    client solving it; the gateway checks everything when it is redeemed)."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != CHALLENGE or len(token) > MAX_TOKEN:
        raise TokenError("malformed")
    try:
        fields = _decode(_unb64(parts[1]), _FIELDS[CHALLENGE])
        return Challenge.from_fields(fields).difficulty
    except (binascii.Error, ValueError, UnicodeDecodeError, struct.error):
        raise TokenError("malformed") from None
