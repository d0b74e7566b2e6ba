"""ffmpeg for the videos: finding a usable build, the command lines of a scene and of a join, running them.

ffmpeg is ``settings.ffmpeg_path`` if set, else imageio-ffmpeg's binary, else
``ffmpeg`` on PATH, and it must have libx264 and the native AAC encoder
(``find_ffmpeg``). It always runs with an argument list, never a shell;
``run_ffmpeg`` reports its ``-progress`` output and, when the progress
callback raises (a cancel), asks it to quit, then terminates, then kills it,
and always waits for it. ``feed_ffmpeg`` writes frames into its stdin (a
lip-synced face, frame by frame) and stops it the same way when the frames'
producer raises.
"""
from __future__ import annotations

import functools
import math
import os
import shutil
import subprocess
import threading
from pathlib import Path
from dataclasses import dataclass
from typing import Callable, Iterable

from enfoads.errors import EnfoadsError
from enfoads.services.video_canvas import VideoFormat
from enfoads.services.video_subtitles import _SubtitleStrips

__all__ = [
    "VideoUnavailable",
    "FFmpegError",
    "find_ffmpeg",
    "scene_command",
    "concat_command",
    "run_ffmpeg",
    "feed_ffmpeg",
    "FacePatch",
    "probe_duration",
    "start_process",
    "stop_process",
    "log_tail",
]

FADE_S = 0.25
ZOOM = 0.08  # the canvas grows 8 % over a scene
ENCODER_FLUSH_S = 300.0  # x264 draining its lookahead after the last frame
LOG_TAIL = 1500


class VideoUnavailable(EnfoadsError):
    """No usable ffmpeg on this server (503)."""

    status = 503
    code = "video_unavailable"


class FFmpegError(EnfoadsError):
    status = 500
    code = "ffmpeg_failed"


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


@dataclass(frozen=True)
class FacePatch:
    """Where a moving face goes on the canvas: raw RGB frames of ``width`` x ``height`` at (``x``, ``y``)."""

    x: int
    y: int
    width: int
    height: int


def _zoompan(fmt: VideoFormat, frames: int, *, per_input_frame: bool = False) -> str:
    n = max(frames, 1)
    if fmt.motion == "zoom_in":
        z, x, y = f"1+{ZOOM}*on/{n}", "(iw-iw/zoom)/2", "(ih-ih/zoom)*0.4"
    elif fmt.motion == "zoom_out":
        z, x, y = f"{1 + ZOOM}-{ZOOM}*on/{n}", "(iw-iw/zoom)/2", "(ih-ih/zoom)*0.4"
    elif fmt.motion == "pan":
        z, x, y = f"{1 + ZOOM}", f"(iw-iw/zoom)*on/{n}", "(ih-ih/zoom)*0.4"
    else:
        z, x, y = "1", "0", "0"
    # A still canvas is one input frame held for the whole scene; a moving one gives one output frame each.
    d = 1 if per_input_frame else n
    return f"zoompan=z='{z}':x='{x}':y='{y}':d={d}:s={fmt.width}x{fmt.height}:fps={fmt.fps}"


