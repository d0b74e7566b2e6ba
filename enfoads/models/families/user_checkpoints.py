"""User image models dropped into ``<models dir>/image/``: a single-file checkpoint or a diffusers folder.

Their entries are made at discovery (``enfoads.models.user_models``), with the
file's path, its detected family (sdxl, sd15, sd2) and the config folder in
``options``; nothing here reads the hub.
"""
from __future__ import annotations

from pathlib import Path

from enfoads.models.catalog import ModelEntry
from enfoads.models.families.base import Component
from enfoads.models.families.diffusers_pipelines import TorchPipeline


class UserCheckpoint(TorchPipeline):

    def __init__(self, kind: str):
        self.kind = kind  # "single_file" or "diffusers_folder"
        self.loader = "user_" + kind

    def real_paths(self, entry: ModelEntry, component: Component) -> dict[str, Path]:
        return {"model": Path(entry.options["path"])}

    def problems(self, entry: ModelEntry, paths: dict[str, Path]) -> list[str]:
        return [] if Path(paths["model"]).exists() else [f"{Path(paths['model']).name} is gone"]

    def load(self, entry: ModelEntry, paths: dict[str, Path], *, device: str, dtype: str, options: dict):
        from enfoads.models.loaders import image

        if self.kind == "single_file":
            return image.load_single_file(paths["model"], family=entry.options["family"],
                                          config_dir=entry.options.get("config_dir"), device=device, dtype=dtype)
        return image.load_diffusers_folder(paths["model"], device=device, dtype=dtype)
