"""The package as it is published: the sdist and the wheel `python -m build` makes, the wheel
installed into a fresh Python, and the Colab notebook installing that wheel by itself.

The fresh venv stands in for a Colab GPU runtime (``colab_like``): what Colab ships of the wheel's
dependencies, at Colab's own versions (its recorded ``pip freeze``), ipykernel and ipywidgets 7 as
Colab has them, this Python's torch and torchvision linked in; enfoads is not there. It is made once
per test session. The notebook's install cell then adds only what Colab lacks and must keep the
rest as Colab has it: the model libraries the product runs with there are Colab's, not the newest.
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
from colab_like import colab_versions, installed_versions, make_colab_like_python, run
from test_notebook import assert_notebook_worked, execute_notebook, notebook_env

pytestmark = pytest.mark.slow  # real processes; `make test-quick` leaves them out

REPO = Path(__file__).resolve().parents[1]
KERNEL = "enfoads-fresh-venv"
#: What the product runs with on Colab: the notebook's install must leave Colab's versions of these.
COLAB_KEPT = ("diffusers", "transformers", "huggingface-hub", "accelerate", "safetensors", "tokenizers", "numpy",
              "pillow", "scipy", "opencv-python-headless", "pydantic", "flask", "ipywidgets", "ipykernel")


@pytest.fixture(scope="session")
def dists(tmp_path_factory):
    """``python -m build``: the sdist, then the wheel built from that sdist."""
    folder = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", folder, REPO], timeout=600)
    (wheel,) = folder.glob("enfoads-*.whl")
    (sdist,) = folder.glob("enfoads-*.tar.gz")
    return SimpleNamespace(folder=folder, wheel=wheel, sdist=sdist)


@pytest.fixture(scope="session")
def colab_like(tmp_path_factory):
    """A new venv with what a Colab GPU runtime has of the wheel's needs, at Colab's versions; no enfoads."""
    made = make_colab_like_python(tmp_path_factory.mktemp("colab-like") / "venv")
    print(f"Colab's versions installed: {len(made.pins)}; not installable on this Python: {made.not_installable}; "
          f"too old for the linked torch: {made.for_torch}", file=sys.stderr)
    return made


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


def test_notebook_installs_the_wheel_into_a_fresh_python_and_serves(dists, colab_like, models_dir, tmp_path,
                                                                     monkeypatch):
    python = colab_like.python
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
    # pip kept Colab's versions of what the product runs with: the images, faces and speech above were made
    # with Colab's diffusers, transformers, huggingface_hub, numpy...
    colab, now = colab_versions(), installed_versions(python)
    kept = {n: (colab[n], now.get(n)) for n in COLAB_KEPT if n in colab_like.pins}
    replaced = {n: v for n, v in kept.items() if v[0] != v[1]}
    assert not replaced, f"the install replaced Colab's versions (Colab's, now): {replaced}"
    assert kept.keys() >= {"diffusers", "transformers", "huggingface-hub", "numpy", "ipywidgets"}
    changed = sorted(f"{n} {v}->{now[n]}" for n, v in colab_like.pins.items() if now.get(n) != v)
    print(f"Colab packages the install changed: {changed or 'none'}", file=sys.stderr)
    where = run([python, "-c", "import enfoads; print(enfoads.__file__)"], cwd=tmp_path).stdout.strip()
    assert where.startswith(str(python.parents[1])), where  # installed into the fresh venv, not the checkout
    print(f"notebook with the wheel install executed in {elapsed:.1f} s", file=sys.stderr)


def test_the_wheel_gives_a_working_enfoads_command(dists, colab_like, models_dir, tmp_path):
    python = colab_like.python
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
