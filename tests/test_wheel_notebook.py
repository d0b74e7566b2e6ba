"""The package as it is published: the sdist and the wheel `python -m build` makes, the wheel
installed into a fresh Python, and the Colab notebook installing that wheel by itself.

The fresh venv stands in for a Colab runtime: torch, torchvision, ipykernel and ipywidgets 7 (what Colab ships)
are there, enfoads is not. It is made once per test session: torch, torchvision and ipykernel with
what they require are linked in from this Python's install (a Colab image has them preinstalled;
unpacking torch again took a minute), ipywidgets 7 is pip-installed. Installing the wheel's
dependencies into it takes about half a minute, inside the notebook's install cell.
"""
import json
import os
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

import enfoads
from test_notebook import assert_notebook_worked, execute_notebook, notebook_env

pytestmark = pytest.mark.slow  # real processes; `make test-quick` leaves them out

REPO = Path(__file__).resolve().parents[1]
# The Makefile's pin: the torch and torchvision pair Colab also ships together (spandrel needs both).
TORCH_PIN = os.environ.get("TORCH_PIN", "torch==2.14.1 torchvision==0.29.1").split()
COLAB_PREINSTALLED = ("ipykernel>=6.29", "ipywidgets>=7.7,<8")  # Colab manages these; enfoads never installs them
KERNEL = "enfoads-fresh-venv"


def run(cmd, **kw):
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="session")
def dists(tmp_path_factory):
    """``python -m build``: the sdist, then the wheel built from that sdist."""
    folder = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", folder, REPO], timeout=600)
    (wheel,) = folder.glob("enfoads-*.whl")
    (sdist,) = folder.glob("enfoads-*.tar.gz")
    return SimpleNamespace(folder=folder, wheel=wheel, sdist=sdist)


@pytest.fixture(scope="session")
def fresh_python(tmp_path_factory):
    """A new venv with what a Colab runtime already has (torch, ipykernel, ipywidgets 7), without enfoads."""
    venv = tmp_path_factory.mktemp("colab-like") / "venv"
    run([sys.executable, "-m", "venv", venv], timeout=300)
    python = venv / "bin" / "python"
    if link_preinstalled(python, ["torch", "torchvision", "ipykernel"]):
        run([python, "-m", "pip", "install", "-q", *COLAB_PREINSTALLED], timeout=900)  # ipywidgets 7 and its own
    else:
        run([python, "-m", "pip", "install", "-q", *TORCH_PIN, *COLAB_PREINSTALLED], timeout=900)
    return python


def link_preinstalled(python: Path, names: list[str]) -> bool:
    """Give ``python``'s venv these distributions and everything they require, as symlinks to this
    Python's installed files (dist-info included, so pip sees them installed), the way a Colab
    image has them preinstalled: unpacking torch's 5 GB again would take a minute of the suite.
    False (nothing linked) when this Python's torch is not the pinned one."""
    from importlib import metadata

    from packaging.requirements import Requirement

    pins = dict(p.split("==") for p in TORCH_PIN if "==" in p)
    if any(metadata.version(name) != version for name, version in pins.items()):
        return False
    target = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
    todo, seen = list(names), set()
    while todo:
        dist = metadata.distribution(todo.pop())
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
        for file in dist.files or []:
            source = Path(dist.locate_file(file))
            if ".." in file.parts or "__pycache__" in file.parts or not source.is_file():
                continue  # scripts in bin/ and compiled caches are not needed
            dest = target / file
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists():
                dest.symlink_to(source)
    return True


def package_files() -> list[str]:
    """Files of the package in this checkout: tracked plus new ones not ignored (other work in progress)."""
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "enfoads"],
                                cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        listed = [p.relative_to(REPO).as_posix() for p in (REPO / "enfoads").rglob("*") if p.is_file()]
    return sorted(f for f in listed if (REPO / f).is_file() and "__pycache__" not in f and not f.endswith(".pyc"))


