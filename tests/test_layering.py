"""The imports go one way (docs/DESIGN: experiments -> replay -> characterize, experiments ->
traces): the apps (``experiments/apps/``) are doors that library code never imports, the
experiments layer has no import circles, and the library packages never import experiments.

Every ``import`` statement counts, those inside functions too (a lazy import is still a
dependency; a circle through one is still a circle). Read from the source with :mod:`ast`:
nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ("common", "traces", "replay", "characterize")


def _modules(*packages: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under the packages (``pkg/__init__.py`` is
    ``pkg``)."""
    out = {}
    for pkg in packages:
        for p in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(p.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = p
    return out


def _imported(path: Path, module: str) -> set[str]:
    """Every dotted name an import statement of ``path`` names (``from a import b``: ``a.b``,
    which is the module ``a.b`` when there is one, else a name inside ``a``: an edge to ``a``;
    a package's ``__init__`` that a submodule's import runs first is not an edge of its own)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: climb from the module's package
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*up, *([node.module] if node.module else [])])
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def _graph(*packages: str) -> dict[str, set[str]]:
    """module -> the modules of ``packages`` it imports (a name resolved to its longest module
    prefix; itself excluded)."""
    mods = _modules(*packages)
    graph: dict[str, set[str]] = {}
    for m, p in mods.items():
        deps = set()
        for name in _imported(p, m):
            while name and name not in mods:
                name = name.rpartition(".")[0]
            if name and name != m:
                deps.add(name)
        graph[m] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:  # the graph is a few hundred modules: recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_library_code_never_imports_the_apps():
    graph = _graph("experiments", *LIBRARY)
    bad = sorted(
        f"{m} -> {d}"
        for m, deps in graph.items()
        if not m.startswith("experiments.apps")
        for d in deps
        if d == "experiments.apps" or d.startswith("experiments.apps.")
    )
    assert not bad, "library modules import the apps (doors): " + "; ".join(bad)


def test_experiments_has_no_import_circles():
    cycles = _cycles(_graph("experiments"))
    assert not cycles, "import circles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_library_packages_never_import_experiments():
    graph = _graph("experiments", *LIBRARY)
    bad = sorted(
        f"{m} -> {d}"
        for m, deps in graph.items()
        if m.split(".")[0] in LIBRARY
        for d in deps
        if d.split(".")[0] == "experiments"
    )
    assert not bad, "library packages import experiments: " + "; ".join(bad)


def test_the_walk_sees_imports_inside_functions_and_relative_ones(tmp_path):
    """The walker itself: a lazy import and a relative one are both edges; a circle is found."""
    (tmp_path / "a.py").write_text("def f():\n    from pkg import b\n")
    (tmp_path / "b.py").write_text("from .a import f\n")
    assert _imported(tmp_path / "a.py", "pkg.a") >= {"pkg.b"}
    assert "pkg.a.f" in _imported(tmp_path / "b.py", "pkg.b")
    assert _cycles({"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.c": {"pkg.a"}}) == [
        ["pkg.a", "pkg.b"]
    ]
