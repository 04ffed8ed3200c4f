"""The import graph of ``shared``, computed from the source: no cycles, and the tooling stays out of the
deployed app (nothing outside ``shared/tools/`` imports it, and ``.funcignore`` excludes all of it).

Edges come from every ``import``/``from ... import`` in the source (ast), at module level or inside a
function (a lazy import still couples the two modules, so it counts for cycles; each edge says which
kind it is). Imports under ``if TYPE_CHECKING:`` are annotations only and are left out.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "shared"
TOOLS = "shared.tools"

# Cycles allowed to stay: none. Each entry would be the set of nodes of one strongly connected component
# (modules for KNOWN_MODULE_CYCLES, top-level parts of shared for KNOWN_PACKAGE_CYCLES).
KNOWN_MODULE_CYCLES: tuple[frozenset[str], ...] = ()
KNOWN_PACKAGE_CYCLES: tuple[frozenset[str], ...] = ()


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    lazy: bool  # the import is inside a function (runs when called, not when the module loads)
    line: int

    def __str__(self) -> str:
        kind = "in a function" if self.lazy else "module level"
        return f"{self.source} -> {self.target} ({kind}, line {self.line})"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest known module that ``name`` is or lies in (``shared.x.y`` for a name in module x.y)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, known: dict[str, Path]) -> list[Edge]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    edges: list[Edge] = []

    def add(name: str, lazy: bool, line: int) -> None:
        target = _resolve(name, known)
        if target is not None and target != module:
            edges.append(Edge(module, target, lazy, line))

    def visit(node: ast.AST, lazy: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child, lazy)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, lazy, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join([*base, node.module] if node.module else base)
            else:
                origin = node.module or ""
            for alias in node.names:  # ``from pkg import mod`` imports the submodule pkg.mod
                add(f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in known else origin, lazy, node.lineno)
        inner = lazy or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, False)
    return edges


def import_graph() -> list[Edge]:
    known = modules()
    return sorted({edge for name, path in known.items() for edge in imports_of(name, path, known)},
                  key=lambda e: (e.source, e.target, e.line))  # fmt: skip


def part_of(module: str) -> str:
    """The top-level part of ``shared`` a module belongs to: ``shared.engine`` for ``shared.engine.coltypes``."""
    return ".".join(module.split(".")[:2])


def package_graph(edges: list[Edge]) -> list[Edge]:
    """The same imports between the top-level parts of ``shared`` (subpackages and modules)."""
    return [
        Edge(part_of(e.source), part_of(e.target), e.lazy, e.line)
        for e in edges
        if part_of(e.source) != part_of(e.target)
    ]


def strongly_connected(edges: list[Edge]) -> list[frozenset[str]]:
    """Tarjan's algorithm: the components of more than one module (or a module importing itself)."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def describe(component: frozenset[str], edges: list[Edge], node: Callable[[str], str] = str) -> str:
    """The component and the imports inside it (``node`` maps a module to its node: itself, or its part)."""
    inside = sorted(str(e) for e in edges if node(e.source) in component and node(e.target) in component)
    return "{" + ", ".join(sorted(component)) + "}:\n    " + "\n    ".join(inside)


# ------------------------------------------------------------------------------------- the graph itself
def test_the_graph_builder_sees_module_level_lazy_and_relative_imports_but_not_type_checking(
    tmp_path: Path,
) -> None:
    known = dict.fromkeys(("shared", "shared.a", "shared.b", "shared.c", "shared.d", "shared.pkg"), tmp_path)
    source = tmp_path / "a.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "import json\n"
        "from shared import b\n"
        "from . import pkg\n"
        "if TYPE_CHECKING:\n"
        "    from shared.d import Thing\n"
        "def f() -> None:\n"
        "    from shared.c import g\n",
        encoding="utf-8",
    )
    edges = imports_of("shared.a", source, known)
    assert {(e.target, e.lazy) for e in edges} == {("shared.b", False), ("shared.pkg", False), ("shared.c", True)}


def test_a_cycle_through_a_lazy_import_is_found() -> None:
    edges = [
        Edge("shared.x", "shared.y", False, 1),
        Edge("shared.y", "shared.x", True, 9),
        Edge("shared.y", "shared.z", False, 2),
    ]
    assert strongly_connected(edges) == [frozenset({"shared.x", "shared.y"})]
    assert "shared.y -> shared.x (in a function, line 9)" in describe(frozenset({"shared.x", "shared.y"}), edges)


def test_the_package_graph_folds_modules_into_their_part() -> None:
    edges = [Edge("shared.engine.engine", "shared.destinations.base", False, 3),
             Edge("shared.destinations.base", "shared.engine.coltypes", False, 7),
             Edge("shared.engine.engine", "shared.engine.coltypes", False, 4)]  # fmt: skip
    assert strongly_connected(edges) == []
    assert strongly_connected(package_graph(edges)) == [frozenset({"shared.engine", "shared.destinations"})]


