"""Talking-avatar videos: script -> speech -> a still avatar with gentle motion -> MP4.

Job kinds (on the CPU pool, or the GPU worker when the lip-sync model runs on a GPU):

- ``video.render`` (``POST /render-video``). Params (:func:`validate_render`),
  the frontend's names first, aliases after a slash:

  - ``script`` (required): 1 to :data:`MAX_SCRIPT_CHARS` characters with
    something to say.
  - ``avatar_id`` / ``avatarId`` (required): an id from ``GET /avatars``
    (``"default"`` is always there).
  - ``voice_id`` / ``voiceId``: an id from ``GET /voices``, one of the four
    edge ids the frontend knows (mapped to an offline voice when edge is
    unreachable), or omitted for the default voice.
  - ``generate_subtitles`` / ``subtitles`` / ``generateSubtitles``: burn
    subtitles in and save them as SRT and VTT assets (default false).
  - ``lipsync``: the avatar's mouth follows the speech (MuseTalk,
    ``enfoads.services.talking``) whenever the lip-sync model is installed and
    the avatar has a face (default true; false keeps the still avatar).
  - ``orientation``: ``"vertical"`` (default, 9:16), ``"horizontal"`` (16:9)
    or ``"square"``; ``resolution``: the short side in px, 144-1080, even
    (default 720, so 720x1280); ``fps``: 10-30 (default 25); ``motion``:
    ``"zoom_in"`` (default), ``"zoom_out"``, ``"pan"``, ``"none"``;
    ``speed``: speech rate 0.5-2.0 (default 1).

- ``video.render_multi`` (``POST /render-multi-scene``). Params
  (:func:`validate_render_multi`): ``scenes``: 1 to :data:`MAX_SCENES` objects
  in the frontend's shape ``{id, avatarId, avatarName, avatarImg, script,
  generateSubtitles}`` (``avatar_id``/``voice_id``/``voiceId`` accepted too;
  ``avatarName`` and ``avatarImg`` are display data and ignored: the picture
  always comes from ``avatarId``, no URL is ever fetched), plus the same
  ``voice_id``, ``orientation``, ``resolution``, ``fps``, ``motion``,
  ``speed`` for every scene. Scripts together at most :data:`MAX_TOTAL_CHARS`.

Every error is an ``InvalidInput`` naming the field (``scenes[2].script``),
raised by ``validate`` before anything is queued.

How a scene is made: the script is cut into sentences (long ones at clauses)
and each piece is synthesised on its own (``enfoads.services.tts``), so each subtitle
cue starts and ends exactly where its piece does in the audio. The avatar is
composed once with Pillow onto a canvas of the video's shape at twice its
size (a blurred, darkened copy fills the background) and ffmpeg's ``zoompan``
moves slowly over it. Subtitles are drawn with Pillow (white bold text with an
outline on a translucent box; any TrueType font found, DejaVu Sans Bold first)
into one transparent strip per cue, fed to ffmpeg as one concat-demuxer
stream and overlaid: no dependency on libass or fontconfig inside the ffmpeg
build. Encoding: H.264 (libx264, yuv420p, ``-tune stillimage``) + AAC 48 kHz,
``+faststart``, the length of the speech exactly (``-t``).

Multi-scene: each scene is rendered like that (fading in from black after the
first scene and out to black at its end), then the scene files are joined
with ffmpeg's concat demuxer without re-encoding; the video lasts the sum of
its scenes. Subtitle files cover the scenes that asked for subtitles, shifted
to their place in the whole video.

ffmpeg: ``settings.ffmpeg_path`` if set, else imageio-ffmpeg's binary, else
``ffmpeg`` on PATH; it must have libx264 and the native AAC encoder. Always
run with an argument list, never a shell. Progress: speech per piece,
subtitles, then ffmpeg's own ``-progress`` output (``out_time_us`` over the
duration). Cancel: ``ctx.progress`` raises ``JobCancelled``; ffmpeg is asked
to quit (``q`` on stdin), then terminated, then killed, and always waited
for; the job's work folder (``<work_root>/enfoads-video-<job id>``) is
removed, so no partial file stays and no asset is made. A job re-run after a
restart starts over in a clean work folder.

Result JSON (``video.render``)::

    {"asset_id": "<mp4 asset id>", "mime": "video/mp4", "width": 720, "height": 1280, "fps": 25,
     "orientation": "vertical", "duration": 12.34, "speech_duration": 12.33,
     "subtitles": {"srt_asset_id": "...", "vtt_asset_id": "...", "cues": 5, "burned_in": true} | null,
     "voice": {"requested": "es-MX-DaliaNeural", "used": "espeak:es-419+f3", "name": "...", "backend": "espeak",
               "offline": true, "fallback": true, "note": "edge-tts is not installed; ... replaced by ..."},
     "voice_note": "<the note, or null>", "avatar_id": "default", "segments": 5,
     "lipsync": {"requested": true, "ran": true, "model": "musetalk-1.5", "frames": 309, "seconds": 8.1,
                 "reason": null},
     "timings": {"speech_s": 0.4, "encode_s": 6.1, "total_s": 7.0}, "message": "..."}

``video.render_multi`` gives the same top-level keys (``voice`` is the first
scene's; ``lipsync.ran`` is true when any scene was lip-synced) plus
``scenes: [{"index", "id", "avatar_id", "start", "duration", "voice": {...},
"subtitles", "cues", "lipsync": {...}}]``.

Lip sync: the job leases the model once per scene, prepares the avatar (its
face was found when it was added), and ffmpeg lays each generated face over
the still canvas before the camera moves (``talking.Talker.render``): one
encoding pass, the motion kept. A scene whose avatar has no face, or a
server without the model, renders the still avatar and says why in
``lipsync.reason``. With the model on a GPU the video kinds run on the GPU
worker (``device`` of the lip-sync role), so they never share the GPU with
an image job.

The parts of a scene live in sibling modules: ``video_canvas`` (the format
and the avatar canvas), ``video_subtitles`` (cues, SRT/VTT text, subtitle
strips), ``video_ffmpeg`` (finding, building and running ffmpeg); the
options in ``video_options``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from enfoads.services.avatar_faces import AvatarFaces
from enfoads.services.avatars import AvatarStore, read_rgb
from enfoads.services import JobKind, live_portrait
from enfoads.services.talking import Talker
from enfoads.services.video_canvas import VideoFormat, compose_canvas, placement
from enfoads.services.work_dir import WorkDir
from enfoads.services.video_ffmpeg import concat_command, find_ffmpeg, probe_duration, run_ffmpeg, scene_command
from enfoads.services.video_options import (
    MAX_SCENES, MAX_SCRIPT_CHARS, MAX_TOTAL_CHARS, MultiSceneOptions, RenderOptions, validate_render,
    validate_render_multi,
)
from enfoads.services.video_subtitles import Cue, cues_from_speech, render_subtitle_strips, to_srt, to_vtt
from enfoads.services.tts import TTS, Speech, VoiceChoice

__all__ = [
    "JOB_KIND",
    "JOB_KIND_MULTI",
    "MAX_SCRIPT_CHARS",
    "MAX_TOTAL_CHARS",
    "MAX_SCENES",
    "VideoRenderer",
    "validate_render",
    "validate_render_multi",
    "job_kinds",
]

JOB_KIND = "video.render"
JOB_KIND_MULTI = "video.render_multi"
_SPEECH_SHARE, _SUBS_SHARE = 0.35, 0.05  # of a scene's progress; the rest is encoding
_LIPSYNC_SPEECH_SHARE = 0.15  # with lip sync the frames are most of the work


# --------------------------------------------------------------------------- rendering


@dataclass
class SceneOutput:
    path: Path
    duration: float
    speech: Speech
    cues: list[Cue]
    timings: dict = field(default_factory=dict)
    lipsync: dict = field(default_factory=dict)


class VideoRenderer:
    """Renders scenes into a work folder; no job queue, no assets (see :func:`job_kinds` for those).

    Args:
        tts: the text-to-speech interface.
        avatars: where avatars are.
        ffmpeg: the ffmpeg executable (default :func:`find_ffmpeg`).
    """

    def __init__(self, tts: TTS, avatars: AvatarStore, ffmpeg: str | None = None, *, talker: Talker | None = None,
                 faces: AvatarFaces | None = None):
        self.tts = tts
        self.avatars = avatars
        self._ffmpeg = ffmpeg
        self.talker = talker
        self.faces = faces

    @property
    def ffmpeg(self) -> str:
        if self._ffmpeg is None:
            self._ffmpeg = find_ffmpeg()
        return self._ffmpeg

    def render_scene(self, *, script: str, avatar_id: str, voice_id: str | None, subtitles: bool,
                     fmt: VideoFormat, speed: float, work: Path, name: str,
                     progress: Callable[[float, str], None], fade_in: bool = False, fade_out: bool = False,
                     faststart: bool = True, label: str = "", lipsync: bool = False) -> SceneOutput:
        """Speech, canvas, subtitle strips and the encoded scene ``<work>/<name>.mp4``.

        ``progress(fraction, stage)`` gets 0..1 over the whole scene.
        """
        t0 = time.perf_counter()
        prefix = f"{label}: " if label else ""
        avatar = self.avatars.get(avatar_id)
        face, status = self._face_for_lipsync(avatar) if lipsync else (None, {"requested": False, "ran": False,
                                                                              "reason": "not requested"})
        speech_share = _LIPSYNC_SPEECH_SHARE if face is not None else _SPEECH_SHARE
        progress(0.0, f"{prefix}speech")
        choice = self.tts.resolve(voice_id)
        speech = self.tts.synthesize(script, choice, speed=speed,
                                     progress=lambda f, msg: progress(speech_share * f, prefix + msg))
        t1 = time.perf_counter()
        audio = speech.write_wav(work / f"{name}.wav")
        duration = speech.duration
        cues = cues_from_speech(speech) if subtitles else []
        strips = None
        if subtitles:
            progress(speech_share, f"{prefix}subtitles")
            strips = render_subtitle_strips(cues, fmt, duration, work / f"{name}_subs")
        progress(speech_share + _SUBS_SHARE, f"{prefix}encoding")
        t2 = time.perf_counter()
        encode_share = 1.0 - speech_share - _SUBS_SHARE

        def on_share(f: float, stage: str) -> None:  # also where a cancel lands
            progress(speech_share + _SUBS_SHARE + encode_share * f, prefix + stage)

        out = self.encode(avatar.path, face, status, audio=audio, duration=duration, subtitles=strips, fmt=fmt,
                          work=work, name=name, progress=on_share, fade_in=fade_in, fade_out=fade_out,
                          faststart=faststart)
        t3 = time.perf_counter()
        return SceneOutput(out, probe_duration(out), speech, cues,
                           {"speech_s": round(t1 - t0, 3), "prepare_s": round(t2 - t1, 3),
                            "encode_s": round(t3 - t2, 3)}, status)

    def encode(self, picture: Path, face: dict | None, status: dict, *, audio: Path, duration: float, subtitles,
               fmt: VideoFormat, work: Path, name: str, progress: Callable[[float, str], None],
               fade_in: bool = False, fade_out: bool = False, faststart: bool = True) -> Path:
        """``<work>/<name>.mp4``: the picture on its canvas, lip-synced when ``face`` is given, over ``audio``.

        ``status`` (the scene's lip-sync status) is completed with what ran.
        """
        canvas = compose_canvas(picture, fmt, work / f"{name}_canvas.png")
        out = work / f"{name}.mp4"

        def scene_args(patch=None) -> list[str]:
            return scene_command(self.ffmpeg, canvas=canvas, audio=audio, out=out, fmt=fmt, duration=duration,
                                 subtitles=subtitles, fade_in=fade_in, fade_out=fade_out, faststart=faststart,
                                 face=patch)

        if face is not None:
            from enfoads.services.audio_input import decode_audio

            rgb = read_rgb(picture)
            run = self.talker.render(portrait_rgb=rgb, face=face, audio_16k=decode_audio(audio).samples, fmt=fmt,
                                     canvas_path=canvas, place=placement(rgb.shape[1], rgb.shape[0], fmt),
                                     scene_args=scene_args, log_file=work / f"{name}.log", progress=progress)
            status.update(ran=True, model=run.model, frames=run.frames, seconds=run.seconds,
                          batch_size=run.batch_size)
        else:
            run_ffmpeg(scene_args(), duration=duration, log_file=work / f"{name}.log",
                       progress=lambda f: progress(f, f"encoding {int(f * 100)}%"))
        return out

    def _face_for_lipsync(self, avatar) -> tuple[dict | None, dict]:
        """The avatar's face when this scene can be lip-synced, and the status that says why not."""
        status = {"requested": True, "ran": False, "model": None, "reason": None}
        if self.talker is None or not self.talker.available():
            status["reason"] = self.talker.unavailable_reason() if self.talker else "no lip-sync model here"
            return None, status
        status["model"] = self.talker.model_id
        face = avatar.face
        if face is None and self.faces is not None and self.faces.available():
            face = self.faces.for_avatar(avatar)
        if face is None:
            status["reason"] = f"no face was found in avatar {avatar.id}; it is shown still"
        return face, status

    def concat(self, scenes: list[SceneOutput], work: Path, progress: Callable[[float], None]) -> Path:
        list_file = work / "scenes.ffconcat"
        lines = ["ffconcat version 1.0"] + [f"file '{s.path.name}'" for s in scenes]
        list_file.write_text("\n".join(lines) + "\n")
        out = work / "video.mp4"
        total = sum(s.duration for s in scenes)
        run_ffmpeg(concat_command(self.ffmpeg, list_file=list_file, out=out), duration=total, progress=progress,
                   log_file=work / "concat.log")
        return out


def _percent(lo: float, hi: float, report: Callable[[float, str | None], None]) -> Callable[[float, str], None]:
    def inner(fraction: float, stage: str) -> None:
        report(lo + (hi - lo) * fraction, stage)

    return inner


def _save_subtitles(ctx, cues: list[Cue], duration: float) -> dict:
    srt = ctx.save_bytes(to_srt(cues).encode("utf-8"), "application/x-subrip", kind="subtitles", duration=duration)
    vtt = ctx.save_bytes(to_vtt(cues).encode("utf-8"), "text/vtt", kind="subtitles", duration=duration)
    return {"srt_asset_id": srt.id, "vtt_asset_id": vtt.id, "cues": len(cues), "burned_in": True}


def _result(fmt: VideoFormat, asset, duration: float, speech_duration: float, subs: dict | None,
            choice: VoiceChoice, timings: dict) -> dict:
    voice = choice.to_dict()
    message = "video ready"
    if choice.fallback and choice.note:
        message += f" ({choice.note})"
    return {
        "asset_id": asset.id, "mime": "video/mp4", "width": fmt.width, "height": fmt.height, "fps": fmt.fps,
        "orientation": fmt.orientation, "motion": fmt.motion, "duration": round(duration, 3),
        "speech_duration": round(speech_duration, 3), "subtitles": subs, "voice": voice,
        "voice_note": choice.note, "timings": timings, "message": message,
    }


def job_kinds(runtime, *, work_root: str | Path | None = None, tts: TTS | None = None,
              avatars: AvatarStore | None = None, ffmpeg: str | None = None, talker: Talker | None = None,
              faces: AvatarFaces | None = None, assets=None) -> list[JobKind]:
    """``video.render``, ``video.render_multi`` and ``video.live_portrait`` for ``runtime.settings``.

    Args:
        runtime: an ``enfoads.models.runtime.Runtime`` (only its ``settings`` are used:
            ``data_dir`` for avatars, ``models_dir`` for Piper voices).
        work_root: where each job's temporary folder goes; default ``settings.video_work_dir``
            if that setting exists, else the system's temp dir (keep it off a Drive mount).
        tts, avatars, ffmpeg, talker, faces: override the defaults made from the runtime and settings.
    """
    settings = runtime.settings
    work_root = work_root or getattr(settings, "video_work_dir", None)
    tts = tts or TTS.from_settings(settings)
    avatars = avatars or AvatarStore.from_settings(settings)
    talker = talker or Talker(runtime)
    faces = faces or AvatarFaces(runtime, avatars)
    renderer = VideoRenderer(tts, avatars, ffmpeg or getattr(settings, "ffmpeg_path", None), talker=talker,
                             faces=faces)

    def validate(params: dict) -> dict:
        return validate_render(params, tts=tts, avatars=avatars)

    def validate_multi(params: dict) -> dict:
        return validate_render_multi(params, tts=tts, avatars=avatars)

    def handler(params: dict, ctx) -> dict:
        params = validate(params)
        fmt = VideoFormat.from_params(params)
        started = time.perf_counter()
        ctx.progress(0, "speech")
        with WorkDir(work_root, ctx.job_id) as work:
            scene = renderer.render_scene(
                script=params["script"], avatar_id=params["avatar_id"], voice_id=params["voice_id"],
                subtitles=params["subtitles"], fmt=fmt, speed=params["speed"], work=work, name="scene",
                progress=_percent(0, 99, ctx.progress), fade_out=True, lipsync=params["lipsync"])
            ctx.progress(99, "saving")
            subs = _save_subtitles(ctx, scene.cues, scene.duration) if params["subtitles"] else None
            asset = ctx.save_file(scene.path, "video/mp4", move=True, kind="video", width=fmt.width,
                                  height=fmt.height, duration=scene.duration)
        timings = dict(scene.timings, total_s=round(time.perf_counter() - started, 3))
        out = _result(fmt, asset, scene.duration, scene.speech.duration, subs, scene.speech.choice, timings)
        out.update(avatar_id=params["avatar_id"], segments=len(scene.speech.segments), lipsync=scene.lipsync)
        return out

    def handler_multi(params: dict, ctx) -> dict:
        params = validate_multi(params)
        fmt = VideoFormat.from_params(params)
        scenes = params["scenes"]
        n = len(scenes)
        weights = [len(s["script"]) + 200 for s in scenes]  # + fixed cost per scene
        bounds, acc = [], 0.0
        for w in weights:
            bounds.append((95 * acc / sum(weights), 95 * (acc + w) / sum(weights)))
            acc += w
        started = time.perf_counter()
        ctx.progress(0, f"scene 1/{n}: speech")
        outputs: list[SceneOutput] = []
        with WorkDir(work_root, ctx.job_id) as work:
            for i, scene in enumerate(scenes):
                outputs.append(renderer.render_scene(
                    script=scene["script"], avatar_id=scene["avatar_id"], voice_id=scene["voice_id"],
                    subtitles=scene["subtitles"], fmt=fmt, speed=params["speed"], work=work, name=f"scene{i:02d}",
                    progress=_percent(*bounds[i], ctx.progress), fade_in=i > 0, fade_out=True, faststart=False,
                    label=f"scene {i + 1}/{n}", lipsync=params["lipsync"]))
            ctx.progress(95, "joining scenes")
            joined = renderer.concat(outputs, work, lambda f: ctx.progress(95 + 4 * f, "joining scenes"))
            duration = probe_duration(joined)
            cues, starts, t = [], [], 0.0
            for out in outputs:
                starts.append(t)
                cues += [Cue(round(c.start + t, 3), round(c.end + t, 3), c.text) for c in out.cues]
                t += out.duration
            ctx.progress(99, "saving")
            subs = _save_subtitles(ctx, cues, duration) if cues else None
            asset = ctx.save_file(joined, "video/mp4", move=True, kind="video", width=fmt.width,
                                  height=fmt.height, duration=duration)
        timings = {"speech_s": round(sum(o.timings["speech_s"] for o in outputs), 3),
                   "encode_s": round(sum(o.timings["encode_s"] for o in outputs), 3),
                   "total_s": round(time.perf_counter() - started, 3)}
        first = outputs[0].speech.choice
        result = _result(fmt, asset, duration, sum(o.speech.duration for o in outputs), subs, first, timings)
        notes = sorted({o.speech.choice.note for o in outputs if o.speech.choice.note})
        result["voice_note"] = "; ".join(notes) or None
        result["scenes"] = [
            {"index": i, "id": scene["id"], "avatar_id": scene["avatar_id"], "start": round(starts[i], 3),
             "duration": round(out.duration, 3), "voice": out.speech.choice.to_dict(),
             "subtitles": scene["subtitles"], "cues": len(out.cues), "lipsync": out.lipsync}
            for i, (out, scene) in enumerate(zip(outputs, scenes))
        ]
        synced = [o.lipsync for o in outputs if o.lipsync.get("ran")]
        reasons = sorted({o.lipsync["reason"] for o in outputs if o.lipsync.get("reason")})
        result["lipsync"] = {"requested": params["lipsync"], "ran": bool(synced), "scenes": len(synced),
                             "model": synced[0]["model"] if synced else None, "reason": "; ".join(reasons) or None}
        return result

    device = talker.device  # the lip-sync model's: a GPU job never shares the GPU with another
    return [
        JobKind(JOB_KIND, handler, validate, device=device, options=RenderOptions),
        JobKind(JOB_KIND_MULTI, handler_multi, validate_multi, device=device, options=MultiSceneOptions),
        *live_portrait.job_kinds(runtime, renderer=renderer, assets=assets, avatars=avatars, faces=faces,
                                 talker=talker, work_root=work_root),
    ]
