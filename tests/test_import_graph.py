"""The package graph has no cycle, and no module imports another package's private names.

The graph is read from the source with ``ast``: every ``import`` and ``from ... import``, lazy ones inside
functions included (they are real dependencies, only deferred); imports under ``if TYPE_CHECKING:`` are left
out (annotations only, never executed). A node is a sub-package of ``runlog`` (``runlog.analysis``,
``runlog.formats``, ...) or a top-level module (``runlog.run``, ``runlog.schema``, ...).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "runlog"

# Known back-edges, each in code other engineers are changing now; remove an entry once its edge is gone.
KNOWN: dict[tuple[str, str], str] = {}


def _node(module: str) -> str:
    parts = module.split(".")
    if len(parts) < 2:
        return "runlog"
    if (PACKAGE / parts[1]).is_dir() or (PACKAGE / f"{parts[1]}.py").is_file():
        return f"runlog.{parts[1]}"
    return "runlog"  # a name imported from the package itself (``from runlog import open_run``)


def _imports(path: Path) -> Iterator[tuple[str, list[str], int]]:
    """(imported module, names, line) of every import of one file, TYPE_CHECKING blocks left out."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
    package = module if rel.name == "__init__" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for n in ast.walk(block)
    }
    for n in ast.walk(tree):
        if id(n) in typing_only:
            continue
        if isinstance(n, ast.Import):
            for a in n.names:
                if a.name.split(".")[0] == "runlog":
                    yield a.name, [], n.lineno
        elif isinstance(n, ast.ImportFrom):
            if n.level:
                base = package.split(".")[: len(package.split(".")) - (n.level - 1)]
                target = ".".join([*base, n.module] if n.module else base)
            elif n.module and n.module.split(".")[0] == "runlog":
                target = n.module
            else:
                continue
            names = [a.name for a in n.names]
            if n.module is None:  # ``from . import x``: each name is a module
                for name in names:
                    yield f"{target}.{name}", [], n.lineno
            else:
                yield target, names, n.lineno


def _module_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def _edges() -> dict[str, dict[str, list[str]]]:
    edges: dict[str, dict[str, list[str]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        src = _node(_module_of(path))
        for target, _, line in _imports(path):
            dst = _node(target)
            if dst != src:
                edges.setdefault(src, {}).setdefault(dst, []).append(f"{path.relative_to(PACKAGE)}:{line}")
    return edges


def _cycle(edges: dict[str, dict[str, list[str]]]) -> list[str] | None:
    """One cycle of the graph (its nodes in order, the first repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        stack.append(v)
        for w in sorted(edges.get(v, {})):
            if state.get(w) == 1:
                return [*stack[stack.index(w) :], w]
            if w not in state and (found := visit(w)):
                return found
        stack.pop()
        state[v] = 2
        return None

    for v in sorted(edges):
        if v not in state and (found := visit(v)):
            return found
    return None


def test_the_package_graph_has_no_cycle_but_the_known_back_edges():
    edges = _edges()
    left = {a: {b: where for b, where in out.items() if (a, b) not in KNOWN} for a, out in edges.items()}
    cycle = _cycle(left)
    if cycle:
        steps = [f"{a} -> {b} ({', '.join(left[a][b][:3])})" for a, b in zip(cycle, cycle[1:], strict=False)]
        raise AssertionError("import cycle between packages:\n  " + "\n  ".join(steps))
    gone = [f"{a} -> {b} ({why})" for (a, b), why in KNOWN.items() if b not in edges.get(a, {})]
    assert not gone, f"known back-edges that no longer exist, remove them from KNOWN: {gone}"


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b": []}, "b": {"c": []}}) is None


def test_no_private_name_is_imported_across_packages():
    """A private name (``_name``) or module (``pkg._module``) is used only inside its own package (``_lazy``,
    the lazy-import helper, is shared by design)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = _node(_module_of(path))
        for target, names, line in _imports(path):
            if _node(target) in (here, "runlog._lazy"):
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            private += [p for p in target.split(".")[2:] if p.startswith("_") and p != "__init__"]
            if private:
                found.append(f"{path.relative_to(PACKAGE)}:{line}: {target}: {', '.join(private)}")
    assert not found, "private names imported across packages:\n  " + "\n  ".join(found)
