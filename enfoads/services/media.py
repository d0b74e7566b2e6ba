"""Decoding untrusted media: images and audio that strangers send, shared by the services.

Every function here takes what a client sent (raw bytes, a base64 string, or a
``data:`` URI) and either returns pixels or samples, or raises an
``enfoads.errors.InvalidInput`` subclass whose message names the request field
(``field``) and says what is wrong and what the limit is:

- ``PayloadTooLarge`` (413): more bytes, pixels or seconds than allowed.
- ``UnsupportedMediaType`` (415): not an image / not audio, or a data URI that
  declares one type and carries another.
- ``InvalidInput`` (400): bad base64, a truncated or corrupt file.

Images (:func:`probe_image`, :func:`decode_image`): Pillow, restricted to PNG,
JPEG, WebP, GIF (first frame) and BMP. The pixel limit is checked per call from
the header, before a single pixel is decoded (Pillow's global
``MAX_IMAGE_PIXELS`` is left alone; it stays an outer cap at ~179 MP).
Truncated files are refused (Pillow's default ``LOAD_TRUNCATED_IMAGES = False``
is relied on). The EXIF orientation is applied, so ``width``/``height`` are
those of the upright picture. Alpha is kept apart, to be re-attached to a
result.

Audio (:func:`probe_audio`, :func:`decode_audio`): PyAV, the decoder
faster-whisper itself uses, with the same resampling (mono, signed 16 bit,
then float32 at 16 kHz). Limits: bytes, and duration both from the header (at
once) and while decoding (a header can lie). No bytes at all, or a container
with no samples, gives *empty* audio, not an error; bytes that FFmpeg cannot
read, or a file without an audio stream, are refused.

Nothing heavy is imported at module import: Pillow, numpy and PyAV load on use.
"""
from __future__ import annotations

import base64
import binascii
import io
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from enfoads.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "DEFAULT_MAX_IMAGE_BYTES",
    "DEFAULT_MAX_AUDIO_BYTES",
    "DEFAULT_MAX_AUDIO_SECONDS",
    "SAMPLING_RATE",
    "IMAGE_FORMATS",
    "Payload",
    "ImageInfo",
    "DecodedImage",
    "AudioInfo",
    "DecodedAudio",
    "read_payload",
    "is_asset_id",
    "probe_image",
    "decode_image",
    "encode_png",
    "data_uri",
    "probe_audio",
    "decode_audio",
]

MB = 1000 * 1000

#: Pixels (width x height) an input image may have: 40 MP, above any phone's
#: default photo size, ~120 MB once decoded to 8-bit RGB.
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
#: Encoded bytes an input image may have.
DEFAULT_MAX_IMAGE_BYTES = 30 * MB
#: Encoded bytes an input audio file may have (OpenAI's own limit is 25 MB).
DEFAULT_MAX_AUDIO_BYTES = 100 * MB
#: Seconds of audio a transcription may take in.
DEFAULT_MAX_AUDIO_SECONDS = 2 * 3600
#: What Whisper wants.
SAMPLING_RATE = 16000

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
_MIME_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
    "image/x-ms-bmp": "image/bmp",
    "image/x-bmp": "image/bmp",
}
# What a data URI may declare for audio: containers FFmpeg reads are named
# many ways by browsers (MediaRecorder gives video/webm for audio-only).
_AUDIO_MIME_PREFIXES = ("audio/", "video/")
_AUDIO_MIMES = frozenset({"application/ogg", "application/octet-stream"})

_ASSET_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_DATA_URI_RE = re.compile(r"^data:(?P<mime>[^,;]*)(?P<params>(;[^,;]*)*),", re.IGNORECASE)
_B64_STRICT = re.compile(rb"^[A-Za-z0-9+/]*={0,2}$")
_EXIF_ORIENTATION = 0x0112


def _mb(n: float) -> str:
    return f"{n / MB:.1f} MB"


