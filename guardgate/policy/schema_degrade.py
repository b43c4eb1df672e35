"""The ``degrade`` key of a tier: a list of degrade transforms.

The transforms are `guardgate.perturb.transforms`'s own classes; a policy
file writes their durations and URLs in its own units (``tarpit: 2s``, a
URL checked as the upstream's is), so those fields take the policy's types
here, and the JSON Schema shows each transform with them. Validation gives
the tier's `Transforms`, the runtime object.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from pydantic import Field, create_model

from guardgate.perturb.degrade import SECONDS, URL, Flag, Transform
from guardgate.perturb.transforms import KEYED, TRANSFORMS, Transforms, degrade_list
from guardgate.policy.fields import HttpURL, Located, PositiveDuration

__all__ = ["DEGRADE_HELP", "DegradeList", "keyed_transforms", "reference_rows"]

# A transform field's unit -> the policy's type for it, and how the help writes it.
_UNITS: dict[Any, tuple[Any, str]] = {
    SECONDS: (PositiveDuration, "DURATION"),
    URL: (HttpURL, "URL"),
}


def _unit(model: type[Transform]) -> tuple[Any, str] | None:
    for field in model.model_fields.values():
        for mark in field.metadata:
            if mark in _UNITS:
                return _UNITS[mark]
    return None


def _in_policy_units(model: type[Transform]) -> type[Transform]:
    """``model``, or a subclass of it whose field takes the policy's type for its unit."""
    unit = _unit(model)
    if unit is None:
        return model
    field = model.model_fields[model.name]
    swapped: Any = (unit[0], Field(description=field.description))
    return create_model(model.__name__, __base__=model, __module__=__name__,
                        __doc__=model.__doc__, **{model.name: swapped})


def _written(model: type[Transform]) -> str:
    if issubclass(model, Flag):
        return model.name
    unit = _unit(model)
    return f"{{{model.name}: {unit[1] if unit is not None else 'N'}}}"


if TYPE_CHECKING:
    DegradeList = Transforms
else:
    DegradeList = degrade_list(tuple(_in_policy_units(model) for model in TRANSFORMS))

DEGRADE_HELP = (
    "Transforms applied to this tier's requests and answers, each once: "
    + ", ".join(_written(model) for model in TRANSFORMS) + "."
)


def reference_rows() -> str:
    """The policy reference's rows for the transforms (docs/policy.md), one
    a transform, from its class: how it is written and its docstring."""
    rows = []
    for model in TRANSFORMS:
        what = " ".join(inspect.cleandoc(model.__doc__ or "").split())
        key = " Needs `watermark.key`." if model.needs_key else ""
        rows.append(f"| `tiers.NAME.degrade[].{model.name}` | | `{_written(model)}`: "
                    f"{what}{key} |")
    return "\n".join(rows)


def keyed_transforms(tier: str, degrade: Any) -> list[Located]:
    """Transforms in a tier's ``degrade`` list (as written) that need the watermark key."""
    names: set[str] = set()
    for item in degrade if isinstance(degrade, list) else ():
        if isinstance(item, str):
            names.add(item)
        elif isinstance(item, dict):
            names.update(key for key in item if isinstance(key, str))
    return [
        (("tiers", tier, "degrade"), f"{name} needs the watermark section's key")
        for name in sorted(names & KEYED)
    ]
