"""The package's modules import one another without a cycle.

The graph is read from the sources with ``ast``, nothing is imported. An
edge ``a -> b`` is an import of ``b`` that runs when ``a`` is imported: a
statement at module level, in a class body or under ``if``/``try``/``with``,
but not one inside a function (run when the function is called) nor under
``if TYPE_CHECKING:`` (never run). ``from pkg import name`` is an edge to the
submodule ``pkg.name`` when there is one, to ``pkg`` otherwise; a package's
own ``__init__`` is not counted as imported by its submodules, since Python
has begun that import before any of them runs.
"""

from __future__ import annotations

import ast
import pathlib
from collections import deque

PACKAGE = pathlib.Path(__file__).parents[1] / "dpgmm_ppl"


def module_names(root):
    """``{dotted name: path}`` of every module under the package directory ``root``."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test):
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_time_statements(body):
    """The import statements of ``body`` that run when the module is imported."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _import_time_statements(node.body)
            yield from _import_time_statements(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                yield from _import_time_statements(block)
            for handler in node.handlers:
                yield from _import_time_statements(handler.body)
        elif isinstance(node, (ast.ClassDef, ast.With, ast.For, ast.While)):
            yield from _import_time_statements(node.body)


def _imported(statement, module, is_package, modules):
    """The modules of ``modules`` that one import statement in ``module`` imports."""
    if isinstance(statement, ast.Import):
        return {alias.name for alias in statement.names if alias.name in modules}
    base = statement.module or ""
    if statement.level:
        anchor = module.split(".") if is_package else module.split(".")[:-1]
        anchor = anchor[: len(anchor) - (statement.level - 1)]
        base = ".".join(anchor + ([base] if base else []))
    targets = set()
    for alias in statement.names:
        submodule = f"{base}.{alias.name}"
        targets.add(submodule if submodule in modules else base)
    return targets & set(modules)


def import_graph(root=PACKAGE):
    """``{module: set of modules it imports at import time}`` for the package at ``root``."""
    modules = module_names(root)
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        graph[name] = set()
        for statement in _import_time_statements(tree.body):
            graph[name] |= _imported(statement, name, is_package, modules)
        graph[name].discard(name)
    return graph


def _strongly_connected(graph):
    """Tarjan's strongly connected components, iteratively."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    components.append(component)
    return components


def _one_cycle(graph, component):
    """A shortest cycle through the first module of ``component``, as a list."""
    start = min(component)
    previous = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for successor in sorted(graph[node] & component):
            if successor == start:
                path = [node]
                while previous[path[-1]] is not None:
                    path.append(previous[path[-1]])
                return path[::-1] + [start]
            if successor not in previous:
                previous[successor] = node
                queue.append(successor)
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover


def import_cycles(graph):
    """One cycle, ``[a, b, ..., a]``, per group of modules that import one another."""
    return [
        _one_cycle(graph, component)
        for component in _strongly_connected(graph)
        if len(component) > 1
    ]


def _write_package(root, sources):
    package = root / "pkg"
    package.mkdir()
    for name, source in {"__init__": "", **sources}.items():
        (package / f"{name}.py").write_text(source)
    return package


def test_a_cycle_is_found_and_named(tmp_path):
    package = _write_package(tmp_path, {
        "a": "from pkg.b import f\n",
        "b": "import numpy\nfrom pkg import c\n",
        "c": "class C:\n    from pkg.a import g\n",
        "d": "from pkg import a\n",
    })
    graph = import_graph(package)
    assert graph == {
        "pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": {"pkg.a"}, "pkg.d": {"pkg.a"},
    }
    assert import_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]


def test_imports_in_functions_and_for_type_checking_are_not_edges(tmp_path):
    package = _write_package(tmp_path, {
        "a": "from typing import TYPE_CHECKING\nfrom pkg import b\n"
             "if TYPE_CHECKING:\n    from pkg.c import C\n",
        "b": "def load():\n    from pkg.a import x\n",
        "c": "from . import a\nfrom .b import load\n",
    })
    graph = import_graph(package)
    assert graph == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": set(), "pkg.c": {"pkg.a", "pkg.b"}}
    assert import_cycles(graph) == []


def test_a_name_from_the_package_itself_is_an_edge_to_its_init(tmp_path):
    package = _write_package(tmp_path, {"a": "from pkg import VERSION\n"})
    (package / "__init__.py").write_text("VERSION = 1\nfrom pkg.a import VERSION as _\n")
    assert import_cycles(import_graph(package)) == [["pkg", "pkg.a", "pkg"]]


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert "dpgmm_ppl.result" in graph and "dpgmm_ppl.persistence" in graph
    cycles = import_cycles(graph)
    assert not cycles, "import cycles among dpgmm_ppl's modules:\n" + "\n".join(
        " -> ".join(cycle) for cycle in cycles
    )


def test_the_result_type_does_not_import_its_readers_at_import_time():
    """The conversion to ArviZ and saving import the result type, which reaches
    them only inside its methods (the circle result -> arviz_io -> ... -> result)."""
    graph = import_graph()
    readers = {"dpgmm_ppl.arviz_io", "dpgmm_ppl.persistence", "dpgmm_ppl.predictive",
               "dpgmm_ppl.diagnostics"}
    reachable, queue = set(), deque(["dpgmm_ppl.result"])
    while queue:
        for successor in graph[queue.popleft()] - reachable:
            reachable.add(successor)
            queue.append(successor)
    assert not reachable & readers, sorted(reachable & readers)
    assert "dpgmm_ppl.result" in graph["dpgmm_ppl.persistence"]