def test_the_graph_covers_the_package() -> None:
    edges = import_graph()
    sources = {e.source for e in edges}
    assert {"shared.cli", "shared.handlers", "shared.tools.demo", "shared.api"} <= sources
    assert any(e.lazy for e in edges)
    assert any(not e.lazy for e in edges)


# ------------------------------------------------------------------------------------------- the rules
def test_no_import_cycle_among_shared_modules() -> None:
    edges = import_graph()
    unexpected = [c for c in strongly_connected(edges) if not any(c <= known for known in KNOWN_MODULE_CYCLES)]
    assert not unexpected, "import cycles in shared/:\n  " + "\n  ".join(describe(c, edges) for c in unexpected)


def test_no_import_cycle_among_the_parts_of_shared() -> None:
    """Subpackages too: engine -> destinations -> engine is a cycle even if no module pair is."""
    edges = import_graph()
    unexpected = [
        c for c in strongly_connected(package_graph(edges)) if not any(c <= known for known in KNOWN_PACKAGE_CYCLES)
    ]
    assert not unexpected, "import cycles between parts of shared/:\n  " + "\n  ".join(
        describe(c, edges, part_of) for c in unexpected
    )


def test_nothing_outside_tools_imports_the_tooling() -> None:
    offenders = [
        str(e)
        for e in import_graph()
        if (e.target == TOOLS or e.target.startswith(TOOLS + "."))
        and not (e.source == TOOLS or e.source.startswith(TOOLS + "."))
        and e.source != "shared.cli"  # the `des` command line dispatches to tools, inside its subcommands
    ]
    assert not offenders, "deployed modules import shared.tools:\n  " + "\n  ".join(offenders)


def test_the_command_line_imports_tools_only_inside_its_subcommands() -> None:
    eager = [str(e) for e in import_graph() if e.source == "shared.cli" and e.target.startswith(TOOLS) and not e.lazy]
    assert not eager
    deployed = {e.source for e in import_graph()} - {"shared.cli", "shared.__main__"}
    assert not [str(e) for e in import_graph() if e.target == "shared.cli" and e.source in deployed]


# ------------------------------------------------------------------------------------------ .funcignore
def _funcignored(paths: list[str]) -> set[str]:
    """The paths that ``.funcignore``'s patterns exclude (gitignore syntax, matched by git itself)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--ignored", "--exclude-from=.funcignore", "--", *paths],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return set(out.stdout.splitlines())


@pytest.mark.skipif(
    shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs git and a git checkout"
)
def test_funcignore_excludes_the_tooling_and_nothing_the_app_imports() -> None:
    tools = sorted(str(p.relative_to(ROOT)) for p in (PACKAGE / "tools").rglob("*.py"))
    assert tools
    assert set(tools) <= _funcignored(["shared/tools"]), "shared/tools/ must not deploy"
    deployed = [str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if "tools" not in p.relative_to(PACKAGE).parts]
    assert not _funcignored(["function_app.py", "host.json", "requirements.txt", "constraints.txt", *deployed])


def test_funcignore_lists_the_tooling_folder() -> None:
    patterns = [
        line.strip() for line in (ROOT / ".funcignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]  # fmt: skip
    assert "shared/tools/" in patterns or "shared/tools" in patterns


# ------------------------------------------------------------------------------------------- the pins
def _pins(path: Path) -> set[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return {line for line in lines if line and not line.startswith("-")}


def test_pyproject_mirrors_the_requirement_files() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert set(project["dependencies"]) == _pins(ROOT / "requirements.txt")
    assert set(project["optional-dependencies"]["cli"]) == _pins(ROOT / "requirements-cli.txt")
    tooling_only = {"rich", "psutil", "uvicorn"}
    assert not {p.split("==")[0] for p in _pins(ROOT / "requirements.txt")} & tooling_only


def test_constraints_pin_the_whole_environment_as_the_requirement_files_do() -> None:
    """constraints.txt (the transitive pins scripts/setup.sh installs with) agrees with every direct pin."""
    constraints = _pins(ROOT / "constraints.txt")
    assert all("==" in c for c in constraints), [c for c in constraints if "==" not in c]
    pinned = {name.lower().replace("_", "-"): version for name, version in (c.split("==") for c in constraints)}
    for path in ("requirements.txt", "requirements-cli.txt", "requirements-dev.txt"):
        for pin in _pins(ROOT / path):
            name, version = pin.split("==")
            base = name.split("[")[0].lower().replace("_", "-")
            assert pinned.get(base) == version, (path, pin, pinned.get(base))
