"""A video's subtitles: cues timed from the speech, their SubRip and WebVTT text, and the strips burned in.

Each strip is a transparent PNG drawn with Pillow (white bold text with an
outline on a translucent box, in any TrueType font found, DejaVu Sans Bold
first); an ffconcat file times them into one stream that
``video_ffmpeg.scene_command`` overlays.
"""
from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enfoads.services.tts import Speech
from enfoads.services.video_canvas import VideoFormat

__all__ = ["Cue", "cues_from_speech", "to_srt", "to_vtt", "subtitle_font_path", "render_subtitle_strips"]

log = logging.getLogger(__name__)


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
