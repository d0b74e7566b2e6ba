"""MuseTalk: a UNet ``.pth`` with its ``musetalk.json``, a diffusers VAE folder and a transformers Whisper folder.

Three sources (``unet``, ``vae``, ``whisper``), one model. The UNet's fp16
safetensors copy, made on the first load, goes to ``converted/<id>/<commit>/``
of the models dir (beside the Hugging Face cache, never inside a snapshot,
whose files are the hub's); a tiny kit keeps it in its own folder.
"""
from __future__ import annotations

from pathlib import Path

from enfoads.models.catalog import ModelEntry
from enfoads.models.families.base import Component, Family

VAE_FILES = ("config.json", "diffusion_pytorch_model.safetensors")
WHISPER_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")


def converted_dir(entry: ModelEntry, unet: Path) -> Path:
    """Where the UNet's fp16 copy goes: ``converted/<id>/<commit>/`` of the models dir for a hub snapshot
    (``<models dir>/models--<org>--<name>/snapshots/<commit>/musetalkV15/unet.pth``), else beside the kit."""
    snapshot = unet.parent.parent
    if snapshot.parent.name == "snapshots":
        return snapshot.parents[2] / "converted" / entry.id / snapshot.name
    return snapshot / "converted"


class MuseTalk(Family):
    loader, runtime = "musetalk", "torch"

    def tiny_paths(self, entry: ModelEntry, folder: Path) -> dict[str, Path]:
        return {"unet_config": folder / entry.options["unet_config"], "unet": folder / entry.options["unet_file"],
                "vae": folder / "sd-vae", "whisper": folder / "whisper"}

    def real_paths(self, entry: ModelEntry, component: Component) -> dict[str, Path]:
        snapshot = component("unet")  # <models dir>/models--TMElyralab--MuseTalk/snapshots/<commit>
        return {"unet_config": snapshot / entry.options["unet_config"], "unet": snapshot / entry.options["unet_file"],
                "vae": component("vae"), "whisper": component("whisper")}

    def problems(self, entry: ModelEntry, paths: dict[str, Path]) -> list[str]:
        wanted = [Path(paths["unet_config"]), Path(paths["unet"])]
        wanted += [Path(paths["vae"]) / name for name in VAE_FILES]
        wanted += [Path(paths["whisper"]) / name for name in WHISPER_FILES]
        return [f"{path.parent.name}/{path.name} is missing" for path in wanted if not path.is_file()]

    def load(self, entry: ModelEntry, paths: dict[str, Path], *, device: str, dtype: str, options: dict):
        from enfoads.models.loaders import lipsync

        return lipsync.load_musetalk(paths, device=device, dtype=dtype,
                                     converted_dir=converted_dir(entry, Path(paths["unet"])))

    def measure(self, model, paths: dict[str, Path]) -> int:
        return model.parameter_bytes()
