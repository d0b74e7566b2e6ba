"""The tiny-model kit: random-weight models of every real architecture.

Each tiny model is saved in the same on-disk format as the real one and is
loaded by the same loader (`enfoads.models.loaders`), so the whole product runs
offline on any machine with ``ENFOADS_PROFILE=tiny``. Outputs are noise.

Builds are deterministic (seeded), atomic (written to a temporary sibling
folder, then renamed) and reused: a folder with a matching marker file is
never rebuilt.
"""
from __future__ import annotations

import importlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# Bump when any recipe changes, so stale kits are rebuilt.
TINY_KIT_VERSION = 1
MARKER_FILE = "enfoads-tiny.json"
TINY_SUBDIR = "enfoads-tiny"


@dataclass(frozen=True)
class TinyRecipe:
    name: str
    module: str  # module holding the builder, ``function(folder: Path, seed: int) -> None``
    description: str
    function: str = "build_into"

    def builder(self) -> Callable[[Path, int], None]:
        return getattr(importlib.import_module(self.module), self.function)


RECIPES: dict[str, TinyRecipe] = {
    r.name: r
    for r in (
        TinyRecipe(
            "tiny-sdxl-lightning",
            "enfoads.models.tiny.sdxl",
            "SDXL pipeline folder (fp16 variant) + Lightning-format UNet files",
        ),
        TinyRecipe(
            "tiny-whisper",
            "enfoads.models.tiny.whisper",
            "CTranslate2 Whisper with tokenizer, for faster-whisper",
        ),
        TinyRecipe(
            "tiny-buffalo_l",
            "enfoads.models.tiny.faces",
            "InsightFace buffalo_l ONNX pack + inswapper_128.onnx",
        ),
        TinyRecipe(
            "tiny-piper",
            "enfoads.models.tiny.piper",
            "Piper voice: ONNX graph with Piper's inputs and outputs + JSON config, for piper-tts",
        ),
        TinyRecipe(
            "tiny-upscalers",
            "enfoads.models.tiny.upscalers",
            "Real-ESRGAN x4plus (RRDBNet) and general-x4v3 (SRVGGNetCompact) .pth files, for spandrel",
        ),
        TinyRecipe(
            "tiny-gfpgan",
            "enfoads.models.tiny.upscalers",
            "GFPGAN v1.4: the full architecture with random weights (fp16 .pth, 174 MB), for spandrel",
            function="build_gfpgan_into",
        ),
        TinyRecipe(
            "tiny-musetalk",
            "enfoads.models.tiny.musetalk",
            "MuseTalk 1.5 layout: UNet .pth + musetalk.json, sd-vae folder, whisper folder (transformers)",
        ),
    )
}


def tiny_root(models_dir: Path) -> Path:
    return Path(models_dir) / TINY_SUBDIR


def tiny_path(models_dir: Path, name: str) -> Path:
    if name not in RECIPES:
        raise KeyError(f"unknown tiny model {name!r}; known: {sorted(RECIPES)}")
    return tiny_root(models_dir) / name


def is_built(folder: Path, name: str, seed: int = 0) -> bool:
    marker = Path(folder) / MARKER_FILE
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return info.get("name") == name and info.get("version") == TINY_KIT_VERSION and info.get("seed") == seed


def ensure_tiny(models_dir: Path, name: str, seed: int = 0) -> Path:
    """Return the folder of tiny model ``name``, building it first if needed."""
    dest = tiny_path(models_dir, name)
    if is_built(dest, name, seed):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=dest.parent))
    try:
        RECIPES[name].builder()(work, seed)
        (work / MARKER_FILE).write_text(
            json.dumps(
                {
                    "name": name,
                    "version": TINY_KIT_VERSION,
                    "seed": seed,
                    "build_seconds": round(time.perf_counter() - started, 3),
                }
            )
        )
        if dest.exists():
            # A stale or half-written kit: replace it.
            shutil.rmtree(dest)
        try:
            os.replace(work, dest)
        except OSError:
            # Another process finished the same build first; keep theirs.
            if not is_built(dest, name, seed):
                raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return dest


def build_tiny_kit(models_dir: Path, seed: int = 0) -> dict[str, Path]:
    """Build (or reuse) every tiny model; returns name -> folder."""
    return {name: ensure_tiny(models_dir, name, seed) for name in RECIPES}


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
