"""The floor plan of ``explorer/`` (README, "Layout"), checked by parsing the package with ``ast``.

The README's "Layout" section is the one source: its ``explorer/`` block lists the subpackages
from the ground floor up, each with its modules. These tests check the code against it:

* the block lists every module of the package, each once, under the subpackage it is in;
* a module imports only modules of its own subpackage or of subpackages listed before it
  (counting imports inside functions: a lazy import is still a dependency);
* no import cycle between modules, again counting function-local imports (a lazy import that
  only dodges a cycle is the cycle itself);
* no module imports another module's private (underscore) names or reaches into them;
* Streamlit is imported only under ``explorer/app``;
* no module is over 500 lines.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "explorer"
README = ROOT / "README.md"
MAX_LINES = 500
#: The only subpackage that may import Streamlit.
STREAMLIT_FLOOR = "app"


# ----------------------------------------------------------------------------- the README's plan

def readme_plan(text: str | None = None) -> list[tuple[str, list[str]]]:
    """(subpackage, its modules) in floor order, from the README's ``explorer/`` block: lines
    ``  name/   module, module, ...`` (a module list may continue on indented lines)."""
    text = README.read_text() if text is None else text
    section = text.split("\n## Layout", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```\nexplorer/\n(.*?)```", section, re.S)
    assert block, "README 'Layout' has no ```explorer/ ...``` block"
    plan: list[tuple[str, list[str]]] = []
    for line in block.group(1).splitlines():
        m = re.match(r"  ([a-z_]+)/\s+(.*)$", line)
        if m:
            plan.append((m.group(1), []))
            rest = m.group(2)
        elif plan and line.startswith(" " * 6) and line.strip():
            rest = line
        else:
            continue
        plan[-1][1].extend(n for n in re.split(r"[,\s]+", rest.strip()) if n)
    return plan


# ----------------------------------------------------------------------------- the code

def _modules() -> dict[str, tuple[str, ast.Module, int]]:
    """Dotted name inside the package (``style.gatys``; ``__main__`` for root files) ->
    (subpackage or "", parsed tree, line count)."""
    out = {}
    for p in sorted(PACKAGE.rglob("*.py")):
        rel = p.relative_to(PACKAGE).with_suffix("")
        parts = rel.parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        name = ".".join(parts) if parts else "__init__"
        floor = rel.parts[0] if len(rel.parts) > 1 else ""
        text = p.read_text()
        out[name] = (floor, ast.parse(text, filename=str(p)), len(text.splitlines()))
    return out


def _resolve(current: str, is_package: bool, node: ast.ImportFrom | ast.Import, modules) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it) for one import statement of ``current``."""
    out: list[tuple[str, list[str]]] = []
    if isinstance(node, ast.Import):
        for a in node.names:
            if a.name.startswith("explorer."):
                name = a.name.partition(".")[2]
                while name and name not in modules:
                    name = name.rpartition(".")[0]
                if name:
                    out.append((name, []))
        return out
    if node.level:
        base = current.split(".") if current != "__init__" else []
        if not is_package:
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
        mod = ".".join([*base, *(node.module.split(".") if node.module else [])])
    elif node.module and node.module.split(".")[0] == "explorer":
        mod = node.module.partition(".")[2]
    else:
        return out
    names = [a.name for a in node.names]
    for n in names:  # from pkg import module
        full = f"{mod}.{n}" if mod else n
        if full in modules:
            out.append((full, []))
    taken = [n for n in names if (f"{mod}.{n}" if mod else n) not in modules]
    if mod in modules and taken:  # names taken from a module (or from a package's __init__)
        out.append((mod, taken))
    return out


