"""A video through a frame function, frame by frame, its audio kept: ``probe_video``, ``enhance_video``.

This module owns the video plumbing of enhancement: what a file is, and an
ffmpeg decoding it to RGB frames, the caller's ``process`` on batches of
them, an ffmpeg encoding the results, a remux that puts the audio back.
Which model runs, and where, is the service's.

Probing uses the ffmpeg that will decode the file (imageio-ffmpeg ships no
ffprobe; PyAV's own libav may read a file differently): one demux pass, no
decoding, into the ``framecrc`` muxer, which prints each stream's codec,
time base and size and a line per packet with its timestamps. So frames are
counted exactly (stopping once a limit is passed), the rate is exact
(30000/1001, not the "29.97" ``ffmpeg -i`` prints), and a truncated file
shows as the decoder would meet it: "moov atom not found", "partial file",
or packets that stop long before the header's duration.

Decoder and encoder run with ``-fps_mode passthrough`` (``-vsync`` before
5.1) and the encoder gets the exact rate: no frame is duplicated or dropped.
One batch of input and one of output frames are held at a time. Output is
the rendered videos' format (libx264 veryfast CRF 23, yuv420p, faststart),
tagged BT.709. The first audio stream is copied when AAC, MP3 or Opus (mp4
holds them, browsers play them), else (or if the copy fails) re-encoded to
the product's AAC, in a second, cheap pass: the fallback never reruns the
model. All is written in a work folder beside ``out``, moved in place last.
"""
from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

from enfoads.errors import InvalidInput, PayloadTooLarge
from enfoads.services.video_ffmpeg import ENCODER_FLUSH_S as _ENCODER_FLUSH_S, LOG_TAIL as _LOG_TAIL, FFmpegError, run_ffmpeg
from enfoads.services.video_ffmpeg import log_tail as _tail, start_process as _start, stop_process as _stop_process

__all__ = ["VideoInfo", "probe_video", "enhance_video", "COPYABLE_AUDIO"]

log = logging.getLogger(__name__)

# Audio codecs copied into the output unchanged: the mp4 container holds them and current browsers play them.
COPYABLE_AUDIO = frozenset({"aac", "mp3", "opus"})
_AAC_ARGS = ["-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2"]  # the product's audio (scene_command)

# framecrc's packet line: stream, dts, pts, duration, size, checksum[, F=0x<flags>][, S=<side data>...]
_PACKET_LINE = re.compile(r"(?P<stream>\d+),\s*-?\d+,\s*(?P<pts>-?\d+),\s*(?P<duration>-?\d+),\s*\d+,"
                          r"\s*0x[0-9a-f]+(?:,\s*F=0x(?P<flags>[0-9a-f]+))?", re.IGNORECASE)
