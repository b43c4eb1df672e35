"""What a degrade transform is: a small pydantic model, named after what it does.

A tier's ``degrade:`` list names transforms, each written as a bare name
(``drop_logprobs``) or as a mapping of its name to its value
(``{clamp_max_tokens: 512}``). Each transform is a model with one field,
named after the transform, holding that value; a `Flag` takes none.
Validating the list gives the runtime objects, so a transform's fields,
checks, JSON Schema and behaviour live in its one class:

- `Transform.rewrite_request` changes the request (step 7);
- `Transform.processor` makes the processor that changes the answer (step 9);
- the tarpit and reroute are read as data by the steps that use them.

Durations and URLs carry a `Unit`: the policy file writes them in its own
units (``2s``, a URL it checks its way) and swaps in its field types there.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    PlainValidator,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

from guardgate.apis.answers import Processor, Walker
from guardgate.apis.base import ModelCall

__all__ = ["SECONDS", "URL", "Flag", "NonNegative", "On", "Positive", "Seconds", "Transform",
           "Unit", "Url", "registered", "transforms"]


@dataclass(frozen=True, slots=True)
class Unit:
    """Marks a field whose value a policy file writes in the policy's own unit."""

    name: str


SECONDS = Unit("seconds")
URL = Unit("url")


class Transform(BaseModel):
    """One degrade transform; subclasses declare its one field and what it does."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ClassVar[str] = ""  # its field's name: the name a policy writes
    needs_key: ClassVar[bool] = False  # keyed by the policy's watermark key

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if len(cls.model_fields) == 1:
            [cls.name] = cls.model_fields

    @model_validator(mode="before")
    @classmethod
    def _written(cls, data: Any) -> Any:
        if data == cls.name:
            raise PydanticCustomError(
                # Only the ``{name}`` fields are filled in: the outer braces stay.
                "degrade", "degrade transform '{name}' needs a value: {{name}: ...}",
                {"name": cls.name},
            )
        return data

    @property
    def value(self) -> Any:
        """What the policy set: True for a flag."""
        return getattr(self, self.name)

    def rewrite_request(self, call: ModelCall) -> bool:
        """Change ``call.body`` before it is forwarded; True when it changed.
        The call's parsed fields keep what the caller asked for."""
        return False

    def processor(self, walker: Walker, secret: bytes) -> Processor | None:
        """The processor that changes one answer, if this transform does;
        ``secret`` keys what must be unpredictable (logprob noise)."""
        return None

    @classmethod
    def acts_on_request(cls) -> bool:
        return cls.rewrite_request is not Transform.rewrite_request

    @classmethod
    def acts_on_answer(cls) -> bool:
        return cls.processor is not Transform.processor


_REGISTERED: dict[str, tuple[float, type[Transform]]] = {}
_T = TypeVar("_T", bound=type[Transform])


def registered(order: float) -> Callable[[_T], _T]:
    """Adds a transform to the policy language (``degrade:``, its schema, its
    errors). ``order``: where it applies among the others, lowest first, to
    a request and to an answer."""

    def register(cls: _T) -> _T:
        if not cls.name or cls.name in _REGISTERED:
            raise TypeError(f"{cls.__name__}: a transform needs one field with a name of its own")
        _REGISTERED[cls.name] = (order, cls)
        return cls

    return register


def transforms() -> tuple[type[Transform], ...]:
    """Every registered transform, in the order they apply."""
    return tuple(cls for _, cls in sorted(_REGISTERED.values(), key=lambda item: item[0]))


On = Annotated[Literal[True], Field(description="true, or nothing: the name alone is enough.")]


class Flag(Transform):
    """A transform without a value: written as its name alone, or ``{name: true}``."""

    @model_validator(mode="before")
    @classmethod
    def _written(cls, data: Any) -> Any:
        if data == cls.name:
            return {cls.name: True}
        if type(data) is dict and list(data) == [cls.name]:
            if data[cls.name] is None or data[cls.name] is True:
                return {cls.name: True}
            raise PydanticCustomError(
                "degrade", "degrade transform '{name}' takes no value, but got {value}",
                {"name": cls.name, "value": repr(data[cls.name])},
            )
        return data

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        name = cls.name
        return {
            "title": cls.__name__,
            "description": inspect.cleandoc(cls.__doc__ or ""),
            "anyOf": [
                {"const": name},
                {
                    "type": "object",
                    "properties": {
                        name: {"enum": [True, None], "description": "true, or nothing."}
                    },
                    "required": [name],
                    "additionalProperties": False,
                },
            ],
        }


def _at_least(least: int) -> Any:
    def check(value: Any, info: ValidationInfo) -> int:
        if type(value) is not int or value < least:
            raise PydanticCustomError(
                "degrade", "{field} must be an integer of at least {least}, not {value}",
                {"field": info.field_name, "least": least, "value": repr(value)},
            )
        return value

    return PlainValidator(check)


def _seconds(value: Any, info: ValidationInfo) -> float:
    if (type(value) is int or type(value) is float) and 0 < value < math.inf:
        return float(value)
    raise PydanticCustomError(
        "degrade", "{field} must be a number of seconds above 0, not {value}",
        {"field": info.field_name, "value": repr(value)},
    )


def _url(value: Any, info: ValidationInfo) -> str:
    try:
        parts = urlsplit(value) if type(value) is str else None
        ok = parts is not None and parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if ok:
        return str(value)
    # The value is not echoed: a URL may carry credentials.
    raise PydanticCustomError(
        "degrade", "{field} must be an http:// or https:// URL with a host",
        {"field": info.field_name},
    )


NonNegative = Annotated[int, _at_least(0), WithJsonSchema({"type": "integer", "minimum": 0})]
Positive = Annotated[int, _at_least(1), WithJsonSchema({"type": "integer", "minimum": 1})]
Seconds = Annotated[
    float,
    PlainValidator(_seconds),
    WithJsonSchema({"type": "number", "exclusiveMinimum": 0}),
    SECONDS,
]
Url = Annotated[
    str, PlainValidator(_url), WithJsonSchema({"type": "string", "format": "uri"}), URL
]
