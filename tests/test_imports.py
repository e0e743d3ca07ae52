"""The package's import graph, every import counted (top level and inside functions; `if
TYPE_CHECKING:` blocks aside, since they never run): no circle, and nothing runs back up the layers
(testbed/ is the core; sim/ and live/, installed as testbed.sim and testbed.live, the interpreters,
which never import each other; cli/, testbed.cli, the composition root)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from testbed.scenario import REPO_ROOT

PACKAGES = {"testbed": "testbed", "sim": "testbed.sim", "live": "testbed.live", "cli": "testbed.cli"}
"""Repository folder -> the package it installs as (pyproject.toml's package-dir)."""


def layer(module: str) -> tuple[int, str]:
    """(layer, part): the core 0, the interpreters 1 (sim, live), the command line 2."""
    part = module.split(".")[1] if module.startswith(("testbed.sim", "testbed.live", "testbed.cli")) else "core"
    return {"core": 0, "sim": 1, "live": 1, "cli": 2}.get(part, 0), part


def _module(path: Path, folder: Path, package: str) -> str:
    parts = list(path.relative_to(folder).with_suffix("").parts)
    parts = parts[:-1] if parts[-1] == "__init__" else parts
    return ".".join([package, *parts])


def import_graph(root: Path, packages: dict[str, str] | None = None) -> dict[str, set[str]]:
    """module -> the package modules it imports (a `from pkg import name` counts `pkg.name` when that is
    a module, else `pkg`)."""
    packages = PACKAGES if packages is None else packages
    files = {_module(p, root / folder, pkg): p for folder, pkg in packages.items()
             for p in sorted((root / folder).rglob("*.py"))}

    def known(name: str) -> str | None:
        parts = name.split(".")
        return next((".".join(parts[:k]) for k in range(len(parts), 0, -1) if ".".join(parts[:k]) in files), None)

    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                node.body = []
        out: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                out |= {m for a in node.names if (m := known(a.name))}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
                    base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
                for a in node.names:
                    m = f"{base}.{a.name}" if f"{base}.{a.name}" in files else known(base)
                    if m:
                        out.add(m)
        out.discard(mod)
        graph[mod] = out
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The graph's strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def upward(graph: dict[str, set[str]]) -> list[str]:
    """Imports that run back up the layers, or across from one interpreter into the other."""
    bad = []
    for mod, out in graph.items():
        for dep in out:
            (la, a), (lb, b) = layer(mod), layer(dep)
            if lb > la or (a != b and la == lb == 1):
                bad.append(f"{mod} -> {dep}")
    return sorted(bad)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(REPO_ROOT)


def test_the_graph_finds_a_circle_hidden_in_a_function(tmp_path):
    """The check itself: a circle closed by an in-function import is found, a TYPE_CHECKING one is not."""
    pkg = tmp_path / "testbed"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from testbed.b import f\n")
    (pkg / "b.py").write_text("def f():\n    from testbed import a\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from testbed.a import f\n")
    (pkg / "d.py").write_text("from . import c\n")
    g = import_graph(tmp_path, {"testbed": "testbed"})
    assert cycles(g) == [["testbed.a", "testbed.b"]]
    assert g["testbed.c"] == set() and g["testbed.d"] == {"testbed.c"}


def test_no_import_circle(graph):
    assert not cycles(graph), cycles(graph)


def test_nothing_imports_back_up_the_layers(graph):
    assert not upward(graph), upward(graph)