_NOPTS = -(2 ** 63)  # AV_NOPTS_VALUE, as framecrc prints a missing timestamp
_DISCARD_FLAG = 0x4  # AV_PKT_FLAG_DISCARD: a packet decoded only to be dropped (edit lists)
_MAX_RATE_DENOMINATOR = 1001  # real rates are n/1 or n*1000/1001; anything finer is timestamp rounding


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe_video`` found. ``width`` x ``height`` is the decoded (display-rotated) frame size."""

    width: int
    height: int
    fps: float
    frames: int  # the video stream's packets, counted
    duration_s: float  # the video stream's, first frame to the end of the last
    has_audio: bool
    audio_codec: str | None
    video_codec: str | None
    video_start_s: float = 0.0  # where the video stream starts after the file's start (kept against the audio)


# --------------------------------------------------------------------------- probing


@dataclass
class _Stream:
    media_type: str = ""
    codec: str | None = None
    time_base: Fraction = Fraction(1, 1)
    size: tuple[int, int] | None = None
    packets: int = 0
    min_pts: int | None = None
    max_pts: int | None = None
    end_pts: int | None = None  # max of pts + duration: where the stream's last packet ends

    def add_packet(self, pts: int, duration: int) -> None:
        self.packets += 1
        if pts != _NOPTS:
            self.min_pts = min(pts, self.min_pts if self.min_pts is not None else pts)
            self.max_pts = max(pts, self.max_pts if self.max_pts is not None else pts)
            self.end_pts = max(pts + max(duration, 0), self.end_pts if self.end_pts is not None else pts)


def probe_video(path, *, ffmpeg: str, field: str = "media_url", max_frames: int | None = None,
                max_pixels: int | None = None) -> VideoInfo:
    """What the file is, read by ``ffmpeg`` itself in one demux pass (see the module's docstring).

    Raises InvalidInput naming ``field`` for what is not a video, has no video stream or frames, is an image
    or is truncated; PayloadTooLarge naming it over ``max_frames`` or ``max_pixels`` (a frame); FFmpegError
    when ffmpeg fails otherwise.
    """
    path = Path(path)
    if path.stat().st_size == 0:  # no file at all is the caller's mistake: FileNotFoundError
        raise InvalidInput.field(field, "is an empty file, not a video")
    args = [ffmpeg, "-hide_banner", "-nostdin", "-i", os.fspath(path), "-map", "0:V:0", "-map", "0:a:0?",
            "-c", "copy", "-f", "framecrc", "pipe:1"]
    with tempfile.TemporaryFile() as log_file:
        streams, over_limit, rc = _read_framecrc(args, log_file, max_frames=max_frames, max_pixels=max_pixels)
        log_file.seek(0)
        stderr = log_file.read().decode("utf-8", "replace")
    header = stderr.split("Stream mapping:", 1)[0]
    video = streams.get(0)
    if rc != 0 and over_limit is None:
        raise _unreadable(field, stderr, rc)
    if video is None or video.media_type != "video" or video.size is None:
        raise InvalidInput.field(field, "has no video stream (is it an audio file or an image?)")
    input_format = re.search(r"Input #0, (\S+?), from", header)
    if input_format and (input_format.group(1) == "image2" or input_format.group(1).endswith("_pipe")):
        raise InvalidInput.field(field, "is a still image, not a video")
    width, height = video.size
    if _rotation_degrees(header) % 180 == 90:  # ffmpeg's decoder applies the display rotation: report what it gives
        width, height = height, width
    if over_limit == "pixels":
        raise PayloadTooLarge.field(field, f"has {width}x{height} frames; the limit is {max_pixels:,} pixels a frame")
    fps = _frame_rate(video, header)
    if over_limit == "frames":
        raise PayloadTooLarge.field(field, f"has more than {max_frames:,} frames; the limit is {max_frames:,} "
                                           f"frames (about {max_frames / float(fps):.1f} s at {float(fps):g} fps)")
    if "partial file" in stderr:
        raise _truncated(field)
    if video.packets == 0:
        raise InvalidInput.field(field, "has no frames")
    audio = streams.get(1)
    duration = re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", header)
    header_duration = int(duration[1]) * 3600 + int(duration[2]) * 60 + float(duration[3]) if duration else None
    ends = [float(s.end_pts * s.time_base) for s in (video, audio) if s is not None and s.end_pts is not None]
    # Containers whose index sits at the front (mkv, webm) say nothing when cut: their packets just stop.
    if header_duration and ends and "Estimating duration from bitrate" not in stderr \
            and max(ends) < 0.8 * header_duration and header_duration - max(ends) > 0.5:
        raise _truncated(field)
    if video.min_pts is not None and video.max_pts is not None:
        duration_s = float((video.max_pts - video.min_pts) * video.time_base + 1 / fps)
        start_s = max(0.0, float(video.min_pts * video.time_base))
    else:  # no timestamps at all: trust the header
        duration_s, start_s = header_duration or float(video.packets / fps), 0.0
    return VideoInfo(width=width, height=height, fps=float(fps), frames=video.packets, duration_s=duration_s,
                     has_audio=audio is not None and audio.media_type == "audio",
                     audio_codec=audio.codec if audio is not None else None, video_codec=video.codec,
                     video_start_s=start_s)


def _read_framecrc(args: list[str], log_file, *, max_frames: int | None,
                   max_pixels: int | None) -> tuple[dict[int, _Stream], str | None, int]:
    """Run the demux pass; stop it early when a limit is passed. Returns (streams, "frames"|"pixels"|None, rc)."""
    proc = _start(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log_file)
    streams: dict[int, _Stream] = {}
    over_limit = None
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").strip()
            if line.startswith("#"):
                _read_header_line(line, streams)
                video = streams.get(0)
                if max_pixels is not None and video is not None and video.size is not None \
                        and video.size[0] * video.size[1] > max_pixels:
                    over_limit = "pixels"
                    break
                continue
            packet = _PACKET_LINE.match(line)
            if packet is None:
                continue
            index, flags = int(packet["stream"]), int(packet["flags"] or "0", 16)
            stream = streams.setdefault(index, _Stream())
            if stream.media_type == "video" and flags & _DISCARD_FLAG:
                continue
            stream.add_packet(int(packet["pts"]), int(packet["duration"]))
            if max_frames is not None and index == 0 and stream.packets > max_frames:
                over_limit = "frames"
                break
        if over_limit is not None:
            _stop_process(proc, wait_s=0.0)
        rc = proc.wait(timeout=60)
    except BaseException as exc:
        _stop_process(proc, wait_s=0.0)
        if isinstance(exc, subprocess.TimeoutExpired):
            raise FFmpegError("ffmpeg did not finish probing the video") from None
        raise
    finally:
        proc.stdout.close()
    return streams, over_limit, rc


def _read_header_line(line: str, streams: dict[int, _Stream]) -> None:
    match = re.match(r"#(media_type|codec_id|tb|dimensions) (\d+):\s*(\S+)", line)
    if match is None:
        return
    key, value = match.group(1), match.group(3)
    stream = streams.setdefault(int(match.group(2)), _Stream())
    if key == "media_type":
        stream.media_type = value
    elif key == "codec_id":
        stream.codec = value
    elif key == "tb" and re.fullmatch(r"\d+/[1-9]\d*", value):
        stream.time_base = Fraction(value)
    elif key == "dimensions" and re.fullmatch(r"\d+x\d+", value):
        stream.size = tuple(int(v) for v in value.split("x"))


def _frame_rate(video: _Stream, header: str) -> Fraction:
    """The average rate from the timestamps, as the header's round rate (30000/1001) where that fits them.

    Timestamps are whole ticks (milliseconds in mkv), so over a short clip the
    measured rate is off by up to two ticks over the span; a rate ``ffmpeg -i``
    prints that lies within that is the one the file was made at.
    """
    if video.packets >= 2 and video.min_pts is not None and video.max_pts > video.min_pts:
        span = (video.max_pts - video.min_pts) * video.time_base
        measured = (video.packets - 1) / span
        tolerance = measured * 2 * video.time_base / span
        for rate in _header_rates(header):
            if abs(rate - measured) <= tolerance:
                return rate
        return _snap_rate(measured)
    if video.end_pts is not None and video.end_pts > video.max_pts:  # one frame with a duration
        return _snap_rate(1 / ((video.end_pts - video.max_pts) * video.time_base))
    rates = _header_rates(header)
    return rates[0] if rates else Fraction(25)


def _header_rates(header: str) -> list[Fraction]:
    """The exact rates that the video stream's printed "fps" and "tbr" (two decimals) may stand for."""
    line = next((ln for ln in header.splitlines() if " Video: " in ln and "(attached pic)" not in ln), "")
    rates = []
    for printed in re.findall(r", (\d+(?:\.\d+)?) (?:fps|tbr)\b", line):
        value = float(printed)
        for rate in (Fraction(round(value)), Fraction(round(value * 1.001) * 1000, 1001), Fraction(printed)):
            if rate > 0 and abs(rate - Fraction(printed)) < Fraction(6, 1000) and rate not in rates:
                rates.append(rate)
    return rates


def _snap_rate(rate) -> Fraction:
    # Idempotent through float: the nearest fraction with a small denominator is unique to ~1e-6.
    return Fraction(rate).limit_denominator(_MAX_RATE_DENOMINATOR)


def _rotation_degrees(header: str) -> int:
    """The first non-cover video stream's display rotation, as ``ffmpeg -i`` prints it (0 when none)."""
    for block in re.split(r"\n(?=\s*Stream #0:)", header)[1:]:
        if " Video: " in block.partition("\n")[0] and "(attached pic)" not in block.partition("\n")[0]:
            match = re.search(r"rotation of (-?\d+(?:\.\d+)?) degrees", block)
            return round(float(match.group(1))) % 360 if match else 0
    return 0


def _truncated(field: str) -> InvalidInput:
    return InvalidInput.field(field, "is incomplete: the file was cut off before its end (during upload or "
                                     "copy?); send the whole file")


def _unreadable(field: str, stderr: str, rc: int) -> Exception:
    if "matches no streams" in stderr:
        return InvalidInput.field(field, "has no video stream (is it an audio file?)")
    if "detected only with low score" in stderr:
        return InvalidInput.field(field, "is not a video file")
    if "moov atom not found" in stderr:  # an mp4's index is written last: the file stops before it
        return _truncated(field)
    if "Error opening input" in stderr or "Invalid data found" in stderr:
        return InvalidInput.field(field, "is not a video file ffmpeg can read")
    return FFmpegError(f"ffmpeg could not probe the video (exit {rc}): {stderr[-_LOG_TAIL:].strip()}")


# --------------------------------------------------------------------------- enhancing


@functools.lru_cache(maxsize=8)
def _passthrough_args(ffmpeg: str) -> tuple[str, ...]:
    """``-fps_mode passthrough`` (ffmpeg 5.1+; 7+ has no ``-vsync``) or ``-vsync passthrough`` (older)."""
    try:
        new = subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                              "nullsrc=s=16x16:d=0.04", "-fps_mode", "passthrough", "-f", "null", "-"],
                             stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        new = True  # the real run will say what is wrong
    return ("-fps_mode" if new else "-vsync", "passthrough")


