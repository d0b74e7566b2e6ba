"""A fresh Python that has what a Colab GPU runtime ships, at Colab's own versions, and no enfoads.

A Colab user's ``pip install enfoads[colab]`` keeps every preinstalled package that satisfies a
requirement: Colab's diffusers, transformers, huggingface_hub, numpy, Pillow... are what the product
really runs with there, not the newest releases this checkout's venv resolves to. So the venv gets,
for every distribution the wheel requires that Colab ships, Colab's version (``FREEZE``, Colab's own
``pip freeze``), installed from the package index; ipykernel and ipywidgets at Colab's versions too.
torch and torchvision are the exception: they are linked in from this Python (this machine's pinned
pair, with the CUDA libraries they load), because unpacking another 5 GB build would take minutes.

Colab runs Python 3.13; a pin pip cannot install on this Python is left to pip and reported.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

FREEZE = Path(__file__).parent / "data" / "colab" / "pip-freeze.gpu.txt"
#: Linked from this Python instead of installed at Colab's version (see the module's docstring).
LINKED = ("torch", "torchvision")
#: torch's own CUDA libraries: they come with the linked torch (Colab's names end in -cu12).
_TORCH_OWN = re.compile(r"^(nvidia-|cuda-|triton$)")
# How pip names a pin it cannot satisfy on this Python (no release for it, or one that needs a newer Python).
_NOT_INSTALLABLE = re.compile(r"(?:No matching distribution found for|Cannot install) ([A-Za-z0-9._-]+)==")


def colab_versions(freeze: Path = FREEZE) -> dict[str, str]:
    """Canonical name -> version of every package Colab's freeze lists from an index (local labels
    such as ``+cu128`` dropped; packages installed from a URL or a file are left out)."""
    versions = {}
    for line in freeze.read_text().splitlines():
        if line.startswith("#") or " @ " in line or "==" not in line:
            continue
        name, version = line.split("==", 1)
        versions[canonicalize_name(name)] = version.split("+", 1)[0]
    return versions


def requirement_closure(roots: dict[str, tuple[str, ...]]) -> list[metadata.Distribution]:
    """The installed distributions ``roots`` (name -> extras) require, transitively, in this Python."""
    todo = [(name, tuple(extras)) for name, extras in roots.items()]
    seen: dict[str, metadata.Distribution] = {}
    walked = set()
    while todo:
        name, extras = todo.pop()
        dist = metadata.distribution(name)
        key = canonicalize_name(dist.metadata["Name"])
        if (key, extras) in walked:
            continue
        walked.add((key, extras))
        seen[key] = dist
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *extras)):
                todo.append((req.name, tuple(sorted(req.extras))))
    return list(seen.values())


@dataclass
class ColabLikePython:
    python: Path
    pins: dict[str, str]  # what was installed at Colab's version
    not_installable: list[str] = field(default_factory=list)  # Colab pins pip cannot install on this Python
    for_torch: list[str] = field(default_factory=list)  # Colab pins too old for the linked torch


def run(cmd, **kw):
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def make_colab_like_python(venv: Path, *, package: str = "enfoads", extras: tuple[str, ...] = ("colab",),
                           freeze: Path = FREEZE) -> ColabLikePython:
    """A new venv at ``venv`` with Colab's versions of what ``package[extras]`` requires, Colab's
    ipykernel and ipywidgets, and this Python's torch and torchvision linked in."""
    colab = colab_versions(freeze)
    wanted = {canonicalize_name(d.metadata["Name"]) for d in requirement_closure({package: extras})}
    wanted |= {"ipykernel", "ipywidgets"}
    pins = {n: colab[n] for n in sorted(wanted) if n in colab and n not in LINKED and not _TORCH_OWN.match(n)
            and n != canonicalize_name(package)}
    # Whatever else pip picks to complete them is held to Colab's version too, where Colab has one.
    constraints = {n: v for n, v in colab.items() if n not in LINKED and not _TORCH_OWN.match(n)}
    constraints.update({n: metadata.version(n) for n in LINKED})  # pip must not swap the linked build
    # A Colab version the linked torch cannot run with (Colab's torch is older) is linked from here too.
    too_old = [n for n, spec in _linked_requirements().items() if n in pins
               and not spec.contains(pins[n], prereleases=True)]
    for_torch = [f"{n}=={pins.pop(n)}" for n in too_old]
    for n in too_old:
        del constraints[n]

    run([sys.executable, "-m", "venv", venv], timeout=300)
    python = venv / "bin" / "python"
    made = ColabLikePython(python, dict(pins), for_torch=for_torch)
    if "pip" in colab:  # the notebook's install cell runs Colab's pip
        run([python, "-m", "pip", "install", "-q", f"pip=={colab['pip']}"], timeout=300)
    constraints_file = venv / "colab-constraints.txt"
    # torch first, so that nothing pinned pulls in another build of it; what Colab ships of what torch
    # requires (filelock, sympy, jinja2...) comes with the pins instead.
    link_preinstalled(python, list(LINKED), skip=set(pins))
    for _ in range(8):
        constraints_file.write_text("".join(f"{n}=={v}\n" for n, v in sorted(constraints.items())))
        out = subprocess.run([python, "-m", "pip", "install", "-q", "-c", constraints_file,
                              *(f"{n}=={v}" for n, v in made.pins.items())], capture_output=True, text=True,
                             timeout=900)
        if out.returncode == 0:
            break
        missing = _NOT_INSTALLABLE.search(out.stderr)
        assert missing, f"installing Colab's versions failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        name = canonicalize_name(missing.group(1))
        made.not_installable.append(f"{name}=={constraints.pop(name, None) or made.pins.get(name)}")
        made.pins.pop(name, None)
    else:
        raise AssertionError(f"too many Colab pins not installable on this Python: {made.not_installable}")
    return made


def _linked_requirements() -> dict[str, SpecifierSet]:
    """What the linked distributions require, name -> the versions they accept."""
    needs: dict[str, SpecifierSet] = {}
    for name in LINKED:
        for line in metadata.distribution(name).requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                key = canonicalize_name(req.name)
                needs[key] = needs.get(key, SpecifierSet()) & req.specifier
    return needs


def link_preinstalled(python: Path, names: list[str], *, skip: set[str] = frozenset()) -> None:
    """Give ``python``'s venv these distributions and everything they require that it lacks (but
    those in ``skip``), as symlinks to this Python's installed files (dist-info included, so pip sees
    them installed), the way a Colab image has them preinstalled."""
    target = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
    present = {canonicalize_name(p.name.split("-", 1)[0]) for p in target.glob("*.dist-info")}
    for dist in requirement_closure({name: () for name in names}):
        name = canonicalize_name(dist.metadata["Name"])
        if name in present or name in skip:
            continue
        for file in dist.files or []:
            source = Path(dist.locate_file(file))
            if ".." in file.parts or "__pycache__" in file.parts or not source.is_file():
                continue  # scripts in bin/ and compiled caches are not needed
            dest = target / file
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists():
                dest.symlink_to(source)


def installed_versions(python: Path) -> dict[str, str]:
    """Canonical name -> version of what ``python`` has installed."""
    code = ("import importlib.metadata as m, json; "
            "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))")
    return {canonicalize_name(n): v for n, v in json.loads(run([python, "-c", code]).stdout).items()}
