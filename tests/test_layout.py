"""The floor plan of explorer/ (README, "Layout"), checked by parsing the package with ``ast``.

* No import cycle, counting imports inside functions too: a function-local import that only
  dodges a cycle is the cycle itself, so it fails here. (Lazy imports that break no cycle, such
  as the CLI importing its commands once one runs, are fine.)
* No module imports another module's private (underscore) names.
* The ground floor imports nothing of the explorer but the ground floor.
* No module is much over 500 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "explorer"
#: Modules that import nothing of the explorer except each other (README, "Layout").
GROUND_FLOOR = {"choices", "settings", "progress", "runs", "losses", "objectives", "transforms", "color",
                "plots", "runqueue", "devices", "files", "decoding", "images", "outputs", "matting", "parameterizations",
                "grids", "winograd", "installation", "cgroups"}
MAX_LINES = 560


def _modules() -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text(), filename=str(p)) for p in sorted(PACKAGE.glob("*.py"))}


def _targets(node: ast.ImportFrom | ast.Import, modules) -> list[tuple[str, list[str]]]:
    """(explorer module imported, names taken from it) for one import statement."""
    out = []
    if isinstance(node, ast.Import):
        for a in node.names:
            parts = a.name.split(".")
            if parts[0] == "explorer" and len(parts) > 1 and parts[1] in modules:
                out.append((parts[1], []))
        return out
    if node.level == 1 or (node.level == 0 and node.module and node.module.split(".")[0] == "explorer"):
        mod = node.module or ""
        if node.level == 0:
            mod = mod.partition(".")[2]
        if mod:
            if mod.split(".")[0] in modules:
                out.append((mod.split(".")[0], [a.name for a in node.names]))
        else:  # from . import a, b
            out.extend((a.name, []) for a in node.names if a.name in modules)
    return out


def _graph():
    modules = _modules()
    edges: dict[str, dict[str, int]] = {m: {} for m in modules}
    private: list[str] = []
    for name, tree in modules.items():
        aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target, names in _targets(node, modules):
                    if target != name:
                        edges[name].setdefault(target, node.lineno)
                    private += [f"explorer/{name}.py:{node.lineno} imports {target}.{n}" for n in names
                                if n.startswith("_") and not n.startswith("__")]
                if isinstance(node, ast.ImportFrom) and not node.module and node.level == 1:
                    for a in node.names:
                        if a.name in modules:
                            aliases[a.asname or a.name] = a.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                private.append(f"explorer/{name}.py:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    return modules, edges, private


def _cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
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

    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_even_through_function_local_imports():
    _, edges, _ = _graph()
    cycles = _cycles(edges)
    detail = [" -> ".join(c) + ": " + "; ".join(f"{a} imports {b} (line {edges[a][b]})" for a in c for b in edges[a]
                                                 if b in c) for c in cycles]
    assert not cycles, "import cycles in explorer/:\n" + "\n".join(detail)


def test_no_module_imports_another_modules_private_names():
    _, _, private = _graph()
    assert not private, "private names used across modules:\n" + "\n".join(private)


def test_the_ground_floor_imports_only_the_ground_floor():
    modules, edges, _ = _graph()
    assert GROUND_FLOOR <= set(modules), f"ground-floor modules missing: {GROUND_FLOOR - set(modules)}"
    up = [f"{m} imports {t} (line {edges[m][t]})" for m in sorted(GROUND_FLOOR) for t in edges[m] if t not in GROUND_FLOOR]
    assert not up, "the ground floor reaches up:\n" + "\n".join(up)


def test_no_module_is_much_over_500_lines():
    long = {p.name: n for p in PACKAGE.glob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these modules along their seams (at most about 500 lines): {long}"


def test_the_checks_catch_what_they_look_for(tmp_path):
    """The checks themselves: a planted cycle (through a function-local import) and a planted
    private import are found."""
    pkg = tmp_path / "explorer"
    pkg.mkdir()
    (pkg / "a.py").write_text("from .b import value\n")
    (pkg / "b.py").write_text("def f():\n    from .a import _hidden\n    return _hidden\nvalue = 1\n")
    global PACKAGE
    saved, PACKAGE = PACKAGE, pkg
    try:
        _, edges, private = _graph()
        assert _cycles(edges) == [["a", "b"]]
        assert private == ["explorer/b.py:2 imports a._hidden"]
        with pytest.raises(AssertionError, match="import cycles"):
            test_no_import_cycle_even_through_function_local_imports()
    finally:
        PACKAGE = saved
