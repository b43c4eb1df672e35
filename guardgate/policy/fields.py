"""Field types for the policy schema.

Each type parses one kind of value (a duration, a size, a URL, a CIDR),
fails with a short human message, and shows editors a JSON Schema with the
pattern it accepts. Messages never echo URLs: they may carry credentials.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    PlainValidator,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from guardgate.policy.model import API_NAMES, IPNetwork, Window
from guardgate.policy.units import (
    DURATION_PATTERN,
    RATE_PATTERN,
    SIZE_PATTERN,
    parse_duration,
    parse_rates,
    parse_size,
)

# The schemes guardgate.store has a backend for (tests/store checks they agree).
STORAGE_SCHEMES = ("memory", "redis", "rediss", "redis+cluster", "redis+sentinel", "unix")
_REDIS_SCHEMES = ("redis", "rediss", "redis+cluster", "redis+sentinel")
HEADER_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
_HEADER = re.compile(HEADER_PATTERN)


Located = tuple[tuple[str | int, ...], str]  # (path below the field, message)


def repeated(items: Any, key: str, describe: Callable[[str, int], str]) -> list[Located]:
    """Items of a raw list whose string ``key`` repeats an earlier item's, each
    placed at its own ``key`` and described by ``describe(value, first index)``."""
    first: dict[str, int] = {}
    found: list[Located] = []
    for index, item in enumerate(items if isinstance(items, list) else []):
        value = item.get(key) if isinstance(item, dict) else None
        if not isinstance(value, str):
            continue
        if value in first:
            found.append(((index, key), describe(value, first[value])))
        else:
            first[value] = index
    return found
T = TypeVar("T")


def problems_error(items: list[Located]) -> PydanticCustomError:
    """One pydantic error that stands for several problems, each at a path below the field.

    A validator raises one error per call; the policy validator expands this
    one into one problem per item (each duplicate in a list, say).
    """
    return PydanticCustomError(
        "policy_problems", "{count} problems", {"count": len(items), "items": items}
    )


def raw_check(check: Callable[[Any], list[Located]]) -> WrapValidator:
    """Run ``check`` on the raw value alongside the field's own validation, reporting both.

    An after-validator would only run once every item is valid, hiding (say)
    a duplicate name behind a typo elsewhere in the list. ``check`` sees the
    data as written, so it must skip items of the wrong shape.
    """

    def validate(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return checked(value, handler, check)

    return WrapValidator(validate)


def checked(value: Any, handler: Callable[[Any], T], check: Callable[[Any], list[Located]]) -> T:
    """`raw_check` for a model's wrap validator: cross-key rules of a section."""
    found = check(value)
    try:
        result = handler(value)
    except ValidationError as exc:
        if not found:
            raise
        errors = [_reraised(error) for error in exc.errors()]
        errors.append(InitErrorDetails(type=problems_error(found), loc=(), input=value))
        raise ValidationError.from_exception_data(exc.title, errors) from None
    if found:
        raise problems_error(found)
    return result


def misspells(data: dict[Any, Any], keys: tuple[str, ...], known: frozenset[str]) -> bool:
    """Whether a key of ``data`` outside ``known`` looks like one of ``keys``.

    Its "unknown key" problem already names the key it meant, so a rule
    asking for one of ``keys`` should keep quiet rather than report it twice.
    """
    return any(
        isinstance(key, str) and key not in known and difflib.get_close_matches(key, keys, n=1)
        for key in data
    )


def _reraised(error: ErrorDetails) -> InitErrorDetails:
    kind = PydanticCustomError(error["type"], error["msg"], error.get("ctx"))
    return InitErrorDetails(type=kind, loc=error["loc"], input=error["input"])