def _mp(n: float) -> str:
    return f"{n / 1e6:.1f} MP"


def _hms(seconds: float) -> str:
    """``H:MM:SS`` (with tenths when not a whole second)."""
    tenths = int(round(float(seconds) * 10))
    whole, frac = divmod(tenths, 10)
    text = f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
    return f"{text}.{frac}" if frac else text


# --------------------------------------------------------------------------- payloads


@dataclass(frozen=True)
class Payload:
    """Raw bytes as sent, plus the MIME type a data URI declared (``None`` otherwise)."""

    data: bytes
    declared_mime: str | None = None


def is_asset_id(value: Any) -> bool:
    """True for a string shaped like an asset id (32 lowercase hex digits).

    No image or audio file fits in the 24 bytes such a string would decode to
    as base64, so the two readings never collide.
    """
    return isinstance(value, str) and bool(_ASSET_ID_RE.match(value))


def _strict_b64(raw: bytes) -> bytes:
    """Standard base64, every character checked (in C on Python 3.11+: no regex pass over megabytes)."""
    try:
        return binascii.a2b_base64(raw, strict_mode=True)
    except TypeError:  # Python 3.10: no strict_mode
        return base64.b64decode(raw, validate=True)


def _b64decode(text: str, field: str) -> bytes:
    if not text.isascii():
        raise InvalidInput.field(field, "is not valid base64 (non-ASCII characters) nor a data URI")
    raw = text.encode("ascii")
    try:
        return _strict_b64(raw)
    except (binascii.Error, ValueError):
        pass
    # Tolerate what real clients send: line breaks (MIME base64), the URL-safe
    # alphabet, missing padding. Anything else is an error.
    raw = b"".join(raw.split()).replace(b"-", b"+").replace(b"_", b"/").rstrip(b"=")
    if not _B64_STRICT.match(raw):
        raise InvalidInput.field(field, "is not valid base64 nor a data URI (data:<type>;base64,...)")
    raw += b"=" * (-len(raw) % 4)
    try:
        return _strict_b64(raw)
    except (binascii.Error, ValueError):
        raise InvalidInput.field(field, "is not valid base64 (bad length)") from None


