"""One image render and its outputs: the pipeline call (``render``), the UNet swap before it, encoding, saving.

``enfoads.services.images.ImageService`` plans a request and leases the
pipeline; the code here runs a leased pipeline for a ``Plan`` and turns its
pictures into bytes (``encode_image``) and assets (``_Saver``).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from enfoads.services.image_plan import Plan

__all__ = ["Progress", "RenderOutput", "prepare_pipeline", "render", "encode_image"]

Progress = Callable[..., None]  # progress(percent, stage=None, preview_asset_id=None)


@dataclass
class RenderOutput:
    images: list  # PIL images
    ran: dict  # what the pipeline actually ran with (inspected, not the plan)


def _first_parameter(module):
    # ``module.dtype``/``.device`` walk every submodule (a millisecond on each render); the first
    # parameter says the same for a model loaded in one dtype on one device.
    return next(module.parameters())


def _same_file(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    if a == b:
        return True  # the usual case, without two realpath walks per render
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return a == b


def prepare_pipeline(pipe, plan: Plan) -> None:
    """Swap the planned UNet checkpoint into an SDXL-Lightning pipeline when another is loaded."""
    if not plan.unet_weights:
        return
    from enfoads.models.loaders.image import swap_unet_weights

    state = getattr(pipe, "enfoads_unet", None)
    if state is None:
        raise RuntimeError("the leased pipeline cannot swap UNet checkpoints (not loaded by load_sdxl_lightning)")
    if not (_same_file(state.get("weights"), plan.unet_weights) and state.get("mode") == plan.unet_mode):
        swap_unet_weights(pipe, plan.unet_weights, mode=plan.unet_mode)


def render(pipe, plan: Plan, *, on_step: Callable[[int, int, Any, Any], None] | None = None) -> RenderOutput:
    """Run the pipeline for ``plan``: one batched call of ``plan.n`` images.

    Args:
        pipe: a leased diffusers text-to-image pipeline.
        plan: from ``ImageService.plan``.
        on_step: ``on_step(step, total, pipe, latents)`` after every denoising
            step (``step`` counts from 1); an exception it raises (a job's
            ``JobCancelled``) stops the run at that step boundary.

    Returns:
        The images and ``ran``: guidance scale, CFG on/off, timesteps,
        scheduler settings, dtype and device as read from the pipeline.

    The caller holds the pipeline for the call (``ImageService`` renders under
    its own lock): a UNet swap and a render never interleave.
    """
    import torch

    prepare_pipeline(pipe, plan)
    ran: dict = {"timesteps": []}

    def callback(p, i, t, kwargs):
        if i == 0:
            ran["guidance_scale"] = float(getattr(p, "guidance_scale", plan.guidance))
            ran["cfg"] = bool(getattr(p, "do_classifier_free_guidance", plan.guidance > 1))
        ran["timesteps"].append(int(t))
        if on_step is not None:
            on_step(i + 1, plan.steps, p, kwargs.get("latents"))
        return kwargs

    generators = [torch.Generator(device="cpu").manual_seed(s) for s in plan.seeds]
    kwargs = dict(
        prompt=plan.prompt,
        num_inference_steps=plan.steps,
        guidance_scale=plan.guidance,
        width=plan.width,
        height=plan.height,
        num_images_per_prompt=plan.n,
        generator=generators if plan.n > 1 else generators[0],
        callback_on_step_end=callback,
        callback_on_step_end_tensor_inputs=["latents"],
    )
    if plan.negative_prompt:
        kwargs["negative_prompt"] = plan.negative_prompt
    with torch.inference_mode():
        out = pipe(**kwargs)
    sched = pipe.scheduler
    unet_param = _first_parameter(pipe.unet)
    ran.update(
        pipeline=type(pipe).__name__,
        scheduler=type(sched).__name__,
        timestep_spacing=sched.config.get("timestep_spacing"),
        prediction_type=sched.config.get("prediction_type"),
        dtype=str(unet_param.dtype).replace("torch.", ""),
        vae_dtype=str(_first_parameter(pipe.vae).dtype).replace("torch.", ""),
        vae_force_upcast=bool(pipe.vae.config.get("force_upcast", False)),
        device=str(unet_param.device),
        unet=Path(pipe.enfoads_unet["weights"]).name if getattr(pipe, "enfoads_unet", None) else None,
    )
    tokenizer = getattr(pipe, "tokenizer", None)
    if tokenizer is not None:
        ran["prompt_tokens"] = len(tokenizer(plan.prompt, truncation=False)["input_ids"])
        ran["token_window"] = int(getattr(tokenizer, "model_max_length", 77))
    ran.setdefault("guidance_scale", float(plan.guidance))
    ran.setdefault("cfg", plan.guidance > 1)
    return RenderOutput(images=list(out.images), ran=ran)


# ============================================================================ encoding


def encode_image(img, fmt: str, *, text: dict | None = None) -> bytes:
    """PNG (with a ``parameters`` text chunk), WebP or JPEG bytes; deterministic for the same pixels."""
    buf = io.BytesIO()
    if fmt == "png":
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        for k, v in (text or {}).items():
            info.add_text(k, v)
        img.save(buf, "PNG", pnginfo=info, compress_level=4)
    elif fmt == "webp":
        img.save(buf, "WEBP", quality=90, method=4)
    elif fmt == "jpeg":
        img.convert("RGB").save(buf, "JPEG", quality=92)
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return buf.getvalue()


# ============================================================================ saving


class _Saver:
    """Saves outputs through a job context (``ctx.save_bytes``) or straight into an asset store."""

    def __init__(self, ctx=None, assets=None):
        self.ctx = ctx
        self.assets = assets if assets is not None else getattr(ctx, "assets", None)

    def __call__(self, data: bytes, mime: str, **meta):
        if self.ctx is not None:
            return self.ctx.save_bytes(data, mime, **meta)
        if self.assets is None:
            return None
        return self.assets.save_bytes(data, mime, **meta)
