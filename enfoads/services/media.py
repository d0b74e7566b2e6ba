"""Untrusted media input: reading what strangers send, shared by the services.

Every function here, in ``enfoads.services.image_input`` (images) and in
``enfoads.services.audio_input`` (audio) takes what a client sent (raw bytes,
a base64 string, or a ``data:`` URI) and either returns bytes, pixels or
samples, or raises an ``enfoads.errors.InvalidInput`` subclass whose message
names the request field (``field``) and says what is wrong and what the limit is:

- ``PayloadTooLarge`` (413): more bytes, pixels or seconds than allowed.
- ``UnsupportedMediaType`` (415): not an image / not audio, or a data URI that
  declares one type and carries another.
- ``InvalidInput`` (400): bad base64, a truncated or corrupt file.

This module owns the payload: :func:`read_payload` (base64 or data URI to
bytes, with the byte limit), :func:`is_asset_id` and :func:`data_uri`.
Nothing heavy is imported: Pillow, numpy and PyAV load on use in the decoders.
"""
from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from enfoads.errors import InvalidInput, PayloadTooLarge

__all__ = [
    "MB",
    "Payload",
    "read_payload",
    "is_asset_id",
    "data_uri",
]

MB = 1000 * 1000

_MIME_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
    "image/x-ms-bmp": "image/bmp",
    "image/x-bmp": "image/bmp",
}

_ASSET_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_DATA_URI_RE = re.compile(r"^data:(?P<mime>[^,;]*)(?P<params>(;[^,;]*)*),", re.IGNORECASE)
_B64_STRICT = re.compile(rb"^[A-Za-z0-9+/]*={0,2}$")


def _mb(n: float) -> str:
    return f"{n / MB:.1f} MB"


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


def stored_asset(assets, asset_id: str, *, field: str, types: tuple[str, ...], what: str,
                 max_bytes: int | None = None, wrong_type: type[InvalidInput] = InvalidInput):
    """The asset ``asset_id`` names, checked for a request's ``field``: it exists, its MIME type starts
    with one of ``types`` (else ``wrong_type``, saying it is not ``what``) and it is within ``max_bytes``."""
    from enfoads.work.assets import AssetNotFound

    if assets is None:
        raise InvalidInput.field(field, "asset ids need an asset store")
    try:
        asset = assets.get(asset_id)
    except AssetNotFound:
        raise InvalidInput.field(field, f"there is no asset {asset_id!r}") from None
    if not asset.mime.startswith(types):
        raise wrong_type.field(field, f"asset {asset_id!r} is {asset.mime}, not {what}")
    if max_bytes is not None and asset.bytes > max_bytes:
        raise PayloadTooLarge.field(field, f"asset {asset_id!r} is {_mb(asset.bytes)}; the limit is {_mb(max_bytes)}")
    return asset


def _too_many_bytes(field: str, size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge.field(field, f"is {_mb(size)}; the limit is {_mb(limit)}")


def data_uri(data: bytes, mime: str) -> str:
    """``data:<mime>;base64,<data>`` (what the frontend puts in an ``<img>`` tag)."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
