"""The packages' import structure, read from the source with ``ast`` (nothing is imported).

- No module-level import cycle anywhere in ``pacsnode``: a cycle makes import order matter
  and usually means two modules share a concept that belongs in a third.
- ``peer`` and ``storage`` never import ``pacsnode.node``, and ``storage`` never imports
  ``pacsnode.peer`` (the layering the README describes), not even inside a function.
- LMDB stays behind the index package.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("node", "peer", "storage")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["pacsnode", *parts])


def _sources() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
    }


SOURCES = _sources()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(body: list[ast.stmt], deferred: bool) -> Iterator[ast.stmt]:
    """Statements that may run: those run at import, and with ``deferred`` those in function
    bodies too; never a ``TYPE_CHECKING`` block (only a type checker reads it)."""
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not deferred:
            continue
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from _statements(node.orelse, deferred)
            continue
        yield node
        nested = [
            *getattr(node, "body", []),
            *getattr(node, "orelse", []),
            *getattr(node, "finalbody", []),
        ]
        for handler in getattr(node, "handlers", []):
            nested.extend(handler.body)
        yield from _statements([n for n in nested if isinstance(n, ast.stmt)], deferred)


def _imported(module: str, node: ast.stmt) -> Iterator[str]:
    """The names an import statement imports, absolute; ``from X import Y`` yields ``X.Y``
    when that is a module of ours, else ``X``."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: counted from the module's own package
            anchor = module.split(".")
            if SOURCES[module].name != "__init__.py":
                anchor.pop()
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            candidate = f"{base}.{alias.name}"
            yield candidate if candidate in SOURCES else base


def _tree(module: str) -> ast.Module:
    return ast.parse(SOURCES[module].read_text(encoding="utf-8"))


def _graph(deferred: bool) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module in SOURCES:
        statements = _statements(_tree(module).body, deferred)
        graph[module] = {
            name
            for node in statements
            for name in _imported(module, node)
            if name in SOURCES and name != module
        }
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _all_imports(module: str) -> set[str]:
    """Every import in the file, at any depth (functions and TYPE_CHECKING included)."""
    names: set[str] = set()
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names.update(_imported(module, node))
    return names


def _under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_sources_are_found() -> None:
    assert "pacsnode.node.rest.app" in SOURCES and "pacsnode.storage.store" in SOURCES


def test_no_module_level_import_cycle() -> None:
    assert _cycles(_graph(deferred=False)) == []


def test_no_import_cycle_through_deferred_imports() -> None:
    # An import moved into a function hides a cycle from the interpreter, not from readers.
    assert _cycles(_graph(deferred=True)) == []


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("pacsnode.peer", "pacsnode.node"),
        ("pacsnode.storage", "pacsnode.node"),
        ("pacsnode.storage", "pacsnode.peer"),
    ],
)
def test_layering(package: str, forbidden: str) -> None:
    offenders = {
        module: sorted(name for name in _all_imports(module) if _under(name, forbidden))
        for module in SOURCES
        if _under(module, package)
    }
    assert {module: names for module, names in offenders.items() if names} == {}


def test_lmdb_only_in_the_index_package() -> None:
    offenders = [
        module
        for module in SOURCES
        if not _under(module, "pacsnode.node.index")
        and any(_under(name, "lmdb") for name in _all_imports(module))
    ]
    assert offenders == []


_INDEX_INTERNALS = ("environment", "writer", "reads", "updates", "lookups", "front")


def test_transactions_stay_inside_the_index_package() -> None:
    """The rest of the node goes through the front door (``pacsnode.node.index.Index``)
    and plain records, never through the transaction layer or its helpers."""
    internals = [f"pacsnode.node.index.{name}" for name in _INDEX_INTERNALS]
    offenders = {
        module: sorted(
            name for name in _all_imports(module) if any(_under(name, i) for i in internals)
        )
        for module in SOURCES
        if not _under(module, "pacsnode.node.index")
    }
    assert {module: names for module, names in offenders.items() if names} == {}
