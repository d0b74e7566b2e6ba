"""Decoding untrusted images: probing, decoding to pixels, encoding PNGs.

Images (:func:`probe_image`, :func:`decode_image`): Pillow, restricted to PNG,
JPEG, WebP, GIF (first frame) and BMP. The pixel limit is checked per call from
the header, before a single pixel is decoded (Pillow's global
``MAX_IMAGE_PIXELS`` is left alone; it stays an outer cap at ~179 MP).
Truncated files are refused (Pillow's default ``LOAD_TRUNCATED_IMAGES = False``
is relied on). The EXIF orientation is applied, so ``width``/``height`` are
those of the upright picture. Alpha is kept apart, to be re-attached to a
result.

Errors are those of ``enfoads.services.media``, naming the request field;
payloads are read there. Pillow, numpy and OpenCV load on use.
"""
from __future__ import annotations

import io
import re
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from enfoads.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from enfoads.services.media import MB, Payload, read_payload

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "DEFAULT_MAX_IMAGE_BYTES",
    "IMAGE_FORMATS",
    "ImageInfo",
    "DecodedImage",
    "probe_image",
    "decode_image",
    "encode_png",
]

#: Pixels (width x height) an input image may have: 40 MP, above any phone's
#: default photo size, ~120 MB once decoded to 8-bit RGB.
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
#: Encoded bytes an input image may have.
DEFAULT_MAX_IMAGE_BYTES = 30 * MB

#: Pillow format -> MIME type of the image formats accepted. Phones' JPEGs
#: often open as MPO (a JPEG with a second picture appended).
IMAGE_FORMATS = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
}
# Decoders Pillow may try (MPO is reached through the JPEG one).
_OPEN_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
_FORMAT_NAMES = "PNG, JPEG, WebP, GIF or BMP"
_EXIF_ORIENTATION = 0x0112


def _mp(n: float) -> str:
    return f"{n / 1e6:.1f} MP"


# --------------------------------------------------------------------------- images


@dataclass(frozen=True)
class ImageInfo:
    """What an image's header says. ``width``/``height`` are upright (EXIF orientation applied)."""

    format: str  # Pillow's name: PNG, JPEG, MPO, WEBP, GIF, BMP
    mime: str
    width: int
    height: int
    orientation: int  # EXIF orientation tag (1: none)
    bytes: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


@dataclass(frozen=True)
class DecodedImage:
    """An 8-bit, 3-channel picture (``channels`` order), its alpha if it had one, and its header facts."""

    pixels: "np.ndarray"  # H x W x 3, uint8, C-contiguous
    alpha: "np.ndarray | None"  # H x W, uint8; None when the image is opaque
    channels: str  # "BGR" (OpenCV, insightface) or "RGB"
    info: ImageInfo

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


def _too_many_pixels(field: str, exc: Exception, max_pixels: int) -> PayloadTooLarge:
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = _mp(int(found.group(1))) if found else "far too many pixels"
    return PayloadTooLarge.field(field, f"is {size} (a decompression bomb?); the limit is {_mp(max_pixels)}")


def _open_image(payload: Payload, field: str, max_pixels: int):
    """Pillow image opened lazily (header only), checked against format, declared type and pixel limit."""
    from PIL import Image, UnidentifiedImageError

    if payload.declared_mime is not None and not payload.declared_mime.startswith("image/"):
        raise UnsupportedMediaType.field(
            field, f"is declared as {payload.declared_mime!r} in its data URI, not as an image"
        )
    try:
        im = Image.open(io.BytesIO(payload.data), formats=_OPEN_FORMATS)
    except Image.DecompressionBombError as exc:
        # Pillow's own global cap (~179 MP) fired before ours could.
        raise _too_many_pixels(field, exc, max_pixels) from None
    except UnidentifiedImageError:
        raise UnsupportedMediaType.field(field, f"is not an image Enfoads can read ({_FORMAT_NAMES})") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        raise InvalidInput.field(field, f"is a corrupt image ({exc})") from None
    mime = IMAGE_FORMATS[im.format]
    if payload.declared_mime is not None and payload.declared_mime != mime:
        raise UnsupportedMediaType.field(
            field, f"is declared as {payload.declared_mime!r} in its data URI but the data is {mime}"
        )
    width, height = im.size
    if width * height > max_pixels:
        raise PayloadTooLarge.field(
            field, f"is {width}x{height} = {_mp(width * height)}; the limit is {_mp(max_pixels)}"
        )
    # Pillow's PNG plugin decodes every pixel to look for an eXIf chunk stored
    # after the image data; here only the header is read (an error in that
    # hidden decode was swallowed, and a corrupt PNG then "loaded" as garbage).
    # decode_image looks again once the pixels are really loaded.
    orientation = 1 if _exif_needs_pixels(im) else _orientation(im)
    return im, _info(im, mime, width, height, orientation, len(payload.data))


