"""The packages are layered data < retrievers < rerank < eval, with no import cycles between modules.

The import graph is read from the source with ``ast`` (nothing is imported): every ``import`` and
``from … import`` statement, at module level or inside a function, relative ones resolved. An edge
goes to the module an import names: ``from rerank.cli import common`` to ``rerank.cli.common`` (a
submodule), ``from rerank import Reranker`` to ``rerank`` (the package's ``__init__``). The layering
check also reads the targets of dynamic imports: a string that is a dotted module path of the tree
(``"eval.leaderboard"``, ``"rerank.methods.listwise:ListwiseReranker"``), as given to ``import_module``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("data", "retrievers", "rerank", "eval")  # each may import only from itself and those before it

# (importing module, imported module): known upward imports or cycle edges, each with the change that removes it.
ALLOWED: dict[tuple[str, str], str] = {}


@dataclass(frozen=True, slots=True)
class Edge:
    source: str  # the importing module
    target: str  # the imported module
    path: Path
    line: int

    def where(self, root: Path) -> str:
        return f"{self.path.relative_to(root)}:{self.line}"


def module_names(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Dotted name -> file of every module under the packages (a package is its ``__init__.py``)."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _resolve(name: str, modules: Mapping[str, Path]) -> str | None:
    """The longest prefix of a dotted name that is a module of the tree (None outside it)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in modules:
            return prefix
    return None


def import_graph(root: Path, packages: Iterable[str] = LAYERS) -> dict[str, list[Edge]]:
    """Module -> its import edges to modules of the tree (imports of other libraries are left out)."""
    modules = module_names(root, packages)
    graph: dict[str, list[Edge]] = {}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        edges = graph.setdefault(module, [])
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            targets: list[str | None] = []
            if isinstance(node, ast.Import):
                targets = [_resolve(alias.name, modules) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = module.split(".") if is_package else module.split(".")[:-1]
                    if node.level - 1 > len(anchor) - 1:
                        raise ValueError(f"{path}:{node.lineno}: relative import beyond the top-level package")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, node.module] if node.module else anchor)
                else:
                    base = node.module or ""
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    targets.append(submodule if submodule in modules else _resolve(base, modules))
            for target in targets:
                if target is not None and target != module:
                    edges.append(Edge(module, target, path, node.lineno))
    return graph


def module_strings(root: Path, packages: Iterable[str] = LAYERS) -> dict[str, list[Edge]]:
    """Module -> its string constants that name another module of the tree by a dotted path (``a.b`` or
    ``a.b:attr``): the targets of imports made at run time, which ``import_graph`` cannot see."""
    modules = module_names(root, packages)
    found: dict[str, list[Edge]] = {}
    for module, path in modules.items():
        edges = found.setdefault(module, [])
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                name = node.value.partition(":")[0]
                if "." in name and name in modules and name != module:
                    edges.append(Edge(module, name, path, node.lineno))
    return found


def layer_of(module: str, layers: tuple[str, ...] = LAYERS) -> int:
    return layers.index(module.split(".")[0])


def upward_imports(graph: Mapping[str, list[Edge]], layers: tuple[str, ...] = LAYERS) -> list[Edge]:
    """Edges from a module to a module of a higher package."""
    return [
        edge
        for edges in graph.values()
        for edge in edges
        if layer_of(edge.target, layers) > layer_of(edge.source, layers)
    ]


def cycles(graph: Mapping[str, list[Edge]]) -> list[list[Edge]]:
    """One cycle (as the edges around it) for each strongly connected component with more than one module."""
    targets = {module: sorted({e.target for e in edges}) for module, edges in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(start: str) -> None:  # Tarjan's algorithm, iterative
        work = [(start, iter(targets.get(start, ())))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(targets.get(succ, ()))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))

    for module in sorted(targets):
        if module not in index:
            connect(module)
    return [_cycle_in(sorted(components, key=lambda c: c[0])[i], graph) for i in range(len(components))]


def _cycle_in(component: list[str], graph: Mapping[str, list[Edge]]) -> list[Edge]:
    """A shortest cycle through the component's first module, by breadth-first search inside the component."""
    members = set(component)
    start = component[0]
    came_from: dict[str, Edge] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for edge in graph[node]:
                if edge.target not in members or edge.target in came_from:
                    continue
                came_from[edge.target] = edge
                if edge.target == start:
                    path = [edge]
                    while path[0].source != start:
                        path.insert(0, came_from[path[0].source])
                    return path
                following.append(edge.target)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # unreachable for a strongly connected component


