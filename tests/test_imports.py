"""The package's modules import one another without a cycle: the import graph, read from the source with `ast`."""

from __future__ import annotations

import ast
from pathlib import Path

import mnistbench

PACKAGE_DIR = Path(mnistbench.__file__).parent


def module_names() -> dict[str, Path]:
    """Every module of the package by dotted name, e.g. "mnistbench.data.prepare" (a package by its __init__)."""
    names = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imported_modules(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The package's modules that one import statement names: `from a import b` names a.b when b is a module."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names} & known
    base = module if is_package else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        base = base.rpartition(".")[0]
    source = ".".join(part for part in (base if node.level else "", node.module or "") if part)
    named = {f"{source}.{alias.name}" for alias in node.names} & known
    return named or ({source} & known)


def top_level_statements(tree: ast.Module) -> list[ast.stmt]:
    """Statements that run when the module is imported: its body, and the bodies of its top-level if/try blocks."""
    found, todo = [], list(tree.body)
    while todo:
        statement = todo.pop()
        found.append(statement)
        if isinstance(statement, (ast.If, ast.Try)):
            todo += statement.body + statement.orelse + getattr(statement, "finalbody", [])
            todo += [line for handler in getattr(statement, "handlers", []) for line in handler.body]
    return found


def import_graph(module_level_only: bool = True) -> dict[str, set[str]]:
    """module -> the package's modules it imports; with module_level_only=False, imports inside functions too."""
    modules = module_names()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        statements = top_level_statements(tree) if module_level_only else list(ast.walk(tree))
        graph[name] = set().union(*(
            imported_modules(node, name, path.name == "__init__.py", set(modules))
            for node in statements if isinstance(node, (ast.Import, ast.ImportFrom))
        )) - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = lowlink[module] = len(index)
        stack.append(module)
        for imported in sorted(graph[module]):
            if imported not in index:
                visit(imported)
                lowlink[module] = min(lowlink[module], lowlink[imported])
            elif imported in stack:
                lowlink[module] = min(lowlink[module], index[imported])
        if lowlink[module] == index[module]:
            component = []
            while not component or component[-1] != module:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_the_graph_sees_the_imports_it_must_see():
    graph = import_graph()
    assert "mnistbench.errors" in graph["mnistbench.io"]
    assert "mnistbench.data.checksums" in graph["mnistbench.data.prepare"]  # `from mnistbench.data import checksums`
    assert "mnistbench.stages" not in graph["mnistbench.cli"]  # imported inside functions only
    assert "mnistbench.stages" in import_graph(module_level_only=False)["mnistbench.cli"]


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_of_the_package_imports_another_in_a_cycle():
    assert cycles(import_graph()) == []


def test_no_cycle_hides_in_imports_inside_functions_either():
    assert cycles(import_graph(module_level_only=False)) == []
