"""Image-to-image models spandrel loads: the catalogue's upscalers and GFPGAN, and the user's drop-ins.

One file each. A catalogued model's file is its release file in
``enhance/<id>/`` (a ``UrlFile`` source); a tiny one's is in its kit folder
under the release's name; a drop-in's is its own path in ``upscale/``
(``options["path"]``, see ``enfoads.models.user_upscalers``).
"""
from __future__ import annotations

from pathlib import Path

from enfoads.models.catalog import ModelEntry
from enfoads.models.families.base import Component, Family


class SpandrelModel(Family):
    loader, runtime = "spandrel", "torch"

    def tiny_paths(self, entry: ModelEntry, folder: Path) -> dict[str, Path]:
        return {"model": folder / entry.options["file"]}

    def real_paths(self, entry: ModelEntry, component: Component) -> dict[str, Path]:
        if "path" in entry.options:
            return {"model": Path(entry.options["path"])}
        return {"model": component("model") / entry.options["file"]}

    def problems(self, entry: ModelEntry, paths: dict[str, Path]) -> list[str]:
        from enfoads.models.loaders.upscale import SUFFIXES

        model = Path(paths["model"])
        if not model.is_file():
            return [f"{model.name} is missing"]
        if model.suffix.lower() not in SUFFIXES:
            return [f"{model.name} is not a {' or '.join(SUFFIXES)} file"]
        return []

    def load(self, entry: ModelEntry, paths: dict[str, Path], *, device: str, dtype: str, options: dict):
        from enfoads.models.loaders import upscale

        return upscale.load_spandrel(paths["model"], device=device, dtype=dtype,
                                     allow_restricted=bool(entry.options.get("allow_restricted", False)))

    def measure(self, model, paths: dict[str, Path]) -> int:
        from enfoads.models.loaders import upscale

        return upscale.descriptor_bytes(model)