def read_payload(value: Any, *, field: str, max_bytes: int, allow_empty: bool = False) -> Payload:
    """Bytes from raw bytes, a base64 string or a ``data:`` URI; the size limit applies.

    Raises:
        InvalidInput: not bytes or a string; empty (unless ``allow_empty``);
            bad base64; a malformed data URI.
        PayloadTooLarge: more than ``max_bytes`` once decoded.
    """
    declared = None
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    elif isinstance(value, str):
        text = value.strip()
        if text[:5].lower() == "data:":
            match = _DATA_URI_RE.match(text)
            if match is None:
                raise InvalidInput.field(field, "is a malformed data URI: expected data:<type>;base64,<data>")
            declared = match.group("mime").strip().lower() or None
            params = [p.strip().lower() for p in match.group("params").split(";") if p.strip()]
            body = text[match.end():]
            if "base64" in params:
                if len(body) * 3 // 4 > max_bytes + 3:
                    raise _too_many_bytes(field, len(body) * 3 // 4, max_bytes)
                data = _b64decode(body, field)
            else:
                if len(body) > 3 * max_bytes + 3:
                    raise _too_many_bytes(field, len(body) // 3, max_bytes)
                data = unquote_to_bytes(body)
        else:
            if len(text) * 3 // 4 > max_bytes + 3:
                raise _too_many_bytes(field, len(text) * 3 // 4, max_bytes)
            data = _b64decode(text, field) if text else b""
    elif value is None:
        raise InvalidInput.field(field, "is required")
    else:
        raise InvalidInput.field(
            field, f"must be a base64 string, a data URI or an asset id, not {type(value).__name__}"
        )
    if len(data) > max_bytes:
        raise _too_many_bytes(field, len(data), max_bytes)
    if not data and not allow_empty:
        raise InvalidInput.field(field, "is empty")
    return Payload(data, _MIME_ALIASES.get(declared, declared) if declared else None)


def _too_many_bytes(field: str, size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge.field(field, f"is {_mb(size)}; the limit is {_mb(limit)}")


def data_uri(data: bytes, mime: str) -> str:
    """``data:<mime>;base64,<data>`` (what the frontend puts in an ``<img>`` tag)."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


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


# --------------------------------------------------------------------------- audio


@dataclass(frozen=True)
class AudioInfo:
    """What an audio file's header says. ``duration`` is None when the container does not tell."""

    format: str | None  # FFmpeg's demuxer name, e.g. "wav", "ogg", "mp3", "mov,mp4,m4a,3gp,3g2,mj2"
    codec: str | None
    duration: float | None
    sample_rate: int | None
    channels: int | None
    bytes: int

    @property
    def empty(self) -> bool:
        return self.bytes == 0


@dataclass(frozen=True)
class DecodedAudio:
    """Mono float32 samples in [-1, 1) at ``sampling_rate``, and the header facts."""

    samples: "np.ndarray"
    sampling_rate: int
    info: AudioInfo

    @property
    def duration(self) -> float:
        return float(self.samples.shape[0]) / self.sampling_rate

    @property
    def empty(self) -> bool:
        return self.samples.shape[0] == 0


def _audio_payload(value: Any, field: str, max_bytes: int) -> Payload:
    if isinstance(value, Payload):
        payload = value
    elif isinstance(value, Path):
        size = value.stat().st_size
        if size > max_bytes:
            raise _too_many_bytes(field, size, max_bytes)
        payload = Payload(value.read_bytes())
    else:
        payload = read_payload(value, field=field, max_bytes=max_bytes, allow_empty=True)
    declared = payload.declared_mime
    if declared is not None and not (declared.startswith(_AUDIO_MIME_PREFIXES) or declared in _AUDIO_MIMES):
        raise UnsupportedMediaType.field(field, f"is declared as {declared!r} in its data URI, not as audio")
    if len(payload.data) > max_bytes:
        raise _too_many_bytes(field, len(payload.data), max_bytes)
    return payload


def _open_container(payload: Payload, field: str):
    import av

    try:
        container = av.open(io.BytesIO(payload.data), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, ValueError, EOFError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise UnsupportedMediaType.field(
            field, f"is not audio FFmpeg can read (WAV, MP3, OGG/Opus, FLAC, M4A, WebM, ...): {why}"
        ) from None
    if not container.streams.audio:
        kinds = sorted({s.type for s in container.streams}) or ["nothing"]
        container.close()
        raise UnsupportedMediaType.field(field, f"has no audio stream (it holds {', '.join(kinds)})")
    if container.streams.audio[0].codec_context is None:
        # A container FFmpeg reads around an audio codec it has no decoder for
        # (e.g. a WAV with an unknown format tag): refused now, not at decode.
        container.close()
        raise UnsupportedMediaType.field(
            field, "uses an audio codec this server cannot decode; send WAV (PCM), MP3, OGG/Opus, FLAC, M4A or WebM"
        )
    return container


def _header_info(container, size: int) -> AudioInfo:
    stream = container.streams.audio[0]
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000  # AV_TIME_BASE
    ctx = stream.codec_context
    return AudioInfo(
        format=container.format.name if container.format else None,
        codec=getattr(ctx, "name", None),
        duration=duration,
        sample_rate=getattr(ctx, "sample_rate", None) or None,
        channels=getattr(ctx, "channels", None) or None,
        bytes=size,
    )


def _check_header_duration(info: AudioInfo, field: str, max_seconds: float) -> None:
    if info.duration is not None and info.duration > max_seconds:
        raise PayloadTooLarge.field(
            field, f"is {_hms(info.duration)} long; the limit is {_hms(max_seconds)}"
        )


def probe_audio(value: Any, *, field: str = "audio", max_bytes: int = DEFAULT_MAX_AUDIO_BYTES,
                max_duration_s: float = DEFAULT_MAX_AUDIO_SECONDS) -> AudioInfo:
    """Check audio from its container header only: readable, has an audio stream, within the limits.

    Empty input (no bytes) is valid and gives ``AudioInfo(bytes=0, ...)``.
    """
    payload = _audio_payload(value, field, max_bytes)
    if not payload.data:
        return AudioInfo(None, None, 0.0, None, None, 0)
    container = _open_container(payload, field)
    try:
        info = _header_info(container, len(payload.data))
    finally:
        container.close()
    _check_header_duration(info, field, max_duration_s)
    return info


def decode_audio(value: Any, *, field: str = "audio", max_bytes: int = DEFAULT_MAX_AUDIO_BYTES,
                 max_duration_s: float = DEFAULT_MAX_AUDIO_SECONDS,
                 sampling_rate: int = SAMPLING_RATE) -> DecodedAudio:
    """Decode untrusted audio to mono float32 at ``sampling_rate``, as faster-whisper's ``decode_audio`` does.

    Args:
        value: raw bytes, a base64 string, a ``data:`` URI, a ``Payload`` or a ``pathlib.Path``.
        field: the request field, named in every error.
        max_bytes: encoded size allowed.
        max_duration_s: seconds allowed; checked from the header first, then
            while decoding (decoding stops as soon as it is passed).
        sampling_rate: output rate (Whisper: 16000).

    Returns:
        ``DecodedAudio``; its ``samples`` are empty for empty input.
    """
    import gc

    import av
    import numpy as np

    payload = _audio_payload(value, field, max_bytes)
    if not payload.data:
        return DecodedAudio(np.zeros(0, dtype=np.float32), sampling_rate, AudioInfo(None, None, 0.0, None, None, 0))
    container = _open_container(payload, field)
    limit = int(max_duration_s * sampling_rate) + sampling_rate  # one second of slack for resampler edges
    chunks: list = []
    total = 0
    invalid = 0
    resampler = av.audio.resampler.AudioResampler(format="s16", layout="mono", rate=sampling_rate)
    fifo = av.audio.fifo.AudioFifo()
    try:
        info = _header_info(container, len(payload.data))
        _check_header_duration(info, field, max_duration_s)

        def resampled(frame):
            nonlocal total
            for out in resampler.resample(frame):
                array = out.to_ndarray().reshape(-1)
                total += array.shape[0]
                if total > limit:
                    raise PayloadTooLarge.field(
                        field, f"is longer than the limit of {_hms(max_duration_s)} (decoding stopped there)"
                    )
                chunks.append(array)

        frames = container.decode(audio=0)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except av.error.InvalidDataError:
                invalid += 1  # like faster-whisper: skip a damaged frame
                continue
            except (av.error.FFmpegError, OSError, ValueError, EOFError) as exc:
                raise InvalidInput.field(field, f"is corrupt audio ({exc})") from None
            frame.pts = None  # as faster-whisper: no timestamp checks
            fifo.write(frame)
            if fifo.samples >= 500_000:
                resampled(fifo.read())
        if fifo.samples > 0:
            resampled(fifo.read())
        resampled(None)  # flush
    except (av.error.FFmpegError, ValueError) as exc:
        raise InvalidInput.field(field, f"is corrupt audio ({exc})") from None
    finally:
        container.close()
        # As faster-whisper: resampler objects are only freed by a collection.
        resampler = fifo = None
        gc.collect()
    if total == 0 and invalid:
        raise InvalidInput.field(field, f"is corrupt audio: none of its {invalid} audio frames could be decoded")
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    samples = pcm.astype(np.float32) / 32768.0
    return DecodedAudio(samples, sampling_rate, info)