def _exif_needs_pixels(im) -> bool:
    return im.format == "PNG" and "exif" not in im.info


def _orientation(im) -> int:
    """The EXIF orientation tag (1 when absent, broken or out of range)."""
    try:
        orientation = int(im.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # a broken EXIF block: keep the stored orientation
        return 1
    return orientation if orientation in range(1, 9) else 1


def _info(im, mime: str, width: int, height: int, orientation: int, size: int) -> ImageInfo:
    if orientation in (5, 6, 7, 8):  # rotated by 90 degrees one way or the other
        width, height = height, width
    return ImageInfo(format=im.format, mime=mime, width=width, height=height, orientation=orientation, bytes=size)


def probe_image(value: Any, *, field: str = "image", max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                max_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> ImageInfo:
    """Check an image from its header only (type, declared type, size limits); no pixel is decoded.

    Cheap enough for request validation; a truncated or corrupt body is only
    found by :func:`decode_image`, and so is the orientation of a PNG whose
    eXIf chunk comes after its pixel data (reported as 1 here).
    """
    payload = value if isinstance(value, Payload) else read_payload(value, field=field, max_bytes=max_bytes)
    im, info = _open_image(payload, field, max_pixels)
    im.close()
    return info


def decode_image(value: Any, *, field: str = "image", max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                 max_bytes: int = DEFAULT_MAX_IMAGE_BYTES, channels: str = "BGR") -> DecodedImage:
    """Decode an untrusted image to an upright uint8 array.

    Args:
        value: raw bytes, a base64 string, a ``data:`` URI or a ``Payload``.
        field: the request field, named in every error.
        max_pixels: width x height allowed (checked before decoding).
        max_bytes: encoded size allowed.
        channels: ``"BGR"`` (OpenCV, insightface) or ``"RGB"``.

    Returns:
        A ``DecodedImage``: pixels H x W x 3, alpha H x W or None, header facts.
    """
    import numpy as np
    from PIL import Image, ImageOps

    if channels not in ("BGR", "RGB"):
        raise ValueError("channels must be 'BGR' or 'RGB'")
    payload = value if isinstance(value, Payload) else read_payload(value, field=field, max_bytes=max_bytes)
    im, info = _open_image(payload, field, max_pixels)
    late_exif = _exif_needs_pixels(im)
    try:
        im.load()
    except Image.DecompressionBombError as exc:
        raise _too_many_pixels(field, exc, max_pixels) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError) as exc:
        raise InvalidInput.field(field, f"is truncated or corrupt ({exc})") from None
    if late_exif:  # loaded now: an eXIf chunk after the pixel data is known
        info = _info(im, info.mime, im.width, im.height, _orientation(im), info.bytes)
    if info.orientation != 1:
        try:
            im = ImageOps.exif_transpose(im)
        except Exception:  # orientation unusable: keep the stored one, but say what we return
            info = ImageInfo(info.format, info.mime, im.width, im.height, 1, info.bytes)

    mode = im.mode
    alpha = None
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    if mode.startswith("I;16") or mode in ("I", "F"):
        # 16-bit or float greyscale: scale to 8 bits ourselves (convert() clips).
        grey = np.asarray(im, dtype=np.float64)
        top = 255.0 if mode == "F" else (65535.0 if grey.max(initial=0) > 255 else 255.0)
        grey = np.clip(grey * (255.0 / top), 0, 255).astype(np.uint8)
        rgb = np.repeat(grey[:, :, None], 3, axis=2)
    elif has_alpha:
        rgba = np.asarray(im.convert("RGBA"))
        rgb = rgba[:, :, :3]
        if int(rgba[:, :, 3].min(initial=255)) < 255:
            alpha = np.ascontiguousarray(rgba[:, :, 3])
    else:
        rgb = np.asarray(im if mode == "RGB" else im.convert("RGB"))
    im.close()
    pixels = rgb[:, :, ::-1] if channels == "BGR" else rgb
    return DecodedImage(pixels=np.ascontiguousarray(pixels, dtype=np.uint8), alpha=alpha, channels=channels, info=info)


def encode_png(pixels: "np.ndarray", *, channels: str = "BGR", alpha: "np.ndarray | None" = None,
               compression: int = 3) -> bytes:
    """PNG bytes of an H x W x 3 uint8 array (plus an optional H x W alpha). No metadata is written."""
    import cv2
    import numpy as np

    if channels not in ("BGR", "RGB"):
        raise ValueError("channels must be 'BGR' or 'RGB'")
    bgr = pixels if channels == "BGR" else pixels[:, :, ::-1]
    if alpha is not None:
        if alpha.shape != bgr.shape[:2]:
            raise ValueError(f"alpha is {alpha.shape}, pixels are {bgr.shape[:2]}")
        bgr = np.dstack([bgr, alpha])
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(bgr, dtype=np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, int(compression)])
    if not ok:
        raise RuntimeError("OpenCV could not encode the PNG")
    return buf.tobytes()
