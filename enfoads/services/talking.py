"""Talking avatars: the portrait's mouth follows the speech (MuseTalk), laid over the video's canvas.

``Talker`` is what the video renderer and ``/live-portrait`` use:

- ``available()``: the lip-sync model can load now (installed, or a tiny
  model). Videos lip-sync whenever it is and the request did not turn it off
  (``lipsync: false``); otherwise the still avatar moves as before, and the
  result says which ran and why.
- ``render(...)``: leases the model once for the scene, prepares the
  portrait (its crop and reference latents, once), then feeds ffmpeg one face
  patch a frame while ffmpeg lays it over the still canvas and moves the
  camera (``video_ffmpeg.scene_command`` with a ``FacePatch``): the existing
  slow motion stays on top of the talking face, and the whole scene is one
  encoding pass.

Patches: only the face's crop moves, so only its box on the canvas (mapped
through ``video_canvas.placement``, rounded out to even pixels) is sent, a
few hundred KB a frame instead of the whole 2x canvas. Each patch is the
canvas's own pixels blended with the generated face through the paste-back
mask mapped onto the canvas, so outside the mask it is the canvas exactly.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from enfoads.models.catalog_lipsync import LIPSYNC
from enfoads.services.video_canvas import Placement
from enfoads.services.video_ffmpeg import FacePatch, feed_ffmpeg

log = logging.getLogger(__name__)

__all__ = ["LIPSYNC", "Talker", "PatchMaker", "face_patch"]


def face_patch(place: Placement, crop: tuple[int, int, int, int]) -> FacePatch:
    """The crop box's place on the canvas, rounded out to even pixels and kept inside the canvas."""
    x1, y1, x2, y2 = crop
    cx1 = math.floor(x1 * place.sx + place.tx) - 1
    cy1 = math.floor(y1 * place.sy + place.ty) - 1
    cx2 = math.ceil(x2 * place.sx + place.tx) + 1
    cy2 = math.ceil(y2 * place.sy + place.ty) + 1
    cx1, cy1 = max(0, cx1 - cx1 % 2), max(0, cy1 - cy1 % 2)
    cx2, cy2 = min(place.canvas_width, cx2 + cx2 % 2), min(place.canvas_height, cy2 + cy2 % 2)
    width, height = cx2 - cx1, cy2 - cy1
    width, height = width - width % 2, height - height % 2  # yuv420p wants even sizes
    if width < 2 or height < 2:
        raise ValueError("the face is outside the video's canvas")
    return FacePatch(cx1, cy1, width, height)


class PatchMaker:
    """A generated portrait frame -> its face patch on the canvas (RGB, C-contiguous, ``patch`` sized)."""

    def __init__(self, canvas_rgb, place: Placement, crop: tuple[int, int, int, int], mask, patch: FacePatch):
        import cv2
        import numpy as np

        self.place, self.patch = place, patch
        y, x = patch.y, patch.x
        self.background = np.ascontiguousarray(canvas_rgb[y:y + patch.height, x:x + patch.width]).astype(np.float32)
        x1, y1 = crop[0], crop[1]
        # The mask lives in crop coordinates: shift by the crop's corner, then map like the portrait.
        matrix = place.matrix(x, y)
        matrix[:, 2] += matrix[:, :2] @ np.array([x1, y1], dtype=np.float64)
        warped = cv2.warpAffine(mask.astype(np.float32), matrix, (patch.width, patch.height), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        self.mask = np.clip(warped, 0.0, 1.0)[:, :, None]
        self.outside = self.mask[:, :, 0] <= 0.0
        self._still = self.background.astype(np.uint8)

    def __call__(self, frame):
        import cv2
        import numpy as np

        matrix = self.place.matrix(self.patch.x, self.patch.y)
        face = cv2.warpAffine(frame, matrix, (self.patch.width, self.patch.height), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        out = np.rint(self.background + self.mask * (face - self.background))
        out = np.clip(out, 0, 255).astype(np.uint8)
        out[self.outside] = self._still[self.outside]  # the canvas exactly, not a rounding of it
        return np.ascontiguousarray(out)


@dataclass(frozen=True)
class LipsyncRun:
    """What a scene's lip sync did, for the job's result."""

    frames: int
    seconds: float
    model: str
    batch_size: int


class Talker:
    """Lip-synced faces over a runtime's residency manager (no Flask, no globals)."""

    def __init__(self, runtime):
        self.runtime = runtime

    @property
    def model_id(self) -> str | None:
        roles = self.runtime.profile.roles
        return roles[LIPSYNC].model_id if LIPSYNC in roles else None

    def available(self) -> bool:
        from enfoads.models.registry import presence

        if self.model_id is None:
            return False
        entry = self.runtime.entry(LIPSYNC)
        return bool(entry.tiny) or presence(entry, self.runtime.settings.models_dir).present

    def unavailable_reason(self) -> str:
        if self.model_id is None:
            return f"the {self.runtime.profile.name} profile has no lip-sync model"
        return f"the lip-sync model {self.model_id} is not installed (enfoads preload --only lipsync)"

    @property
    def device(self) -> str:
        """Where its jobs run: the GPU worker when the model runs on a GPU (or the tiny profile's simulated one)."""
        return self.runtime.choice(LIPSYNC).device if self.model_id else "cpu"

    def batch_size(self) -> int:
        return int(self.runtime.choice(LIPSYNC).options.get("batch_size", 8))

    def render(self, *, portrait_rgb, face: dict, audio_16k, fmt, canvas_path: Path, place: Placement,
               scene_args: Callable[[FacePatch], list[str]], log_file: Path,
               progress: Callable[[float, str], None]) -> LipsyncRun:
        """Feed ffmpeg (``scene_args(patch)``) a face patch for every frame of ``audio_16k``."""
        import numpy as np
        from PIL import Image

        from enfoads.services.lipsync import LipSync
        from enfoads.services.lipsync_mask import FaceGeometry, crop_box, lower_face_mask

        started = time.perf_counter()
        height, width = portrait_rgb.shape[:2]
        geometry = FaceGeometry.from_dict(face)
        crop = crop_box(geometry, width, height)
        mask = lower_face_mask(geometry, crop)
        with Image.open(canvas_path) as im:
            canvas = np.asarray(im.convert("RGB"))
        patch = face_patch(place, crop)
        maker = PatchMaker(canvas, place, crop, mask, patch)
        batch = self.batch_size()
        with self.runtime.residency.use(self.runtime.model_key(LIPSYNC)) as models:
            engine = LipSync(models, batch_size=batch, fps=fmt.fps)
            total = engine.frame_count(len(audio_16k))
            progress(0.0, f"lip sync 0/{total} frames")
            prepared = engine.prepare(portrait_rgb, geometry)

            def on_batch(done: int, total: int) -> None:
                progress(done / max(total, 1), f"lip sync {done}/{total} frames")

            patches = (maker(frame) for frame in engine.frames(prepared, audio_16k, progress=on_batch))
            frames = feed_ffmpeg(scene_args(patch), patches, log_file=log_file)
        return LipsyncRun(frames, round(time.perf_counter() - started, 3), self.model_id or "", batch)
