"""Avatars: the still pictures that talk in videos, kept in ``<data_dir>/avatars/``.

Each avatar is ``<id>.png`` plus ``<id>.json`` (name, size, when). Ids are
``default`` (the built-in one) or 32 hex digits made here from a fresh uuid4;
nothing a client sends ever becomes part of a path, and a name is only a label
in the JSON.

Uploads (:meth:`AvatarStore.add`) take raw bytes, base64 or a ``data:`` URI
and are checked before anything is written: at most ``max_bytes`` encoded
bytes; PNG, JPEG or WebP by content (Pillow opens only those three decoders;
a data URI declaring another type than it carries is refused); at most
``max_pixels`` pixels from the header, before a pixel is decoded (decompression
bombs); at least 64 px a side; fully decodable (truncated files are refused).
The picture is then turned upright (EXIF), reduced to at most 2048 px a side,
and stored as a normalised PNG (RGB, or RGBA when it has transparency).

Faces: a talking avatar needs its face box and five key points (InsightFace's
order: eyes, nose, mouth corners), found once when the avatar is added
(``find_face``, see ``enfoads.services.avatar_faces``) and kept in its JSON, so
every render reuses them; a picture the detector finds no face in is refused
then (400 naming the field), not mid-render. The built-in avatar carries its
face as data (:data:`DEFAULT_AVATAR_FACE`, where :func:`draw_default_avatar`
draws it): no detector has to find a drawn face. An avatar stored by an
earlier release has none until its first lip-synced render finds it.

The built-in avatar is drawn by :func:`draw_default_avatar` (Pillow shapes: a
friendly stylised presenter, not a photo); the package ships it as
``enfoads/data/default_avatar.png`` and :meth:`AvatarStore.ensure_default`
copies it into the data dir (or draws it there if the file is missing), so a
fresh install always has one.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from enfoads.errors import InvalidInput, NotFound, PayloadTooLarge, UnsupportedMediaType
from enfoads.text import clean_text

__all__ = [
    "DEFAULT_AVATAR_ID",
    "DEFAULT_AVATAR_NAME",
    "MAX_AVATAR_BYTES",
    "MAX_AVATAR_PIXELS",
    "MAX_STORED_SIDE",
    "MIN_SIDE",
    "Avatar",
    "AvatarStore",
    "DEFAULT_AVATAR_FACE",
    "default_face",
    "read_rgb",
    "draw_default_avatar",
    "packaged_default_avatar",
    "is_avatar_id",
]

DEFAULT_AVATAR_ID = "default"
DEFAULT_AVATAR_NAME = "Enfoads (predeterminado)"
MAX_AVATAR_BYTES = 15 * 1000 * 1000
MAX_AVATAR_PIXELS = 40_000_000
MAX_STORED_SIDE = 2048
MIN_SIDE = 64
MAX_AVATARS = 500
MAX_NAME_CHARS = 60
_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "MPO": "image/jpeg", "WEBP": "image/webp"}
_OPEN_FORMATS = ("PNG", "JPEG", "WEBP")
_ID_RE = re.compile(r"^(default|[0-9a-f]{32})$")
#: The built-in avatar's face where :func:`draw_default_avatar` draws it, as fractions of the picture's
#: width and height: the head's box (brows to chin) and the five key points (left eye, right eye,
#: nose tip, left and right mouth corner).
DEFAULT_AVATAR_FACE = {
    "box": [0.31, 0.395, 0.69, 0.64],
    "kps": [[0.425, 0.455], [0.575, 0.455], [0.5, 0.52], [0.431, 0.554], [0.569, 0.554]],
}
_MIME_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png"}


def is_avatar_id(value: Any) -> bool:
    return isinstance(value, str) and bool(_ID_RE.match(value))


@dataclass(frozen=True)
class Avatar:
    id: str
    name: str
    path: Path
    width: int
    height: int
    created: float
    builtin: bool
    face: dict | None = None  # {"box": [x1, y1, x2, y2], "kps": [[x, y] x 5], "score"?} in pixels

    def to_dict(self) -> dict:
        """JSON for the web layer, which adds ``img`` (a signed URL of :attr:`path`)."""
        return {"id": self.id, "name": self.name, "width": self.width, "height": self.height,
                "created": self.created, "builtin": self.builtin, "face": self.face}


def default_face(width: int, height: int) -> dict:
    """:data:`DEFAULT_AVATAR_FACE` in the pixels of a ``width`` x ``height`` copy of the built-in avatar."""
    x1, y1, x2, y2 = DEFAULT_AVATAR_FACE["box"]
    return {"box": [round(x1 * width, 1), round(y1 * height, 1), round(x2 * width, 1), round(y2 * height, 1)],
            "kps": [[round(x * width, 1), round(y * height, 1)] for x, y in DEFAULT_AVATAR_FACE["kps"]]}


# --------------------------------------------------------------------------- the default avatar


def draw_default_avatar(width: int = 768, height: int = 1024, *, supersample: int = 3):
    """A friendly stylised presenter (head, hair, smile, shoulders) on a soft gradient, as a PIL image.

    Drawn at ``supersample`` times the size and reduced, for smooth edges.
    Deterministic: the same arguments give the same pixels.
    """
    from PIL import Image, ImageDraw, ImageFilter

    s = supersample
    W, H = width * s, height * s
    img = Image.new("RGB", (W, H))
    top, bottom = (250, 214, 165), (120, 170, 220)  # warm peach to calm blue
    grad = Image.linear_gradient("L").resize((W, H))
    img = Image.composite(Image.new("RGB", (W, H), bottom), Image.new("RGB", (W, H), top), grad)
    d = ImageDraw.Draw(img)

    def box(cx, cy, rx, ry):
        return [int((cx - rx) * W), int((cy - ry) * H), int((cx + rx) * W), int((cy + ry) * H)]

    # A soft halo behind the figure.
    halo = Image.new("L", (W, H), 0)
    ImageDraw.Draw(halo).ellipse(box(0.5, 0.42, 0.40, 0.30), fill=120)
    halo = halo.filter(ImageFilter.GaussianBlur(radius=40 * s))
    img.paste(Image.new("RGB", (W, H), (255, 244, 225)), (0, 0), halo)

    skin, skin_shade = (241, 194, 160), (226, 170, 136)
    hair = (74, 52, 46)
    shirt, shirt_dark = (38, 110, 160), (28, 84, 126)
    # The neck, then shoulders and body (a rounded torso) with a V collar over it.
    d.rounded_rectangle(box(0.5, 0.66, 0.065, 0.07), radius=int(0.03 * W), fill=skin_shade)
    d.rounded_rectangle(box(0.5, 0.93, 0.38, 0.25), radius=int(0.12 * W), fill=shirt)
    d.polygon([(int(0.42 * W), int(0.68 * H)), (int(0.5 * W), int(0.80 * H)), (int(0.58 * W), int(0.68 * H))],
              fill=(250, 250, 250))
    d.polygon([(int(0.435 * W), int(0.68 * H)), (int(0.5 * W), int(0.765 * H)), (int(0.565 * W), int(0.68 * H))],
              fill=skin_shade)
    d.line([(int(0.5 * W), int(0.80 * H)), (int(0.5 * W), int(H))], fill=shirt_dark, width=3 * s)
    # Hair behind the head, the head, ears.
    d.ellipse(box(0.5, 0.40, 0.215, 0.215), fill=hair)
    d.ellipse(box(0.305, 0.45, 0.035, 0.045), fill=skin_shade)
    d.ellipse(box(0.695, 0.45, 0.035, 0.045), fill=skin_shade)
    d.ellipse(box(0.5, 0.455, 0.19, 0.185), fill=skin)
    # A fringe swept to one side.
    d.chord(box(0.5, 0.36, 0.205, 0.12), start=180, end=360, fill=hair)
    d.pieslice(box(0.44, 0.345, 0.12, 0.05), start=0, end=180, fill=hair)
    # Eyes with highlights, eyebrows.
    for cx in (0.425, 0.575):
        d.ellipse(box(cx, 0.45, 0.026, 0.030), fill=(255, 255, 255))
        d.ellipse(box(cx, 0.455, 0.016, 0.020), fill=(58, 42, 36))
        d.ellipse(box(cx + 0.006, 0.447, 0.005, 0.006), fill=(255, 255, 255))
        d.arc(box(cx, 0.415, 0.035, 0.018), start=200, end=340, fill=hair, width=5 * s)
    # Cheeks, nose, a smile.
    for cx in (0.39, 0.61):
        d.ellipse(box(cx, 0.52, 0.03, 0.018), fill=(240, 164, 150))
    d.arc(box(0.5, 0.50, 0.02, 0.025), start=20, end=160, fill=skin_shade, width=4 * s)
    d.chord(box(0.5, 0.545, 0.07, 0.05), start=10, end=170, fill=(178, 72, 72))
    d.chord(box(0.5, 0.545, 0.055, 0.03), start=15, end=165, fill=(255, 255, 255))
    # A small speech bubble: this avatar talks.
    d.rounded_rectangle(box(0.82, 0.17, 0.11, 0.055), radius=int(0.04 * W), fill=(255, 255, 255))
    d.polygon([(int(0.75 * W), int(0.21 * H)), (int(0.73 * W), int(0.25 * H)), (int(0.79 * W), int(0.215 * H))],
              fill=(255, 255, 255))
    for i, cx in enumerate((0.78, 0.82, 0.86)):
        d.ellipse(box(cx, 0.17, 0.012, 0.009), fill=(38, 110, 160) if i != 1 else (232, 120, 80))
    return img.resize((width, height), Image.LANCZOS)


def packaged_default_avatar() -> Path:
    """Where the package keeps its default avatar (may be missing in a trimmed install)."""
    return Path(__file__).parents[1] / "data" / "default_avatar.png"


# --------------------------------------------------------------------------- the store


def _clean_name(name: Any, field: str = "name") -> str | None:
    if name is None:
        return None
    if not isinstance(name, str):
        raise InvalidInput.field(field, "must be text")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: JSON carries it, the UTF-8 metadata file cannot
        raise InvalidInput.field(field, "is not valid Unicode text (it holds a lone UTF-16 surrogate)") from None
    name = re.sub(r"\s+", " ", clean_text(name)[0]).strip()  # the one text rule, then one line
    if len(name) > MAX_NAME_CHARS:
        raise InvalidInput.field(field, f"is {len(name)} characters; at most {MAX_NAME_CHARS}")
    return name or None


def _rgb_pixels(png: bytes):
    """An H x W x 3 uint8 RGB array of a stored PNG (transparency flattened onto a light grey)."""
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        if im.mode == "RGBA":
            flat = Image.new("RGB", im.size, (235, 238, 242))
            flat.paste(im, (0, 0), im)
            return np.asarray(flat)
        return np.asarray(im.convert("RGB"))


def read_rgb(path: Path):
    """An avatar's picture as RGB pixels, as :func:`_rgb_pixels` gives them."""
    return _rgb_pixels(Path(path).read_bytes())


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class AvatarStore:
    """Avatars under ``<data_dir>/avatars``.

    Args:
        data_dir: the data directory.
        max_bytes, max_pixels: upload limits (encoded bytes; width x height).
        max_count: most uploaded avatars kept; past it uploads are refused.
    """

    def __init__(self, data_dir: str | Path, *, max_bytes: int = MAX_AVATAR_BYTES,
                 max_pixels: int = MAX_AVATAR_PIXELS, max_count: int = MAX_AVATARS):
        self.dir = Path(data_dir).expanduser() / "avatars"
        self.max_bytes = int(max_bytes)
        self.max_pixels = int(max_pixels)
        self.max_count = int(max_count)

    @classmethod
    def from_settings(cls, settings, **kw) -> "AvatarStore":
        return cls(settings.data_dir, **kw)

    # ---------------------------------------------------------------- reading

    def _meta(self, avatar_id: str) -> Avatar | None:
        png, meta = self.dir / f"{avatar_id}.png", self.dir / f"{avatar_id}.json"
        try:
            info = json.loads(meta.read_text(encoding="utf-8"))
            if not png.is_file():
                return None
        except (OSError, ValueError):
            return None
        width, height = int(info.get("width") or 0), int(info.get("height") or 0)
        face = info.get("face") if isinstance(info.get("face"), dict) else None
        if face is None and avatar_id == DEFAULT_AVATAR_ID and width and height:
            face = default_face(width, height)  # a data dir made before faces were kept
        return Avatar(id=avatar_id, name=str(info.get("name") or avatar_id), path=png, width=width, height=height,
                      created=float(info.get("created") or 0.0), builtin=avatar_id == DEFAULT_AVATAR_ID, face=face)

    def list(self) -> list[Avatar]:
        """Every avatar: the default one first, then uploads newest first."""
        self.ensure_default()
        found = []
        for meta in self.dir.glob("*.json"):
            if _ID_RE.match(meta.stem) and meta.stem != DEFAULT_AVATAR_ID:
                avatar = self._meta(meta.stem)
                if avatar is not None:
                    found.append(avatar)
        found.sort(key=lambda a: (-a.created, a.id))
        default = self._meta(DEFAULT_AVATAR_ID)
        return ([default] if default else []) + found

    def get(self, avatar_id: Any, *, field: str = "avatar_id") -> Avatar:
        """The avatar, or ``InvalidInput`` naming ``field`` (for request validation)."""
        if avatar_id is None or (isinstance(avatar_id, str) and not avatar_id.strip()):
            raise InvalidInput.field(field, "is required: an avatar id from GET /avatars")
        if not isinstance(avatar_id, str) or not _ID_RE.match(avatar_id.strip()):
            raise InvalidInput.field(field, f"unknown avatar {str(avatar_id)[:40]!r}; GET /avatars lists them")
        avatar_id = avatar_id.strip()
        if avatar_id == DEFAULT_AVATAR_ID:
            self.ensure_default()
        avatar = self._meta(avatar_id)
        if avatar is None:
            raise InvalidInput.field(field, f"unknown avatar {avatar_id!r}; GET /avatars lists them")
        return avatar

    def find(self, avatar_id: Any) -> Avatar:
        """The avatar, or ``NotFound`` (404, for ``GET /avatars/<id>``-style routes)."""
        try:
            return self.get(avatar_id)
        except InvalidInput:
            raise NotFound(f"no avatar {str(avatar_id)[:40]!r}") from None

    def path(self, avatar_id: Any) -> Path:
        """The PNG file of an avatar (for ``send_file``); ``NotFound`` if there is none."""
        return self.find(avatar_id).path

    # ---------------------------------------------------------------- writing

    def ensure_default(self) -> Avatar:
        """Put the built-in avatar in place if it is missing; return it."""
        existing = self._meta(DEFAULT_AVATAR_ID)
        if existing is not None:
            return existing
        self.dir.mkdir(parents=True, exist_ok=True)
        packaged = packaged_default_avatar()
        data = packaged.read_bytes() if packaged.is_file() else None
        if data is None:
            buf = io.BytesIO()
            draw_default_avatar().save(buf, format="PNG", optimize=True)
            data = buf.getvalue()
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
        _write_atomic(self.dir / f"{DEFAULT_AVATAR_ID}.png", data)
        self._write_meta(DEFAULT_AVATAR_ID, DEFAULT_AVATAR_NAME, width, height, data, source="builtin",
                         face=default_face(width, height))
        return self._meta(DEFAULT_AVATAR_ID)  # type: ignore[return-value]

    def _write_meta(self, avatar_id, name, width, height, png: bytes, source: str, face: dict | None = None) -> None:
        meta = {"id": avatar_id, "name": name, "width": width, "height": height, "created": time.time(),
                "bytes": len(png), "sha256": hashlib.sha256(png).hexdigest(), "source": source}
        if face is not None:
            meta["face"] = face
        _write_atomic(self.dir / f"{avatar_id}.json", json.dumps(meta, ensure_ascii=False).encode("utf-8"))

    def set_face(self, avatar_id: str, face: dict) -> None:
        """Keep a face found later (an avatar stored by an earlier release) in the avatar's JSON."""
        meta = self.dir / f"{avatar_id}.json"
        info = json.loads(meta.read_text(encoding="utf-8"))
        info["face"] = face
        _write_atomic(meta, json.dumps(info, ensure_ascii=False).encode("utf-8"))

    def normalize(self, data: Any, *, field: str = "image") -> tuple[bytes, int, int]:
        """Check an upload and return it as normalised PNG bytes with its size; writes nothing."""
        from PIL import Image, ImageOps, UnidentifiedImageError

        from enfoads.services import media

        payload = media.read_payload(data, field=field, max_bytes=self.max_bytes)
        declared = _MIME_ALIASES.get(payload.declared_mime or "", payload.declared_mime)
        if declared and not declared.startswith("image/"):
            raise UnsupportedMediaType.field(field, f"is {declared}; send a PNG, JPEG or WebP image")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            try:
                im = Image.open(io.BytesIO(payload.data), formats=_OPEN_FORMATS)
            except UnidentifiedImageError:
                raise UnsupportedMediaType.field(field, "is not a PNG, JPEG or WebP image") from None
            except (Image.DecompressionBombError, Image.DecompressionBombWarning):
                raise PayloadTooLarge.field(field, f"has too many pixels; the limit is "
                                                   f"{self.max_pixels / 1e6:.0f} MP") from None
            with im:
                mime = _FORMATS.get(im.format or "")
                if mime is None:
                    raise UnsupportedMediaType.field(field, "is not a PNG, JPEG or WebP image")
                if declared and declared != mime:
                    raise UnsupportedMediaType.field(field, f"declares {declared} but holds {mime}")
                w, h = im.size
                if w * h > self.max_pixels:
                    raise PayloadTooLarge.field(field, f"is {w}x{h} ({w * h / 1e6:.1f} MP); the limit is "
                                                       f"{self.max_pixels / 1e6:.0f} MP")
                if min(w, h) < MIN_SIDE:
                    raise InvalidInput.field(field, f"is {w}x{h}; avatars need at least {MIN_SIDE} px a side")
                try:
                    im.seek(0)
                    im.load()
                    upright = ImageOps.exif_transpose(im)
                except (OSError, ValueError, SyntaxError) as exc:
                    raise InvalidInput.field(field, f"could not be decoded (truncated or corrupt): {exc}") from None
                except (Image.DecompressionBombError, Image.DecompressionBombWarning):
                    raise PayloadTooLarge.field(field, "has too many pixels") from None
        has_alpha = upright.mode in ("RGBA", "LA", "PA") or (upright.mode == "P" and "transparency" in upright.info)
        out = upright.convert("RGBA" if has_alpha else "RGB")
        if has_alpha and out.getchannel("A").getextrema() == (255, 255):
            out = out.convert("RGB")
        if max(out.size) > MAX_STORED_SIDE:
            out.thumbnail((MAX_STORED_SIDE, MAX_STORED_SIDE), Image.LANCZOS)
        buf = io.BytesIO()
        out.save(buf, format="PNG", optimize=False, compress_level=6)
        return buf.getvalue(), out.width, out.height

    def add(self, data: Any, name: Any = None, *, field: str = "image", name_field: str = "name",
            find_face: Callable[[Any], dict | None] | None = None) -> Avatar:
        """Check and store an uploaded picture (see the module docstring); returns the new avatar.

        ``find_face(rgb pixels) -> face dict or None`` finds the face to keep; None
        (no face detector installed) stores the avatar without one.

        Raises:
            PayloadTooLarge (413): too many bytes or pixels.
            UnsupportedMediaType (415): not PNG, JPEG or WebP.
            InvalidInput (400): bad base64, corrupt or tiny image, bad name, too many avatars, no face found.
        """
        clean = _clean_name(name, name_field)
        self.ensure_default()
        count = sum(1 for p in self.dir.glob("*.json") if _ID_RE.match(p.stem)) - 1
        if count >= self.max_count:
            raise InvalidInput.field(field, f"there are already {count} avatars; delete some first")
        png, width, height = self.normalize(data, field=field)
        face = None
        if find_face is not None:
            face = find_face(_rgb_pixels(png))
            if face is None:
                raise InvalidInput.field(field, "shows no face the detector can find: a talking avatar needs one "
                                                "clear face looking at the camera, at least 64 px across")
        avatar_id = uuid.uuid4().hex
        _write_atomic(self.dir / f"{avatar_id}.png", png)
        try:
            self._write_meta(avatar_id, clean or f"Avatar {count + 1}", width, height, png, source="upload",
                             face=face)
        except BaseException:
            (self.dir / f"{avatar_id}.png").unlink(missing_ok=True)
            raise
        return self._meta(avatar_id)  # type: ignore[return-value]

    def delete(self, avatar_id: str) -> bool:
        """Remove an uploaded avatar (the built-in one stays); False if there was none."""
        if not isinstance(avatar_id, str) or not _ID_RE.match(avatar_id) or avatar_id == DEFAULT_AVATAR_ID:
            return False
        meta = self.dir / f"{avatar_id}.json"
        existed = meta.exists()
        meta.unlink(missing_ok=True)
        (self.dir / f"{avatar_id}.png").unlink(missing_ok=True)
        return existed
