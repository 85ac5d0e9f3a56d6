"""The house's limits, checked at every landing (ast only, nothing imported): ros/node.py stays wiring
(at most 250 lines), no function in the package passes 60 lines, no import cycle (imports inside functions
and under TYPE_CHECKING count), at most 10 modules at the package root, and every module opens with a line
that says what it holds."""
from __future__ import annotations

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "textregion_ros")
MAX_NODE_LINES, MAX_FUNCTION_LINES, MAX_ROOT_MODULES = 250, 60, 10


def modules():
    """Dotted name -> (path, parsed tree) for every module of the package."""
    out = {}
    for d, _, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(d, f)
                name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                name = name[: -len(".__init__")] if name.endswith(".__init__") else name
                with open(path) as fh:
                    out[name] = (path, ast.parse(fh.read()))
    return out


def imported(name: str, path: str, tree: ast.AST, known) -> set:
    """The package's modules that ``name`` imports anywhere in its file (a from-import of a package's name
    counts as importing the package, or the submodule when that name is one)."""
    package = name.split(".") if path.endswith("__init__.py") else name.split(".")[:-1]
    deps = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            stem = ".".join(base + ([node.module] if node.module else []))
            candidates = [f"{stem}.{a.name}" for a in node.names] + [stem]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        for c in candidates:
            while c and c not in known:
                c = c.rpartition(".")[0]
            if c and c != name:
                deps.add(c)
                break
    return deps


def cycles(graph) -> list:
    found, state = [], {}

    def visit(m, path):
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                found.append(" -> ".join(path[path.index(d):] + [d]))
            elif not state.get(d):
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(graph):
        if not state.get(m):
            visit(m, [m])
    return found


def test_node_py_is_wiring_only():
    with open(os.path.join(PKG, "ros", "node.py")) as f:
        n = sum(1 for _ in f)
    assert n <= MAX_NODE_LINES, f"ros/node.py is {n} lines: move out what is not wiring"


def test_no_function_over_60_lines():
    long = [f"{os.path.relpath(path, ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path, tree in modules().values() for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, long


def test_no_import_cycle():
    mods = modules()
    graph = {name: imported(name, path, tree, mods) for name, (path, tree) in mods.items()}
    assert not cycles(graph), cycles(graph)


def test_the_checker_sees_a_cycle_through_an_import_inside_a_function():
    """The cycle check must fail on a cycle like the one it guards against (a late import counts)."""
    a = ast.parse("from .b import x\n")
    b = ast.parse("def f():\n    from .a import y\n")
    known = {"p", "p.a", "p.b"}
    graph = {"p.a": imported("p.a", "p/a.py", a, known), "p.b": imported("p.b", "p/b.py", b, known)}
    assert cycles(graph) == ["p.a -> p.b -> p.a"]


def test_package_root_has_at_most_10_modules():
    root = sorted(f for f in os.listdir(PKG) if f.endswith(".py"))
    assert len(root) <= MAX_ROOT_MODULES, root


def test_every_module_opens_with_a_line_that_says_what_it_holds():
    bare = [os.path.relpath(path, ROOT) for path, tree in modules().values()
            if os.path.getsize(path) and not (ast.get_docstring(tree) or "").strip()]
    assert not bare, bare
