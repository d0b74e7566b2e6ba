"""Talking-avatar videos: script -> speech -> a still avatar with gentle motion -> MP4.

Job kinds (both on the CPU pool, ``device="cpu"``):

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
     "timings": {"speech_s": 0.4, "encode_s": 6.1, "total_s": 7.0}, "message": "..."}

``video.render_multi`` gives the same top-level keys (``voice`` is the first
scene's) plus ``scenes: [{"index", "id", "avatar_id", "start", "duration",
"voice": {...}, "subtitles", "cues"}]``.
"""
from __future__ import annotations

import functools
import logging
import math
import os
import shutil
import subprocess
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from enfoads.services.avatars import AvatarStore
from enfoads.errors import EnfoadsError
from enfoads.services import JobKind
from enfoads.services.video_options import (
    DEFAULT_FPS, DEFAULT_RESOLUTION, MAX_SCENES, MAX_SCRIPT_CHARS, MAX_TOTAL_CHARS, MultiSceneOptions, RenderOptions,
    validate_render, validate_render_multi,
)
from enfoads.services.tts import TTS, Speech, VoiceChoice

__all__ = [
    "JOB_KIND",
    "JOB_KIND_MULTI",
    "MAX_SCRIPT_CHARS",
    "MAX_TOTAL_CHARS",
    "MAX_SCENES",
    "VideoUnavailable",
    "FFmpegError",
    "VideoFormat",
    "Cue",
    "VideoRenderer",
    "validate_render",
    "validate_render_multi",
    "find_ffmpeg",
    "to_srt",
    "to_vtt",
    "job_kinds",
]

log = logging.getLogger(__name__)

JOB_KIND = "video.render"
JOB_KIND_MULTI = "video.render_multi"
FADE_S = 0.25
ZOOM = 0.08  # the canvas grows 8 % over a scene
CANVAS_SCALE = 2  # the avatar canvas is this many times the video size (smooth zoompan)
_SPEECH_SHARE, _SUBS_SHARE = 0.35, 0.05  # of a scene's progress; the rest is encoding


class VideoUnavailable(EnfoadsError):
    """No usable ffmpeg on this server (503)."""

    status = 503
    code = "video_unavailable"


class FFmpegError(EnfoadsError):
    status = 500
    code = "ffmpeg_failed"


# --------------------------------------------------------------------------- formats and subtitles


@dataclass(frozen=True)
class VideoFormat:
    width: int
    height: int
    fps: int
    orientation: str
    motion: str = "zoom_in"

    @classmethod
    def from_params(cls, params: dict) -> "VideoFormat":
        short = int(params.get("resolution", DEFAULT_RESOLUTION))
        long = int(round(short * 16 / 9 / 2)) * 2
        orientation = params.get("orientation", "vertical")
        w, h = {"vertical": (short, long), "horizontal": (long, short), "square": (short, short)}[orientation]
        return cls(w, h, int(params.get("fps", DEFAULT_FPS)), orientation, params.get("motion", "zoom_in"))


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    text: str


def cues_from_speech(speech: Speech, *, linger: float = 0.25, offset: float = 0.0,
                     total: float | None = None) -> list[Cue]:
    """One cue per synthesised piece: from its first to its last sample, kept a little
    longer (``linger``) into the pause after it, never into the next cue nor past ``total``."""
    total = speech.duration if total is None else total
    segs = speech.segments
    out = []
    for i, seg in enumerate(segs):
        nxt = segs[i + 1].start if i + 1 < len(segs) else total
        end = min(seg.end + linger, nxt - 0.001, total)
        if end > seg.start:
            out.append(Cue(round(offset + seg.start, 3), round(offset + max(end, seg.start), 3), seg.text))
    return out


