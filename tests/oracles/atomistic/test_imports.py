"""The atomistic modules import each other without cycles, all at module level."""

import ast
from pathlib import Path

import oracles.atomistic

PKG = Path(oracles.atomistic.__file__).parent


def _imports(path: Path) -> tuple[set[str], list[str]]:
    """Package modules imported by ``path`` and those imported inside functions."""
    tree = ast.parse(path.read_text())
    top, nested = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("oracles.atomistic."):
            name = node.module.rsplit(".", 1)[1]
            top.add(name)
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("oracles."):
                    nested.append(f"{path.stem}.{fn.name} imports {node.module}")
    return top, nested


def test_module_graph_is_acyclic_without_function_level_imports():
    graph, nested = {}, []
    for path in PKG.glob("*.py"):
        if path.stem in ("__init__", "cli"):  # the CLI imports oracles lazily by design
            continue
        graph[path.stem], n = _imports(path)
        nested += n
    assert not nested, nested
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for dep in graph.get(node, ()):
            assert state.get(dep) != 1, f"import cycle: {' -> '.join([*stack, node, dep])}"
            if dep not in state:
                visit(dep, [*stack, node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])
    assert "crystal" in graph["md"] and "elastic" not in graph["md"]

