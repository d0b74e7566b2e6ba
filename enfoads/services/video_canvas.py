"""The shape of a video (``VideoFormat``) and the avatar composed onto a canvas of that shape (``compose_canvas``).

The canvas is ``CANVAS_SCALE`` times the video's size so that ffmpeg's
``zoompan`` (``video_ffmpeg.scene_command``) moves smoothly over it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from enfoads.services.video_options import DEFAULT_FPS, DEFAULT_RESOLUTION

__all__ = ["CANVAS_SCALE", "VideoFormat", "compose_canvas"]

CANVAS_SCALE = 2  # the avatar canvas is this many times the video size (smooth zoompan)


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
