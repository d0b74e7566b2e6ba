"""The package's layout shows its layers: no import circle, no module over 500 lines, every module in the README."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "enfoads"
README = PACKAGE.parent / "README.md"
MAX_LINES = 500


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The enfoads modules ``name`` imports, anywhere in it (a function-level import is an edge too)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    edges = {name: imports_of(name, path, known) for name, path in mods.items()}
    # A package's __init__ importing its own submodules is how packages are made, not a circle.
    return {name: {t for t in targets if not t.startswith(name + ".")} for name, targets in edges.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle():
    assert cycles(graph()) == []


def test_no_module_over_500_lines():
    long = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert {name: n for name, n in long.items() if n > MAX_LINES} == {}


def test_the_readme_module_table_lists_every_module():
    listed = set(re.findall(r"^\| `(enfoads(?:\.\w+)*)` \|", README.read_text(), re.M))
    assert set(modules()) - listed == set(), "modules missing from the README's table"
    assert listed - set(modules()) == set(), "the README lists modules that do not exist"


@pytest.mark.parametrize("layer,forbidden", [
    ("enfoads.work", ("enfoads.services", "enfoads.web", "enfoads.cli", "enfoads.colab", "enfoads.engine")),
    ("enfoads.models", ("enfoads.services", "enfoads.web", "enfoads.cli", "enfoads.colab", "enfoads.engine")),
    ("enfoads.services", ("enfoads.web", "enfoads.cli", "enfoads.colab", "enfoads.engine")),
    ("enfoads.cluster", ("enfoads.web", "enfoads.cli", "enfoads.colab", "enfoads.engine")),
    ("enfoads.web", ("enfoads.cli", "enfoads.colab")),
    ("enfoads.cli", ("enfoads.colab",)),
])
def test_layers_only_import_downwards(layer, forbidden):
    wrong = {f"{name} -> {t}" for name, targets in graph().items() if name == layer or name.startswith(layer + ".")
             for t in targets if t.startswith(forbidden) and not t.startswith(layer)}
    assert wrong == set()


def test_test_helpers_stay_out_of_production_modules():
    production = {n: t for n, t in graph().items() if not n.startswith(("enfoads.testing", "enfoads.models.tiny"))}
    # The tiny kit is a product feature (``enfoads build-tiny``, the CPU demo); the fake hub and replicas are not.
    wrong = {f"{n} -> {t}" for n, targets in production.items() for t in targets if t.startswith("enfoads.testing")}
    assert wrong == set()
