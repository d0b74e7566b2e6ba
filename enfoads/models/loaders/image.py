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


_WEIGHT_NAMES = ("diffusion_pytorch_model", "model")


def component_weights(folder, component: str) -> Path | None:
    """The safetensors file of a pipeline component (plain or fp16 variant), or None.

    Either is loadable: :func:`weights_variant` asks diffusers for ``fp16``
    where a folder holds only those.
    """
    sub = Path(folder) / component
    names = [f"{n}{v}.safetensors" for v in ("", ".fp16") for n in _WEIGHT_NAMES]
    return next((sub / n for n in names if (sub / n).is_file()), None)


def weights_variant(folder, dtype: str) -> str | None:
    """The diffusers ``variant`` to load a folder with for ``dtype``.

    fp16 files for a half-precision load when present. For an fp32 load the
    plain files, unless the folder holds only ``*.fp16.safetensors`` (what
    ``enfoads preload`` fetches: half the download): then ``variant="fp16"``,
    and ``torch_dtype=float32`` upcasts them. Without it diffusers looks for
    ``diffusion_pytorch_model.bin`` and fails.
    """
    folder = Path(folder)
    if not _has_fp16_variant(folder):
        return None
    if dtype in ("float16", "bfloat16"):
        return "fp16"
    plain = any(
        (sub / f"{n}.safetensors").is_file() for sub in folder.iterdir() if sub.is_dir() for n in _WEIGHT_NAMES
    )
    return None if plain else "fp16"


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
    variant = weights_variant(base_dir, dtype)
    pipe = StableDiffusionXLPipeline.from_pretrained(
        base_dir, unet=unet, torch_dtype=torch_dtype, variant=variant, add_watermarker=False, **extra
    )
    if vae_dir is None:
        pipe.vae.register_to_config(force_upcast=True)
    base_scheduler = dict(pipe.scheduler.config)
    pipe.scheduler = EulerDiscreteScheduler.from_config(base_scheduler, **_lightning_scheduler_overrides(x0_prediction))
    pipe.set_progress_bar_config(disable=True)
    # What the UNet holds now, for swap_unet_weights and for cache keys.
    pipe.enfoads_unet = {
        "base_dir": str(base_dir),
        "weights": str(Path(unet_file)),
        "mode": "lightning-x0" if x0_prediction else "lightning",
        "base_scheduler": base_scheduler,
    }
    return pipe.to(device)


def _lightning_scheduler_overrides(x0_prediction: bool) -> dict:
    overrides = {"timestep_spacing": "trailing"}
    if x0_prediction:
        overrides["prediction_type"] = "sample"
    return overrides


UNET_MODES = ("lightning", "lightning-x0", "base")


def base_unet_weights(base_dir) -> Path | None:
    """The SDXL base UNet's own weights in a diffusers folder (fp16 variant first), or None if absent."""
    unet_dir = Path(base_dir) / "unet"
    for name in ("diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.safetensors"):
        if (unet_dir / name).is_file():
            return unet_dir / name
    return None