def enhance_video(src, out, *, process: Callable, out_size: tuple[int, int], ffmpeg: str, batch: int = 8,
                  progress: Callable[[int, int], None] | None = None, info: VideoInfo | None = None) -> dict:
    """``src`` through ``process`` batch by batch into ``out`` (MP4), the audio kept (see the module's docstring).

    ``process`` maps N x H x W x 3 uint8 RGB (``info``'s size) to N x out_h x out_w x 3 uint8, ``out_size``
    being ``(out_w, out_h)`` as PIL sizes go. ``progress(done, total)`` follows each batch (total: the
    probed count, or more if more were decoded; a last ``(n, n)`` if fewer). An exception from ``process``
    or ``progress`` (a cancel) stops both ffmpegs, leaves no ``out`` and propagates unchanged.

    Returns ``{"frames", "fps", "width", "height", "seconds", "audio": "copied" | "aac" | None}``; raises
    ValueError (odd ``out_size``, bad ``batch`` or output), FFmpegError, and ``probe_video``'s errors.
    """
    out_w, out_h = _checked_size(out_size)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a whole number of at least 1, not {batch!r}")
    src, out = Path(src), Path(out)
    info = info if info is not None else probe_video(src, ffmpeg=ffmpeg)
    rate = _snap_rate(info.fps)
    started = time.monotonic()
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".enhance-", dir=out.parent))  # same disk as out: the final move is atomic
    try:
        video = work / "video.mp4"
        frames = _frames_through(src, video, work, process=process, info=info, rate=rate,
                                 out_shape=(out_h, out_w), ffmpeg=ffmpeg, batch=batch, progress=progress,
                                 faststart=not info.has_audio)
        audio = None
        if info.has_audio:
            final = work / "final.mp4"
            audio = _mux_audio(video, src, final, work, info=info, ffmpeg=ffmpeg)
            os.replace(final, out)
        else:
            os.replace(video, out)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"frames": frames, "fps": float(rate), "width": out_w, "height": out_h,
            "seconds": round(time.monotonic() - started, 3), "audio": audio}


