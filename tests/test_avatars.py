"""Avatars: the built-in one, uploads with their type, size and pixel checks, ids that never reach a path."""
from __future__ import annotations

import base64
import io
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from enfoads.services import avatars as avatars_mod
from enfoads.services.avatars import DEFAULT_AVATAR_ID, AvatarStore, draw_default_avatar, packaged_default_avatar
from enfoads.errors import InvalidInput, NotFound, PayloadTooLarge, UnsupportedMediaType


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def picture(w=200, h=120, mode="RGB"):
    rng = np.random.default_rng(0)
    channels = 4 if mode == "RGBA" else 3
    return Image.fromarray(rng.integers(0, 255, (h, w, channels), dtype=np.uint8), mode)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with one tiny (bogus) data chunk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture
def store(tmp_path):
    return AvatarStore(tmp_path)


def test_fresh_install_has_the_default_avatar(store, tmp_path):
    listed = store.list()
    assert [a.id for a in listed] == [DEFAULT_AVATAR_ID]
    default = listed[0]
    assert default.builtin and default.path == tmp_path / "avatars" / "default.png"
    with Image.open(default.path) as im:
        assert im.format == "PNG" and im.size == (default.width, default.height) == (768, 1024)
    # The packaged picture is the one the code draws (made by the project, not a download).
    with Image.open(packaged_default_avatar()) as shipped:
        drawn = np.asarray(draw_default_avatar(), dtype=np.int16)
        assert shipped.size == (768, 1024)
        assert np.abs(np.asarray(shipped.convert("RGB"), dtype=np.int16) - drawn).mean() < 2.0
    assert default.to_dict()["name"] and "path" not in default.to_dict()


def test_default_avatar_is_drawn_when_the_packaged_file_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(avatars_mod, "packaged_default_avatar", lambda: tmp_path / "missing.png")
    avatar = AvatarStore(tmp_path / "data").ensure_default()
    with Image.open(avatar.path) as im:
        assert im.size == (768, 1024)


@pytest.mark.parametrize("fmt,mime", [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")])
def test_upload_png_jpeg_webp_as_bytes_base64_or_data_uri(store, fmt, mime):
    data = encode(picture(), fmt)
    uploads = [data, base64.b64encode(data).decode(), f"data:{mime};base64,{base64.b64encode(data).decode()}"]
    made = [store.add(u, name=f"  Ana\x00 {i} ") for i, u in enumerate(uploads)]
    for i, avatar in enumerate(made):
        assert len(avatar.id) == 32 and int(avatar.id, 16) >= 0 and not avatar.builtin
        assert avatar.name == f"Ana {i}" and (avatar.width, avatar.height) == (200, 120)
        assert avatar.path.name == f"{avatar.id}.png"
        with Image.open(avatar.path) as im:
            assert im.format == "PNG" and im.mode == "RGB"
    listed = store.list()
    assert listed[0].id == DEFAULT_AVATAR_ID and {a.id for a in listed[1:]} == {a.id for a in made}
    assert store.get(made[0].id).name == "Ana 0"


def test_upload_normalises_orientation_size_and_transparency(store):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    rotated = store.add(encode(picture(300, 100), "JPEG", exif=exif.tobytes()))
    assert (rotated.width, rotated.height) == (100, 300)
    big = store.add(encode(Image.new("RGB", (4000, 1000), (10, 200, 30)), "PNG"))
    assert (big.width, big.height) == (2048, 512)
    clear = picture(100, 100, "RGBA")
    alpha = store.add(encode(clear, "PNG"))
    with Image.open(alpha.path) as im:
        assert im.mode == "RGBA"
    opaque = store.add(encode(Image.new("RGBA", (100, 100), (1, 2, 3, 255)), "PNG"))
    with Image.open(opaque.path) as im:
        assert im.mode == "RGB"
    meta = json.loads((store.dir / f"{big.id}.json").read_text())
    assert meta["source"] == "upload" and meta["bytes"] == big.path.stat().st_size


def test_uploads_refused_before_anything_is_written(tmp_path):
    store = AvatarStore(tmp_path, max_bytes=200_000, max_pixels=1_000_000)
    store.ensure_default()
    before = sorted(p.name for p in store.dir.iterdir())
    cases = [
        (encode(picture(), "GIF"), UnsupportedMediaType, "PNG, JPEG or WebP"),
        (b"just some text, not a picture", UnsupportedMediaType, "PNG, JPEG or WebP"),
        (f"data:text/plain;base64,{base64.b64encode(encode(picture(), 'PNG')).decode()}", UnsupportedMediaType,
         "text/plain"),
        (f"data:image/jpeg;base64,{base64.b64encode(encode(picture(), 'PNG')).decode()}", UnsupportedMediaType,
         "holds image/png"),
        (b"\x00" * 200_001, PayloadTooLarge, "limit"),
        (encode(Image.new("RGB", (1200, 1000)), "PNG"), PayloadTooLarge, "MP"),  # real pixels over the limit
        (png_header_only(100_000, 100_000), PayloadTooLarge, "pixels"),  # a bomb: only the header is read
        (encode(picture(), "PNG")[:300], InvalidInput, "truncated"),
        (encode(picture(40, 40), "PNG"), InvalidInput, "at least 64"),
        ("not base64 !!!", InvalidInput, "image"),
        ("", InvalidInput, "empty"),
        (None, InvalidInput, "required"),
    ]
    for data, error, fragment in cases:
        with pytest.raises(error) as exc:
            store.add(data, field="image")
        assert exc.value.fields.keys() == {"image"}, data[:20]
        assert fragment in exc.value.message, (fragment, exc.value.message)
    with pytest.raises(InvalidInput) as exc:
        store.add(encode(picture(), "PNG"), name=["not", "text"])
    assert exc.value.fields.keys() == {"name"}
    with pytest.raises(InvalidInput):
        store.add(encode(picture(), "PNG"), name="x" * 61)
    assert sorted(p.name for p in store.dir.iterdir()) == before


def test_ids_are_checked_and_never_become_paths(store, tmp_path):
    (tmp_path / "secret.json").write_text("{}")
    for bad in ["../secret", "..", "/etc/passwd", "DEFAULT", "0" * 31, "0" * 32, 7, None, ""]:
        with pytest.raises(InvalidInput) as exc:
            store.get(bad, field="avatarId")
        assert exc.value.fields.keys() == {"avatarId"}
        with pytest.raises(NotFound):
            store.path(bad)
    assert store.get("default").builtin


def test_delete_and_limits(tmp_path):
    store = AvatarStore(tmp_path, max_count=2)
    a = store.add(encode(picture(), "PNG"))
    store.add(encode(picture(), "PNG"))
    with pytest.raises(InvalidInput) as exc:
        store.add(encode(picture(), "PNG"))
    assert "already 2 avatars" in exc.value.message
    assert store.delete(a.id) and not store.delete(a.id)
    assert not a.path.exists() and a.id not in [x.id for x in store.list()]
    assert not store.delete("default") and store.get("default")
    assert store.add(encode(picture(), "PNG"), name="Otra").name == "Otra"
