"""Arrows run one way: no import cycle among mlx_rsi and backends, backends below the pipeline.

The graph is read from the source with ``ast`` (nothing is imported), counting imports at
module level and inside functions alike: an import moved into a function still runs, so
moving one there to dodge a cycle leaves the cycle in this graph. Importing ``a.b.c``
also runs ``a/__init__.py`` and ``a/b/__init__.py``, so it counts as an arrow to those
packages too. Imports under
``if TYPE_CHECKING:`` never run and are left out of the cycle check (they still count for
the layer rules). docs/architecture.md draws the same arrows.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("mlx_rsi", "backends")
# What backends may use of mlx_rsi: the error family and atomic writes (and the package
# __init__ they run, which stays a version string), nothing that knows about the
# pipeline (DESIGN.md: backends are called by stages and import none of them).
BACKENDS_MAY_IMPORT = ("mlx_rsi", "mlx_rsi.errors", "mlx_rsi.atomic")
NEVER_FROM_BACKENDS = ("mlx_rsi.cycle", "mlx_rsi.commands", "mlx_rsi.cli")


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    in_function: bool
    type_only: bool


def module_files() -> dict[str, Path]:
    """Every module of the two packages, by dotted name (a package by its __init__)."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest known module that ``name`` is or lies inside."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _targets(node: ast.Import | ast.ImportFrom, here: str, modules: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:  # relative: from the package holding ``here``
        is_package = modules[here].name == "__init__.py"
        base = here.split(".")
        base = base if is_package else base[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join([*base, node.module] if node.module else base)
    else:
        prefix = node.module or ""
    # ``from a.b import c`` imports the module a.b.c when there is one, else a name of a.b.
    return [f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in modules else prefix
            for alias in node.names]  # fmt: skip


def _walk(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool, bool]]:
    """Import nodes with (inside a function, under ``if TYPE_CHECKING``)."""

    def visit(node: ast.AST, in_function: bool, type_only: bool) -> Iterator[Any]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, in_function, type_only
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for stmt in child.body:
                    yield from visit(ast.Module(body=[stmt], type_ignores=[]), in_function, True)
                for stmt in child.orelse:
                    yield from visit(
                        ast.Module(body=[stmt], type_ignores=[]), in_function, type_only
                    )
            else:
                nested = in_function or isinstance(
                    child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
                )
                yield from visit(child, nested, type_only)

    yield from visit(tree, False, False)


def import_edges() -> list[Edge]:
    modules = module_files()
    edges = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node, in_function, type_only in _walk(tree):
            for raw in _targets(node, name, modules):
                target = _resolve(raw, modules)
                for reached in _with_packages(target, name, modules):
                    edges.append(Edge(name, reached, node.lineno, in_function, type_only))
    return edges


def _with_packages(target: str | None, importer: str, modules: dict[str, Path]) -> list[str]:
    """``target`` and the packages above it whose ``__init__`` the import runs first.

    A package's own modules are left out of its ``__init__`` (Python has the package
    half-initialised in ``sys.modules`` by then: re-exports from submodules are fine).
    """
    if target is None or target == importer:
        return []
    reached = [target]
    parts = target.split(".")
    for i in range(1, len(parts)):
        package = ".".join(parts[:i])
        inside = importer == package or importer.startswith(package + ".")
        if package in modules and not inside:
            reached.append(package)
    return reached


def cycles(edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        if not edge.type_only:
            graph.setdefault(edge.source, set()).add(edge.target)
            graph.setdefault(edge.target, set())
    tarjan = _Tarjan(graph)
    for node in sorted(graph):
        if node not in tarjan.index:
            tarjan.connect(node)
    return tarjan.found


class _Tarjan:
    def __init__(self, graph: dict[str, set[str]]) -> None:
        self.graph = graph
        self.index: dict[str, int] = {}
        self.low: dict[str, int] = {}
        self.stack: list[str] = []
        self.found: list[list[str]] = []

    def connect(self, node: str) -> None:
        index, low = self.index, self.low
        index[node] = low[node] = len(index)
        self.stack.append(node)
        for nxt in sorted(self.graph[node]):
            if nxt not in index:
                self.connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in self.stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = self.stack[self.stack.index(node) :]
            del self.stack[self.stack.index(node) :]
            if len(component) > 1:
                self.found.append(sorted(component))


def _describe(component: list[str], edges: list[Edge]) -> str:
    members = set(component)
    inside = [e for e in edges if e.source in members and e.target in members and not e.type_only]
    arrows = sorted({f"  {e.source} -> {e.target} (line {e.line}{_where(e)})" for e in inside})
    return f"cycle among {', '.join(component)}:\n" + "\n".join(arrows)


def _where(edge: Edge) -> str:
    return ", in a function" if edge.in_function else ""


def test_the_graph_sees_every_kind_of_import() -> None:
    """The walker itself: absolute, relative, from-package and function-level imports."""
    edges = import_edges()
    pairs = {(e.source, e.target) for e in edges}
    assert ("backends.mlx_train", "backends.loop") in pairs  # from backends import loop
    assert ("backends.peft_train", "mlx_rsi.errors") in pairs  # from mlx_rsi.errors import ...
    lazy = [
        e for e in edges if e.source == "backends.peft_lora" and e.target == "backends.peft_train"
    ]
    assert lazy and all(e.in_function for e in lazy)  # imported when train() runs
    assert len(module_files()) > 40


def test_no_import_cycle_among_mlx_rsi_and_backends() -> None:
    edges = import_edges()
    found = cycles(edges)
    assert not found, "\n".join(_describe(c, edges) for c in found)


def test_backends_import_nothing_of_the_pipeline() -> None:
    upward = sorted(
        {
            f"{e.source} -> {e.target} (line {e.line})"
            for e in import_edges()
            if e.source.startswith("backends")
            and e.target.startswith("mlx_rsi")
            and (e.target.startswith(NEVER_FROM_BACKENDS) or e.target not in BACKENDS_MAY_IMPORT)
        }
    )
    assert not upward, "backends import the pipeline above them:\n" + "\n".join(upward)


def test_cycle_detection_reports_a_circle() -> None:
    edges = [Edge("a", "b", 1, False, False), Edge("b", "c", 1, True, False),
             Edge("c", "a", 1, False, False), Edge("c", "d", 1, False, False),
             Edge("d", "c", 1, False, True)]  # fmt: skip
    assert cycles(edges) == [["a", "b", "c"]]  # the TYPE_CHECKING arrow d -> c does not count
