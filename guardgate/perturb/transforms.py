"""A tier's degrade transforms, as one validated set (steps 7 and 9).

``TRANSFORMS`` lists every transform, in the order they apply; each is one
class in the module of its job (`guardgate.perturb.request`, ``logprobs``,
``reasoning``, ``tarpit``, ``reroute``), registered there with its order. `DegradeList` is the pydantic type
of a ``degrade:`` list: a discriminated union of those classes, named by
the name each item is written with, that validates into `Transforms`, the
runtime object. `parse_degrade` does the same for a list given in code.

Adding a transform: its class (one field, named after it; its checks; what
it does), registered with ``@registered(order=...)`` in the module of its
job (a new job's module is imported here); the policy schema, ``guardgate
schema`` and the policy reference's table follow.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Sequence
from types import GenericAlias
from typing import Annotated, Any, Union

from pydantic import (
    BeforeValidator,
    Discriminator,
    GetPydanticSchema,
    Tag,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import PydanticCustomError, core_schema

from guardgate.apis.base import ModelCall

# The modules of each job: importing them registers their transforms.
from guardgate.perturb import logprobs, reasoning, reroute, tarpit  # noqa: F401
from guardgate.perturb.degrade import Flag, Transform, transforms
from guardgate.perturb.request import fields_of

__all__ = [
    "KEYED",
    "TRANSFORMS",
    "TRANSFORM_NAMES",
    "DegradeList",
    "Transforms",
    "degrade_list",
    "parse_degrade",
    "rewrite_request",
]

# Every transform, in the order they apply to a request and to an answer:
# those the job modules imported above register.
TRANSFORMS: tuple[type[Transform], ...] = transforms()
TRANSFORM_NAMES = tuple(t.name for t in TRANSFORMS)
KEYED = frozenset(t.name for t in TRANSFORMS if t.needs_key)  # need the watermark key
_ORDER = {name: i for i, name in enumerate(TRANSFORM_NAMES)}
_OFF = {t.name: False if issubclass(t, Flag) else None for t in TRANSFORMS}


class Transforms:
    """The degrade transforms of one tier, in the order they apply; the default is none.

    ``Transforms(drop_logprobs=True, clamp_max_tokens=512)`` builds a set in
    code (checked like a policy's); a transform's value reads as an attribute
    (``t.clamp_max_tokens``: None when it is off, False for a flag).
    """

    __slots__ = ("_items",)

    def __init__(self, *items: Transform, **values: Any) -> None:
        if values:
            written = [{name: value} for name, value in values.items()
                       if value is not None and value is not False]
            items = (*items, *_DEFAULT_LIST.validate_python(written))
        names = [item.name for item in items]
        for name in names:
            if names.count(name) > 1:
                raise PydanticCustomError(
                    "degrade", "degrade transform '{name}' is listed twice", {"name": name}
                )
        self._items = tuple(sorted(items, key=lambda item: _ORDER[item.name]))

    def __iter__(self) -> Iterator[Transform]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __getattr__(self, name: str) -> Any:
        if name not in _OFF:
            raise AttributeError(name)
        for item in self._items:
            if item.name == name:
                return item.value
        return _OFF[name]

    def _values(self) -> tuple[tuple[str, Any], ...]:
        return tuple((item.name, item.value) for item in self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Transforms) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        return f"Transforms({', '.join(f'{k}={v!r}' for k, v in self._values())})"

    def names(self) -> tuple[str, ...]:
        """The transforms that are on, in ``TRANSFORMS`` order."""
        return tuple(item.name for item in self._items)

    @property
    def rewrites_request(self) -> bool:
        """Whether `rewrite_request` may change a request."""
        return any(item.acts_on_request() for item in self._items)

    @property
    def rewrites_response(self) -> bool:
        """Whether any transform changes answers."""
        return any(item.acts_on_answer() for item in self._items)


def rewrite_request(call: ModelCall, t: Transforms) -> bool:
    """Apply the request side of ``t`` to ``call.body``; True when it changed."""
    fields_of(call)  # ValueError for an API without request fields
    changed = False
    for item in t:
        changed = item.rewrite_request(call) or changed
    return changed


# --- the ``degrade:`` list ------------------------------------------------------------


def _written_name(item: Any) -> str | None:
    """The transform an item names: a bare name, or the one key of a mapping."""
    if type(item) is str:
        return item
    if type(item) is dict and len(item) == 1:
        [name] = item
        return name if type(name) is str else None
    return item.name if isinstance(item, Transform) else None


def _known(names: Sequence[str]) -> Any:
    def check(item: Any) -> Any:
        name = _written_name(item)
        if name is None:
            raise PydanticCustomError(
                "degrade",
                "a degrade item is a transform name or a mapping of one name to its value, "
                "not {value}",
                {"value": repr(item)},
            )
        if name not in names:
            context = {"name": name, "known": ", ".join(names)}
            close = difflib.get_close_matches(name, names, n=1)
            if close:
                context["hint"] = f"did you mean '{close[0]}'?"
            raise PydanticCustomError(
                "degrade", "unknown degrade transform '{name}'; known: {known}", context
            )
        return item

    return BeforeValidator(check)


def degrade_list(models: Sequence[type[Transform]]) -> Any:
    """The pydantic type of a ``degrade:`` list of ``models``, validating into `Transforms`.

    The policy passes the same classes with its own units swapped in.
    """
    names = [model.name for model in models]
    # Built at run time from ``models``: a value to pydantic, not a type to mypy.
    item: Any = Annotated[
        Union[tuple(Annotated[model, Tag(model.name)] for model in models)],  # noqa: UP007
        Discriminator(_written_name),
        _known(names),
    ]
    items = GenericAlias(list, (item,))

    def schema(source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            lambda given: Transforms(*given), handler.generate_schema(items)
        )

    return Annotated[Transforms, GetPydanticSchema(schema)]


DegradeList = degrade_list(TRANSFORMS)
_DEFAULT_LIST: TypeAdapter[Transforms] = TypeAdapter(DegradeList)


def parse_degrade(items: Iterable[object]) -> Transforms:
    """A ``degrade:`` list given in code (seconds as numbers) as `Transforms`,
    or ValueError saying what is wrong."""
    try:
        return _DEFAULT_LIST.validate_python(list(items))
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = "".join(f"[{part}]" if type(part) is int else "" for part in error["loc"])
        raise ValueError(f"degrade{where}: {error['msg']}") from None
