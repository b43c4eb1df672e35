"""Decode policy YAML into plain data, remembering where every value sits.

PyYAML's loaders keep the last of two equal keys and forget positions, so we
compose nodes and build the data ourselves: each value's path (for example
``("identity", "principal", 0, "header")``) maps to its 1-based line and
column, duplicate keys are reported, and ``${NAME}`` in string scalars is
taken from the environment (``$${`` is a literal ``${``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from guardgate.errors import PolicyProblem

Path = tuple[str | int, ...]
Place = tuple[int, int]  # 1-based line and column

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\{")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
# Aliases can make a tiny file expand exponentially ("billion laughs").
_MAX_NODES = 100_000


def format_path(path: Path) -> str:
    """``("identity", "trusted_proxies", 1)`` -> ``identity.trusted_proxies[1]``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _NAME.fullmatch(part):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text


@dataclass
class Decoded:
    """Plain data plus where each value (and each key) starts in the source."""

    data: Any = None
    places: dict[Path, Place] = field(default_factory=dict)
    key_places: dict[Path, Place] = field(default_factory=dict)
    problems: list[PolicyProblem] = field(default_factory=list)
    unresolved: set[Path] = field(default_factory=set)  # values left unusable by a problem

    def place(self, path: Path) -> Place | None:
        """Where ``path``'s value starts, or that of its nearest ancestor in the source."""
        for end in range(len(path), -1, -1):
            found = self.places.get(path[:end])
            if found is not None:
                return found
        return None

    def key_place(self, path: Path) -> Place | None:
        """Where the key naming ``path`` starts, falling back to its value's place."""
        return self.key_places.get(path) or self.place(path)

    def problem(
        self, path: Path, message: str, *, hint: str | None = None, at: Place | None = None
    ) -> PolicyProblem:
        line, column = at or self.place(path) or (None, None)
        return PolicyProblem(format_path(path), message, line, column, hint)


def decode_yaml(text: str, env: Mapping[str, str]) -> Decoded:
    """Parse ``text``; syntax errors and reference problems land in ``problems``."""
    decoded = Decoded()
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        decoded.problems.append(_syntax_problem(exc))
        return decoded
    except yaml.YAMLError as exc:  # ReaderError: a character YAML does not allow
        line, column = _line_column(text, getattr(exc, "position", 0))
        decoded.problems.append(PolicyProblem("", f"not valid YAML: {exc}", line, column))
        return decoded
    if root is None:  # empty, or only comments
        decoded.data = {}
        return decoded
    try:
        decoded.data = _Builder(decoded, env).value(root, ())
    except _TooLarge:
        decoded.problems.append(PolicyProblem("", "document too large once aliases are expanded"))
        return decoded
    if decoded.data is None:  # a bare "---" or "~": no keys, so every default
        decoded.data = {}
    return decoded


def _syntax_problem(exc: yaml.MarkedYAMLError) -> PolicyProblem:
    mark = exc.problem_mark or exc.context_mark
    message = f"YAML syntax error: {exc.problem or exc.context or 'cannot parse'}"
    hint = "indent with spaces, not tabs" if "'\\t'" in message else None
    if mark is None:
        return PolicyProblem("", message, hint=hint)
    return PolicyProblem("", message, mark.line + 1, mark.column + 1, hint)


def _line_column(text: str, position: int) -> Place:
    before = text[:position]
    return before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1


def _place(node: Node) -> Place:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _TooLarge(Exception):
    pass


class _Builder:
    def __init__(self, decoded: Decoded, env: Mapping[str, str]) -> None:
        self.decoded = decoded
        self.env = env
        self.constructor = SafeConstructor()
        self.count = 0
        self.open: set[int] = set()  # nodes being built, to catch an alias inside itself

    def value(self, node: Node, path: Path) -> Any:
        self.count += 1
        if self.count > _MAX_NODES:
            raise _TooLarge
        self.decoded.places[path] = _place(node)
        if id(node) in self.open:
            self._fail(path, "an alias refers to the value that contains it")
            return None
        self.open.add(id(node))
        try:
            if isinstance(node, MappingNode):
                if node.tag != _MAP_TAG:
                    self._fail(path, f"unsupported YAML tag {node.tag}")
                return self.mapping(node, path)
            if isinstance(node, SequenceNode):
                if node.tag != _SEQ_TAG:
                    self._fail(path, f"unsupported YAML tag {node.tag}")
                return [self.value(item, (*path, i)) for i, item in enumerate(node.value)]
            return self.scalar(node, path)
        finally:
            self.open.discard(id(node))

    def mapping(self, node: MappingNode, path: Path) -> dict[str, Any]:
        result: dict[str, Any] = {}
        # Merge keys (<<: *defaults) first, so the mapping's own keys win.
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE_TAG:
                continue
            sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
            for source in reversed(sources):  # the first merged mapping takes precedence
                if isinstance(source, MappingNode):
                    result.update(self.mapping(source, path))
                else:
                    self._fail(path, "a merge key (<<) takes a mapping or a list of mappings")
        first_seen: dict[str, Place] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            if not isinstance(key_node, ScalarNode):
                self.decoded.problems.append(
                    self.decoded.problem(path, "keys must be plain names", at=_place(key_node))
                )
                continue
            key = str(key_node.value)
            key_path = (*path, key)
            if key in first_seen:
                line = first_seen[key][0]
                self.decoded.problems.append(
                    self.decoded.problem(
                        key_path,
                        f"duplicate key '{key}' (first given on line {line})",
                        hint="remove one of them",
                        at=_place(key_node),
                    )
                )
            first_seen[key] = _place(key_node)
            self.decoded.key_places[key_path] = _place(key_node)
            result[key] = self.value(value_node, key_path)
        return result

    def scalar(self, node: Node, path: Path) -> Any:
        try:
            value = self.constructor.construct_object(node)
        except ConstructorError:
            self._fail(path, f"unsupported YAML tag {node.tag}")
            return None
        if isinstance(value, str) and "${" in value:
            return self.interpolate(value, path)
        return value

    def interpolate(self, text: str, path: Path) -> str:
        def replace(match: re.Match[str]) -> str:
            token = match.group(0)
            name = match.group(1)
            if token == "$${":
                return "${"
            if name is None:
                self._fail(
                    path,
                    "'${' must be followed by a variable name and '}'",
                    hint="write '$${' for a literal '${'",
                )
            elif name in self.env:
                return self.env[name]
            else:
                self._fail(path, f"environment variable {name} is not set")
            return token

        return _REFERENCE.sub(replace, text)

    def _fail(self, path: Path, message: str, *, hint: str | None = None) -> None:
        self.decoded.problems.append(self.decoded.problem(path, message, hint=hint))
        self.decoded.unresolved.add(path)