def test_sdist_and_wheel_carry_the_package_its_data_and_its_metadata(dists):
    wheel = zipfile.ZipFile(dists.wheel)
    in_wheel = set(wheel.namelist())
    with tarfile.open(dists.sdist) as tar:
        root = tar.getnames()[0].split("/")[0]
        in_sdist = {n[len(root) + 1:] for n in tar.getnames()}
    files = package_files()
    data = [f for f in files if not f.endswith(".py")]
    assert "enfoads/data/default_avatar.png" in data
    assert [f for f in files if f not in in_wheel] == [], "missing from the wheel"
    assert [f for f in files if f not in in_sdist] == [], "missing from the sdist"
    for f in ("pyproject.toml", "setup.py", "README.md", "MANIFEST.in"):
        assert f in in_sdist, f

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    info = f"enfoads-{enfoads.__version__}.dist-info"
    assert dists.wheel.name == f"enfoads-{enfoads.__version__}-py3-none-any.whl"
    metadata = wheel.read(f"{info}/METADATA").decode()
    headers = [line.split(": ", 1) for line in metadata.split("\n\n", 1)[0].splitlines() if ": " in line]
    assert ["Version", enfoads.__version__] in headers and ["Name", "enfoads"] in headers
    requires = {v for k, v in headers if k == "Requires-Dist" and "extra ==" not in v}
    assert {r.replace(" ", "") for r in requires} == {d.replace(" ", "") for d in project["dependencies"]}
    assert {v for k, v in headers if k == "Provides-Extra"} == set(project["optional-dependencies"])
    assert "enfoads = enfoads.cli:main" in wheel.read(f"{info}/entry_points.txt").decode()
    assert "# Enfoads" in metadata  # the README as the long description


def test_notebook_installs_the_wheel_into_a_fresh_python_and_serves(dists, fresh_python, models_dir, tmp_path, monkeypatch):
    python = fresh_python
    # Not preinstalled, whichever test ran first in this session.
    subprocess.run([python, "-m", "pip", "uninstall", "-y", "-q", "enfoads"], capture_output=True)
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # a checkout on the path is not an install
    assert subprocess.run([python, "-c", "import enfoads"], capture_output=True, cwd=tmp_path, env=clean).returncode != 0
    # The kernel runs on the fresh venv's Python.
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fresh venv", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("PATH", f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    for var in ("PYTHONPATH", "VIRTUAL_ENV", "ENFOADS_SOURCE", "ENFOADS_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    env = notebook_env(tmp_path, models_dir)
    env["ENFOADS_WHEEL_DIRS"] = str(dists.folder)  # stands in for /content, where a user uploads the wheel

    started = time.perf_counter()
    # The notebook is opened from a folder that is not a checkout, so only the wheel can serve.
    nb, outputs, check = execute_notebook(tmp_path / "content" / "notebooks", env, monkeypatch, kernel_name=KERNEL, timeout=600)
    elapsed = time.perf_counter() - started

    assert f"installing enfoads from the newest wheel in {dists.folder}: {dists.wheel}[colab]" in outputs
    assert_notebook_worked(nb, outputs, check, tmp_path / "data", tmp_path / "data" / "logs" / "server.pid")
    assert check["ipywidgets"].startswith("7."), "the UI must work with the ipywidgets Colab ships"
    where = run([python, "-c", "import enfoads; print(enfoads.__file__)"], cwd=tmp_path).stdout.strip()
    assert where.startswith(str(python.parents[1])), where  # installed into the fresh venv, not the checkout
    print(f"notebook with the wheel install executed in {elapsed:.1f} s", file=sys.stderr)


def test_the_wheel_gives_a_working_enfoads_command(dists, fresh_python, models_dir, tmp_path):
    python = fresh_python
    run([python, "-m", "pip", "install", "-q", dists.wheel], timeout=900)  # its dependencies too (present after the notebook test)
    command = python.parent / "enfoads"
    env = {**os.environ, "ENFOADS_MODELS_DIR": str(models_dir), "ENFOADS_DATA_DIR": str(tmp_path), "PYTHONPATH": ""}
    assert run([command, "--version"], env=env).stdout.strip().endswith(enfoads.__version__)
    doctor = run([command, "doctor", "--profile", "tiny", "--gpu-budget-gb", "1"], env=env, timeout=300, cwd=tmp_path)
    assert "profile        tiny" in doctor.stdout
    code = ("import importlib.metadata as m, enfoads, enfoads.services.avatars as a; "
            "print(m.version('enfoads'), a.packaged_default_avatar().is_file(), enfoads.__file__)")
    version, data_ok, where = run([python, "-c", code], cwd=tmp_path, env=env).stdout.split()
    assert (version, data_ok) == (enfoads.__version__, "True")  # package data read at run time is installed
    assert where.startswith(str(python.parents[1]))
