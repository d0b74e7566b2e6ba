"""Load text-to-image pipelines: SDXL-Lightning and plain diffusers folders.

The same functions load the real weights (from the Hugging Face cache) and the
tiny kit's random weights; only the folder differs.
"""
from __future__ import annotations

from pathlib import Path

_DTYPES = ("float16", "bfloat16", "float32")


def _torch_dtype(name: str):
    import torch

    if name not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, got {name!r}")
    return getattr(torch, name)


def _has_fp16_variant(base_dir: Path) -> bool:
    return any(base_dir.glob("*/*.fp16.safetensors"))


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{what} not found at {path}; run `enfoads preload` to download it")
    return path


def load_lightning_unet(base_dir, unet_file, *, device: str, dtype: str):
    """Build the SDXL UNet from the base config and load a Lightning state dict.

    The UNet is created on the meta device (no random init of 2.6 B parameters)
    and its weights are assigned straight from the file, read onto ``device``,
    then cast to ``dtype`` (the original server skipped the cast and ran fp32).
    """
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file

    base_dir, unet_file = Path(base_dir), Path(unet_file)
    _require(base_dir / "unet" / "config.json", "SDXL base UNet config")
    _require(unet_file, "SDXL-Lightning UNet checkpoint")
    config = UNet2DConditionModel.load_config(base_dir, subfolder="unet")
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(config)
    state = load_file(str(unet_file), device=str(device))
    missing, unexpected = unet.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise ValueError(
            f"{unet_file.name} does not match the SDXL UNet config in {base_dir}: "
            f"{len(missing)} missing and {len(unexpected)} unexpected tensors"
        )
    del state
    unet = unet.to(device=device, dtype=_torch_dtype(dtype))
    if any(t.device.type == "meta" for t in list(unet.parameters()) + list(unet.buffers())):
        raise ValueError(f"{unet_file.name} left UNet tensors uninitialised")
    return unet.eval()


def load_sdxl_lightning(
    base_dir,
    unet_file,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    vae_dir=None,
    x0_prediction: bool = False,
):
    """SDXL base + an SDXL-Lightning UNet, trailing Euler scheduler, ready for guidance 0.

    Args:
        base_dir: a diffusers SDXL folder (stabilityai/stable-diffusion-xl-base-1.0).
        unet_file: a ``sdxl_lightning_*_unet*.safetensors`` file matching the step count.
        vae_dir: an fp16-safe VAE folder (madebyollin/sdxl-vae-fp16-fix); without it
            the VAE keeps ``force_upcast`` so fp16 decoding never yields NaN/black images.
        x0_prediction: True for the experimental 1-step checkpoint (``prediction_type="sample"``).
    """
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline

    base_dir = _require(Path(base_dir), "SDXL base folder")
    torch_dtype = _torch_dtype(dtype)
    unet = load_lightning_unet(base_dir, unet_file, device=device, dtype=dtype)
    extra = {}
    if vae_dir is not None:
        extra["vae"] = AutoencoderKL.from_pretrained(_require(Path(vae_dir), "VAE folder"), torch_dtype=torch_dtype)
    variant = "fp16" if _has_fp16_variant(base_dir) else None
    pipe = StableDiffusionXLPipeline.from_pretrained(
        base_dir, unet=unet, torch_dtype=torch_dtype, variant=variant, add_watermarker=False, **extra
    )
    if vae_dir is None:
        pipe.vae.register_to_config(force_upcast=True)
    scheduler_overrides = {"timestep_spacing": "trailing"}
    if x0_prediction:
        scheduler_overrides["prediction_type"] = "sample"
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config, **scheduler_overrides)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def load_diffusers_folder(folder, *, device: str = "cpu", dtype: str = "float32"):
    """Any text-to-image diffusers folder (SD-Turbo, SD 1.5, SDXL...), as published."""
    from diffusers import AutoPipelineForText2Image

    folder = _require(Path(folder), "diffusers model folder")
    variant = "fp16" if dtype == "float16" and _has_fp16_variant(folder) else None
    pipe = AutoPipelineForText2Image.from_pretrained(folder, torch_dtype=_torch_dtype(dtype), variant=variant)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def module_bytes(obj) -> int:
    """Bytes of every parameter and buffer of a torch module or a diffusers pipeline."""
    import torch

    modules = [obj] if isinstance(obj, torch.nn.Module) else [
        c for c in getattr(obj, "components", {}).values() if isinstance(c, torch.nn.Module)
    ]
    seen: set[int] = set()
    total = 0
    for module in modules:
        for tensor in list(module.parameters()) + list(module.buffers()):
            if id(tensor) not in seen:
                seen.add(id(tensor))
                total += tensor.numel() * tensor.element_size()
    return total
