"""Text-to-image: SDXL-Lightning (and SDXL base, SD-Turbo, user models) through diffusers.

Entry points:

- ``job_kinds(runtime)``: the ``image.generate`` and ``image.compare`` job
  kinds (validate + handler), the way every service plugs into the queue.
- ``ImageService(runtime)``: the same work without a queue (``generate``,
  ``compare``, ``validate``, ``list_models``), for the web layer and benches.
- ``render(pipe, plan, on_step=...)`` (``enfoads.services.image_render``):
  the pure part: a leased pipeline, a plan and a per-step callback in, PIL
  images and what the pipeline really ran with out.

``ImageService`` is put together from sibling modules: ``image_plan``
(model resolution and planning: how a request becomes a run, sizes),
``image_render`` (the pipeline call, encoding, saving), ``image_cache``
(cache keys and the cache table), ``image_compare`` (``image.compare``);
options and limits live in ``image_options``, preview frames in ``previews``.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import replace
from typing import Callable

from enfoads.work.serial import SerialLane
from enfoads.services import JobKind
from enfoads.services.image_cache import ImageCache, cache_key as _cache_key
from enfoads.services.image_compare import ImageComparisons
from enfoads.services.image_options import FORMATS, CompareOptions, ImageOptions
from enfoads.services.image_plan import ImagePlanner, Plan
from enfoads.services.image_render import Progress, RenderOutput, _Saver, encode_image, render

__all__ = [
    "ImageService",
    "validate_options",
    "job_kinds",
]

log = logging.getLogger(__name__)

# Progress: the denoising steps take 0-95 %, decoding and saving the rest.
_DENOISE_SHARE = 95


# ============================================================================ validation


def validate_options(params: dict, *, check_model: Callable[[str | None], None] | None = None) -> dict:
    """``ImageOptions.parse`` (see ``image_options``) as JSON, then ``check_model(model)``; every bad field named."""
    options = ImageOptions.parse(params).to_params()
    if check_model is not None:
        check_model(options["model"])
    return options


def _is_cancel(exc: BaseException) -> bool:
    from enfoads.work.job_types import JobCancelled

    return isinstance(exc, JobCancelled)


# ============================================================================ the service


class ImageService(ImagePlanner, ImageComparisons):
    """Image generation for one runtime: planning, caching, leasing, rendering, saving.

    Args:
        runtime: from ``enfoads.models.runtime.build_runtime``.
        models: the user-model registry (``enfoads.models.user_models.ImageModels``);
            created and scanned here when not given.
    """

    def __init__(self, runtime, *, models=None):
        from enfoads.models.user_models import ImageModels

        self.runtime = runtime
        self.models = models if models is not None else ImageModels(runtime)
        if models is None:
            try:
                self.models.refresh()
            except Exception:  # discovery must never stop the server
                log.exception("scanning user image models failed")
        self._caches: dict[int, ImageCache] = {}
        self._lock = threading.Lock()
        self._layout: dict | None = None
        self._preview_lane = SerialLane("enfoads-image-previews")
        self._render_lock = threading.RLock()  # one render (and UNet swap) on the pipeline at a time

    # Models and planning (``list_models``, ``check_model``, ``plan``, ...) come from ``ImagePlanner``
    # (``image_plan``); comparisons (``validate_compare``, ``compare``) from ``ImageComparisons`` (``image_compare``).

    # -------------------------------------------------------------- validation

    def validate(self, params: dict) -> dict:
        """``validate_options`` with this runtime's models; raises ``InvalidInput``."""
        return validate_options(params, check_model=self.check_model)

    # -------------------------------------------------------------- cache

    def cache_key(self, options: dict, plan: Plan) -> str:
        """A hash of every parameter that shapes the output: request, resolved plan, model revision."""
        return _cache_key(options, plan)

    def _cache_for(self, assets) -> ImageCache | None:
        if getattr(assets, "db", None) is None:  # no store, or a remote replica's shipped inputs
            return None
        with self._lock:
            cache = self._caches.get(id(assets))
            if cache is None or cache.assets is not assets:
                cache = ImageCache(assets)
                self._caches[id(assets)] = cache
            return cache

    # -------------------------------------------------------------- memory

    def _memory_options(self, pipe, plan: Plan) -> dict:
        """VAE slicing for batches and tiling for large images, only when the GPU headroom needs them."""
        vae = getattr(pipe, "vae", None)
        slicing = tiling = False
        # ``vae.device`` walks the module tree (about a millisecond): only on a CUDA machine.
        device = str(vae.device) if vae is not None and self.runtime.hardware.cuda else "cpu"
        if device.startswith("cuda"):
            stats = self.runtime.residency.stats()
            headroom = max(0, stats.gpu_budget - stats.gpu_used) + int(self.runtime.profile.gpu_reserve_gb * 1024**3)
            import torch

            fp32_decode = vae.dtype == torch.float32 or bool(vae.config.get("force_upcast"))
            per_image = plan.width * plan.height * (3200 if fp32_decode else 1600)  # decoder activations, bytes
            slicing = plan.n > 1 and per_image * plan.n > headroom // 2
            tiling = plan.width * plan.height > 1024 * 1024 and per_image > headroom // 2
        if vae is not None and hasattr(vae, "enable_slicing"):
            if bool(getattr(vae, "use_slicing", False)) != slicing:
                vae.enable_slicing() if slicing else vae.disable_slicing()
            if bool(getattr(vae, "use_tiling", False)) != tiling:
                vae.enable_tiling() if tiling else vae.disable_tiling()
        return {"vae_slicing": slicing, "vae_tiling": tiling}

    # -------------------------------------------------------------- generate

    def generate(self, options: dict, *, progress: Progress | None = None, save=None, assets=None) -> dict:
        """Render validated options (``validate``) and save the images and preview frames.

        Args:
            options: from ``validate``.
            progress: ``progress(percent, stage, preview_asset_id)`` (a job's
                ``ctx.progress``: it raises ``JobCancelled`` to stop).
            save: ``save(data, mime, **meta) -> Asset`` (a job's ``ctx.save_bytes``);
                default ``assets.save_bytes``.
            assets: the asset store, for the cache (and saving without ``save``).

        Returns:
            The result JSON (see ``_result``); without an asset store and
            ``save``, each image also carries its encoded ``data``.
        """
        return self._generate(options, progress=progress, save=save, assets=assets)[0]

    def _generate(self, options: dict, *, progress: Progress | None = None, save=None, assets=None,
                  span: tuple[int, int] = (0, 100), label: str = "") -> tuple[dict, list[bytes] | None]:
        """``generate`` plus the preview frames as bytes (None for a cached result); ``span`` is the
        part of 0-100 this render's progress covers (a comparison uses two)."""
        started = time.perf_counter()
        saver = save if save is not None else _Saver(assets=assets)
        plan = self.plan(options)
        key = self.cache_key(options, plan)
        cache = self._cache_for(assets) if options.get("cache", True) else None
        lo, hi = span
        prefix = f"{label}: " if label else ""
        if cache is not None:
            hit = cache.get(key)
            if hit is not None:
                hit.update(cached=True, timings={"total_s": round(time.perf_counter() - started, 4)})
                if progress is not None:
                    progress(hi, f"{prefix}cached result")
                return hit, None
        if progress is not None:
            progress(lo, f"{prefix}loading {plan.model}")
        from enfoads.services.previews import LatentSnapshot, PreviewFrames, current_sigma

        now = {"percent": lo, "stage": f"{prefix}loading {plan.model}"}

        def report_preview(asset_id: str) -> None:
            # From the preview lane, at the latest step's percentage (never backwards).
            if progress is not None:
                try:
                    progress(now["percent"], now["stage"], asset_id)
                except Exception as exc:  # a cancel: the render itself stops at its next step
                    if not _is_cancel(exc):
                        raise

        def new_frames() -> PreviewFrames:
            return PreviewFrames(self._preview_lane, save=saver, report=report_preview,
                                 params={"seed": plan.seeds[0], "cache_key": key})

        frames = new_frames()
        family = "sdxl" if plan.family == "sdxl" else "sd"

        def on_step(step: int, total: int, pipe, latents) -> None:
            if plan.preview_every and step % plan.preview_every == 0 and latents is not None:
                # Encoding and saving the frame happen on the preview lane, not here.
                frames.add(step, total, LatentSnapshot(latents, family=family, sigma=current_sigma(pipe.scheduler)))
            if progress is not None:
                now["percent"] = lo + (hi - lo) * _DENOISE_SHARE * step // (100 * total)
                now["stage"] = f"{prefix}step {step}/{total}"
                progress(now["percent"], now["stage"])

        from enfoads.models.residency_types import ModelMemoryError

        t0 = time.perf_counter()
        try:
            for attempt in (1, 2):
                try:
                    with self.runtime.residency.use(plan.key) as pipe:
                        t_lease = time.perf_counter()
                        with self._render_lock:
                            memory = self._memory_options(pipe, plan)
                            output = render(pipe, plan, on_step=on_step)
                    break
                except ModelMemoryError as exc:
                    # Out of memory while running: the manager evicted every other model; try once more.
                    if attempt == 2 or not exc.retryable:
                        raise
                    log.warning("out of memory rendering with %s; retrying after eviction", plan.key)
                    frames.finish()
                    frames = new_frames()  # the frames of the failed attempt stay in the store, unlisted
                    plan.notes.append("ran out of GPU memory once; other models were unloaded and it ran again")
        except BaseException:
            frames.finish()  # no frame is written after the job's end
            raise
        t_render = time.perf_counter()
        if progress is not None:
            now.update(percent=lo + (hi - lo) * 97 // 100, stage=f"{prefix}saving")
            progress(now["percent"], now["stage"])
        text = {"parameters": (f"{plan.prompt}\nNegative prompt: {plan.negative_prompt}\nSteps: {plan.steps}, "
                               f"CFG scale: {plan.guidance:g}, Seed: {plan.seeds[0]}, Size: {plan.width}x{plan.height}, "
                               f"Model: {plan.model}" + (f", UNet: {plan.unet}" if plan.unet else ""))}
        encoded = [encode_image(img, plan.format, text=text) for img in output.images]
        previews, frame_bytes = frames.finish()  # written meanwhile, on the preview lane
        images = []
        for img, seed, data in zip(output.images, plan.seeds, encoded):
            asset = saver(data, FORMATS[plan.format], kind="image", width=img.width, height=img.height,
                          params={"cache_key": key, "seed": seed, "model": plan.model, "steps": plan.steps,
                                  "guidance": plan.guidance, "prompt": plan.prompt, "style": plan.style,
                                  "width": img.width, "height": img.height})
            images.append({"asset_id": asset.id if asset is not None else None, "mime": FORMATS[plan.format],
                           "width": img.width, "height": img.height, "seed": seed, "bytes": len(data),
                           "sha256": hashlib.sha256(data).hexdigest(), **({} if asset is not None else {"data": data})})
        result = self._result(options, plan, output, images, previews, key, memory)
        result["timings"] = {
            "total_s": round(time.perf_counter() - started, 4),
            "lease_s": round(t_lease - t0, 4),
            "render_s": round(t_render - t_lease, 4),
        }
        if cache is not None and all(i["asset_id"] for i in images):
            stored = {k: v for k, v in result.items() if k != "timings"}
            cache.put(key, stored, [i["asset_id"] for i in images] + [p["asset_id"] for p in previews])
        return result, frame_bytes

    def _result(self, options, plan: Plan, output: RenderOutput, images, previews, key, memory) -> dict:
        ran = output.ran
        notes = list(plan.notes)
        if ran.get("prompt_tokens", 0) > ran.get("token_window", 77):
            notes.append(f"the prompt is {ran['prompt_tokens']} tokens long; the text encoders read the first "
                         f"{ran['token_window']} (start and end included) and ignore the rest")
        image_ids = [i["asset_id"] for i in images if i["asset_id"]]
        return {
            "images": images,
            "image_asset_id": images[0]["asset_id"] if images else None,
            "image_asset_ids": image_ids,
            # Images first, then the preview frames (the queue would list them in save order).
            "asset_ids": image_ids + [p["asset_id"] for p in previews],
            "seed": plan.seeds[0],
            "seeds": plan.seeds,
            "model": plan.model,
            "model_key": plan.key,
            "mode": plan.mode,
            "unet": ran.get("unet") or plan.unet,
            "model_revision": plan.revision,
            "steps": plan.steps,
            "steps_requested": options.get("steps"),
            "guidance_used": ran.get("guidance_scale", plan.guidance),
            "guidance_requested": options.get("guidance"),
            "width": plan.width,
            "height": plan.height,
            "aspect_ratio": options.get("aspect_ratio"),
            "format": plan.format,
            "n": plan.n,
            "prompt": plan.prompt,
            "prompt_original": options.get("prompt"),
            "negative_prompt": plan.negative_prompt,
            "style": plan.style,
            "previews": previews,
            "preview_every": plan.preview_every,
            "cached": False,
            "cache_key": key,
            "notes": notes,
            "pipeline": {
                "class": ran.get("pipeline"),
                "scheduler": ran.get("scheduler"),
                "timestep_spacing": ran.get("timestep_spacing"),
                "prediction_type": ran.get("prediction_type"),
                "timesteps": ran.get("timesteps"),
                "cfg": ran.get("cfg"),
                "dtype": ran.get("dtype"),
                "vae_dtype": ran.get("vae_dtype"),
                "vae_force_upcast": ran.get("vae_force_upcast"),
                "device": ran.get("device"),
                **memory,
            },
        }

    # -------------------------------------------------------------- jobs

    def warm_up(self) -> dict:
        """Load the default model and run one 1-step render at the profile's default size, kept nowhere.

        The first real request then pays neither the load nor the first-call
        costs of torch and the pipeline (kernel loading, allocator growth).
        """
        plan = self.plan(self.validate({"prompt": "a photograph", "seed": 0, "cache": False, "preview_every": 0}))
        quick = replace(plan, steps=1, preview_every=0, notes=[])  # the default UNet, one step
        import torch

        from enfoads.services.previews import LatentSnapshot, encode_preview

        started = time.perf_counter()
        with self.runtime.residency.use(plan.key) as pipe:
            loaded = time.perf_counter()
            with self._render_lock:
                self._memory_options(pipe, quick)
                output = render(pipe, quick)
        # The encoders' first calls too (plugin imports, tables): a request's own path, minus the store.
        encode_image(output.images[0], plan.format)
        encode_preview(LatentSnapshot(torch.zeros(4, 8, 8)).rgb())
        return {"model": plan.model, "load_s": round(loaded - started, 3),
                "pass_s": round(time.perf_counter() - loaded, 3), "size": [plan.width, plan.height]}

    def handle_generate(self, params: dict, ctx) -> dict:
        options = self.validate(params)
        return self.generate(options, progress=ctx.progress, save=ctx.save_bytes, assets=ctx.assets)

    def handle_compare(self, params: dict, ctx) -> dict:
        options = self.validate_compare(params)
        return self.compare(options, progress=ctx.progress, save=ctx.save_bytes, assets=ctx.assets)

    def job_kinds(self) -> list[JobKind]:
        return [
            JobKind("image.generate", self.handle_generate, self.validate, "gpu", ImageOptions),
            JobKind("image.compare", self.handle_compare, self.validate_compare, "gpu", CompareOptions),
        ]

    def close(self) -> None:
        self._preview_lane.close()
        with self._lock:
            self._caches.clear()  # their database is the asset stores' to close


def job_kinds(runtime) -> list[JobKind]:
    """The image job kinds of a new ``ImageService`` for ``runtime`` (see ``ImageService.job_kinds``)."""
    return ImageService(runtime).job_kinds()
