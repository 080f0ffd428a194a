"""The library's modules import each other one way only: no module of ``breakers``
imports another that imports it back, directly or through others (annotation-only
imports under ``TYPE_CHECKING`` included)."""

from __future__ import annotations

import ast
from pathlib import Path

import breakers

PACKAGE = Path(breakers.__file__).resolve().parent


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The modules of ``breakers`` that the file at ``path`` imports, wherever it does."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "breakers" if node.level else (node.module or "")
            if node.level and node.module:
                base = f"breakers.{node.module}"
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found & modules


def _graph() -> dict[str, set[str]]:
    files = {
        ("breakers" if p.stem == "__init__" else f"breakers.{p.stem}"): p
        for p in PACKAGE.glob("*.py")
    }
    modules = set(files)
    return {name: _imports(path, modules) - {name} for name, path in files.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for target in sorted(graph[node]):
            found = visit(target, [*path, node])
            if found:
                return found
        done.add(node)
        return None

    for start in sorted(graph):
        found = visit(start, [])
        if found:
            return found
    return None


def test_no_module_of_the_library_imports_one_that_imports_it_back():
    graph = _graph()
    # The package's __init__ is imported by every "from breakers import x": only the
    # modules among themselves must form no cycle, and __init__ must import no module
    # that imports __init__ back.
    assert graph["breakers.breaker"] >= {"breakers.timestamps"}
    assert "breakers.wire" not in graph["breakers.breaker"]
    assert _cycle(graph) is None


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