def _checked_size(out_size) -> tuple[int, int]:
    out_w, out_h = (int(v) for v in out_size)  # (width, height)
    if out_w <= 0 or out_h <= 0 or out_w % 2 or out_h % 2:
        raise ValueError(f"out_size must be positive and even on both sides (yuv420p), not {out_w}x{out_h}")
    return out_w, out_h


def _frames_through(src: Path, video_out: Path, work: Path, *, process, info: VideoInfo, rate: Fraction,
                    out_shape: tuple[int, int], ffmpeg: str, batch: int, progress, faststart: bool) -> int:
    """Decoder -> ``process`` -> encoder. Returns the number of frames encoded."""
    import numpy as np

    width, height = info.width, info.height
    out_h, out_w = out_shape
    passthrough = list(_passthrough_args(ffmpeg))
    decode_args = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-i", os.fspath(src),
                   "-map", "0:V:0", "-an", "-sn", "-dn",
                   # A stream that changes size midway still gives frames of the probed size.
                   "-vf", f"scale={width}:{height},format=rgb24", *passthrough,
                   "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    encode_args = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                   "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{out_w}x{out_h}", "-framerate", str(rate),
                   "-i", "pipe:0", "-map", "0:v:0",
                   "-vf", "scale=out_color_matrix=bt709:out_range=tv,format=yuv420p",
                   "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
                   "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709",
                   "-color_range", "tv", *passthrough, "-an"]
    if faststart:
        encode_args += ["-movflags", "+faststart"]
    encode_args += ["-f", "mp4", os.fspath(video_out)]
    decode_log, encode_log = work / "decode.log", work / "encode.log"
    frame_bytes = width * height * 3
    with open(decode_log, "wb") as dec_err, open(encode_log, "wb") as enc_err:
        decoder = _start(decode_args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=dec_err)
        try:
            encoder = _start(encode_args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=enc_err)
        except BaseException:
            _stop_process(decoder)
            raise
        done = 0
        try:
            while True:
                frames = _read_frames(decoder.stdout, batch, height, width, frame_bytes, np)
                if frames is None:
                    break
                result = _checked_output(process(frames), len(frames), (out_h, out_w, 3), np)
                try:
                    encoder.stdin.write(memoryview(result).cast("B"))
                except BrokenPipeError:
                    raise FFmpegError(f"the video encoder stopped: {_tail(encode_log)}") from None
                done += len(frames)
                del frames, result  # one batch in memory, not two
                if progress is not None:
                    progress(done, max(info.frames, done))
            try:
                encoder.stdin.close()
                encode_rc = encoder.wait(timeout=_ENCODER_FLUSH_S)
                decode_rc = decoder.wait(timeout=30)
            except BrokenPipeError:
                raise FFmpegError(f"the video encoder stopped: {_tail(encode_log)}") from None
            except subprocess.TimeoutExpired as exc:
                raise FFmpegError(f"ffmpeg did not finish within {exc.timeout:g} s after the last frame") from None
        except BaseException:
            _stop_process(decoder)
            _stop_process(encoder)
            raise
        finally:
            decoder.stdout.close()
    if decode_rc != 0:
        raise FFmpegError(f"ffmpeg could not decode the video (exit {decode_rc}): {_tail(decode_log)}")
    if encode_rc != 0:
        raise FFmpegError(f"ffmpeg could not encode the video (exit {encode_rc}): {_tail(encode_log)}")
    if done == 0:
        raise FFmpegError(f"ffmpeg decoded no frames: {_tail(decode_log)}")
    if progress is not None and done < info.frames:
        progress(done, done)
    return done


