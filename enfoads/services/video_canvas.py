"""The shape of a video (``VideoFormat``) and the avatar composed onto a canvas of that shape (``compose_canvas``).

The canvas is ``CANVAS_SCALE`` times the video's size so that ffmpeg's
``zoompan`` (``video_ffmpeg.scene_command``) moves smoothly over it.
``placement`` says where the avatar's pixels land on it (a talking face is
laid over the still canvas there, frame by frame).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from enfoads.services.video_options import DEFAULT_FPS, DEFAULT_RESOLUTION

__all__ = ["CANVAS_SCALE", "VideoFormat", "Placement", "compose_canvas", "placement"]

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


@dataclass(frozen=True)
class Placement:
    """Avatar pixel (x, y) -> canvas pixel (x * sx + tx, y * sy + ty)."""

    sx: float
    sy: float
    tx: float
    ty: float
    canvas_width: int
    canvas_height: int
    fills: bool  # the avatar fills the canvas (cropped a little) rather than sitting on a blurred copy

    def matrix(self, dx: float = 0.0, dy: float = 0.0):
        """The 2 x 3 affine matrix (OpenCV's) from avatar pixels to canvas pixels shifted by (-dx, -dy)."""
        import numpy as np

        return np.array([[self.sx, 0.0, self.tx - dx], [0.0, self.sy, self.ty - dy]], dtype=np.float64)


def _fills(width: int, height: int, cw: int, ch: int) -> bool:
    ratio = (width / height) / (cw / ch)
    return 0.87 <= ratio <= 1.15


def placement(width: int, height: int, fmt: VideoFormat, scale: int = CANVAS_SCALE) -> Placement:
    """Where :func:`compose_canvas` puts a ``width`` x ``height`` avatar: the same arithmetic as
    Pillow's ``ImageOps.fit`` (crop to the canvas's shape, centred at (0.5, 0.4)) and
    ``ImageOps.contain`` (fitted whole, centred)."""
    cw, ch = fmt.width * scale, fmt.height * scale
    if _fills(width, height, cw, ch):
        out_ratio = cw / ch
        if width / height >= out_ratio:
            crop_w, crop_h = out_ratio * height, float(height)
        else:
            crop_w, crop_h = float(width), width / out_ratio
        left, top = (width - crop_w) * 0.5, (height - crop_h) * 0.4
        sx, sy = cw / crop_w, ch / crop_h
        return Placement(sx, sy, -left * sx, -top * sy, cw, ch, True)
    if width / height > cw / ch:
        fw, fh = cw, round(height / width * cw)
    else:
        fw, fh = round(width / height * ch), ch
    return Placement(fw / width, fh / height, float((cw - fw) // 2), float((ch - fh) // 2), cw, ch, False)


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
    if _fills(im.width, im.height, cw, ch):
        canvas = ImageOps.fit(im, (cw, ch), Image.LANCZOS, centering=(0.5, 0.4))
    else:
        small = ImageOps.fit(im, (max(cw // 8, 1), max(ch // 8, 1)), Image.BILINEAR)
        small = ImageEnhance.Brightness(small.filter(ImageFilter.GaussianBlur(radius=6))).enhance(0.55)
        canvas = small.resize((cw, ch), Image.BILINEAR)
        fg = ImageOps.contain(im, (cw, ch), Image.LANCZOS)
        canvas.paste(fg, ((cw - fg.width) // 2, (ch - fg.height) // 2))
    canvas.save(out, format="PNG", compress_level=1)
    return out
