"""Diffusers pipelines: SDXL with swappable Lightning/base UNets, and any complete diffusers folder."""
from __future__ import annotations

import json
from pathlib import Path

from enfoads.models.catalog import ModelEntry
from enfoads.models.families.base import Component, Family

_VAE_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors")


def _weights_problems(folder: Path, components) -> list[str]:
    """The weights ``enfoads.models.loaders.image`` will pick (the fp16 variant where that is all there is)."""
    from enfoads.models.loaders.image import component_weights

    return [f"{name}: no weights in {folder.name}/{name}" for name in components if component_weights(folder, name) is None]


class TorchPipeline(Family):
    """A diffusers pipeline on torch: measured by its modules' tensors."""

    runtime = "torch"

    def measure(self, model, paths: dict[str, Path]) -> int:
        from enfoads.models.loaders.image import module_bytes

        return module_bytes(model)


class SdxlLightning(TorchPipeline):
    """SDXL base's text encoders, scheduler and (fp16-fix) VAE, with one Lightning UNet checkpoint file swapped in."""

    loader = "sdxl_lightning"
    swaps_unets = True

    def tiny_paths(self, entry: ModelEntry, folder: Path) -> dict[str, Path]:
        return {"base": folder / "base", "unet": folder / entry.options["unet_file"]}

    def real_paths(self, entry: ModelEntry, component: Component) -> dict[str, Path]:
        return {"base": component("base"), "unet": component("unet") / entry.options["unet_file"],
                "vae": component("vae")}

    def problems(self, entry: ModelEntry, paths: dict[str, Path]) -> list[str]:
        base, unet, vae = Path(paths["base"]), Path(paths["unet"]), paths.get("vae")
        problems = [f"SDXL base {needed} is missing"
                    for needed in ("model_index.json", "unet/config.json", "vae/config.json",
                                   "scheduler/scheduler_config.json") if not (base / needed).is_file()]
        problems += _weights_problems(base, ("text_encoder", "text_encoder_2"))
        if vae is None:
            problems += _weights_problems(base, ("vae",))
        elif not any((Path(vae) / f).is_file() for f in _VAE_WEIGHTS):
            problems.append("the fp16-fix VAE has no weights")
        if not unet.is_file():
            problems.append(f"the UNet checkpoint {unet.name} is missing")
        return problems

    def load(self, entry: ModelEntry, paths: dict[str, Path], *, device: str, dtype: str, options: dict):
        from enfoads.models.loaders import image

        return image.load_sdxl_lightning(paths["base"], paths["unet"], device=device, dtype=dtype,
                                         vae_dir=paths.get("vae"), x0_prediction=bool(entry.options.get("x0_prediction")))


class DiffusersFolder(TorchPipeline):
    """A complete diffusers folder (``model_index.json`` and its components), SD-Turbo's for example."""

    loader = "diffusers_folder"

    def problems(self, entry: ModelEntry, paths: dict[str, Path]) -> list[str]:
        folder = Path(paths.get("model") or paths["base"])
        try:
            index = json.loads((folder / "model_index.json").read_text())
        except (OSError, ValueError):
            return ["model_index.json is missing or unreadable"]
        return _weights_problems(folder, tuple(n for n in ("unet", "vae", "text_encoder", "text_encoder_2") if n in index))

    def load(self, entry: ModelEntry, paths: dict[str, Path], *, device: str, dtype: str, options: dict):
        from enfoads.models.loaders import image

        return image.load_diffusers_folder(paths.get("model") or paths["base"], device=device, dtype=dtype)


class UnetFiles(Family):
    """Weights another model loads into itself (SDXL base's own UNet for the quality mode): files only."""

    loader, runtime = "files", "files"
