"""The shape of the package: imports go one way, and no function is a maze.

The import graph is read from the source with `ast`, so nothing is imported
to draw it. An import of a guardgate module counts wherever it runs: at
module level and inside a function (a deferred import still ties two modules
together; counting it keeps a cycle from hiding behind one). An import under
``if TYPE_CHECKING:`` names a type for annotations and never runs: the
`Exchange` a request carries names every step's product while the steps
take the exchange, which is no dependency of one module's code on another's.

Packages are compared by their top level (``guardgate.policy``,
``guardgate.gateway``); modules one by one, a package by its ``__init__``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from radon.complexity import cc_visit  # type: ignore[import-untyped]
from radon.visitors import Class, Function  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "guardgate"

# The function a request runs through: the pipeline, step by step.
REQUEST_FUNCTION = ("guardgate.gateway", "GuardGate", "_exchange")
MAX_COMPLEXITY = 25
MAX_REQUEST_COMPLEXITY = 15
MAX_REQUEST_LINES = 40


@dataclass(frozen=True, slots=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module (or the package a name was imported from)
    line: int
    type_only: bool = False  # under ``if TYPE_CHECKING:``

    def __str__(self) -> str:
        kind = ", type only" if self.type_only else ""
        return f"{self.source} -> {self.target} (line {self.line}{kind})"


def module_files() -> dict[str, Path]:
    """Every module of guardgate by dotted name; a package by its own name."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> Iterator[Import]:
    """The guardgate modules that module ``name`` imports, wherever in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    type_only = {
        id(inner)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for statement in block.body
        for inner in ast.walk(statement)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from guardgate.policy import model`` imports the module model.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        else:
            continue
        for target in dict.fromkeys(targets):
            if target in modules and target != name:
                yield Import(name, target, node.lineno, id(node) in type_only)


def import_graph() -> list[Import]:
    modules = module_files()
    return [edge for name, path in modules.items() for edge in imports_of(name, path, modules)]


def top_level(module: str) -> str:
    """``guardgate.policy.model`` -> ``guardgate.policy``; ``guardgate`` stays itself."""
    return ".".join(module.split(".")[:2])


def cycles(edges: list[Import]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan's algorithm)."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for following in sorted(graph[node]):
            if following not in index:
                visit(following)
                low[node] = min(low[node], low[following])
            elif following in stack:
                low[node] = min(low[node], index[following])
        if low[node] == index[node]:
            component = [stack.pop()]
            while component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def explain(components: list[list[str]], edges: list[Import], group: bool) -> str:
    """Each cycle, with the imports that close it."""
    lines = []
    for component in components:
        lines.append(" <-> ".join(component) + ":")
        members = set(component)
        for edge in edges:
            source = top_level(edge.source) if group else edge.source
            target = top_level(edge.target) if group else edge.target
            if source in members and target in members and source != target:
                lines.append(f"    {edge}")
    return "\n".join(lines)


def test_every_kind_of_import_is_an_edge(tmp_path: Path) -> None:
    (tmp_path / "policy").mkdir()
    path = tmp_path / "policy" / "sample.py"
    path.write_text(
        "from typing import TYPE_CHECKING\n"
        "import guardgate.errors\n"
        "from . import model\n"
        "from .. import risk\n"
        "from guardgate.apis import ADAPTERS\n"
        "if TYPE_CHECKING:\n"
        "    from guardgate.perturb.transforms import Transforms\n"
        "def later():\n"
        "    from guardgate.risk.signals import explained\n"
    )
    modules = module_files()
    found = set(imports_of("guardgate.policy.sample", path, modules))
    assert found == {
        Import("guardgate.policy.sample", "guardgate.errors", 2),
        Import("guardgate.policy.sample", "guardgate.policy.model", 3),
        Import("guardgate.policy.sample", "guardgate.risk", 4),
        Import("guardgate.policy.sample", "guardgate.apis", 5),
        Import("guardgate.policy.sample", "guardgate.perturb.transforms", 7, type_only=True),
        Import("guardgate.policy.sample", "guardgate.risk.signals", 9),
    }


def test_cycles_are_found_with_the_imports_that_close_them() -> None:
    edges = [
        Import("a.x", "b.y", 1),
        Import("b.y", "c.z", 2),
        Import("c.z", "a.x", 3),
        Import("c.z", "d", 4),
    ]
    assert cycles(edges) == [["a.x", "b.y", "c.z"]]
    assert "c.z -> a.x (line 3)" in explain(cycles(edges), edges, group=False)
    assert cycles(edges[:2]) == []


def runtime_graph() -> list[Import]:
    """The imports that run: all but the type-only ones."""
    return [edge for edge in import_graph() if not edge.type_only]


def test_no_import_cycle_between_packages() -> None:
    edges = runtime_graph()
    grouped = [
        Import(top_level(e.source), top_level(e.target), e.line, e.type_only)
        for e in edges
        if top_level(e.source) != top_level(e.target)
    ]
    found = cycles(grouped)
    assert not found, "packages that import each other:\n" + explain(found, edges, group=True)


def test_no_import_cycle_between_modules() -> None:
    edges = runtime_graph()
    found = cycles(edges)
    assert not found, "modules that import each other:\n" + explain(found, edges, group=False)


def functions(source: str) -> list[Function]:
    """Every function of ``source``, methods, closures and inner classes' methods included."""
    found: dict[tuple[int, int], Function] = {}

    def walk(blocks: list[Function | Class]) -> None:
        for block in blocks:
            if isinstance(block, Class):
                walk([*block.methods, *block.inner_classes])
            else:
                found[block.lineno, block.col_offset] = block
                walk(block.closures)

    # radon lists a class's methods both on their own and under the class.
    walk(cc_visit(source))
    return list(found.values())


def test_no_function_is_over_complexity_25() -> None:
    # starlette's most complex function is 25, structlog's 24.
    tangled = [
        f"{path.relative_to(ROOT)}:{block.lineno} {block.fullname} ({block.complexity})"
        for path in sorted(PACKAGE.rglob("*.py"))
        for block in functions(path.read_text())
        if block.complexity > MAX_COMPLEXITY
    ]
    assert not tangled, f"over complexity {MAX_COMPLEXITY}:\n" + "\n".join(tangled)


def test_the_request_function_reads_as_the_pipeline() -> None:
    module, owner, name = REQUEST_FUNCTION
    path = module_files()[module]
    source = path.read_text()
    defined = [
        item
        for node in ast.parse(source).body
        if isinstance(node, ast.ClassDef) and node.name == owner
        for item in node.body
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name == name
    ]
    assert defined, f"{owner}.{name} is not in {module}: point REQUEST_FUNCTION at its successor"
    node = defined[0]
    assert node.end_lineno is not None
    lines = node.end_lineno - node.lineno + 1
    complexity = next(
        block.complexity
        for block in functions(source)
        if block.fullname == f"{owner}.{name}" and block.lineno == node.lineno
    )
    assert lines <= MAX_REQUEST_LINES, f"{owner}.{name} is {lines} lines long"
    assert complexity <= MAX_REQUEST_COMPLEXITY, f"{owner}.{name} has complexity {complexity}"
