"""A portrait that speaks a clip: ``video.live_portrait`` (``POST /live-portrait {image, audio}``).

Options (``LivePortraitOptions``): ``image`` and ``audio`` (base64, a
``data:`` URI or a stored asset id; the frontend route stores both as upload
assets first, so the job row holds ids), ``fps`` (10-30, default 25),
``motion`` (default ``"none"``: the portrait as it is framed; the videos'
``zoom_in``, ``zoom_out`` and ``pan`` are offered), ``max_side`` (the
video's longest side, 256-1920 px, default 1280; never larger than the
portrait).

Checked before queueing, each error naming its field: the picture is a PNG,
JPEG or WebP within the avatar limits and shows a face (InsightFace, the
same detector and rules as avatars: the largest clear face); the audio is a
readable clip of at most :data:`MAX_AUDIO_SECONDS` with sound in it; the
lip-sync model is installed (503 otherwise, with the command that installs
it). The face found then travels in the job's params, so the job does not
look for it again.

The video is the portrait at its own shape (even sizes), lip-synced over the
whole clip and encoded like the avatar videos (``VideoRenderer.encode``): its
duration is the clip's. Result: ``{"asset_id", "mime", "width", "height",
"fps", "duration", "audio_duration", "lipsync": {...}, "timings"}``.
"""
from __future__ import annotations

import io
import time
from pydantic import Field

from enfoads.errors import EnfoadsError, InvalidInput
from enfoads.services import JobKind, media
from enfoads.services.avatar_faces import AvatarFaces
from enfoads.services.avatars import AvatarStore
from enfoads.services.options import MediaReference, Options, aliases, choice, whole_number
from enfoads.services.talking import Talker
from enfoads.services.video_canvas import VideoFormat
from enfoads.services.video_options import DEFAULT_FPS, MOTIONS
from enfoads.services.work_dir import WorkDir

__all__ = ["KIND", "MAX_AUDIO_SECONDS", "LivePortraitOptions", "LipsyncUnavailable", "job_kinds"]

KIND = "video.live_portrait"
#: Seconds of speech one live portrait may take (the videos' scripts give about three minutes).
MAX_AUDIO_SECONDS = 300
MAX_AUDIO_BYTES = 50 * media.MB


Fps = whole_number(10, 30)
StillMotion = choice(MOTIONS, default="none")
MaxSide = whole_number(256, 1920, unit="px")


class LipsyncUnavailable(EnfoadsError):
    """The lip-sync model cannot run here (503): not installed, or not in this profile."""

    status = 503
    code = "lipsync_unavailable"


class LivePortraitOptions(Options):
    """The portrait, the clip it speaks, and the video's shape."""

    what = "live portrait options"

    image: MediaReference = Field(validation_alias=aliases("image", "portrait", "source_image"))
    audio: MediaReference = Field(validation_alias=aliases("audio", "speech"))
    fps: Fps = DEFAULT_FPS
    motion: StillMotion = "none"
    max_side: MaxSide = 1280


def _image_bytes(value: str, assets, avatars: AvatarStore) -> tuple[bytes, int, int]:
    """The picture as normalised PNG bytes (the avatar rules: type by content, pixel and size limits)."""
    if media.is_asset_id(value):
        media.stored_asset(assets, value, field="image", types=("image/",), what="an image",
                           max_bytes=avatars.max_bytes)
        value = assets.read_bytes(value)
    return avatars.normalize(value, field="image")


def _audio_bytes(value: str, assets) -> bytes:
    if media.is_asset_id(value):
        media.stored_asset(assets, value, field="audio", types=("audio/", "video/"), what="audio",
                           max_bytes=MAX_AUDIO_BYTES)
        return assets.read_bytes(value)
    return media.read_payload(value, field="audio", max_bytes=MAX_AUDIO_BYTES).data


def _fitted(png: bytes, max_side: int):
    """The portrait as RGB pixels no longer than ``max_side`` (never enlarged), with the scale used."""
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        rgb = im.convert("RGB")
    scale = min(1.0, max_side / float(max(rgb.size)))
    if scale < 1.0:
        rgb = rgb.resize((max(2, round(rgb.width * scale)), max(2, round(rgb.height * scale))), Image.LANCZOS)
    return np.asarray(rgb), scale


