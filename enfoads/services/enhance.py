"""Enhance: upscale an image or a video (Real-ESRGAN through spandrel) and restore its faces (GFPGAN).

Job kinds ``enhance.image`` and ``enhance.video`` (the GPU worker), options
``EnhanceOptions`` (``enfoads.services.enhance_options``): ``media``, ``model``,
``scale``, ``tile``, ``face_restore``, ``restore_model``.

- **Image**: decoded upright (EXIF applied), upscaled in tiles of ``tile`` px
  with ``overlap`` px of context (the profile's: 512 and 32 on a GPU), a tile
  halved on out-of-memory down to ``min_tile`` (``enfoads.services.upscale_tiles``);
  reduced to ``scale`` when it is below the model's own; alpha scaled
  alongside (bicubic). The result's long side is capped by
  ``ENFOADS_ENHANCE_MAX_SIDE`` (default 4096: x4 of a 1024 px image), checked
  from the header before queueing (413).
- **Faces** (``face_restore``): InsightFace finds them (the faces model, on
  the output), each is aligned to the FFHQ 512 template, restored by GFPGAN
  and pasted back with a feathered mask (``enfoads.services.face_restore``).
  Face swap calls the same ``restore_faces`` with its target's key points
  (``restore: true``).
- **Video**: decoded frame by frame through ffmpeg pipes, batches of frames
  through the same upscaler (a frame that fits in one tile goes in a batch),
  encoded as the rendered videos are (H.264, yuv420p, faststart) with the
  source's audio copied (``enfoads.services.enhance_video``); progress per
  batch, cancel between batches. Capped by ``ENFOADS_ENHANCE_MAX_VIDEO_SIDE``
  and ``ENFOADS_ENHANCE_MAX_VIDEO_FRAMES``.

Models are leased from the residency manager one block at a time, and no
reference outlives its lease.

Result (image)::

    {"asset_id", "mime": "image/png", "width", "height", "input": {"width", "height"},
     "model", "model_scale", "scale", "tile", "dtype", "faces_restored", "restore_model", "seconds"}
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from enfoads.errors import InvalidInput, PayloadTooLarge
from enfoads.models.catalog_enhance import RESTORE, UPSCALE
from enfoads.services import JobKind, image_input, media
from enfoads.services.enhance_models import EnhanceModel, EnhanceModels
from enfoads.services.enhance_options import EnhanceOptions

__all__ = ["IMAGE_KIND", "VIDEO_KIND", "EnhanceService", "job_kinds"]

log = logging.getLogger(__name__)

IMAGE_KIND, VIDEO_KIND = "enhance.image", "enhance.video"
VIDEO_MIMES = ("video/mp4", "video/quicktime", "video/webm", "video/x-matroska")


@dataclass(frozen=True)
class Limits:
    max_side: int = 4096
    max_video_side: int = 1920
    max_video_frames: int = 9000
    max_image_pixels: int = image_input.DEFAULT_MAX_IMAGE_PIXELS
    max_image_bytes: int = image_input.DEFAULT_MAX_IMAGE_BYTES
    max_video_bytes: int = 500 * media.MB

    @classmethod
    def from_settings(cls, settings) -> "Limits":
        return cls(max_side=int(settings.enhance_max_side), max_video_side=int(settings.enhance_max_video_side),
                   max_video_frames=int(settings.enhance_max_video_frames),
                   max_image_pixels=int(settings.max_image_pixels),
                   max_image_bytes=int(settings.max_image_mb * media.MB))


class EnhanceService:
    """Upscaling and face restoration over a runtime's residency manager (no Flask, no globals)."""

    def __init__(self, runtime, *, models: EnhanceModels | None = None, limits: Limits | None = None,
                 ffmpeg: str | None = None):
        self.runtime = runtime
        self.models = models or EnhanceModels(runtime)
        self.limits = limits or Limits.from_settings(runtime.settings)
        self._ffmpeg = ffmpeg

    @property
    def ffmpeg(self) -> str:
        from enfoads.services.video_ffmpeg import find_ffmpeg

        if self._ffmpeg is None:
            self._ffmpeg = find_ffmpeg(self.runtime.settings)
        return self._ffmpeg

    def tiles(self, tile: int | None) -> dict:
        options = dict(self.runtime.choice(UPSCALE).options)
        chosen = int(tile or options.get("tile", 512))
        return {"tile": chosen, "overlap": int(options.get("overlap", 32)),
                "min_tile": min(chosen, int(options.get("min_tile", 64)))}

    # ------------------------------------------------------------------ validation

    def _models_for(self, opts: EnhanceOptions) -> tuple[EnhanceModel, EnhanceModel | None, int]:
        upscaler = self.models.resolve(opts.model, UPSCALE, field="model")
        restorer = self.models.resolve(opts.restore_model, RESTORE, field="restore_model") if opts.face_restore \
            else None
        scale = opts.scale or upscaler.scale
        if scale > upscaler.scale:
            raise InvalidInput.field("scale", f"{upscaler.key} enlarges x{upscaler.scale}; choose a scale from 1 "
                                              f"to {upscaler.scale}, or another model")
        return upscaler, restorer, scale

    def _capped(self, width: int, height: int, scale: int, limit: int, setting: str) -> tuple[int, int]:
        out_w, out_h = width * scale, height * scale
        if max(out_w, out_h) > limit:
            best = limit // max(width, height)
            hint = f"choose a scale of at most {best}" if best >= 1 else "send a smaller picture"
            raise PayloadTooLarge.field("scale", f"the result would be {out_w}x{out_h} px; the longest side allowed "
                                                 f"is {limit} px ({setting}): {hint}")
        return out_w, out_h

    def _asset(self, assets, asset_id: str, prefix: str):
        return media.stored_asset(assets, asset_id, field="media", types=(prefix,), what=f"{prefix.rstrip('/')} media")

    def _image_payload(self, value: str, assets):
        if media.is_asset_id(value):
            self._asset(assets, value, "image/")
            return assets.read_bytes(value)
        return value

    def validate_image(self, params: dict, *, assets=None) -> dict:
        """Check an image request from the picture's header and the models' scales; nothing is decoded."""
        opts = EnhanceOptions.parse(params)
        upscaler, restorer, scale = self._models_for(opts)
        info = image_input.probe_image(self._image_payload(opts.media, assets), field="media",
                                       max_pixels=self.limits.max_image_pixels, max_bytes=self.limits.max_image_bytes)
        self._capped(info.width, info.height, scale, self.limits.max_side, "ENFOADS_ENHANCE_MAX_SIDE")
        return {**opts.to_params(), "model": upscaler.key, "scale": scale, **self.tiles(opts.tile),
                "restore_model": restorer.key if restorer else None}

    # ------------------------------------------------------------------ the work

    def upscale(self, pixels_rgb, *, model: str, scale: int, tiles: dict, progress=None):
        """``pixels_rgb`` upscaled by ``model`` then reduced to ``scale`` when the model's is larger.

        Returns (pixels, the tile size that worked, the dtype it ran in, the model's own scale).
        """
        import cv2

        from enfoads.services.upscale_tiles import upscale_image

        with self.runtime.residency.use(model) as upscaler:
            model_scale = int(upscaler.scale)
            out, tile = upscale_image(upscaler, pixels_rgb, scale=model_scale, device=upscaler.device,
                                      dtype=upscaler.dtype, progress=progress, **tiles)
            dtype = str(upscaler.dtype).replace("torch.", "")
            del upscaler
        height, width = pixels_rgb.shape[:2]
        if scale != model_scale:
            out = cv2.resize(out, (width * scale, height * scale), interpolation=cv2.INTER_AREA)
        return out, tile, dtype, model_scale

    def _detect(self, pixels_bgr):
        from enfoads.services.face_detection import DETECT_MAX_SIDE, detect

        with self.runtime.residency.use(self.runtime.model_key("faces")) as app:
            faces, _scale = detect(app, pixels_bgr, max_side=DETECT_MAX_SIDE)
        return [face.kps for face in faces]

    def restore_faces(self, pixels_bgr, *, model: str | None = None, kps=None, progress=None):
        """GFPGAN over each face of ``pixels_bgr`` (found here unless ``kps`` lists their 5 key points).

        Returns (new BGR pixels, one changed box or None per face).
        """
        from enfoads.services.face_restore import gfpgan_restorer, restore_faces

        kps = self._detect(pixels_bgr) if kps is None else list(kps)
        if not kps:
            return pixels_bgr, []
        key = model or self.models.default_key(RESTORE)
        with self.runtime.residency.use(key) as restorer:
            size = int(self.runtime.choice(RESTORE).options.get("size", 512))
            out, boxes = restore_faces(gfpgan_restorer(restorer, device=restorer.device, dtype=restorer.dtype),
                                       pixels_bgr, kps, size=size, progress=progress)
            del restorer
        return out, boxes

    def enhance_image(self, params: dict, *, assets=None, progress=None, save=None) -> dict:
        """Run validated ``enhance.image`` params; ``save(png, width, height) -> asset id``."""
        import cv2
        import numpy as np

        progress = progress or (lambda pct, stage=None: None)
        started = time.perf_counter()
        progress(0, "decoding")
        picture = image_input.decode_image(self._image_payload(params["media"], assets), field="media",
                                           max_pixels=self.limits.max_image_pixels,
                                           max_bytes=self.limits.max_image_bytes, channels="RGB")
        scale = int(params["scale"])
        self._capped(picture.width, picture.height, scale, self.limits.max_side, "ENFOADS_ENHANCE_MAX_SIDE")
        tiles = {k: int(params[k]) for k in ("tile", "overlap", "min_tile")}

        def tile_done(done: int, total: int) -> None:
            progress(5 + 75 * done / max(total, 1), f"upscaling: tile {done} of {total}")

        kps = None
        if params.get("face_restore"):
            # Found on the input (the detector works at 640 px anyway) and scaled: upscaling keeps the geometry.
            progress(2, "finding faces")
            kps = self._detect(np.ascontiguousarray(picture.pixels[:, :, ::-1]))
        out, tile, dtype, model_scale = self.upscale(picture.pixels, model=params["model"], scale=scale,
                                                     tiles=tiles, progress=tile_done)
        bgr = np.ascontiguousarray(out[:, :, ::-1])
        boxes: list = []
        if kps:
            progress(80, "restoring faces")

            def face_done(done: int, total: int) -> None:
                progress(80 + 15 * done / max(total, 1), f"restoring faces: {done} of {total}")

            ratio = np.array([bgr.shape[1] / picture.width, bgr.shape[0] / picture.height], dtype=np.float32)
            bgr, boxes = self.restore_faces(bgr, model=params.get("restore_model"), progress=face_done,
                                            kps=[np.asarray(k, dtype=np.float32) * ratio for k in kps])
        alpha = None
        if picture.alpha is not None:
            alpha = cv2.resize(picture.alpha, (bgr.shape[1], bgr.shape[0]), interpolation=cv2.INTER_CUBIC)
        progress(95, "encoding")
        result = {
            "mime": "image/png", "width": int(bgr.shape[1]), "height": int(bgr.shape[0]),
            "input": {"width": picture.width, "height": picture.height},
            "model": params["model"], "model_scale": model_scale, "scale": scale, "tile": tile, "dtype": dtype,
            "faces_restored": sum(b is not None for b in boxes), "faces_found": len(boxes),
            "restore_model": params.get("restore_model"),
        }
        if save is None:
            result["pixels"] = bgr
        else:
            png = image_input.encode_png(bgr, channels="BGR", alpha=alpha)
            result["asset_id"] = save(png, result["width"], result["height"])
        result["seconds"] = round(time.perf_counter() - started, 3)
        return result

    # ------------------------------------------------------------------ job kinds

    def job_kinds(self, *, assets=None) -> list[JobKind]:
        """``enhance.image`` and ``enhance.video`` (both on the GPU worker)."""
        from enfoads.services.enhance_video_job import VideoEnhancer

        videos = VideoEnhancer(self)

        def validate(params: dict) -> dict:
            return self.validate_image(params, assets=assets)

        def handler(params: dict, ctx) -> dict:
            params = self.validate_image(params, assets=ctx.assets)

            def save(png: bytes, width: int, height: int) -> str:
                return ctx.save_bytes(png, "image/png", width=width, height=height).id

            return self.enhance_image(params, assets=ctx.assets, progress=ctx.progress, save=save)

        return [
            JobKind(name=IMAGE_KIND, handler=handler, validate=validate, device="gpu", options=EnhanceOptions),
            JobKind(name=VIDEO_KIND, handler=videos.handler, validate=lambda p: videos.validate(p, assets=assets),
                    device="gpu", options=EnhanceOptions),
        ]


def job_kinds(runtime, *, assets=None) -> list[JobKind]:
    """The enhance job kinds of a new ``EnhanceService`` for ``runtime``."""
    return EnhanceService(runtime).job_kinds(assets=assets)
