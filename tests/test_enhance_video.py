"""``enhance_video`` and ``probe_video`` with the real ffmpeg on tiny videos (32x24 px, 10 fps, 1.5 s).

The videos are made once per module by ffmpeg itself: AAC audio in MP4,
no audio, PCM audio in MOV (not copyable: re-encoded), 30000/1001 fps in
MKV (millisecond timestamps), a display rotation, and the broken ones: an
MP4 cut in half with its index at the end and one with it at the front, a
text file named .mp4, an audio-only file, a PNG.
"""
from __future__ import annotations

import os
import subprocess
from fractions import Fraction

import numpy as np
import pytest

from enfoads.errors import InvalidInput, PayloadTooLarge
from enfoads.services import video_ffmpeg
from enfoads.services.enhance_video import VideoInfo, enhance_video, probe_video

W, H, FPS, SECONDS = 32, 24, 10, 1.5
FRAMES = 15


def upscale2(frames: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(frames, 2, axis=1), 2, axis=2)


@pytest.fixture(scope="module")
def ffmpeg():
    try:
        return video_ffmpeg.find_ffmpeg()
    except video_ffmpeg.VideoUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def make(ffmpeg, *args):
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", *map(str, args)], check=True)


@pytest.fixture(scope="module")
def videos(ffmpeg, tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    picture = ["-f", "lavfi", "-i", f"testsrc=size={W}x{H}:rate={FPS}"]
    tone = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
    h264 = ["-c:v", "libx264", "-pix_fmt", "yuv420p"]
    make(ffmpeg, *picture, *tone, "-t", SECONDS, *h264, "-c:a", "aac", d / "aac.mp4")
    make(ffmpeg, *picture, "-t", SECONDS, *h264, d / "silent.mp4")
    make(ffmpeg, *picture, *tone, "-t", SECONDS, *h264, "-c:a", "pcm_s16le", d / "pcm.mov")
    make(ffmpeg, "-f", "lavfi", "-i", f"testsrc=size={W}x{H}:rate=30000/1001", "-t", 1, *h264, d / "ntsc.mkv")
    make(ffmpeg, "-display_rotation", 90, "-i", d / "aac.mp4", "-c", "copy", d / "rotated.mp4")
    make(ffmpeg, "-i", d / "aac.mp4", "-c", "copy", "-movflags", "+faststart", d / "faststart.mp4")
    make(ffmpeg, *tone, "-t", 1, "-c:a", "aac", d / "tone.m4a")
    make(ffmpeg, "-itsoffset", 0.5, "-i", d / "silent.mp4", "-i", d / "tone.m4a", "-map", "0:v", "-map", "1:a",
         "-c", "copy", d / "late-video.mp4")
    make(ffmpeg, *picture, "-frames:v", 1, d / "still.png")
    for name in ("aac.mp4", "faststart.mp4"):  # index at the end (moov missing) / at the front (frames missing)
        data = (d / name).read_bytes()
        (d / f"half-{name}").write_bytes(data[: len(data) // 2])
    (d / "text.mp4").write_text("This is a shopping list, not a video.\n")
    (d / "empty.mp4").write_bytes(b"")
    return d


def frame_crc(ffmpeg, path) -> list[str]:
    """framecrc lines of every stream, stream copied: headers and one line per packet."""
    out = subprocess.run([ffmpeg, "-v", "error", "-i", str(path), "-map", "0", "-c", "copy", "-f", "framecrc", "-"],
                         capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def first_frame(ffmpeg, path, width, height) -> np.ndarray:
    raw = subprocess.run([ffmpeg, "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(height, width, 3)


def ffmpeg_children() -> list[int]:
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        kids = []
        for child in psutil.Process().children(recursive=True):
            try:
                name = child.name()
            except psutil.ZombieProcess:  # exited, not reaped yet: still left behind
                name = "ffmpeg (zombie)"
            except psutil.NoSuchProcess:  # reaped meanwhile
                continue
            if "ffmpeg" in name:
                kids.append(child.pid)
        return kids
    me, kids = str(os.getpid()), []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                name, _, rest = f.read().partition("(")[2].rpartition(")")
        except OSError:
            continue
        if rest.split()[1] == me and "ffmpeg" in name:  # a zombie keeps its stat line: counted too
            kids.append(int(pid))
    return kids


# --------------------------------------------------------------------------- probing


def test_probe_reads_size_rate_frames_and_audio(ffmpeg, videos):
    info = probe_video(videos / "aac.mp4", ffmpeg=ffmpeg)
    assert info == VideoInfo(width=W, height=H, fps=10.0, frames=FRAMES, duration_s=pytest.approx(SECONDS),
                             has_audio=True, audio_codec="aac", video_codec="h264")
    silent = probe_video(videos / "silent.mp4", ffmpeg=ffmpeg)
    assert (silent.has_audio, silent.audio_codec, silent.frames) == (False, None, FRAMES)
    assert probe_video(videos / "pcm.mov", ffmpeg=ffmpeg).audio_codec == "pcm_s16le"


def test_probe_gives_the_exact_ntsc_rate_from_millisecond_timestamps(ffmpeg, videos):
    info = probe_video(videos / "ntsc.mkv", ffmpeg=ffmpeg)
    assert Fraction(info.fps).limit_denominator(1001) == Fraction(30000, 1001)
    assert info.frames == 30


def test_probe_reports_the_displayed_size_of_a_rotated_video(ffmpeg, videos):
    info = probe_video(videos / "rotated.mp4", ffmpeg=ffmpeg)
    assert (info.width, info.height) == (H, W)


@pytest.mark.parametrize("name", ["half-aac.mp4", "half-faststart.mp4"])
def test_probe_refuses_a_truncated_mp4(ffmpeg, videos, name):
    with pytest.raises(InvalidInput) as caught:
        probe_video(videos / name, ffmpeg=ffmpeg, field="video")
    assert type(caught.value) is InvalidInput and caught.value.status == 400
    assert "video" in caught.value.fields and "incomplete" in caught.value.fields["video"]


@pytest.mark.parametrize("name, words", [("text.mp4", "not a video"), ("tone.m4a", "no video stream"),
                                         ("still.png", "still image"), ("empty.mp4", "empty")])
def test_probe_refuses_what_is_not_a_video(ffmpeg, videos, name, words):
    with pytest.raises(InvalidInput) as caught:
        probe_video(videos / name, ffmpeg=ffmpeg)
    assert caught.value.status == 400 and words in caught.value.fields["media_url"]


def test_probe_limits_frames_and_pixels(ffmpeg, videos):
    with pytest.raises(PayloadTooLarge) as caught:
        probe_video(videos / "aac.mp4", ffmpeg=ffmpeg, max_frames=10)
    assert caught.value.status == 413 and "10 frames" in caught.value.fields["media_url"]
    with pytest.raises(PayloadTooLarge) as caught:
        probe_video(videos / "aac.mp4", ffmpeg=ffmpeg, field="clip", max_pixels=W * H - 1)
    assert caught.value.status == 413 and f"{W * H - 1:,} pixels" in caught.value.fields["clip"]
    assert probe_video(videos / "aac.mp4", ffmpeg=ffmpeg, max_frames=FRAMES, max_pixels=W * H).frames == FRAMES
    assert ffmpeg_children() == []  # the early stops reaped their ffmpeg


# --------------------------------------------------------------------------- enhancing


def test_enhance_upscales_every_frame_and_copies_the_audio(ffmpeg, videos, tmp_path):
    src, out = videos / "aac.mp4", tmp_path / "out.mp4"
    result = enhance_video(src, out, process=upscale2, out_size=(2 * W, 2 * H), ffmpeg=ffmpeg)
    assert result["frames"] == FRAMES and result["fps"] == 10.0 and result["audio"] == "copied"
    assert (result["width"], result["height"]) == (2 * W, 2 * H) and result["seconds"] >= 0
    info = probe_video(out, ffmpeg=ffmpeg)
    assert (info.width, info.height, info.frames, info.fps) == (2 * W, 2 * H, FRAMES, 10.0)
    assert abs(info.duration_s - SECONDS) <= 1 / FPS
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    lines = frame_crc(ffmpeg, out)
    assert sorted(ln for ln in lines if ln.startswith("#media_type")) == ["#media_type 0: video",
                                                                         "#media_type 1: audio"]

    def audio_packets(path):  # stream 1 in both files: (dts, pts, duration, size, checksum) of every packet
        return [ln.split(",")[1:6] for ln in frame_crc(ffmpeg, path) if ln.startswith("1,")]

    assert audio_packets(out) == audio_packets(src) != []  # bit for bit, timestamps too
    expected = upscale2(first_frame(ffmpeg, src, W, H)[None])[0].astype(int)
    got = first_frame(ffmpeg, out, 2 * W, 2 * H).astype(int)
    later = upscale2(first_frame_at(ffmpeg, src, 7)[None])[0].astype(int)
    assert np.abs(got - expected).mean() < 8  # x264 at CRF 23 on a test card, nothing more (about 4 here)
    assert np.abs(got - later).mean() > 1.5 * np.abs(got - expected).mean()  # and it is the first frame


def first_frame_at(ffmpeg, path, index) -> np.ndarray:
    raw = subprocess.run([ffmpeg, "-v", "error", "-i", str(path), "-vf", f"select=eq(n\\,{index})",
                          "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(H, W, 3)


def test_audio_mp4_cannot_carry_is_reencoded_to_aac(ffmpeg, videos, tmp_path):
    out = tmp_path / "out.mp4"
    result = enhance_video(videos / "pcm.mov", out, process=upscale2, out_size=(2 * W, 2 * H), ffmpeg=ffmpeg)
    assert result["audio"] == "aac"
    info = probe_video(out, ffmpeg=ffmpeg)
    assert (info.audio_codec, info.frames) == ("aac", FRAMES)
    assert any(ln == "#sample_rate 1: 48000" for ln in frame_crc(ffmpeg, out))  # the product's AAC


def test_a_silent_source_gives_a_silent_video(ffmpeg, videos, tmp_path):
    out = tmp_path / "out.mp4"
    result = enhance_video(videos / "silent.mp4", out, process=upscale2, out_size=(2 * W, 2 * H), ffmpeg=ffmpeg)
    info = probe_video(out, ffmpeg=ffmpeg)
    assert result["audio"] is None and not info.has_audio and info.frames == FRAMES


def test_ntsc_rate_and_frame_count_survive(ffmpeg, videos, tmp_path):
    src, out = videos / "ntsc.mkv", tmp_path / "out.mp4"
    before = probe_video(src, ffmpeg=ffmpeg)
    result = enhance_video(src, out, process=lambda f: f.copy(), out_size=(W, H), ffmpeg=ffmpeg, info=before)
    after = probe_video(out, ffmpeg=ffmpeg)
    assert result["frames"] == after.frames == before.frames == 30
    assert after.fps == pytest.approx(30000 / 1001, abs=1e-9)
    assert abs(after.duration_s - before.duration_s) <= 1 / after.fps


def test_a_video_that_starts_after_its_audio_stays_in_sync(ffmpeg, videos, tmp_path):
    before = probe_video(videos / "late-video.mp4", ffmpeg=ffmpeg)
    assert before.video_start_s == pytest.approx(0.5)
    enhance_video(videos / "late-video.mp4", tmp_path / "out.mp4", process=upscale2, out_size=(2 * W, 2 * H),
                  ffmpeg=ffmpeg, info=before)
    after = probe_video(tmp_path / "out.mp4", ffmpeg=ffmpeg)
    assert after.video_start_s == pytest.approx(0.5) and after.frames == FRAMES and after.audio_codec == "aac"


def test_rotated_video_is_enhanced_upright(ffmpeg, videos, tmp_path):
    out = tmp_path / "out.mp4"
    enhance_video(videos / "rotated.mp4", out, process=upscale2, out_size=(2 * H, 2 * W), ffmpeg=ffmpeg)
    info = probe_video(out, ffmpeg=ffmpeg)
    assert (info.width, info.height, info.frames) == (2 * H, 2 * W, FRAMES)


def test_progress_counts_up_to_the_total_in_batches(ffmpeg, videos, tmp_path):
    calls, sizes = [], []

    def process(frames):
        sizes.append(len(frames))
        return upscale2(frames)

    enhance_video(videos / "silent.mp4", tmp_path / "out.mp4", process=process, out_size=(2 * W, 2 * H),
                  ffmpeg=ffmpeg, batch=4, progress=lambda done, total: calls.append((done, total)))
    assert sizes == [4, 4, 4, 3]
    assert calls == [(4, FRAMES), (8, FRAMES), (12, FRAMES), (FRAMES, FRAMES)]


class Cancelled(Exception):
    pass


def test_a_cancel_from_progress_stops_both_ffmpegs_and_leaves_nothing(ffmpeg, videos, tmp_path):
    out, seen = tmp_path / "out.mp4", []
    out.write_bytes(b"an older result")

    def progress(done, total):
        seen.append(ffmpeg_children())
        if len(seen) == 2:
            raise Cancelled("job cancelled")

    with pytest.raises(Cancelled, match="job cancelled"):
        enhance_video(videos / "aac.mp4", out, process=upscale2, out_size=(2 * W, 2 * H), ffmpeg=ffmpeg,
                      batch=4, progress=progress)
    assert len(seen[1]) == 2  # the decoder and the encoder were running when it was cancelled
    assert ffmpeg_children() == []
    assert not out.exists() and list(tmp_path.iterdir()) == []  # no work folder left either


def test_an_error_in_process_stops_ffmpeg_and_propagates(ffmpeg, videos, tmp_path):
    out, calls = tmp_path / "out.mp4", []

    def process(frames):
        calls.append(len(frames))
        if len(calls) == 2:
            raise RuntimeError("CUDA out of memory")
        return upscale2(frames)

    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        enhance_video(videos / "aac.mp4", out, process=process, out_size=(2 * W, 2 * H), ffmpeg=ffmpeg, batch=4)
    assert ffmpeg_children() == [] and list(tmp_path.iterdir()) == []


def test_wrong_output_shape_or_size_is_a_value_error(ffmpeg, videos, tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(ValueError, match=r"shape \(8, 24, 32, 3\); expected \(8, 48, 64, 3\)"):
        enhance_video(videos / "aac.mp4", out, process=lambda f: f, out_size=(2 * W, 2 * H), ffmpeg=ffmpeg)
    with pytest.raises(ValueError, match="uint8"):
        enhance_video(videos / "aac.mp4", out, process=lambda f: upscale2(f).astype(np.float32),
                      out_size=(2 * W, 2 * H), ffmpeg=ffmpeg)
    with pytest.raises(ValueError, match="even"):
        enhance_video(videos / "aac.mp4", out, process=upscale2, out_size=(2 * W + 1, 2 * H), ffmpeg=ffmpeg)
    assert ffmpeg_children() == [] and list(tmp_path.iterdir()) == []


def test_enhance_probes_the_source_itself_and_refuses_bad_input(ffmpeg, videos, tmp_path):
    with pytest.raises(InvalidInput):
        enhance_video(videos / "half-faststart.mp4", tmp_path / "out.mp4", process=upscale2,
                      out_size=(2 * W, 2 * H), ffmpeg=ffmpeg)
    assert list(tmp_path.iterdir()) == []
