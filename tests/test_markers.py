"""`make test-quick` stays quick: every test that starts a real process (an `enfoads serve`, a
notebook kernel, chromium, a Ray cluster) is marked `slow`, by itself or through its module.

Read from the test files' source: a function starts processes when it calls one of the starters
below, or takes a fixture (of its own module or of conftest.py) that does."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
STARTERS = {"start_server", "execute_notebook", "sync_playwright"}


def starts_processes(node: ast.AST) -> bool:
    for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
        # Bare names only: the helpers as the tests import them (colab.start_server is another thing).
        if isinstance(call.func, ast.Name) and call.func.id in STARTERS:
            return True
        # Settings(..., ray="local"): the engine starts a Ray cluster.
        if any(k.arg == "ray" and isinstance(k.value, ast.Constant) and k.value.value not in ("off", "", None)
               for k in call.keywords):
            return True
    return False


def is_slow_mark(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Attribute) and n.attr == "slow" for n in ast.walk(node))


def functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def starting_fixtures(funcs: dict[str, ast.FunctionDef], inherited: set[str]) -> set[str]:
    """Fixtures (any function here, by name) that start processes, directly or through another."""
    found = set(inherited)
    changed = True
    while changed:
        changed = False
        for name, fn in funcs.items():
            if name in found or name.startswith("test_"):
                continue
            if starts_processes(fn) or any(a.arg in found for a in fn.args.args):
                found.add(name)
                changed = True
    return found


def unmarked_starters(path: Path, inherited: set[str]) -> list[str]:
    tree = ast.parse(path.read_text())
    module_slow = any(isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in n.targets)
                      and is_slow_mark(n.value) for n in tree.body)
    if module_slow:
        return []
    funcs = functions(tree)
    fixtures = starting_fixtures(funcs, inherited)
    return [name for name, fn in funcs.items() if name.startswith("test_")
            and (starts_processes(fn) or any(a.arg in fixtures for a in fn.args.args))
            and not any(is_slow_mark(d) for d in fn.decorator_list)]


def conftest_starters() -> set[str]:
    return starting_fixtures(functions(ast.parse((TESTS / "conftest.py").read_text())), set())


def test_every_test_that_starts_a_real_process_is_marked_slow():
    inherited = conftest_starters()
    unmarked = {p.name: names for p in sorted(TESTS.glob("test_*.py")) if (names := unmarked_starters(p, inherited))}
    assert unmarked == {}, "mark these @pytest.mark.slow (or the module: pytestmark = pytest.mark.slow)"


def test_the_check_sees_a_server_fixture_and_a_ray_engine(tmp_path):
    sample = tmp_path / "test_sample.py"
    sample.write_text(
        "import pytest\n"
        "@pytest.fixture\n"
        "def server(models_dir):\n    return start_server(models_dir, 'd')\n"
        "@pytest.fixture\n"
        "def logged_in(server):\n    return server\n"
        "def test_through_two_fixtures(logged_in):\n    pass\n"
        "@pytest.mark.slow\n"
        "def test_marked(server):\n    pass\n"
        "def test_ray():\n    build_engine(Settings(ray='local'))\n"
        "def test_no_ray():\n    build_engine(Settings(ray='off'))\n"
        "def test_in_process(client):\n    pass\n")
    assert unmarked_starters(sample, set()) == ["test_through_two_fixtures", "test_ray"]
    sample.write_text("import pytest\npytestmark = pytest.mark.slow\ndef test_x():\n    start_server()\n")
    assert unmarked_starters(sample, set()) == []


@pytest.mark.parametrize("name", sorted(STARTERS))
def test_the_starters_still_exist(name):
    # A renamed helper would make the check above pass vacuously.
    assert any(name in p.read_text() for p in TESTS.glob("*.py") if p.name != "test_markers.py"), name


def test_every_collected_test_has_its_own_node_id(request):
    """``--lf``, ``--deselect`` and pytest-xdist know a test by its node id: two items under one id
    are one test to them (pytest-xdist runs it once). conftest.py mends the ids schemathesis gives;
    its fuzz module is collected here on its own, so the check holds whatever this run selected."""
    fuzz = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           str(TESTS / "test_fuzz.py")], capture_output=True, text=True, cwd=TESTS.parent, timeout=120)
    assert fuzz.returncode == 0, fuzz.stdout[-2000:] + fuzz.stderr[-2000:]
    fuzz_ids = [line for line in fuzz.stdout.splitlines() if "::test_openapi_conformance" in line]
    assert len(fuzz_ids) > 10 and all(i.endswith("]") for i in fuzz_ids), fuzz_ids[:3]  # [METHOD /path]
    for ids in (fuzz_ids, [item.nodeid for item in request.session.items]):
        repeated = sorted(i for i, n in Counter(ids).items() if n > 1)
        assert not repeated, repeated[:5]


def test_each_test_process_runs_torch_on_one_thread():
    """conftest pins one intra-op thread (OMP_NUM_THREADS) before torch loads; every process a test
    starts inherits it. Without it the workers' and servers' thread pools oversubscribe the cores."""
    import torch

    assert os.environ["OMP_NUM_THREADS"] == "1"
    assert torch.get_num_threads() == 1
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"