def matches(pattern: str, message: str) -> AfterValidator:
    """Refuse a string that does not match ``pattern`` (ECMAScript-compatible), with ``message``."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if compiled.fullmatch(value) is None:
            raise PydanticCustomError("pattern", message)
        return value

    return AfterValidator(check)


def _version(value: Any) -> int:
    if value == 1 and not isinstance(value, bool):
        return 1
    raise PydanticCustomError(
        "version", "unsupported policy version: this guardgate reads version 1"
    )


def _duration(value: Any) -> float:
    if isinstance(value, str | int | float):
        try:
            return parse_duration(value)
        except (TypeError, ValueError):
            pass
    raise PydanticCustomError("duration", "expected a duration like 500ms, 30s, 15m, 6h or 7d")


def _positive_duration(value: Any) -> float:
    seconds = _duration(value)
    if seconds <= 0:
        raise PydanticCustomError("duration", "must be longer than 0s")
    return seconds


def _size(value: Any) -> int:
    if isinstance(value, str | int):
        try:
            size = parse_size(value)
        except (TypeError, ValueError):
            pass
        else:
            if size > 0:
                return size
            raise PydanticCustomError("size", "must be larger than 0 bytes")
    raise PydanticCustomError("size", "expected a size like 64KiB, 8MiB or 1GiB")


def _rates(value: Any) -> tuple[Window, ...]:
    if isinstance(value, str):
        try:
            items = parse_rates(value)
        except ValueError:
            pass
        else:
            if any(item.amount < 1 or item.get_expiry() < 1 for item in items):
                raise PydanticCustomError(
                    "rate", "a rate allows at least 1 per window of at least 1 second"
                )
            texts = [part.strip() for part in value.split(";")]
            return tuple(
                Window(item.amount, item.get_expiry(), text)
                for item, text in zip(items, texts, strict=True)
            )
    raise PydanticCustomError(
        "rate", "expected a rate like 600/minute, or several joined by ';' (10/second;1000/day)"
    )


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 -- raises ValueError on a port that is not a number
    except ValueError:
        raise PydanticCustomError("url", "the URL's port is not a number") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PydanticCustomError("url", "expected an http:// or https:// URL with a host")
    return value


def _storage_url(value: str) -> str:
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in STORAGE_SCHEMES:
        *others, last = (f"{name}://" for name in STORAGE_SCHEMES)
        raise PydanticCustomError(
            "storage", f"unsupported storage: use {', '.join(others)} or {last}"
        )
    if scheme in _REDIS_SCHEMES and not urlsplit(value).hostname:
        raise PydanticCustomError(
            "storage", "a redis URL needs a host, e.g. redis://127.0.0.1:6379/0"
        )
    if scheme == "redis+sentinel" and not urlsplit(value).path.strip("/"):
        raise PydanticCustomError(
            "storage", "a redis+sentinel URL names the primary's service, "
            "e.g. redis+sentinel://10.0.0.5:26379,10.0.0.6:26379/mymaster"
        )
    if scheme == "redis+sentinel" and (
            "/" in urlsplit(value).path.strip("/")
            or any(k.lower() == "db" for k, _ in parse_qsl(urlsplit(value).query))):
        raise PydanticCustomError(
            "storage", "a redis+sentinel URL uses database 0: the rate strategies "
            "cannot select another, so a db in it would split the counters"
        )
    if scheme == "unix" and not rest.startswith("/"):
        raise PydanticCustomError(
            "storage", "a unix URL needs a socket path, e.g. unix:///run/redis.sock"
        )
    return value


def _header_name(value: str) -> str:
    if not _HEADER.fullmatch(value):
        raise PydanticCustomError("header", "not a valid HTTP header name")
    return value.lower()


def _network(value: Any) -> IPNetwork:
    if not isinstance(value, str):
        raise PydanticCustomError("network", "expected an IP address or CIDR like 10.0.0.0/8")
    try:
        return ipaddress.ip_network(value)
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise PydanticCustomError(
            "network", "not an IP address or CIDR (e.g. 10.0.0.0/8, 2001:db8::/32)"
        ) from None
    raise PydanticCustomError(
        "network", "'{value}' has host bits set", {"value": value, "hint": f"did you mean {loose}?"}
    )


def _api_name(value: str) -> str:
    if value in API_NAMES:
        return value
    close = difflib.get_close_matches(value, API_NAMES, n=1)
    ctx: dict[str, Any] = {"value": value, "expected": ", ".join(API_NAMES)}
    if close:
        ctx["hint"] = f"did you mean '{close[0]}'?"
    raise PydanticCustomError("api", "unknown api '{value}': expected one of {expected}", ctx)


def _route_path(value: str) -> str:
    if not value.startswith("/") or any(c.isspace() or c in "?#" for c in value):
        raise PydanticCustomError(
            "route", "a route path starts with '/' and has no query or spaces"
        )
    return value


def string_schema(pattern: str, **extra: Any) -> WithJsonSchema:
    """The JSON Schema of a string field: its pattern, plus ``extra`` keywords."""
    return WithJsonSchema({"type": "string", "pattern": pattern, **extra})


def _string_or_number(pattern: str, number: dict[str, Any], examples: list[str]) -> WithJsonSchema:
    return WithJsonSchema(
        {"anyOf": [{"type": "string", "pattern": pattern}, number], "examples": examples}
    )


Version = Annotated[int, BeforeValidator(_version), WithJsonSchema({"const": 1})]
Duration = Annotated[
    float,
    BeforeValidator(_duration),
    _string_or_number(DURATION_PATTERN, {"type": "number", "minimum": 0}, ["30s", "15m", "6h"]),
]
PositiveDuration = Annotated[
    float,
    BeforeValidator(_positive_duration),
    _string_or_number(DURATION_PATTERN, {"type": "number", "exclusiveMinimum": 0}, ["5s", "10m"]),
]
Size = Annotated[
    int,
    BeforeValidator(_size),
    _string_or_number(SIZE_PATTERN, {"type": "integer", "minimum": 1}, ["64KiB", "8MiB"]),
]
Rates = Annotated[
    tuple[Window, ...],
    PlainValidator(_rates),
    string_schema(RATE_PATTERN, examples=["600/minute", "10/minute;100/hour"]),
]
HttpURL = Annotated[
    str, AfterValidator(_http_url), string_schema(r"^https?://[^/?#]+", format="uri")
]
StorageURL = Annotated[
    str,
    AfterValidator(_storage_url),
    string_schema(
        "^(" + "|".join(map(re.escape, STORAGE_SCHEMES)) + ")://",
        examples=["redis://127.0.0.1:6379/0"],
    ),
]
HeaderName = Annotated[str, AfterValidator(_header_name), string_schema(HEADER_PATTERN)]
Network = Annotated[
    IPNetwork,
    PlainValidator(_network),
    WithJsonSchema({"type": "string", "examples": ["10.0.0.0/8", "127.0.0.1", "2001:db8::/32"]}),
]
ApiName = Annotated[str, AfterValidator(_api_name), WithJsonSchema({"enum": list(API_NAMES)})]
RoutePath = Annotated[str, AfterValidator(_route_path), string_schema(r"^/[^?#\s]*$")]