def scene_command(ffmpeg: str, *, canvas: Path, audio: Path, out: Path, fmt: VideoFormat, duration: float,
                  subtitles: _SubtitleStrips | None = None, fade_in: bool = False, fade_out: bool = False,
                  faststart: bool = True, face: FacePatch | None = None) -> list[str]:
    """The ffmpeg argument list that renders one scene (no shell; paths are arguments).

    With ``face``, ffmpeg also reads raw RGB frames of the moving face from its
    stdin and lays each over the canvas before the camera motion (``feed_ffmpeg``).
    """
    frames = int(math.ceil(duration * fmt.fps)) + 1
    args = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", os.fspath(canvas)]
    # YUV from the start: zoompan scales 1.5 bytes a pixel instead of 3, and the overlay and fades
    # work in the encoder's format (half the encode time of an RGB graph at 720p).
    if face is None:
        chain = [f"[0:v]format=yuv420p,{_zoompan(fmt, frames)},setsar=1"]
        next_input = 1
    else:
        args += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{face.width}x{face.height}",
                 "-framerate", str(fmt.fps), "-i", "pipe:0"]
        # The canvas is decoded once and repeated in memory (a looped image input would decode the
        # PNG again for every frame); each face frame is laid over it, then the camera moves.
        chain = [f"[0:v]format=yuv420p,loop=loop=-1:size=1:start=0,setpts=N/({fmt.fps}*TB)[canvas];"
                 f"[1:v]format=yuv420p[face];"
                 f"[canvas][face]overlay=x={face.x}:y={face.y}:eof_action=repeat,"
                 f"{_zoompan(fmt, frames, per_input_frame=True)},setsar=1"]
        next_input = 2
    audio_index = next_input
    if subtitles is not None:
        args += ["-f", "concat", "-i", os.fspath(subtitles.concat_file)]
        audio_index = next_input + 1
    args += ["-i", os.fspath(audio)]
    post = []
    if fade_in:
        post.append(f"fade=t=in:st=0:d={FADE_S}")
    if fade_out:
        post.append(f"fade=t=out:st={max(0.0, duration - FADE_S):.3f}:d={FADE_S}")
    post.append("format=yuv420p")
    if subtitles is not None:
        graph = (f"{chain[0]}[bg];[{next_input}:v]format=yuva420p[st];"
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


def start_process(args: list[str], **pipes) -> subprocess.Popen:
    try:
        return subprocess.Popen(args, **pipes)
    except OSError as exc:
        raise FFmpegError(f"could not start ffmpeg: {exc}") from exc


def stop_process(proc: subprocess.Popen, wait_s: float = 1.0) -> None:
    """Close its pipes (an encoder sees the end of its input, a decoder a broken pipe), then terminate,
    then kill; always reap it."""
    for stream in (proc.stdin, proc.stdout):
        try:
            if stream:
                stream.close()
        except (OSError, ValueError):  # closing a pipe to a dead process flushes into nothing
            pass
    if proc.poll() is None:
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def log_tail(log_path: Path) -> str:
    text = log_path.read_bytes()[-LOG_TAIL:].decode("utf-8", "replace").strip() if log_path.exists() else ""
    return text or "no message"


def feed_ffmpeg(args: list[str], frames: Iterable, *, log_file: Path) -> int:
    """Run ffmpeg writing each of ``frames`` (bytes-like raw frames) into its stdin; returns how many.

    Whatever ``frames`` raises (a cancel, a model error) stops ffmpeg (its input
    closed, then terminated, then killed; always reaped) and propagates.
    Raises ``FFmpegError`` with the end of ffmpeg's log when it fails.
    """
    done = 0
    with open(log_file, "wb") as err:
        proc = start_process(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
        try:
            for frame in frames:
                try:
                    proc.stdin.write(memoryview(frame).cast("B"))
                except BrokenPipeError:
                    raise FFmpegError(f"the video encoder stopped: {log_tail(log_file)}") from None
                done += 1
            try:
                proc.stdin.close()
                rc = proc.wait(timeout=ENCODER_FLUSH_S)
            except BrokenPipeError:
                raise FFmpegError(f"the video encoder stopped: {log_tail(log_file)}") from None
            except subprocess.TimeoutExpired:
                raise FFmpegError(f"ffmpeg did not finish within {ENCODER_FLUSH_S:g} s after the last frame") \
                    from None
        except BaseException:
            stop_process(proc)
            raise
    if rc != 0:
        raise FFmpegError(f"ffmpeg exited with {rc}: {log_tail(log_file)}")
    return done


def probe_duration(path: Path) -> float:
    """The container's duration in seconds (PyAV)."""
    import av

    with av.open(os.fspath(path)) as container:
        if container.duration is not None:
            return container.duration / 1_000_000
        return max(float(s.duration * s.time_base) for s in container.streams if s.duration)
