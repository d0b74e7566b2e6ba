"""Text-to-image: SDXL-Lightning (and SDXL base, SD-Turbo, user models) through diffusers.

Entry points:

- ``job_kinds(runtime)``: the ``image.generate`` and ``image.compare`` job
  kinds (validate + handler), the way every service plugs into the queue.
- ``ImageService(runtime)``: the same work without a queue (``generate``,
  ``compare``, ``validate``, ``list_models``), for the web layer and benches.
- ``render(pipe, plan, on_step=...)``: the pure part: a leased pipeline, a
  plan and a per-step callback in, PIL images and what the pipeline really
  ran with out.

How a request becomes a run (``ImageService.plan``):

- Without ``model`` (or ``"auto"``) on an SDXL-Lightning profile: steps 1, 2,
  4 or 8 run SDXL-Lightning with the UNet checkpoint of that step count at
  guidance 0 whatever guidance was sent (Lightning is distilled for guidance
  0); any other step count (the frontend's "quality" mode sends 30 and its
  sliders 10-50) runs the quality model, SDXL base's own UNet from the same
  base repository, with the steps and guidance asked. When the base UNet is
  not installed, the nearest installed Lightning checkpoint runs instead (ties
  go to more steps), and ``notes`` says so. Checkpoints are swapped into the
  one resident pipeline (``loaders.image.swap_unet_weights``): the text
  encoders and VAE are loaded once.
- ``model="lightning"`` (or a catalogue SDXL-Lightning id): Lightning only,
  nearest checkpoint. ``model="base"``: SDXL base only.
- A distilled model (SD-Turbo, the CPU profile's): steps capped at its
  maximum (4), guidance 0.
- Any other model (``user:<name>``, a dropped-in checkpoint): the steps and
  guidance asked; guidance defaults to 5 (SDXL) or 7.5 (SD 1.x).
- The response always says what ran: ``model``, ``mode``, ``unet``,
  ``steps``, ``guidance_used``, next to what was asked.

Sizes: ``aspect_ratio`` gives the frontend's exact sizes (1:1 is 1024x1024)
on SDXL-class models, scaled to the model's native resolution on 512-px
models (SD-Turbo, SD 1.5: 16:9 becomes 672x384); ``width``/``height`` are
always honoured; with neither, the profile's default size.

Caching: a request identical in every parameter (seed, style, size, model
and the revision of its files included) returns the stored assets with
``cached: true``. Without a seed a random one is drawn, so only requests that
repeat a seed can hit the cache. Keys live in an ``image_cache`` table of the
shared SQLite file; a hit whose assets were cleaned up is a miss.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from enfoads.errors import InvalidInput
from enfoads.work.serial import SerialLane
from enfoads.services import JobKind
from enfoads.services.image_options import (
    ASPECT_RATIOS, FORMATS, MAX_SEED, CompareOptions, ImageOptions, SideOptions,
)
from enfoads.services.options import raise_fields
from enfoads.services.styles import apply_style

__all__ = [
    "ASPECT_RATIOS",
    "LIGHTNING_STEPS",
    "FORMATS",
    "ImageService",
    "Plan",
    "RenderOutput",
    "render",
    "validate_options",
    "job_kinds",
    "side_by_side",
]

log = logging.getLogger(__name__)

SERVICE_VERSION = 1  # part of every cache key: bump when outputs change for the same request

LIGHTNING_STEPS = (1, 2, 4, 8)
QUALITY_DEFAULT_STEPS = 30
DEFAULT_GUIDANCE = {"sdxl": 5.0, "sd15": 7.5, "sd2": 7.5}
# Distilled catalogue models and their limits (until the catalogue carries them as options).
DISTILLED = {"sd-turbo": {"max_steps": 4, "guidance": 0.0, "native_px": 512, "family": "sd2"}}

# Progress: the denoising steps take 0-95 %, decoding and saving the rest.
_DENOISE_SHARE = 95

Progress = Callable[..., None]  # progress(percent, stage=None, preview_asset_id=None)

_AUTO = {None, "", "auto", "default"}
_LIGHTNING_ALIASES = {"lightning", "sdxl-lightning"}
_BASE_ALIASES = {"base", "quality", "sdxl-base"}


# ============================================================================ validation


def validate_options(params: dict, *, check_model: Callable[[str | None], None] | None = None) -> dict:
    """``ImageOptions.parse`` (see ``image_options``) as JSON, then ``check_model(model)``; every bad field named."""
    options = ImageOptions.parse(params).to_params()
    if check_model is not None:
        check_model(options["model"])
    return options


# ============================================================================ plan and render


@dataclass
class Plan:
    """Everything one render needs, resolved from validated options."""

    key: str  # residency key to lease
    model: str  # what the response calls the model
    family: str  # "sdxl", "sd15", "sd2"
    mode: str  # "lightning", "quality", "distilled", "standard"
    steps: int
    guidance: float
    width: int
    height: int
    prompt: str
    negative_prompt: str
    seeds: list[int]
    n: int
    format: str
    preview_every: int
    revision: str
    unet_weights: str | None = None  # a UNet file to swap in first (SDXL-Lightning family)
    unet_mode: str | None = None  # "lightning", "lightning-x0" or "base"
    expected_device: str = "cpu"
    expected_dtype: str = "float32"
    notes: list[str] = field(default_factory=list)
    style: str | None = None

    @property
    def unet(self) -> str | None:
        return Path(self.unet_weights).name if self.unet_weights else None


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


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def side_by_side(left, right, labels: tuple[str, str] = ("", ""), *, gap: int = 16, max_height: int = 1024):
    """Two images next to each other at one height, each captioned underneath."""
    from PIL import Image, ImageDraw

    height = min(max(left.height, right.height), max_height)

    def fit(im):
        if im.height == height:
            return im.convert("RGB")
        return im.convert("RGB").resize((max(1, round(im.width * height / im.height)), height), Image.LANCZOS)

    a, b = fit(left), fit(right)
    font_px = max(12, min(28, height // 24))
    band = font_px * 2 if any(labels) else 0
    canvas = Image.new("RGB", (a.width + gap + b.width, height + band), (255, 255, 255))
    canvas.paste(a, (0, 0))
    canvas.paste(b, (a.width + gap, 0))
    if band:
        draw, font = ImageDraw.Draw(canvas), _font(font_px)
        for x0, w, text in ((0, a.width, labels[0]), (a.width + gap, b.width, labels[1])):
            draw.text((x0 + w // 2, height + band // 2), text, fill=(20, 20, 20), font=font, anchor="mm")
    return canvas


def _animation(frames_a: list[bytes], frames_b: list[bytes], *, height: int = 128, ms: int = 350) -> bytes | None:
    """An animated GIF of both runs' denoising frames side by side (same relative progress per frame)."""
    if not frames_a or not frames_b:
        return None
    from PIL import Image

    def load(data):
        im = Image.open(io.BytesIO(data)).convert("RGB")
        return im.resize((max(1, round(im.width * height / im.height)), height), Image.NEAREST)

    a, b = [load(f) for f in frames_a], [load(f) for f in frames_b]
    count = max(len(a), len(b))
    frames = []
    for i in range(count):
        fa = a[min(len(a) - 1, (i * len(a)) // count)]
        fb = b[min(len(b) - 1, (i * len(b)) // count)]
        frames.append(side_by_side(fa, fb, gap=4, max_height=height))
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=ms, loop=0)
    return buf.getvalue()


# ============================================================================ cache


class ImageCache:
    """Request key -> stored result, in an ``image_cache`` table of the asset store's SQLite file."""

    def __init__(self, assets):
        self.assets = assets
        self._db = assets.db  # the asset store's file; its schema has the table (enfoads.work.schema)

    def get(self, key: str) -> dict | None:
        from enfoads.work.assets import AssetNotFound

        with self._db.read() as conn:
            row = conn.execute("SELECT result, asset_ids FROM image_cache WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            for asset_id in json.loads(row["asset_ids"]):
                self.assets.get(asset_id)
        except AssetNotFound:
            self.forget(key)  # cleaned up by the quota: render again
            return None
        with self._db.write() as conn:
            conn.execute("UPDATE image_cache SET hits = hits + 1 WHERE key = ?", (key,))
        return json.loads(row["result"])

    def put(self, key: str, result: dict, asset_ids: list[str]) -> None:
        with self._db.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO image_cache(key, result, asset_ids, created) VALUES (?, ?, ?, ?)",
                (key, json.dumps(result, separators=(",", ":")), json.dumps(asset_ids), time.time()),
            )

    def forget(self, key: str) -> None:
        with self._db.write() as conn:
            conn.execute("DELETE FROM image_cache WHERE key = ?", (key,))


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


def _is_cancel(exc: BaseException) -> bool:
    from enfoads.work.jobs import JobCancelled

    return isinstance(exc, JobCancelled)


def _nearest(steps: int, available) -> int:
    """The nearest of ``available`` step counts; ties go to more steps."""
    return min(sorted(available), key=lambda s: (abs(s - steps), -s))


# ============================================================================ the service


class ImageService:
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

    # ------------------------------------------------------------------ models

    @property
    def default_entry(self):
        return self.runtime.entry("image")

    def _default_kind(self) -> str:
        entry = self.default_entry
        if entry.loader == "sdxl_lightning":
            return "lightning"
        return "distilled" if self._distilled(entry) else "standard"

    @staticmethod
    def _distilled(entry) -> dict | None:
        if "max_steps" in entry.options:
            return {"max_steps": int(entry.options["max_steps"]), "guidance": float(entry.options.get("guidance", 0.0))}
        return DISTILLED.get(entry.id)

    def lightning_layout(self) -> dict:
        """Paths of the profile's SDXL-Lightning files: base folder, checkpoint folder, installed step counts."""
        with self._lock:
            if self._layout is None:
                from enfoads.models.registry import local_paths
                from enfoads.models.tiny.sdxl import LIGHTNING_UNET_FILES

                paths = local_paths(self.default_entry, self.runtime.settings.models_dir)
                unet_dir = Path(paths["unet"]).parent
                self._layout = {
                    "base": Path(paths["base"]),
                    "vae": Path(paths["vae"]) if paths.get("vae") else None,
                    "unet_dir": unet_dir,
                    "files": dict(LIGHTNING_UNET_FILES),
                }
            layout = dict(self._layout)
        layout["installed"] = tuple(s for s in LIGHTNING_STEPS if (layout["unet_dir"] / layout["files"][s]).is_file())
        from enfoads.models.loaders.image import base_unet_weights

        layout["base_unet"] = base_unet_weights(layout["base"])
        return layout

    def _same_lightning_family(self, entry) -> bool:
        default = self.default_entry
        if entry.loader != "sdxl_lightning" or default.loader != "sdxl_lightning":
            return False
        if entry.tiny or default.tiny:
            return entry.tiny == default.tiny
        return entry.sources.get("base") == default.sources.get("base")

    def _resolve_model(self, model: str | None) -> dict:
        """What a request's ``model`` means: {kind, key, entry|info}; ``InvalidInput`` (field model) if unusable."""
        from enfoads.models.catalog import CATALOG
        from enfoads.models.user_models import USER_PREFIX
        from enfoads.models.registry import presence

        default_kind = self._default_kind()
        name = model.strip() if isinstance(model, str) else model
        lowered = name.lower() if isinstance(name, str) else name
        default_key = self.runtime.model_key("image")
        if lowered in _AUTO or name == default_key and default_kind != "lightning":
            return {"kind": "auto" if default_kind == "lightning" else default_kind, "key": default_key,
                    "entry": self.default_entry}
        if lowered in _LIGHTNING_ALIASES or lowered in _BASE_ALIASES:
            if default_kind != "lightning":
                raise InvalidInput.field(
                    "model", f"{name!r} needs an SDXL-Lightning profile; this server runs the "
                    f"{self.runtime.profile.name!r} profile ({default_key})")
            return {"kind": "lightning" if lowered in _LIGHTNING_ALIASES else "base", "key": default_key,
                    "entry": self.default_entry}
        if name.startswith(USER_PREFIX):
            info = self.models.get(name)
            if info is None:
                users = [i.id for i in self.models.list() if i.valid]
                raise InvalidInput.field("model", f"no user model {name!r} in the models folder's image/ "
                                                  f"subfolder; available: {', '.join(users) or 'none'}")
            if not info.valid:
                raise InvalidInput.field("model", f"{name!r} cannot be used: {info.reason}")
            return {"kind": "standard", "key": info.id, "info": info}
        entry = CATALOG.get(name)
        if entry is None or entry.role != "image":
            raise InvalidInput.field("model", f"unknown image model {name!r}; choose one of: "
                                              f"{', '.join(m['id'] for m in self.list_models() if m['valid'])}")
        if self._same_lightning_family(entry):
            return {"kind": "lightning", "key": default_key, "entry": self.default_entry}
        if entry.id == default_key:
            return {"kind": default_kind, "key": default_key, "entry": entry}
        here = presence(entry, self.runtime.settings.models_dir)
        if not here.present and not (entry.tiny and self.runtime.profile.name == "tiny"):
            raise InvalidInput.field("model", f"{name!r} is not installed: {here.detail}")
        self._ensure_registered(entry)
        kind = "distilled" if self._distilled(entry) else ("lightning-fixed" if entry.loader == "sdxl_lightning" else "standard")
        return {"kind": kind, "key": entry.id, "entry": entry}

    def _ensure_registered(self, entry) -> None:
        from enfoads.models.adapters import adapter_for, preferred_tier
        from enfoads.models.residency import ResidencyError

        residency = self.runtime.residency
        if entry.id in residency.registered():
            return
        choice = replace(self.runtime.choice("image"), model_id=entry.id)
        adapter = adapter_for(entry, choice, self.runtime.settings.models_dir)
        try:
            residency.register(adapter, preferred=preferred_tier(choice))
        except ResidencyError:
            pass  # registered meanwhile by another thread

    def check_model(self, model: str | None) -> None:
        self._resolve_model(model)

    def list_models(self, *, refresh: bool = False) -> list[dict]:
        """Every image model a request may name, with ``valid`` and the reason when not."""
        from enfoads.models.catalog import CATALOG
        from enfoads.models.registry import presence

        if refresh:
            self.models.refresh()
        default_key = self.runtime.model_key("image")
        out = []
        if self._default_kind() == "lightning":
            layout = self.lightning_layout() if self._default_present() else {"installed": (), "base_unet": None}
            out.append({"id": "auto", "kind": "rule", "valid": True, "default": True, "family": "sdxl",
                        "description": "SDXL-Lightning for 1, 2, 4 or 8 steps (guidance 0); SDXL base otherwise"})
            out.append({"id": "lightning", "kind": "rule", "valid": True, "default": False, "family": "sdxl",
                        "description": "SDXL-Lightning only, nearest checkpoint", "steps": list(layout["installed"])})
            base_ok = layout["base_unet"] is not None
            out.append({"id": "base", "kind": "rule", "valid": base_ok, "default": False, "family": "sdxl",
                        "description": "SDXL base 1.0 (quality mode: 10-50 steps with guidance)",
                        "reason": None if base_ok else "the SDXL base UNet weights are not installed "
                                                              "(`enfoads preload --with quality`)"})
        for entry in CATALOG.values():
            if entry.role != "image":
                continue
            if entry.tiny and self.runtime.profile.name != "tiny" and entry.id != default_key:
                continue
            here = presence(entry, self.runtime.settings.models_dir)
            valid = here.present or entry.id == default_key or bool(entry.tiny and self.runtime.profile.name == "tiny")
            out.append({"id": entry.id, "kind": "catalogue", "valid": valid, "default": entry.id == default_key,
                        "description": entry.description, "licence": entry.licence,
                        "reason": None if valid else here.detail})
        for info in self.models.list():
            out.append({"id": info.id, "kind": "user", "valid": info.valid, "default": False,
                        "family": info.family, "description": f"{info.kind.replace('_', ' ')}: {info.path}",
                        "reason": info.reason})
        return out

    def _default_present(self) -> bool:
        from enfoads.models.registry import presence

        entry = self.default_entry
        return bool(entry.tiny) or presence(entry, self.runtime.settings.models_dir).present

    # -------------------------------------------------------------- validation

    def validate(self, params: dict) -> dict:
        """``validate_options`` with this runtime's models; raises ``InvalidInput``."""
        return validate_options(params, check_model=self.check_model)

    def validate_compare(self, params: dict) -> dict:
        """Options for ``image.compare``: the shared ones plus two sides ``a`` and ``b``.

        Sides come as ``a``/``b`` objects (``model``, ``steps``, ``guidance``), or as
        ``models: [x, y]``, or ``steps: [x, y]``. One image per side, same prompt and seed.
        """
        if not isinstance(params, dict):
            raise InvalidInput("the request body must be a JSON object")
        params = dict(params)
        errors: dict[str, str] = {}
        sides: dict[str, dict] = {}
        if "models" in params:
            models = params.pop("models")
            if not isinstance(models, list) or len(models) != 2:
                errors["models"] = "must be a list of two model ids"
            else:
                sides = {"a": {"model": models[0]}, "b": {"model": models[1]}}
        if isinstance(params.get("steps"), list):
            pair = params.pop("steps")
            if len(pair) != 2:
                errors["steps"] = "must be one number, or a list of two to compare"
            else:
                sides = {k: {**sides.get(k, {}), "steps": v} for k, v in zip("ab", pair)}
        for name in ("a", "b"):
            if name in params:
                side = params.pop(name)
                if not isinstance(side, dict):
                    errors[name] = "must be an object with model, steps and/or guidance"
                    continue
                unknown = sorted(set(side) - set(SideOptions.model_fields))
                if unknown:
                    errors[name] = f"unknown keys {unknown}; a side may set model, steps, guidance"
                    continue
                sides[name] = {**sides.get(name, {}), **side}
        if params.get("n") not in (None, 1):
            errors["n"] = "a comparison renders one image per side"
        try:
            base = self.validate(params)
        except InvalidInput as exc:
            errors.update(exc.fields or {"options": exc.message})
            base = {}
        parsed = {}
        for name in ("a", "b"):
            given = sides.get(name, {})
            try:
                side = SideOptions.parse(given).to_params()
            except InvalidInput as exc:
                errors.update({f"{name}.{field}": message for field, message in exc.fields.items()})
                continue
            parsed[name] = {k: v for k, v in side.items() if k in given or (k == "guidance" and "guidance_scale" in given)}
            if "model" in parsed[name]:
                try:
                    self.check_model(parsed[name]["model"])
                except InvalidInput as exc:
                    errors[f"{name}.model"] = next(iter(exc.fields.values()), exc.message)
        if not errors:
            resolved = [{**{k: base.get(k) for k in ("model", "steps", "guidance")}, **parsed[s]} for s in "ab"]
            if resolved[0] == resolved[1]:
                errors["b"] = "must differ from a (another model, step count or guidance)"
        raise_fields(errors, "image options")
        return {**base, "n": 1, "a": parsed["a"], "b": parsed["b"]}

    # ------------------------------------------------------------------ plan

    def plan(self, options: dict) -> Plan:
        """Resolve validated options into what will run (model, checkpoint, steps, guidance, size, prompt)."""
        resolved = self._resolve_model(options.get("model"))
        kind, key = resolved["kind"], resolved["key"]
        steps_req, guidance_req = options.get("steps"), options.get("guidance")
        notes: list[str] = []
        unet_weights = unet_mode = None
        family, native, revision_files, revision = "sdxl", 1024, [], ""
        profile_opts = dict(self.runtime.choice("image").options)

        if kind in ("auto", "lightning", "base"):
            layout = self.lightning_layout()
            installed = layout["installed"]
            steps_default = int(profile_opts.get("steps", 4))
            steps = steps_req if steps_req is not None else steps_default
            use_base = kind == "base" or (kind == "auto" and steps not in LIGHTNING_STEPS)
            if use_base and layout["base_unet"] is None:
                if kind == "base":
                    raise InvalidInput.field("model", "the SDXL base UNet (quality mode) is not installed; "
                                                      "run `enfoads preload --with quality`")
                use_base = False
                notes.append(f"{steps} steps needs the quality model (SDXL base UNet), which is not installed "
                             f"(`enfoads preload --with quality`); ran SDXL-Lightning instead")
            if use_base:
                mode = "quality"
                if kind == "base" and steps_req is None:
                    steps = QUALITY_DEFAULT_STEPS
                guidance = guidance_req if guidance_req is not None else DEFAULT_GUIDANCE["sdxl"]
                unet_weights, unet_mode = str(layout["base_unet"]), "base"
                model_name = "tiny-sdxl-base" if self.default_entry.tiny else "sdxl-base-1.0"
            else:
                mode = "lightning"
                if not installed:
                    raise InvalidInput.field("model", "no SDXL-Lightning UNet checkpoint is installed; run `enfoads preload`")
                ck = steps if steps in installed else _nearest(steps, installed)
                if ck != steps:
                    why = "is not an SDXL-Lightning step count" if steps not in LIGHTNING_STEPS else "has no installed checkpoint"
                    notes.append(f"{steps} steps {why} (1, 2, 4, 8); ran the nearest, {ck} steps")
                steps = ck
                if guidance_req not in (None, 0, 0.0):
                    notes.append(f"SDXL-Lightning is distilled for guidance 0: guidance {guidance_req:g} was not used")
                guidance = 0.0
                unet_weights = str(layout["unet_dir"] / layout["files"][ck])
                unet_mode = "lightning-x0" if ck == 1 else "lightning"
                model_name = key if self.default_entry.tiny else f"sdxl-lightning-{ck}step"
            revision_files = [layout["base"] / "model_index.json", layout["base"] / "unet" / "config.json",
                              Path(unet_weights)]
            if layout.get("vae"):
                revision_files.append(layout["vae"] / "config.json")
        elif kind == "distilled":
            entry = resolved["entry"]
            limits = self._distilled(entry)
            family, native = limits.get("family", "sd15"), int(limits.get("native_px", 512))
            mode, model_name = "distilled", entry.id
            if steps_req is not None:
                steps = steps_req
            elif entry.id == self.runtime.model_key("image"):
                steps = int(profile_opts.get("steps", 2))
            else:
                steps = 2
            if steps > limits["max_steps"]:
                notes.append(f"{entry.id} is distilled for 1-{limits['max_steps']} steps: ran {limits['max_steps']} "
                             f"instead of {steps}")
                steps = limits["max_steps"]
            if guidance_req not in (None, limits["guidance"]):
                notes.append(f"{entry.id} is distilled for guidance {limits['guidance']:g}: "
                             f"guidance {guidance_req:g} was not used")
            guidance = limits["guidance"]
            revision_files = self._catalogue_files(entry)
        elif kind == "lightning-fixed":
            entry = resolved["entry"]
            mode, model_name = "lightning", entry.id
            steps = int(entry.options.get("steps", 4))
            if steps_req not in (None, steps):
                notes.append(f"{entry.id} is a {steps}-step checkpoint: ran {steps} steps instead of {steps_req}")
            if guidance_req not in (None, 0, 0.0):
                notes.append(f"SDXL-Lightning is distilled for guidance 0: guidance {guidance_req:g} was not used")
            guidance = 0.0
            revision_files = self._catalogue_files(entry)
        else:  # standard: user models and plain catalogue folders
            info = resolved.get("info")
            if info is not None:
                family, native, revision = info.family or "sdxl", info.native_px, info.revision
            else:
                entry = resolved["entry"]
                revision_files = self._catalogue_files(entry)
            mode, model_name = "standard", key
            steps = steps_req if steps_req is not None else QUALITY_DEFAULT_STEPS
            guidance = guidance_req if guidance_req is not None else DEFAULT_GUIDANCE.get(family, 5.0)

        width, height = self._size(options, native, key)
        prompt, negative, style_info = apply_style(options.get("style"), options["prompt"],
                                                   options.get("negative_prompt") or "")
        if options.get("negative_prompt") and guidance <= 1:
            notes.append("the negative prompt has no effect at guidance 1 or below")
        if not revision:
            from enfoads.models.user_models import _fingerprint

            revision = _fingerprint([Path(p) for p in revision_files])
        every = options.get("preview_every")
        if every is None:
            every = 1 if steps <= 8 else math.ceil(steps / 8)
        seeds = [(int(options["seed"]) + i) % (MAX_SEED + 1) for i in range(int(options.get("n") or 1))]
        device, dtype = self._expected_placement(key)
        return Plan(
            key=key, model=model_name, family=family, mode=mode, steps=int(steps), guidance=float(guidance),
            width=width, height=height, prompt=prompt, negative_prompt=negative, seeds=seeds, n=len(seeds),
            format=options.get("format") or "png", preview_every=int(every), revision=revision,
            unet_weights=unet_weights, unet_mode=unet_mode, expected_device=device, expected_dtype=dtype,
            notes=notes, style=style_info.get("style"),
        )

    def _catalogue_files(self, entry) -> list[Path]:
        from enfoads.models.registry import local_paths

        try:
            paths = local_paths(entry, self.runtime.settings.models_dir)
        except Exception:
            return []
        files = []
        for p in paths.values():
            p = Path(p)
            files.extend([p] if p.is_file() else sorted(p.glob("*.json")) + sorted(p.glob("*/*.safetensors")))
        return files

    def _size(self, options: dict, native: int, key: str) -> tuple[int, int]:
        if options.get("width") and options.get("height"):
            return int(options["width"]), int(options["height"])
        ratio = options.get("aspect_ratio")
        if ratio:
            w, h = ASPECT_RATIOS[ratio]
            if native >= 1024:
                return w, h
            scale = native / 1024
            return max(64, int(round(w * scale / 8)) * 8), max(64, int(round(h * scale / 8)) * 8)
        opts = self.runtime.choice("image").options
        if key == self.runtime.model_key("image") and opts.get("width") and opts.get("height"):
            return int(opts["width"]), int(opts["height"])
        return native, native

    def _expected_placement(self, key: str) -> tuple[str, str]:
        residency = self.runtime.residency
        choice = self.runtime.choice("image")
        device = residency.gpu_device if residency.gpu_budget > 0 and choice.device == "gpu" else "cpu"
        dtype = choice.dtype if device.startswith("cuda") else "float32"
        return device, dtype

    def cache_key(self, options: dict, plan: Plan) -> str:
        """A hash of every parameter that shapes the output: request, resolved plan, model revision."""
        request = {k: options.get(k) for k in sorted(options) if k not in ("cache", "a", "b")}
        material = {
            "v": SERVICE_VERSION,
            "request": request,
            "model": plan.model, "key": plan.key, "revision": plan.revision, "mode": plan.mode,
            "unet": plan.unet, "unet_mode": plan.unet_mode,
            "prompt": plan.prompt, "negative_prompt": plan.negative_prompt, "style": plan.style,
            "width": plan.width, "height": plan.height, "steps": plan.steps, "guidance": plan.guidance,
            "seeds": plan.seeds, "n": plan.n, "format": plan.format, "preview_every": plan.preview_every,
            "device": plan.expected_device.split(":")[0], "dtype": plan.expected_dtype,
        }
        blob = json.dumps(material, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _cache_for(self, assets) -> ImageCache | None:
        if assets is None:
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

        from enfoads.models.residency import ModelMemoryError

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

    # -------------------------------------------------------------- compare

    def compare(self, options: dict, *, progress: Progress | None = None, save=None, assets=None) -> dict:
        """Render the same prompt and seed two ways (``validate_compare``) and put them side by side."""
        saver = save if save is not None else _Saver(assets=assets)
        results, frames = {}, {}
        for name, span in (("a", (0, 45)), ("b", (45, 90))):
            side = {k: v for k, v in options.items() if k not in ("a", "b")}
            side.update(options[name])
            results[name], frames[name] = self._generate(side, progress=progress, save=saver, assets=assets,
                                                         span=span, label=name.upper())
        for name in ("a", "b"):
            if frames[name] is None and assets is not None:
                frames[name] = [assets.read_bytes(p["asset_id"]) for p in results[name]["previews"]]
        if progress is not None:
            progress(92, "side by side")
        from PIL import Image

        pics = [self._image_of(results[n], assets) for n in ("a", "b")]
        labels = tuple(self._label(results[n]) for n in ("a", "b"))
        combo = side_by_side(pics[0], pics[1], labels)
        data = encode_image(combo, "png", text={"parameters": f"{labels[0]}  vs  {labels[1]}"})
        asset = saver(data, "image/png", kind="image", width=combo.width, height=combo.height,
                      params={"compare": [results["a"]["cache_key"], results["b"]["cache_key"]], "labels": list(labels)})
        out = {
            "a": results["a"],
            "b": results["b"],
            "labels": list(labels),
            "seed": results["a"]["seed"],
            "prompt": results["a"]["prompt"],
            "side_by_side": {"asset_id": asset.id if asset else None, "mime": "image/png", "width": combo.width,
                             "height": combo.height, "bytes": len(data)},
            "animation": None,
        }
        if asset is None:
            out["side_by_side"]["data"] = data
        gif = _animation(frames["a"] or [], frames["b"] or [])
        if gif is not None:
            g = saver(gif, "image/gif", kind="animation", params={"compare": out["labels"]})
            with Image.open(io.BytesIO(gif)) as im:
                size = im.size
            out["animation"] = {"asset_id": g.id if g else None, "mime": "image/gif", "width": size[0],
                                "height": size[1], "bytes": len(gif)}
        if asset is not None:
            side_ids = results["a"]["image_asset_ids"] + results["b"]["image_asset_ids"]
            out["image_asset_ids"] = [asset.id] + side_ids
            extra = [p["asset_id"] for n in ("a", "b") for p in results[n]["previews"]]
            if out["animation"] and out["animation"]["asset_id"]:
                extra.append(out["animation"]["asset_id"])
            out["asset_ids"] = out["image_asset_ids"] + extra
        return out

    @staticmethod
    def _image_of(result: dict, assets):
        from PIL import Image

        first = result["images"][0]
        data = first.get("data") if first.get("asset_id") is None else assets.read_bytes(first["asset_id"])
        return Image.open(io.BytesIO(data))

    @staticmethod
    def _label(result: dict) -> str:
        return f"{result['model']}, {result['steps']} steps, guidance {result['guidance_used']:g}"

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
