"""The ``enhance.video`` job: a stored or uploaded video upscaled frame by frame, faces restored if asked.

Validation reads the file with ffmpeg before the job is queued, so a file
that is not a video, a truncated MP4 or one over the size and frame limits
is a 4xx at once, not a failed job. The work is ``enhance_video`` (the ffmpeg
pipes) with a frame function that holds the upscaler's lease (and the face
models' when restoring) for the whole video, so the model is loaded once.
"""
from __future__ import annotations

import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from enfoads.errors import InvalidInput
from enfoads.services import media
from enfoads.services.enhance_options import EnhanceOptions

__all__ = ["VideoEnhancer"]


def _even(n: int) -> int:
    return max(2, (int(n) // 2) * 2)


class VideoEnhancer:
    """``enhance.video``'s validate and handler over an ``EnhanceService``."""

    def __init__(self, service):
        self.service = service

    def _source(self, value: str, assets, work: Path) -> Path:
        """The video as a file: a stored asset's own file, or an uploaded data URI written to ``work``."""
        if media.is_asset_id(value):
            asset = self.service._asset(assets, value, "video/")
            return assets.path(asset.id)
        payload = media.read_payload(value, field="media", max_bytes=self.service.limits.max_video_bytes)
        if payload.declared_mime and not payload.declared_mime.startswith("video/"):
            raise InvalidInput.field("media", f"is {payload.declared_mime}, not a video")
        path = work / "source.mp4"
        path.write_bytes(payload.data)
        return path

    def _plan(self, params: dict, source: Path) -> tuple[dict, object]:
        from enfoads.services.enhance_video import probe_video

        limits = self.service.limits
        opts = EnhanceOptions.parse(params)
        upscaler, restorer, scale = self.service._models_for(opts)
        info = probe_video(source, ffmpeg=self.service.ffmpeg, field="media", max_frames=limits.max_video_frames)
        self.service._capped(info.width, info.height, scale, limits.max_video_side, "ENFOADS_ENHANCE_MAX_VIDEO_SIDE")
        plan = {**opts.to_params(), "model": upscaler.key, "scale": scale, **self.service.tiles(opts.tile),
                "restore_model": restorer.key if restorer else None}
        return plan, info

    def validate(self, params: dict, *, assets=None) -> dict:
        with tempfile.TemporaryDirectory(prefix="enfoads-probe-") as work:
            value = params.get("media", params.get("video")) if isinstance(params, dict) else None
            if not isinstance(value, str):
                return self._plan(params, Path(work) / "none")[0]  # raises, naming the field
            return self._plan(params, self._source(value, assets, Path(work)))[0]

    def handler(self, params: dict, ctx) -> dict:
        from enfoads.services.work_dir import WorkDir

        settings = self.service.runtime.settings
        started = time.perf_counter()
        ctx.progress(0, "reading the video")
        with WorkDir(getattr(settings, "video_work_dir", None), ctx.job_id, what="enhance") as work:
            source = self._source(params["media"], ctx.assets, work)
            params, info = self._plan(params, source)
            out = work / "enhanced.mp4"
            result = self.run(params, source, out, info, progress=ctx.progress)
            asset = ctx.save_file(out, "video/mp4", move=True, kind="video", width=result["width"],
                                  height=result["height"], duration=result["duration_s"])
        result.update(asset_id=asset.id, mime="video/mp4", seconds=round(time.perf_counter() - started, 3))
        return result

    def run(self, params: dict, source: Path, out: Path, info, *, progress) -> dict:
        """Enhance ``source`` into ``out`` with validated params; ``progress(percent, stage)`` may raise (cancel)."""
        import cv2
        import numpy as np

        from enfoads.services.enhance_video import enhance_video
        from enfoads.services.face_restore import gfpgan_restorer, restore_faces
        from enfoads.services.face_detection import DETECT_MAX_SIDE, detect
        from enfoads.services.upscale_tiles import upscale_frames

        rt = self.service.runtime
        scale = int(params["scale"])
        out_w, out_h = _even(info.width * scale), _even(info.height * scale)
        tiles = {k: int(params[k]) for k in ("tile", "overlap", "min_tile")}
        used: dict = {"tile": tiles["tile"], "faces": 0}
        with ExitStack() as leases:
            upscaler = leases.enter_context(rt.residency.use(params["model"]))
            faces_app = restorer = gfpgan = None
            if params.get("face_restore"):
                faces_app = leases.enter_context(rt.residency.use(rt.model_key("faces")))
                gfpgan = leases.enter_context(rt.residency.use(params["restore_model"]))
                restorer = gfpgan_restorer(gfpgan, device=gfpgan.device, dtype=gfpgan.dtype)
            model_scale = int(upscaler.scale)

            def process(frames):
                big, used["tile"] = upscale_frames(upscaler, frames, scale=model_scale, device=upscaler.device,
                                                   dtype=upscaler.dtype, **tiles)
                outs = []
                for frame in big:
                    if frame.shape[1] != out_w or frame.shape[0] != out_h:
                        frame = cv2.resize(frame, (out_w, out_h), interpolation=cv2.INTER_AREA)
                    if restorer is not None:
                        bgr = np.ascontiguousarray(frame[:, :, ::-1])
                        found, _ = detect(faces_app, bgr, max_side=DETECT_MAX_SIDE)
                        if found:
                            bgr, boxes = restore_faces(restorer, bgr, [f.kps for f in found])
                            used["faces"] += sum(b is not None for b in boxes)
                        frame = bgr[:, :, ::-1]
                    outs.append(frame)
                return np.ascontiguousarray(np.stack(outs))

            def frames_done(done: int, total: int) -> None:
                progress(2 + 96 * done / max(total, 1), f"frame {done} of {total}")

            batch = 8 if info.width <= tiles["tile"] and info.height <= tiles["tile"] else 1
            done = enhance_video(source, out, process=process, out_size=(out_w, out_h), ffmpeg=self.service.ffmpeg,
                                 batch=batch, progress=frames_done, info=info)
            dtype = str(upscaler.dtype).replace("torch.", "")
            upscaler = faces_app = restorer = gfpgan = None  # no reference outlives the leases
        return {"width": out_w, "height": out_h, "fps": done["fps"], "frames": done["frames"],
                "duration_s": round(done["frames"] / done["fps"], 3) if done["fps"] else info.duration_s,
                "audio": done["audio"], "input": {"width": info.width, "height": info.height, "frames": info.frames},
                "model": params["model"], "model_scale": model_scale, "scale": scale, "tile": used["tile"],
                "dtype": dtype, "faces_restored": used["faces"], "restore_model": params.get("restore_model")}