def job_kinds(runtime, *, renderer, assets=None, avatars: AvatarStore, faces: AvatarFaces, talker: Talker,
              work_root=None) -> list[JobKind]:
    """``video.live_portrait`` over a ``VideoRenderer`` (its ``encode``), the face finder and the talker."""
    from enfoads.services.audio_input import decode_audio, probe_audio

    work_root = work_root or getattr(runtime.settings, "video_work_dir", None)

    def validate(params: dict) -> dict:
        options = LivePortraitOptions.parse(params)
        if not talker.available():
            raise LipsyncUnavailable(f"live portraits need lip sync: {talker.unavailable_reason()}")
        png, _w, _h = _image_bytes(options.image, assets, avatars)
        rgb, _scale = _fitted(png, options.max_side)
        face = faces.find(rgb)
        if face is None:
            raise InvalidInput.field("image", "shows no face the detector can find: send a portrait with one "
                                              "clear face looking at the camera, at least 64 px across")
        info = probe_audio(_audio_bytes(options.audio, assets), field="audio", max_bytes=MAX_AUDIO_BYTES,
                           max_duration_s=MAX_AUDIO_SECONDS)
        if info.empty:
            raise InvalidInput.field("audio", "is empty: send the speech the portrait should say")
        return {**options.to_params(), "face": face}

    def handler(params: dict, ctx) -> dict:
        from PIL import Image

        clean = params if "face" in params else validate(params)  # queued by the web layer: checked already
        options = LivePortraitOptions.parse({k: v for k, v in clean.items() if k != "face"})
        started = time.perf_counter()
        ctx.progress(0, "reading the portrait and the clip")
        png, _w, _h = _image_bytes(options.image, ctx.assets, avatars)
        rgb, _scale = _fitted(png, options.max_side)
        audio = decode_audio(_audio_bytes(options.audio, ctx.assets), field="audio", max_bytes=MAX_AUDIO_BYTES,
                             max_duration_s=MAX_AUDIO_SECONDS)
        if audio.empty or float(abs(audio.samples).max(initial=0.0)) == 0.0:
            raise InvalidInput.field("audio", "holds no sound: send the speech the portrait should say")
        height, width = rgb.shape[:2]
        fmt = VideoFormat(width - width % 2, height - height % 2, int(options.fps), "portrait", options.motion)
        status = {"requested": True, "ran": False, "model": talker.model_id, "reason": None}
        with WorkDir(work_root, ctx.job_id, what="portrait") as work:
            picture = work / "portrait.png"
            Image.fromarray(rgb).save(picture, format="PNG", compress_level=1)
            clip = work / "speech.wav"
            clip.write_bytes(_wav(audio.samples, audio.sampling_rate))
            out = renderer.encode(picture, clean["face"], status, audio=clip, duration=audio.duration,
                                  subtitles=None, fmt=fmt, work=work, name="live",
                                  progress=lambda f, stage: ctx.progress(98 * f, stage))
            from enfoads.services.video_ffmpeg import probe_duration

            duration = probe_duration(out)
            ctx.progress(99, "saving")
            asset = ctx.save_file(out, "video/mp4", move=True, kind="video", width=fmt.width, height=fmt.height,
                                  duration=duration)
        return {"asset_id": asset.id, "mime": "video/mp4", "width": fmt.width, "height": fmt.height, "fps": fmt.fps,
                "motion": fmt.motion, "duration": round(duration, 3), "audio_duration": round(audio.duration, 3),
                "lipsync": status, "timings": {"total_s": round(time.perf_counter() - started, 3)},
                "message": "video ready"}

    return [JobKind(KIND, handler, validate, device=talker.device, options=LivePortraitOptions)]


def _wav(samples, rate: int) -> bytes:
    """16-bit mono WAV of float samples (the clip as decoded: one format for ffmpeg and the model)."""
    import wave

    import numpy as np

    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buf.getvalue()
