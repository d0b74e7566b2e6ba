"""What every model family answers: its files, what a loader would miss, how to load and measure it.

A family is the kind of files a catalogue entry's ``loader`` names (an SDXL
pipeline with Lightning UNets, a diffusers folder, an InsightFace pack, an
ONNX swapper, a CTranslate2 Whisper, the espeak-ng program, plain files).
The registry asks it where the loader's inputs are (real or tiny), the
install checks ask it what is missing, and the residency adapters ask it to
load and measure; none of them branches on the family's name.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from enfoads.models.catalog import ModelEntry

Component = Callable[[str], Path]  # a source name -> its folder in the models dir (snapshot or unpacked archive)


class Family:
    """The defaults: one source, its folder is the model, nothing to check, nothing to load."""

    loader: str = ""  # the catalogue's ``ModelEntry.loader``
    runtime: str = ""  # the residency adapter that holds it: torch, ctranslate2, onnxruntime; else not held
    # A pipeline whose UNet is one checkpoint file among several, swapped in place (SDXL-Lightning's
    # 1/2/4/8-step files, SDXL base's own UNet for the quality mode).
    swaps_unets: bool = False

    def tiny_paths(self, entry: ModelEntry, folder: Path) -> dict[str, Path]:
        """The loader's inputs inside a built tiny-kit folder."""
        return {"model": folder}

    def real_paths(self, entry: ModelEntry, component: Component) -> dict[str, Path]:
        """The loader's inputs in the models dir (``component`` raises when a source is not installed)."""
        return {"model": component(next(iter(entry.sources)))}

    def problems(self, entry: ModelEntry, paths: dict[str, Path]) -> list[str]:
        """What the loader would miss in ``paths``, from files only (no weights read); empty when loadable."""
        return []

    def load(self, entry: ModelEntry, paths: dict[str, Path], *, device: str, dtype: str, options: dict) -> Any:
        raise RuntimeError(f"{entry.id}: {self.loader} models are not loaded on their own")

    def measure(self, model: Any, paths: dict[str, Path]) -> int:
        """Bytes the loaded model holds (what the residency manager books)."""
        raise RuntimeError(f"{self.loader} models are not measured")