def swap_unet_weights(pipe, weights_file, *, mode: str) -> None:
    """Put another full UNet state dict into a loaded SDXL pipeline, in place, and set its scheduler.

    SDXL-Lightning's 1-, 2-, 4- and 8-step UNets and SDXL base's own UNet
    share one architecture, so changing step count (or going to the quality
    mode) copies weights into the resident UNet instead of loading a second
    7 GB pipeline: the text encoders and VAE stay, the device and dtype stay
    (``copy_`` casts), and tensors stream from the file one at a time, so the
    only extra memory is one tensor.

    Args:
        pipe: a pipeline made by ``load_sdxl_lightning``.
        weights_file: a Lightning ``*_unet*.safetensors`` or the base folder's
            ``unet/diffusion_pytorch_model*.safetensors``.
        mode: ``"lightning"`` (trailing Euler), ``"lightning-x0"`` (trailing
            Euler predicting the sample: the 1-step checkpoint) or ``"base"``
            (the base folder's own scheduler, as published).

    Raises:
        ValueError: the file's tensors do not match the UNet (nothing is changed).
    """
    import torch
    from diffusers import EulerDiscreteScheduler
    from safetensors import safe_open

    if mode not in UNET_MODES:
        raise ValueError(f"mode must be one of {UNET_MODES}, got {mode!r}")
    state = getattr(pipe, "enfoads_unet", None)
    if state is None:
        raise ValueError("this pipeline was not made by load_sdxl_lightning; its UNet cannot be swapped")
    weights_file = _require(Path(weights_file), "UNet weights")
    unet = pipe.unet
    targets = dict(unet.named_parameters())
    targets.update(dict(unet.named_buffers()))
    expected = set(unet.state_dict().keys())
    with safe_open(str(weights_file), framework="pt", device="cpu") as f:
        keys = set(f.keys())
        if keys != expected:
            raise ValueError(
                f"{weights_file.name} does not match the loaded UNet: {len(expected - keys)} missing and "
                f"{len(keys - expected)} unexpected tensors"
            )
        for name in keys:
            shape = tuple(f.get_slice(name).get_shape())
            if shape != tuple(targets[name].shape):
                raise ValueError(f"{weights_file.name}: {name} has shape {shape}, the UNet {tuple(targets[name].shape)}")
        with torch.no_grad():
            for name in sorted(keys):
                targets[name].copy_(f.get_tensor(name))
    if mode == "base":
        pipe.scheduler = EulerDiscreteScheduler.from_config(state["base_scheduler"])
    else:
        pipe.scheduler = EulerDiscreteScheduler.from_config(
            state["base_scheduler"], **_lightning_scheduler_overrides(mode == "lightning-x0")
        )
    state.update(weights=str(weights_file), mode=mode)


def load_single_file(path, *, family: str, config_dir, device: str = "cpu", dtype: str = "float32"):
    """A single-file SDXL or SD 1.x checkpoint (``.safetensors``), loaded with ``from_single_file``.

    ``config_dir`` is a local diffusers folder of the same architecture that
    supplies the component configs, tokenizers and scheduler, so nothing is
    fetched from the hub (``local_files_only``).

    The UNet and the VAE are placed on ``device`` tensor by tensor as diffusers
    converts them (its models' ``from_single_file`` takes ``device``; the
    checkpoint is a mapped view of the file), so only the text encoders are
    built in host RAM before the pipeline moves (a 6.9 GB SDXL file stages
    ~1.7 GB, not 7).
    """
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    path = _require(Path(path), "checkpoint")
    config_dir = _require(Path(config_dir), "config folder")
    if family == "sdxl":
        cls, extra = StableDiffusionXLPipeline, {"add_watermarker": False}
    elif family == "sd15":
        cls, extra = StableDiffusionPipeline, {"safety_checker": None, "requires_safety_checker": False}
    else:
        raise ValueError(f"single-file loading supports SDXL and SD 1.x checkpoints, not {family!r}")
    torch_dtype = _torch_dtype(dtype)
    pipe = cls.from_single_file(
        str(path), config=str(config_dir), local_files_only=True, torch_dtype=torch_dtype, device=str(device), **extra
    )
    if family == "sdxl" and torch_dtype != _torch_dtype("float32"):
        # SDXL's original VAE overflows in fp16 (black/NaN images): decode in fp32.
        pipe.vae.register_to_config(force_upcast=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def load_diffusers_folder(folder, *, device: str = "cpu", dtype: str = "float32"):
    """Any text-to-image diffusers folder (SD-Turbo, SD 1.5, SDXL...), as published."""
    from diffusers import AutoPipelineForText2Image

    folder = _require(Path(folder), "diffusers model folder")
    variant = weights_variant(folder, dtype)
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
