"""The layout's rules, read from the source: no import cycle, tracks apart, foundations first.

Every ``import`` counts, wherever it stands: at the top, inside a function, or under
``TYPE_CHECKING`` (a cycle hidden there is still a cycle to a reader).

- No cycle among lakelab's modules.
- No track imports another track (``lakelab.mlp``: Frozen Lake MLP; ``lakelab.lm``: tiny
  transformer).
- The foundations (every other module of ``lakelab``) import no track; only the CLI and the
  package's ``__init__`` may.
- The Streamlit pages live beside ``app.py``, outside the package, and the package never
  imports them.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lakelab"
TRACKS = ("lakelab.mlp", "lakelab.lm")
MAY_IMPORT_TRACKS = {"lakelab", "lakelab.cli"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The lakelab modules ``path`` imports anywhere in its body (``from a import b`` counts
    as importing ``a.b`` when that is a module, else ``a``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            names = [n if n in known else node.module for n in names]
        else:
            continue
        for name in names:
            while name and name not in known:  # a name inside a module: the module
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    known = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, known) - {module_name(p)} for p in paths}


def track_of(module: str) -> str | None:
    return next((t for t in TRACKS if module == t or module.startswith(t + ".")), None)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first search (one per back edge)."""
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                found.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found


def test_the_checker_sees_function_level_and_type_checking_imports(tmp_path):
    source = tmp_path / "lakelab" / "a.py"
    source.parent.mkdir()
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from lakelab.b import thing\n"
        "def f():\n    import lakelab.c\n    from lakelab import d\n"
    )
    known = {"lakelab", "lakelab.a", "lakelab.b", "lakelab.c", "lakelab.d"}
    assert imports_of(source, known) == {"lakelab.b", "lakelab.c", "lakelab.d"}
    assert cycles({"x": {"y"}, "y": {"z"}, "z": {"x"}}) == [["x", "y", "z", "x"]]
    assert cycles({"x": {"y"}, "y": set()}) == []


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_no_track_imports_another_track():
    bad = [
        (m, dep)
        for m, deps in graph().items()
        for dep in deps
        if track_of(m) and track_of(dep) and track_of(dep) != track_of(m)
    ]
    assert bad == []


def test_foundations_import_no_track():
    bad = [
        (m, dep)
        for m, deps in graph().items()
        if track_of(m) is None and m not in MAY_IMPORT_TRACKS
        for dep in deps
        if track_of(dep)
    ]
    assert bad == []


def test_the_app_pages_live_outside_the_package():
    assert not (PACKAGE / "app_pages").exists()
    assert (ROOT / "app_pages").is_dir()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
                assert not any(n.split(".")[0] == "app_pages" for n in names), path
