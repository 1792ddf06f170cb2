"""The import graph of aictl/ keeps the shape docs/architecture.md draws: no cycles, imports only go down.

Read with `ast`, nothing is imported. Which imports count:
- for cycles, every import that runs: module level and inside functions (a local import that closes a
  cycle only hides it), but not those under `if TYPE_CHECKING:`, which never run;
- for layers, every import, TYPE_CHECKING ones too: a lower layer does not even name a higher one's types.
An import names the module it loads (`from aictl.policy import engine` -> aictl.policy.engine; `from
aictl.policy import evaluate` -> aictl.policy, the package's face); loading a package's `__init__` on
the way to a submodule is not an edge, or every package face re-exporting its modules would be a cycle.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "aictl"

# Top to bottom, as in docs/architecture.md: a module imports from its own layer or the ones below it.
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("entry", frozenset({"aictl.__main__", "aictl.cli"})),
    ("daemon", frozenset({"aictl.daemon", "aictl.mcp", "aictl.console"})),
    ("workflows", frozenset({"aictl.workflows"})),
    ("merge", frozenset({"aictl.merge"})),
    ("execution", frozenset({"aictl.execution"})),
    ("agents", frozenset({"aictl.agents"})),
    ("skills", frozenset({"aictl.skills"})),
    ("tasks", frozenset({"aictl.tasks"})),
    ("policy and settings", frozenset({"aictl.policy", "aictl.config"})),
    ("audit", frozenset({"aictl.audit"})),
    ("sandbox and store", frozenset({"aictl.sandbox", "aictl.store", "aictl.yamlfile"})),
    ("domain", frozenset({"aictl.domain", "aictl.logging", "aictl"})),
)

# Cycles other work is removing now; test_known_cycles_are_gone turns red (XPASS, strict) once they are gone.


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int
    type_checking: bool


def module_names() -> dict[str, Path]:
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(node: ast.Import | ast.ImportFrom, package: str, modules: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        wanted = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        wanted = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
    found = []
    for name in wanted:
        while name not in modules and "." in name:  # `import aictl.x.y` of a non-module y: the module x
            name = name.rpartition(".")[0]
        if name in modules:
            found.append(name)
    return found


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: list[Import] = []

    def visit(node: ast.AST, type_checking: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, type_checking)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for target in _targets(node, package, modules):
                if target != module:
                    out.append(Import(module, target, node.lineno, type_checking))
            return
        for child in ast.iter_child_nodes(node):
            visit(child, type_checking)

    visit(ast.parse(path.read_text(), str(path)), False)
    return out


@cache
def import_graph() -> list[Import]:
    modules = module_names()
    return [imp for module, path in modules.items() for imp in imports_of(module, path, modules)]


def cycles(edges: list[Import]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def layer_of(module: str) -> int:
    """The index in LAYERS of the longest package prefix of `module` (0 is the top)."""
    best: tuple[int, int] | None = None
    for rank, (_, members) in enumerate(LAYERS):
        for member in members:
            covers = module == member or module.startswith(member + ".")
            if covers and (best is None or len(member) > best[0]):
                best = (len(member), rank)
    if best is None:
        raise LookupError(f"{module} is in no layer of LAYERS (tests/test_architecture.py)")
    return best[1]


def _describe(component: frozenset[str], edges: list[Import]) -> str:
    ties = [
        f"  {e.source} -> {e.target} (line {e.line})" for e in edges if e.source in component and e.target in component
    ]
    return ", ".join(sorted(component)) + "\n" + "\n".join(sorted(set(ties)))


def test_no_import_cycles_between_modules():
    edges = [e for e in import_graph() if not e.type_checking]
    new = cycles(edges)
    assert not new, "import cycles (move the shared names down to a module both can import):\n" + "\n".join(
        _describe(c, edges) for c in new
    )


def test_imports_only_go_down_the_layers():
    upward = [
        f"{e.source}:{e.line} ({LAYERS[layer_of(e.source)][0]}) imports {e.target} ({LAYERS[layer_of(e.target)][0]})"
        for e in import_graph()
        if layer_of(e.target) < layer_of(e.source)
    ]
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_every_package_has_a_layer_and_a_row_in_the_architecture_doc():
    modules = module_names()
    for module in modules:
        layer_of(module)  # raises for a module no layer claims
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and any(p.glob("*.py"))}
    doc = (ROOT / "docs" / "architecture.md").read_text()
    table = doc.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\| [^|]+ \| `aictl/(\w+)/` \|", table, flags=re.MULTILINE))
    assert packages - rows == set(), f"packages missing from the layer table of docs/architecture.md: {packages - rows}"
    assert rows - packages == set(), f"the layer table names packages that do not exist: {rows - packages}"


def test_the_checker_sees_a_cycle_and_an_upward_import(tmp_path):
    """The graph reader itself: a local import closes a cycle, TYPE_CHECKING does not, relative imports resolve."""
    pkg = tmp_path / "aictl" / "store"
    pkg.mkdir(parents=True)
    (tmp_path / "aictl" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import x\n")
    (pkg / "b.py").write_text("def f():\n    from aictl.store import a\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from aictl.cli import main\n")
    modules = {
        name: tmp_path / rel
        for name, rel in {
            "aictl": "aictl/__init__.py",
            "aictl.store": "aictl/store/__init__.py",
            "aictl.store.a": "aictl/store/a.py",
            "aictl.store.b": "aictl/store/b.py",
            "aictl.store.c": "aictl/store/c.py",
            "aictl.cli.main": "aictl/cli/main.py",
        }.items()
    }
    edges = [
        imp
        for name in ("aictl.store.a", "aictl.store.b", "aictl.store.c")
        for imp in imports_of(name, modules[name], modules)
    ]
    assert cycles([e for e in edges if not e.type_checking]) == [frozenset({"aictl.store.a", "aictl.store.b"})]
    up = [e for e in edges if layer_of(e.target) < layer_of(e.source)]
    assert [(e.source, e.target, e.type_checking) for e in up] == [("aictl.store.c", "aictl.cli.main", True)]
