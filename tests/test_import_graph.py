"""No import cycles among cnnlab's modules.

The graph is read from the source with `ast`, so it sees every import a module can run: module-level ones and
those inside functions (a lazy import hides a cycle from `import cnnlab`, not from the code that runs it; the
old convlab/workspace.py <-> im2col.py / winograd.py circle was one). Imports under `if TYPE_CHECKING:` never
run and are left out.

An edge goes to the module named, most specific first: `from cnnlab.convlab import workspace` is an edge to
cnnlab.convlab.workspace, `from cnnlab.models import FAMILIES` one to cnnlab.models (its __init__.py). The
parent packages Python also initialises on the way are not edges: otherwise every package whose __init__.py
imports its own submodules (cnnlab.convlab, cnnlab.models, cnnlab.cli) would be a "cycle" with each of them,
and those are the ordinary, safe shape.

Run as a script (`python tests/test_import_graph.py`) to print every cycle of the whole package.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "cnnlab"


def module_names(src: Path = SRC, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package (a package is its __init__.py)."""
    names = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except the bodies of `if TYPE_CHECKING:`."""
    found, todo = [], [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        children = list(ast.iter_child_nodes(node))
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            children = node.orelse
        todo.extend(children)
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of `name` that is one of our modules (None for third-party and stdlib)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in modules:
            return candidate
    return None


def import_graph(src: Path = SRC, package: str = PACKAGE) -> dict[str, set[str]]:
    """module -> the modules of the package it imports (anywhere in its source)."""
    modules = module_names(src, package)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        is_pkg = path.name == "__init__.py"
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative: from the module's own package, up level - 1 more
                    anchor = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                # `from pkg import sub` imports the submodule pkg.sub; `from pkg import name` only pkg.
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names
                ]
            for target in targets:
                if (resolved := _resolve(target, modules)) is not None and resolved != mod:
                    graph[mod].add(resolved)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted; sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for v in sorted(graph):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(found)


def describe(component: list[str], graph: dict[str, set[str]]) -> str:
    members = set(component)
    edges = [f"{a} -> {b}" for a in component for b in sorted(graph[a] & members)]
    return "; ".join(edges)


# --- tests -----------------------------------------------------------------------------------------------------


def test_the_graph_sees_function_level_and_relative_imports(tmp_path: Path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg import b\n")
    (pkg / "b.py").write_text("def f():\n    from pkg.sub import c\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text(
        "from .. import a\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.b\n"
    )
    (pkg / "d.py").write_text("import pkg.sub\nfrom pkg import a as _, VALUE\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.b"}
    assert graph["pkg.b"] == {"pkg.sub.c"}  # inside a function
    assert graph["pkg.sub.c"] == {"pkg.a"}  # relative; the TYPE_CHECKING import is not an edge
    assert graph["pkg.d"] == {"pkg.sub", "pkg.a", "pkg"}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c"]]


# The whole package. Should a cycle elsewhere have to wait, narrow this (e.g. to "cnnlab.convlab", "cnnlab.nn",
# "cnnlab.models") and say why here, rather than dropping the test.
CHECKED = (PACKAGE,)


def _in(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_no_import_cycles_in_cnnlab():
    graph = import_graph()
    assert "cnnlab.convlab.workspace" in graph and "cnnlab.models.resnet" in graph  # the walk found the package
    # A cycle is checked if any of its modules is in CHECKED (models -> registry -> models would count).
    found = [c for c in cycles(graph) if any(_in(m, CHECKED) for m in c)]
    assert not found, "import cycles:\n" + "\n".join(describe(c, graph) for c in found)


def test_the_old_convlab_circle_would_be_caught():
    graph = import_graph()
    graph["cnnlab.convlab.workspace"] = graph["cnnlab.convlab.workspace"] | {"cnnlab.convlab.im2col"}
    assert ["cnnlab.convlab.im2col", "cnnlab.convlab.workspace"] in cycles(graph)


if __name__ == "__main__":
    g = import_graph()
    cs = cycles(g)
    print(f"{len(g)} modules, {sum(map(len, g.values()))} import edges, {len(cs)} cycle(s)")
    for c in cs:
        print(" ", describe(c, g))
    raise SystemExit(1 if cs else 0)
