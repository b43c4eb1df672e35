"""Validate decoded policy data, turning every pydantic error into a located problem."""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterable
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from guardgate.errors import PolicyProblem
from guardgate.policy.schema import PolicyDocument
from guardgate.policy.yamlsrc import Decoded, Path

_MESSAGES = {
    "string_type": "expected a string",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "list_type": "expected a list",
    "dict_type": "expected a mapping of keys",
    "model_type": "expected a mapping of keys",
    "model_attributes_type": "expected a mapping of keys",
}
_BOUNDS = {
    "greater_than": ("gt", "must be greater than {}"),
    "greater_than_equal": ("ge", "must be at least {}"),
    "less_than": ("lt", "must be less than {}"),
    "less_than_equal": ("le", "must be at most {}"),
    "too_short": ("min_length", "needs at least {} item(s)"),
    "too_long": ("max_length", "takes at most {} item(s)"),
    "string_too_short": ("min_length", "needs at least {} character(s)"),
    "string_too_long": ("max_length", "takes at most {} character(s)"),
}


def validate_document(decoded: Decoded) -> tuple[PolicyDocument | None, list[PolicyProblem]]:
    """Validate ``decoded.data``; return the document, or None and every problem found."""
    problems = list(decoded.problems)
    data = decoded.data
    if data is None and problems:  # the YAML did not parse
        return None, problems
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else "a single value"
        problems.append(decoded.problem((), f"a policy is a mapping of keys, not {kind}"))
        return None, problems
    try:
        document = PolicyDocument.model_validate(data)
    except ValidationError as exc:
        problems.extend(_problems(exc.errors(include_url=False), decoded))
        document = None
    problems.sort(key=lambda p: (p.line is None, p.line or 0, p.column or 0))
    return (document if not problems else None), problems


def _problems(errors: Iterable[ErrorDetails], decoded: Decoded) -> list[PolicyProblem]:
    located: list[tuple[Path, str, PolicyProblem]] = []
    for error in errors:
        loc = error["loc"]
        if loc and loc[-1] == "[key]":  # a mapping key refused (a tier name, say)
            path = _data_path(loc[:-1], decoded.data)
            at = decoded.key_place(path)
            located.append((path, "key", decoded.problem(path, error["msg"], at=at)))
            continue
        path = _data_path(loc, decoded.data)
        ctx = error.get("ctx") or {}
        if error["type"] == "policy_problems":
            for below, message in ctx["items"]:
                full = (*path, *below)
                located.append((full, "", decoded.problem(full, message)))
        else:
            located.append(_problem(error, path, decoded))
    # A misspelt key is one mistake: its "unknown key" hint names the key it
    # meant, so do not also report that key as missing.
    meant = {(path[:-1], kind) for path, kind, _ in located if kind.startswith("unknown:")}
    seen: set[tuple[str, str]] = set()
    result = []
    for path, kind, problem in located:
        if kind == "missing" and (path[:-1], f"unknown:{path[-1]}") in meant:
            continue
        if any(path[:end] in decoded.unresolved for end in range(len(path) + 1)):
            continue  # already reported while decoding (an unset ${VAR}, say)
        if (problem.where, problem.message) not in seen:
            seen.add((problem.where, problem.message))
            result.append(problem)
    return result


def _problem(error: ErrorDetails, path: Path, decoded: Decoded) -> tuple[Path, str, PolicyProblem]:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "missing":
        message = f"missing required key '{path[-1]}'"
        return path, "missing", decoded.problem(path, message, at=decoded.key_place(path[:-1]))
    if kind == "extra_forbidden":
        key = str(path[-1])
        close = difflib.get_close_matches(key, _valid_keys(path[:-1]), n=1)
        hint = f"did you mean '{close[0]}'?" if close else None
        problem = decoded.problem(
            path, f"unknown key '{key}'", hint=hint, at=decoded.key_place(path)
        )
        return path, f"unknown:{close[0] if close else ''}", problem
    if kind in _MESSAGES:
        message = _MESSAGES[kind]
    elif kind in _BOUNDS:
        name, template = _BOUNDS[kind]
        message = template.format(ctx.get(name))
    elif kind == "literal_error":
        message = f"expected {ctx.get('expected')}"
    else:  # our own errors carry a message written for people
        message = error["msg"]
    hint = ctx.get("hint")
    return path, kind, decoded.problem(path, message, hint=hint if isinstance(hint, str) else None)


def _data_path(loc: tuple[str | int, ...], data: Any) -> Path:
    """The part of pydantic's ``loc`` that names places in the data.

    Pydantic adds union tags and model names to ``loc``, and errors below a
    value a validator rewrote (``upstream: URL`` becomes ``{url: URL}``) name
    keys the file does not have; we keep only the steps that exist, plus a
    final missing key.
    """
    path: list[str | int] = []
    current = data
    for index, part in enumerate(loc):
        exists = isinstance(current, dict) and part in current
        if (
            exists
            or isinstance(current, list)
            and isinstance(part, int)
            and 0 <= part < len(current)
        ):
            current = current[part]
        elif not (index == len(loc) - 1 and isinstance(current, dict)):
            continue
        path.append(part)
    return tuple(path)


def _valid_keys(parent: Path) -> list[str]:
    """The keys allowed in the mapping at ``parent``, found by walking the models."""
    candidates: list[Any] = [PolicyDocument]
    for part in parent:
        following: list[Any] = []
        for annotation in _expand(candidates):
            origin = get_origin(annotation)
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                field = annotation.model_fields.get(str(part))
                if field is not None:
                    following.append(field.annotation)
            elif origin in (list, tuple) and isinstance(part, int):
                following.append(get_args(annotation)[0])
            elif origin is dict:
                following.append(get_args(annotation)[1])
        candidates = following
    keys: list[str] = []
    for annotation in _expand(candidates):
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys.extend(f.alias or name for name, f in annotation.model_fields.items())
    return keys


def _expand(annotations: list[Any]) -> list[Any]:
    """Unwrap Annotated and unions down to the types they are made of."""
    result: list[Any] = []
    for annotation in annotations:
        origin = get_origin(annotation)
        if origin is Annotated:
            result.extend(_expand([get_args(annotation)[0]]))
        elif origin is Union or origin is types.UnionType:
            result.extend(_expand(list(get_args(annotation))))
        else:
            result.append(annotation)
    return result