def _without_allowed(graph: Mapping[str, list[Edge]]) -> dict[str, list[Edge]]:
    return {m: [e for e in edges if (e.source, e.target) not in ALLOWED] for m, edges in graph.items()}


def _describe(cycle: list[Edge], root: Path) -> str:
    return " -> ".join([cycle[0].source, *(f"{e.target} ({e.where(root)})" for e in cycle)])


def test_no_upward_imports():
    found = upward_imports(_without_allowed(import_graph(ROOT))) + upward_imports(module_strings(ROOT))
    assert not found, "imports from a higher package (order: data < retrievers < rerank < eval):\n" + "\n".join(
        f"  {e.where(ROOT)}: {e.source} imports {e.target}" for e in found
    )


def test_no_import_cycles():
    found = cycles(_without_allowed(import_graph(ROOT)))
    assert not found, "import cycles between modules:\n" + "\n".join(f"  {_describe(c, ROOT)}" for c in found)


def test_allow_list_is_current():
    edges = {(e.source, e.target) for edges in import_graph(ROOT).values() for e in edges}
    stale = [pair for pair in ALLOWED if pair not in edges]
    assert not stale, f"allow-list entries that no longer match an import: {stale}"


def _tree(root: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_graph_finds_upward_imports_at_any_depth(tmp_path):
    root = _tree(
        tmp_path,
        {
            "data/__init__.py": "",
            "data/records.py": "import json\n",
            "rerank/__init__.py": "",
            "rerank/cli/__init__.py": "def main():\n    import eval.cli\n\n\nCOMMANDS = {'eval': 'eval.cli:run'}\n",
            "rerank/cli/run.py": "from data import records\nfrom ..cli import main\n",
            "eval/__init__.py": "from . import cli\n",
            "eval/cli.py": "from rerank.cli import run\n",
        },
    )
    graph = import_graph(root, ("data", "rerank", "eval"))
    assert {(e.source, e.target) for e in graph["rerank.cli.run"]} == {
        ("rerank.cli.run", "data.records"),
        ("rerank.cli.run", "rerank.cli"),
    }
    found = upward_imports(graph, ("data", "rerank", "eval"))
    assert [(e.where(root), e.target) for e in found] == [("rerank/cli/__init__.py:2", "eval.cli")]
    found = upward_imports(module_strings(root, ("data", "rerank", "eval")), ("data", "rerank", "eval"))
    assert [(e.where(root), e.target) for e in found] == [("rerank/cli/__init__.py:5", "eval.cli")]


def test_graph_finds_cycles_through_a_package_init(tmp_path):
    root = _tree(
        tmp_path,
        {
            "rerank/__init__.py": "from rerank.base import Reranker\n",
            "rerank/base.py": "def f():\n    from rerank.pipeline import Pipeline\n",
            "rerank/pipeline.py": "from rerank import Reranker\n",
            "rerank/spec.py": "from . import base\n",
        },
    )
    found = cycles(import_graph(root, ("rerank",)))
    assert len(found) == 1
    assert [(e.source, e.target, e.line) for e in found[0]] == [
        ("rerank", "rerank.base", 1),
        ("rerank.base", "rerank.pipeline", 2),
        ("rerank.pipeline", "rerank", 1),
    ]


@pytest.mark.parametrize("text", ["from ... import x\n"])
def test_relative_import_beyond_the_top_is_an_error(tmp_path, text):
    root = _tree(tmp_path, {"data/__init__.py": "", "data/a.py": text})
    with pytest.raises(ValueError, match="beyond the top-level package"):
        import_graph(root, ("data",))


def _reaches(graph: Mapping[str, list[Edge]], start: str, goal: str) -> bool:
    seen, frontier = {start}, [start]
    while frontier:
        frontier = [e.target for n in frontier for e in graph.get(n, []) if e.target not in seen]
        seen.update(frontier)
    return goal in seen


def test_identity_never_reaches_the_cached_backend():
    # llm/cached keys its answers by rerank.identity; identity reaching it (an import, or a registry string
    # loaded at run time) would make the cache part of the identity it is keyed by.
    graph = import_graph(ROOT)
    strings = module_strings(ROOT)
    both = {m: graph.get(m, []) + strings.get(m, []) for m in set(graph) | set(strings)}
    assert _reaches(both, "rerank.llm.cached", "rerank.identity"), "the pair this test guards no longer exists"
    assert not _reaches(both, "rerank.identity", "rerank.llm.cached")
    assert not _reaches(both, "rerank.identity", "rerank.core.keys")  # keys build on identity, never the reverse