def _read_frames(stream, batch: int, height: int, width: int, frame_bytes: int, np):
    """Up to ``batch`` frames from the decoder's pipe as N x H x W x 3 uint8; None at the end."""
    frames = np.empty((batch, height, width, 3), dtype=np.uint8)
    flat = memoryview(frames).cast("B")
    got = 0
    while got < len(flat):
        n = stream.readinto(flat[got:])
        if not n:
            break
        got += n
    if got % frame_bytes:
        raise FFmpegError(f"the video decoder stopped in the middle of a frame ({got % frame_bytes} of "
                          f"{frame_bytes} bytes)")
    count = got // frame_bytes
    if count == 0:
        return None
    return frames if count == batch else frames[:count]


def _checked_output(result, count: int, expected: tuple[int, int, int], np):
    if not isinstance(result, np.ndarray) and hasattr(result, "__array__"):
        result = np.asarray(result)  # a CPU tensor, say
    shape = tuple(getattr(result, "shape", ()))
    if shape != (count, *expected):
        raise ValueError(f"process() returned frames of shape {shape}; expected {(count, *expected)} "
                         "(N x out_h x out_w x 3)")
    if getattr(result, "dtype", None) != np.uint8:
        raise ValueError(f"process() returned {getattr(result, 'dtype', type(result).__name__)}; expected uint8")
    return np.ascontiguousarray(result)


def _mux_audio(video: Path, src: Path, final: Path, work: Path, *, info: VideoInfo, ffmpeg: str) -> str:
    """The finished video plus the source's first audio stream: copied, or AAC. Returns "copied" or "aac"."""
    attempts = ["copied", "aac"] if info.audio_codec in COPYABLE_AUDIO else ["aac"]
    for attempt in attempts:
        args = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
        if info.video_start_s > 0:  # the source's video started after its audio: keep them in sync
            args += ["-itsoffset", f"{info.video_start_s:.6f}"]
        args += ["-i", os.fspath(video), "-i", os.fspath(src), "-map", "0:v:0", "-map", "1:a:0",
                 "-map_chapters", "-1", "-c:v", "copy"]
        args += ["-c:a", "copy"] if attempt == "copied" else _AAC_ARGS
        args += ["-movflags", "+faststart", "-f", "mp4", os.fspath(final)]
        try:
            run_ffmpeg(args, duration=info.duration_s, log_file=work / f"mux-{attempt}.log")
            return attempt
        except FFmpegError as exc:
            if attempt == attempts[-1]:
                raise
            log.warning("copying the %s audio into mp4 failed (%s); re-encoding it to AAC", info.audio_codec, exc)
    raise AssertionError("unreachable")
