"""The base of every policy section model."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


def as_written(text: str) -> Any:
    """A default written the way a policy file would say it (``"5s"``, ``"8MiB"``).

    Sections validate their defaults, so this is parsed like input, and the
    JSON Schema shows editors the readable form. The value itself comes from
    the runtime dataclass the section compiles into (`model.default_of`),
    written out by `units.duration_text` or `units.size_text`.
    """
    return text


class Section(BaseModel):
    """Base of every section: unknown keys are errors, defaults are validated too."""

    model_config = ConfigDict(extra="forbid", validate_default=True)