def _timestamp(t: float, sep: str) -> str:
    ms = int(round(max(0.0, t) * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _cue_lines(text: str, width: int = 42) -> str:
    return "\n".join(textwrap.wrap(text, width=width, break_long_words=False, break_on_hyphens=False)) or text


def to_srt(cues: list[Cue]) -> str:
    """SubRip text: numbered cues, ``HH:MM:SS,mmm`` times, lines of at most ~42 characters."""
    blocks = [f"{i}\n{_timestamp(c.start, ',')} --> {_timestamp(c.end, ',')}\n{_cue_lines(c.text)}\n"
              for i, c in enumerate(cues, 1)]
    return "\n".join(blocks)


def to_vtt(cues: list[Cue]) -> str:
    """WebVTT text (what ``<track>`` in a browser reads)."""
    blocks = ["WEBVTT\n"] + [f"{_timestamp(c.start, '.')} --> {_timestamp(c.end, '.')}\n{_cue_lines(c.text)}\n"
                             for c in cues]
    return "\n".join(blocks)


# --------------------------------------------------------------------------- fonts and pictures

_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Bold.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Bold.ttf",
    "/usr/share/fonts/opentype/noto/NotoSans-Bold.ttf",
    "/usr/share/fonts/TTF/DejaVuSans-Bold.ttf",
    "/Library/Fonts/Arial Bold.ttf",
    "C:/Windows/Fonts/arialbd.ttf",
)


@functools.lru_cache(maxsize=1)
def subtitle_font_path() -> str | None:
    """A bold sans TrueType font with Spanish accents, or None (Pillow's own font lacks them)."""
    for path in _FONT_CANDIDATES:
        if os.path.isfile(path):
            return path
    fc_match = shutil.which("fc-match")
    if fc_match:
        try:
            found = subprocess.run([fc_match, "-f", "%{file}", "sans:bold"], capture_output=True, text=True,
                                   timeout=10, check=False).stdout.strip()
            if found and os.path.isfile(found) and found.lower().endswith((".ttf", ".otf")):
                return found
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"
        if path.is_file():
            return str(path)
    except Exception:
        pass
    log.warning("no TrueType font found for subtitles; accented letters may show as boxes "
                "(install fonts-dejavu-core)")
    return None


def _font(size: int):
    from PIL import ImageFont

    path = subtitle_font_path()
    return ImageFont.truetype(path, size) if path else ImageFont.load_default(size=size)


def compose_canvas(avatar_path: Path, fmt: VideoFormat, out: Path, scale: int = CANVAS_SCALE) -> Path:
    """The avatar on a canvas of the video's shape, ``scale`` times its size, as a PNG.

    A picture close to the video's shape fills it (cropped a little); any other
    is fitted whole over a blurred, darkened copy of itself.
    """
    from PIL import Image, ImageEnhance, ImageFilter, ImageOps

    cw, ch = fmt.width * scale, fmt.height * scale
    with Image.open(avatar_path) as src:
        src.load()
        if src.mode in ("RGBA", "LA", "P"):
            rgba = src.convert("RGBA")
            flat = Image.new("RGB", rgba.size, (235, 238, 242))
            flat.paste(rgba, (0, 0), rgba)
            im = flat
        else:
            im = src.convert("RGB")
    ratio = (im.width / im.height) / (cw / ch)
    if 0.87 <= ratio <= 1.15:
        canvas = ImageOps.fit(im, (cw, ch), Image.LANCZOS, centering=(0.5, 0.4))
    else:
        small = ImageOps.fit(im, (max(cw // 8, 1), max(ch // 8, 1)), Image.BILINEAR)
        small = ImageEnhance.Brightness(small.filter(ImageFilter.GaussianBlur(radius=6))).enhance(0.55)
        canvas = small.resize((cw, ch), Image.BILINEAR)
        fg = ImageOps.contain(im, (cw, ch), Image.LANCZOS)
        canvas.paste(fg, ((cw - fg.width) // 2, (ch - fg.height) // 2))
    canvas.save(out, format="PNG", compress_level=1)
    return out


@dataclass
class _SubtitleStrips:
    concat_file: Path
    y: int  # where the strip's top goes in the video
    height: int


def _wrap_to_width(draw, text: str, font, max_width: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        trial = f"{line} {word}".strip()
        if not line or draw.textlength(trial, font=font) <= max_width:
            line = trial
        else:
            lines.append(line)
            line = word
    if line:
        lines.append(line)
    return lines


def render_subtitle_strips(cues: list[Cue], fmt: VideoFormat, duration: float, folder: Path) -> _SubtitleStrips:
    """One transparent PNG strip per cue (all the same size) and an ffconcat file timing them.

    The strips cover [0, duration]: a blank strip fills the gaps between cues.
    """
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    W, H = fmt.width, fmt.height
    short = min(W, H)
    size = max(12, int(round(short * (0.056 if fmt.orientation == "vertical" else 0.05))))
    max_text_w = int(W * 0.86)
    probe = ImageDraw.Draw(Image.new("RGBA", (8, 8)))
    layouts: list[tuple[Any, list[str], int]] = []
    for cue in cues:
        s = size
        while True:
            font = _font(s)
            lines = _wrap_to_width(probe, cue.text, font, max_text_w)
            if len(lines) <= 3 or s <= size * 0.7:
                break
            s = int(s * 0.9)
        layouts.append((font, lines, s))
    pad = max(4, size // 3)
    line_h = [int(s * 1.22) for _f, _l, s in layouts]
    strip_h = max([len(lines) * lh for (_f, lines, _s), lh in zip(layouts, line_h)] + [size]) + 2 * pad
    strip_h += strip_h % 2
    bottom = int(H * (0.86 if fmt.orientation == "vertical" else 0.94))
    y0 = max(0, bottom - strip_h) // 2 * 2  # even: the overlay works in 4:2:0
    blank = folder / "blank.png"
    Image.new("RGBA", (W, strip_h), (0, 0, 0, 0)).save(blank)
    entries: list[tuple[str, float]] = []
    t = 0.0
    for i, (cue, (font, lines, s), lh) in enumerate(zip(cues, layouts, line_h), 1):
        img = Image.new("RGBA", (W, strip_h), (0, 0, 0, 0))
        d = ImageDraw.Draw(img)
        widths = [d.textlength(line, font=font) for line in lines]
        block_w, block_h = int(max(widths)) + 2 * pad, len(lines) * lh + pad
        bx0, by1 = (W - block_w) // 2, strip_h - pad // 2
        d.rounded_rectangle([bx0, by1 - block_h, bx0 + block_w, by1], radius=pad, fill=(0, 0, 0, 150))
        stroke = max(1, s // 14)
        y = by1 - block_h + pad // 2
        for line, w in zip(lines, widths):
            d.text(((W - w) / 2, y), line, font=font, fill=(255, 255, 255, 255), stroke_width=stroke,
                   stroke_fill=(0, 0, 0, 255))
            y += lh
        name = f"cue_{i:04d}.png"
        img.save(folder / name)
        start, end = max(cue.start, t), min(cue.end, duration)
        if start > t:
            entries.append(("blank.png", start - t))
        if end > start:
            entries.append((name, end - start))
            t = end
    if duration > t:
        entries.append(("blank.png", duration - t))
    lines = ["ffconcat version 1.0"]
    for name, dur in entries:
        lines += [f"file '{name}'", f"duration {dur:.3f}"]
    lines.append("file 'blank.png'")  # the demuxer ignores the last entry's duration
    concat = folder / "subs.ffconcat"
    concat.write_text("\n".join(lines) + "\n")
    return _SubtitleStrips(concat, y0, strip_h)


# --------------------------------------------------------------------------- ffmpeg


def _encoders(exe: str) -> str:
    try:
        return subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=30,
                              check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


@functools.lru_cache(maxsize=8)
def _check_ffmpeg(exe: str) -> str:
    encoders = _encoders(exe)
    missing = [name for name in ("libx264", "aac") if f" {name} " not in encoders]
    if missing:
        raise VideoUnavailable(f"ffmpeg at {exe} lacks the {', '.join(missing)} encoder(s); "
                               "install imageio-ffmpeg or a full ffmpeg build")
    return exe


def find_ffmpeg(settings=None) -> str:
    """An ffmpeg with libx264 and AAC: ``settings.ffmpeg_path``, imageio-ffmpeg's, or the system's."""
    candidates = []
    configured = getattr(settings, "ffmpeg_path", None) if settings is not None else None
    if configured:
        candidates.append(str(configured))
    try:
        import imageio_ffmpeg

        candidates.append(imageio_ffmpeg.get_ffmpeg_exe())
    except Exception:
        pass
    system = shutil.which("ffmpeg")
    if system:
        candidates.append(system)
    errors = []
    for exe in candidates:
        try:
            return _check_ffmpeg(exe)
        except VideoUnavailable as exc:
            errors.append(str(exc))
    raise VideoUnavailable("no usable ffmpeg: " + ("; ".join(errors) or
                                                  "install imageio-ffmpeg (pip) or ffmpeg (apt)"))


def _zoompan(fmt: VideoFormat, frames: int) -> str:
    n = max(frames, 1)
    if fmt.motion == "zoom_in":
        z, x, y = f"1+{ZOOM}*on/{n}", "(iw-iw/zoom)/2", "(ih-ih/zoom)*0.4"
    elif fmt.motion == "zoom_out":
        z, x, y = f"{1 + ZOOM}-{ZOOM}*on/{n}", "(iw-iw/zoom)/2", "(ih-ih/zoom)*0.4"
    elif fmt.motion == "pan":
        z, x, y = f"{1 + ZOOM}", f"(iw-iw/zoom)*on/{n}", "(ih-ih/zoom)*0.4"
    else:
        z, x, y = "1", "0", "0"
    return f"zoompan=z='{z}':x='{x}':y='{y}':d={n}:s={fmt.width}x{fmt.height}:fps={fmt.fps}"


def scene_command(ffmpeg: str, *, canvas: Path, audio: Path, out: Path, fmt: VideoFormat, duration: float,
                  subtitles: _SubtitleStrips | None = None, fade_in: bool = False, fade_out: bool = False,
                  faststart: bool = True) -> list[str]:
    """The ffmpeg argument list that renders one scene (no shell; paths are arguments)."""
    frames = int(math.ceil(duration * fmt.fps)) + 1
    args = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", os.fspath(canvas)]
    # YUV from the start: zoompan scales 1.5 bytes a pixel instead of 3, and the overlay and fades
    # work in the encoder's format (half the encode time of an RGB graph at 720p).
    chain = [f"[0:v]format=yuv420p,{_zoompan(fmt, frames)},setsar=1"]
    audio_index = 1
    if subtitles is not None:
        args += ["-f", "concat", "-i", os.fspath(subtitles.concat_file)]
        audio_index = 2
    args += ["-i", os.fspath(audio)]
    post = []
    if fade_in:
        post.append(f"fade=t=in:st=0:d={FADE_S}")
    if fade_out:
        post.append(f"fade=t=out:st={max(0.0, duration - FADE_S):.3f}:d={FADE_S}")
    post.append("format=yuv420p")
    if subtitles is not None:
        graph = (f"{chain[0]}[bg];[1:v]format=yuva420p[st];"
                 f"[bg][st]overlay=x=0:y={subtitles.y}:eof_action=repeat:format=yuv420,{','.join(post)}[v]")
    else:
        graph = f"{chain[0]},{','.join(post)}[v]"
    args += [
        "-filter_complex", graph,
        "-map", "[v]", "-map", f"{audio_index}:a",
        "-c:v", "libx264", "-preset", "veryfast", "-tune", "stillimage", "-crf", "23",
        "-pix_fmt", "yuv420p", "-r", str(fmt.fps),
        "-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2",
        "-t", f"{duration:.3f}",
    ]
    if faststart:
        args += ["-movflags", "+faststart"]
    args += ["-progress", "pipe:1", "-nostats", os.fspath(out)]
    return args


def concat_command(ffmpeg: str, *, list_file: Path, out: Path) -> list[str]:
    """Join scene files (same codecs and sizes) without re-encoding."""
    return [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "concat", "-i", os.fspath(list_file),
            "-map", "0:v", "-map", "0:a", "-c", "copy", "-movflags", "+faststart",
            "-progress", "pipe:1", "-nostats", os.fspath(out)]


def _stop(proc: subprocess.Popen) -> None:
    """Ask ffmpeg to quit, then terminate, then kill; always reap it."""
    if proc.poll() is None:
        try:
            if proc.stdin:
                proc.stdin.write(b"q")
                proc.stdin.flush()
        except (OSError, ValueError):
            pass
        try:
            proc.wait(timeout=1)  # "q" flushes the encoder and closes the file: quick on small frames
        except subprocess.TimeoutExpired:
            proc.terminate()  # ffmpeg's SIGTERM handler also stops at once, more abruptly
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    for stream in (proc.stdin, proc.stdout):
        try:
            if stream:
                stream.close()
        except OSError:
            pass


def run_ffmpeg(args: list[str], *, duration: float, progress: Callable[[float], None] | None = None,
               log_file: Path | None = None, timeout_s: float | None = None) -> None:
    """Run ffmpeg (argument list) reporting ``out_time / duration`` from its ``-progress`` output.

    ``progress`` may raise (``JobCancelled``): ffmpeg is then stopped (see
    :func:`_stop`) and the exception propagates. Raises ``FFmpegError`` with
    the end of ffmpeg's log on failure or timeout.
    """
    timeout_s = timeout_s if timeout_s is not None else max(120.0, duration * 20)
    err = open(log_file, "wb") if log_file else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
    except OSError as exc:
        if log_file:
            err.close()
        raise FFmpegError(f"could not start ffmpeg: {exc}") from exc
    killer = threading.Timer(timeout_s, lambda: proc.poll() is None and proc.kill())
    killer.daemon = True
    killer.start()
    # A report block has out_time_us then out_time_ms (also microseconds; older builds have only
    # that one): one call per block.
    seen_us = False
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            key, _, value = raw.decode("ascii", "replace").strip().partition("=")
            seen_us = seen_us or key == "out_time_us"
            if (key == "out_time_us" or (key == "out_time_ms" and not seen_us)) and progress is not None \
                    and duration > 0:
                try:
                    seconds = int(value) / 1e6
                except ValueError:
                    continue
                progress(min(1.0, max(0.0, seconds / duration)))
            elif key == "progress" and value == "end" and progress is not None:
                progress(1.0)
        rc = proc.wait()
    except BaseException:
        _stop(proc)
        raise
    finally:
        killer.cancel()
        for stream in (proc.stdin, proc.stdout):
            if stream:
                stream.close()
        if log_file:
            err.close()
    if rc != 0:
        tail = ""
        if log_file and log_file.exists():
            tail = log_file.read_bytes()[-1500:].decode("utf-8", "replace").strip()
        why = "timed out" if rc in (-9, 137) else f"exited with {rc}"
        raise FFmpegError(f"ffmpeg {why}: {tail or 'no message'}")


def probe_duration(path: Path) -> float:
    """The container's duration in seconds (PyAV)."""
    import av

    with av.open(os.fspath(path)) as container:
        if container.duration is not None:
            return container.duration / 1_000_000
        return max(float(s.duration * s.time_base) for s in container.streams if s.duration)


# --------------------------------------------------------------------------- rendering


@dataclass
class SceneOutput:
    path: Path
    duration: float
    speech: Speech
    cues: list[Cue]
    timings: dict = field(default_factory=dict)


class VideoRenderer:
    """Renders scenes into a work folder; no job queue, no assets (see :func:`job_kinds` for those).

    Args:
        tts: the text-to-speech interface.
        avatars: where avatars are.
        ffmpeg: the ffmpeg executable (default :func:`find_ffmpeg`).
    """

    def __init__(self, tts: TTS, avatars: AvatarStore, ffmpeg: str | None = None):
        self.tts = tts
        self.avatars = avatars
        self._ffmpeg = ffmpeg

    @property
    def ffmpeg(self) -> str:
        if self._ffmpeg is None:
            self._ffmpeg = find_ffmpeg()
        return self._ffmpeg

    def render_scene(self, *, script: str, avatar_id: str, voice_id: str | None, subtitles: bool,
                     fmt: VideoFormat, speed: float, work: Path, name: str,
                     progress: Callable[[float, str], None], fade_in: bool = False, fade_out: bool = False,
                     faststart: bool = True, label: str = "") -> SceneOutput:
        """Speech, canvas, subtitle strips and the encoded scene ``<work>/<name>.mp4``.

        ``progress(fraction, stage)`` gets 0..1 over the whole scene.
        """
        t0 = time.perf_counter()
        prefix = f"{label}: " if label else ""
        progress(0.0, f"{prefix}speech")
        choice = self.tts.resolve(voice_id)
        speech = self.tts.synthesize(script, choice, speed=speed,
                                     progress=lambda f, msg: progress(_SPEECH_SHARE * f, prefix + msg))
        t1 = time.perf_counter()
        audio = speech.write_wav(work / f"{name}.wav")
        duration = speech.duration
        canvas = compose_canvas(self.avatars.get(avatar_id).path, fmt, work / f"{name}_canvas.png")
        cues = cues_from_speech(speech) if subtitles else []
        strips = None
        if subtitles:
            progress(_SPEECH_SHARE, f"{prefix}subtitles")
            strips = render_subtitle_strips(cues, fmt, duration, work / f"{name}_subs")
        progress(_SPEECH_SHARE + _SUBS_SHARE, f"{prefix}encoding")
        t2 = time.perf_counter()
        out = work / f"{name}.mp4"
        args = scene_command(self.ffmpeg, canvas=canvas, audio=audio, out=out, fmt=fmt, duration=duration,
                             subtitles=strips, fade_in=fade_in, fade_out=fade_out, faststart=faststart)
        encode_share = 1.0 - _SPEECH_SHARE - _SUBS_SHARE

        def on_encode(f: float) -> None:  # every ~0.5 s (ffmpeg's -stats_period); also where a cancel lands
            progress(_SPEECH_SHARE + _SUBS_SHARE + encode_share * f, f"{prefix}encoding {int(f * 100)}%")

        run_ffmpeg(args, duration=duration, progress=on_encode, log_file=work / f"{name}.log")
        t3 = time.perf_counter()
        return SceneOutput(out, probe_duration(out), speech, cues,
                           {"speech_s": round(t1 - t0, 3), "prepare_s": round(t2 - t1, 3),
                            "encode_s": round(t3 - t2, 3)})

    def concat(self, scenes: list[SceneOutput], work: Path, progress: Callable[[float], None]) -> Path:
        list_file = work / "scenes.ffconcat"
        lines = ["ffconcat version 1.0"] + [f"file '{s.path.name}'" for s in scenes]
        list_file.write_text("\n".join(lines) + "\n")
        out = work / "video.mp4"
        total = sum(s.duration for s in scenes)
        run_ffmpeg(concat_command(self.ffmpeg, list_file=list_file, out=out), duration=total, progress=progress,
                   log_file=work / "concat.log")
        return out


class _Work:
    """``<root>/enfoads-video-<job id>``: made empty at start, always removed at the end."""

    def __init__(self, root: Path | None, job_id: str):
        self.root = Path(root) if root is not None else Path(tempfile.gettempdir())
        self.path = self.root / f"enfoads-video-{job_id}"

    def __enter__(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.path.exists():  # a run interrupted by a restart
            shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir()
        return self.path

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


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
              avatars: AvatarStore | None = None, ffmpeg: str | None = None) -> list[JobKind]:
    """``video.render`` and ``video.render_multi`` (CPU pool) for ``runtime.settings``.

    Args:
        runtime: an ``enfoads.models.runtime.Runtime`` (only its ``settings`` are used:
            ``data_dir`` for avatars, ``models_dir`` for Piper voices).
        work_root: where each job's temporary folder goes; default ``settings.video_work_dir``
            if that setting exists, else the system's temp dir (keep it off a Drive mount).
        tts, avatars, ffmpeg: override the defaults made from the settings.
    """
    settings = runtime.settings
    work_root = work_root or getattr(settings, "video_work_dir", None)
    tts = tts or TTS.from_settings(settings)
    avatars = avatars or AvatarStore.from_settings(settings)
    renderer = VideoRenderer(tts, avatars, ffmpeg or getattr(settings, "ffmpeg_path", None))

    def validate(params: dict) -> dict:
        return validate_render(params, tts=tts, avatars=avatars)

    def validate_multi(params: dict) -> dict:
        return validate_render_multi(params, tts=tts, avatars=avatars)

    def handler(params: dict, ctx) -> dict:
        params = validate(params)
        fmt = VideoFormat.from_params(params)
        started = time.perf_counter()
        ctx.progress(0, "speech")
        with _Work(work_root, ctx.job_id) as work:
            scene = renderer.render_scene(
                script=params["script"], avatar_id=params["avatar_id"], voice_id=params["voice_id"],
                subtitles=params["subtitles"], fmt=fmt, speed=params["speed"], work=work, name="scene",
                progress=_percent(0, 99, ctx.progress), fade_out=True)
            ctx.progress(99, "saving")
            subs = _save_subtitles(ctx, scene.cues, scene.duration) if params["subtitles"] else None
            asset = ctx.save_file(scene.path, "video/mp4", move=True, kind="video", width=fmt.width,
                                  height=fmt.height, duration=scene.duration)
        timings = dict(scene.timings, total_s=round(time.perf_counter() - started, 3))
        out = _result(fmt, asset, scene.duration, scene.speech.duration, subs, scene.speech.choice, timings)
        out.update(avatar_id=params["avatar_id"], segments=len(scene.speech.segments))
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
        with _Work(work_root, ctx.job_id) as work:
            for i, scene in enumerate(scenes):
                outputs.append(renderer.render_scene(
                    script=scene["script"], avatar_id=scene["avatar_id"], voice_id=scene["voice_id"],
                    subtitles=scene["subtitles"], fmt=fmt, speed=params["speed"], work=work, name=f"scene{i:02d}",
                    progress=_percent(*bounds[i], ctx.progress), fade_in=i > 0, fade_out=True, faststart=False,
                    label=f"scene {i + 1}/{n}"))
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
             "subtitles": scene["subtitles"], "cues": len(out.cues)}
            for i, (out, scene) in enumerate(zip(outputs, scenes))
        ]
        return result

    return [
        JobKind(JOB_KIND, handler, validate, device="cpu", options=RenderOptions),
        JobKind(JOB_KIND_MULTI, handler_multi, validate_multi, device="cpu", options=MultiSceneOptions),
    ]