def _graph():
    modules = _modules()
    edges: dict[str, dict[str, int]] = {m: {} for m in modules}
    private: list[str] = []
    streamlit: list[str] = []
    for name, (floor, tree, _) in modules.items():
        path = PACKAGE.joinpath(*name.split(".")) if name != "__init__" else PACKAGE / "__init__.py"
        is_package = path.is_dir()
        shown = f"explorer/{name.replace('.', '/')}{'/__init__' if is_package else ''}.py"
        aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "streamlit" for a in node.names) or \
                    isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "streamlit":
                if floor != STREAMLIT_FLOOR:
                    streamlit.append(f"{shown}:{node.lineno}")
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target, names in _resolve(name, is_package, node, modules):
                if target != name:
                    edges[name].setdefault(target, node.lineno)
                private += [f"{shown}:{node.lineno} imports {target}.{n}" for n in names
                            if n.startswith("_") and not n.startswith("__")]
            if isinstance(node, ast.ImportFrom):
                for a in node.names:
                    for target, _ in _resolve(name, is_package, node, modules):
                        if target.rpartition(".")[2] == a.name or target == a.name:
                            aliases[a.asname or a.name] = target
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                private.append(f"{shown}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    return modules, edges, private, streamlit


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


def _floor_of(module: str, modules) -> str:
    return modules[module][0]


# ----------------------------------------------------------------------------- the tests

def test_the_readme_lists_every_module_once_under_its_subpackage():
    plan = readme_plan()
    modules = _modules()
    listed = [f"{pkg}.{m}" for pkg, mods in plan for m in mods]
    assert len(listed) == len(set(listed)), f"listed twice: {sorted({m for m in listed if listed.count(m) > 1})}"
    actual = {m for m, (floor, _, _) in modules.items() if floor and "." in m}
    assert set(listed) == actual, (f"README 'Layout' and explorer/ differ: not in the README "
                                   f"{sorted(actual - set(listed))}; not in explorer/ {sorted(set(listed) - actual)}")
    floors = {floor for floor, _, _ in modules.values() if floor}
    assert [p for p, _ in plan] == [p for p, _ in plan if p in floors] and {p for p, _ in plan} == floors


def test_each_subpackage_imports_only_its_own_floor_and_the_floors_before_it():
    order = {pkg: k for k, (pkg, _) in enumerate(readme_plan())}
    modules, edges, _, _ = _graph()
    up = []
    for m, targets in edges.items():
        floor = _floor_of(m, modules)
        if not floor:
            continue
        for t, line in targets.items():
            tf = _floor_of(t, modules)
            if tf and order[tf] > order[floor]:
                up.append(f"explorer/{m.replace('.', '/')}.py:{line} imports {t} ({tf} is above {floor})")
    assert not up, "imports from a later floor:\n" + "\n".join(up)


def test_no_import_cycle_even_through_function_local_imports():
    _, edges, _, _ = _graph()
    cycles = _cycles(edges)
    detail = [" -> ".join(c) + ": " + "; ".join(f"{a} imports {b} (line {edges[a][b]})" for a in c for b in edges[a]
                                                 if b in c) for c in cycles]
    assert not cycles, "import cycles in explorer/:\n" + "\n".join(detail)


def test_no_module_imports_another_modules_private_names():
    _, _, private, _ = _graph()
    assert not private, "private names used across modules:\n" + "\n".join(private)


def test_streamlit_is_imported_only_under_app():
    _, _, _, streamlit = _graph()
    assert not streamlit, f"Streamlit imported outside explorer/{STREAMLIT_FLOOR}: {streamlit}"


def test_no_module_is_over_500_lines():
    long = {m: n for m, (_, _, n) in _modules().items() if n > MAX_LINES}
    assert not long, f"split these modules along their seams (at most {MAX_LINES} lines): {long}"


def test_the_checks_catch_what_they_look_for(tmp_path):
    """The checks themselves: a planted cycle through a function-local import, a private
    import, an upward import, Streamlit outside app and a module missing from the plan are
    all found."""
    pkg = tmp_path / "explorer"
    for sub in ("core", "app"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "core" / "a.py").write_text("from .b import value\nimport streamlit\n")
    (pkg / "core" / "b.py").write_text("def f():\n    from .a import _hidden\n    return _hidden\nvalue = 1\n")
    (pkg / "core" / "c.py").write_text("from ..app import ui\n")
    (pkg / "app" / "ui.py").write_text("import streamlit as st\nfrom ..core import a\n")
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n## Layout\n\n```\nexplorer/\n  core/   a, b\n  app/    ui\n```\n\n## Next\n")
    global PACKAGE, README
    saved = PACKAGE, README
    PACKAGE, README = pkg, readme
    try:
        assert readme_plan() == [("core", ["a", "b"]), ("app", ["ui"])]
        _, edges, private, streamlit = _graph()
        assert _cycles(edges) == [["core.a", "core.b"]]
        assert private == ["explorer/core/b.py:2 imports core.a._hidden"]
        assert streamlit == ["explorer/core/a.py:2"]
        for check, message in ((test_no_import_cycle_even_through_function_local_imports, "import cycles"),
                               (test_each_subpackage_imports_only_its_own_floor_and_the_floors_before_it,
                                "core/c.py:1 imports app.ui"),
                               (test_streamlit_is_imported_only_under_app, "outside explorer/app"),
                               (test_the_readme_lists_every_module_once_under_its_subpackage, "core.c")):
            with pytest.raises(AssertionError, match=message):
                check()
    finally:
        PACKAGE, README = saved
