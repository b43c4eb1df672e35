"""The policy's units: durations (`30s`), sizes (`8MiB`) and rates (`60/minute`).

Plain functions that raise `ValueError`; `guardgate.policy.fields` wraps them
into schema types. The patterns are ECMAScript-compatible so the JSON Schema
can carry them to editors unchanged. `duration_text` and `size_text` go the
other way, writing a default as a policy file would.
"""

from __future__ import annotations

import math
import re

from limits import RateLimitItem, parse_many

DURATION_PATTERN = r"^[0-9]+(\.[0-9]+)?(ms|s|m|h|d)?$"
SIZE_PATTERN = r"^[0-9]+(\.[0-9]+)?(B|KiB|MiB|GiB|TiB|kB|KB|MB|GB|TB)?$"
_ONE_RATE = r"[0-9]+ *(/|per) *([0-9]+ *)?(second|minute|hour|day|month|year)s?"
RATE_PATTERN = rf"^ *{_ONE_RATE} *( *; *{_ONE_RATE} *)*$"

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_UNITS = {
    "B": 1,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
    "kB": 1000,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
}
_DURATION = re.compile(DURATION_PATTERN)
_SIZE = re.compile(SIZE_PATTERN)
_RATE = re.compile(RATE_PATTERN)


def parse_duration(value: str | float) -> float:
    """`500ms`, `30s`, `15m`, `6h`, `7d`, or a plain number of seconds -> seconds."""
    if isinstance(value, bool):
        raise TypeError("expected a duration, not true/false")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"invalid duration {value!r}")
        return float(value)
    match = _DURATION.fullmatch(value)
    if match is None:
        raise ValueError(f"invalid duration {value!r}: expected e.g. 500ms, 30s, 15m, 6h, 7d")
    number = value[: match.start(2)] if match.group(2) else value
    return float(number) * _DURATION_UNITS[match.group(2) or "s"]


def parse_size(value: str | int) -> int:
    """`64KiB`, `8MiB`, `1GiB` (or decimal `MB`), or a plain number of bytes -> bytes."""
    if isinstance(value, bool):
        raise TypeError("expected a size, not true/false")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"invalid size {value!r}")
        return value
    match = _SIZE.fullmatch(value)
    if match is None:
        raise ValueError(f"invalid size {value!r}: expected e.g. 64KiB, 8MiB, 1GiB")
    number = value[: match.start(2)] if match.group(2) else value
    size = float(number) * _SIZE_UNITS[match.group(2) or "B"]
    if size != int(size):
        raise ValueError(f"invalid size {value!r}: not a whole number of bytes")
    return int(size)


def duration_text(seconds: float) -> str:
    """Seconds written in the largest unit that keeps them whole: 900 -> ``15m``."""
    for unit, size in sorted(_DURATION_UNITS.items(), key=lambda item: -item[1]):
        count = seconds / size
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    return f"{seconds:g}s"


def size_text(size: int) -> str:
    """Bytes written in the largest binary unit that keeps them whole: 8388608 -> ``8MiB``."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        if size >= _SIZE_UNITS[unit] and size % _SIZE_UNITS[unit] == 0:
            return f"{size // _SIZE_UNITS[unit]}{unit}"
    return f"{size}B"


def parse_rates(value: str) -> tuple[RateLimitItem, ...]:
    """`60/minute`, or several joined by `;` (`10/second; 1000/day`), as `limits` items."""
    if _RATE.fullmatch(value) is None:
        raise ValueError(f"invalid rate {value!r}: expected e.g. 60/minute or 10/second; 1000/day")
    return tuple(parse_many(value))
