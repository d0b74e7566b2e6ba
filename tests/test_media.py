"""Decoding untrusted images and audio: every refusal names the field and says why."""
from __future__ import annotations

import base64
import io
import struct
import subprocess
import sys
import time
import wave
import zlib

import numpy as np
import pytest

from enfoads.services import audio_input, image_input, media
from enfoads.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType


# --------------------------------------------------------------------------- helpers


def png_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


def jpeg_bytes(rgb: np.ndarray, **save) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=95, **save)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` but holds almost no data: a decompression bomb's shape."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def pattern(height=24, width=32) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def wav_bytes(seconds: float, rate: int = 16000, channels: int = 1, freq: float = 440.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    tone = (np.sin(2 * np.pi * freq * t) * 0.3 * 32767).astype("<i2")
    frames = np.repeat(tone[:, None], channels, axis=1).tobytes()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return buf.getvalue()


def flac_bytes(seconds: float, rate: int = 16000) -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="flac") as out:
        stream = out.add_stream("flac", rate=rate)
        samples = (np.sin(np.arange(int(rate * seconds)) * 0.05) * 0.3 * 32767).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buf.getvalue()


def refused(exc_type, expected_field, fn, *args, match=None, **kwargs):
    """``fn(*args, **kwargs)`` raises exactly ``exc_type``, naming ``expected_field`` (only)."""
    with pytest.raises(exc_type) as err:
        fn(*args, **kwargs)
    assert err.type is exc_type, err.type  # not a broader or narrower error
    assert list(err.value.fields) == [expected_field]
    assert err.value.message.startswith(f"{expected_field}: ")
    if match is not None:
        assert match in err.value.message, err.value.message
    return err.value


# --------------------------------------------------------------------------- payloads


def test_bytes_base64_and_data_uri_give_the_same_pixels():
    rgb = pattern()
    raw = png_bytes(rgb)
    b64 = base64.b64encode(raw).decode()
    variants = [
        raw,
        b64,
        f"data:image/png;base64,{b64}",
        f"DATA:Image/PNG;charset=x;base64,{b64}",  # case and extra parameters
        "\n".join(b64[i : i + 76] for i in range(0, len(b64), 76)),  # MIME line breaks
        base64.urlsafe_b64encode(raw).decode().rstrip("="),  # URL-safe, no padding
    ]
    for value in variants:
        decoded = image_input.decode_image(value, field="image", channels="RGB")
        assert np.array_equal(decoded.pixels, rgb)
        assert (decoded.width, decoded.height) == (32, 24) and decoded.alpha is None
        assert decoded.info.mime == "image/png"


def test_bad_payloads_name_the_field():
    refused(InvalidInput, "photo", media.read_payload, "not base64 at all!", field="photo", max_bytes=100)
    refused(InvalidInput, "photo", media.read_payload, "QUJD=A", field="photo", max_bytes=100)
    refused(InvalidInput, "photo", media.read_payload, "", field="photo", max_bytes=100, match="empty")
    refused(InvalidInput, "photo", media.read_payload, 42, field="photo", max_bytes=100, match="int")
    refused(InvalidInput, "photo", media.read_payload, "data:image/png;base64", field="photo", max_bytes=100)
    refused(InvalidInput, "photo", media.read_payload, "ünïcode", field="photo", max_bytes=100)
    assert media.read_payload("", field="a", max_bytes=10, allow_empty=True).data == b""
    assert media.read_payload("data:text/plain,a%20b", field="a", max_bytes=10).data == b"a b"


def test_byte_limit_is_checked_before_decoding_base64():
    big = "A" * 4_000_000  # would decode to 3 MB
    started = time.perf_counter()
    err = refused(PayloadTooLarge, "image", media.read_payload, big, field="image", max_bytes=1_000_000)
    assert time.perf_counter() - started < 0.05
    assert err.status == 413 and "1.0 MB" in err.message
    refused(PayloadTooLarge, "image", media.read_payload, b"x" * 11, field="image", max_bytes=10)


def test_asset_ids_are_recognised_and_never_base64_images():
    assert media.is_asset_id("0123456789abcdef0123456789abcdef")
    assert not media.is_asset_id("0123456789ABCDEF0123456789ABCDEF")
    assert not media.is_asset_id("0123456789abcdef")
    assert not media.is_asset_id(b"0123456789abcdef0123456789abcdef")


# --------------------------------------------------------------------------- images


def test_declared_type_must_match_the_data():
    raw = jpeg_bytes(pattern())
    b64 = base64.b64encode(raw).decode()
    err = refused(UnsupportedMediaType, "src", image_input.probe_image, f"data:image/png;base64,{b64}", field="src",
                  match="image/jpeg")
    assert err.status == 415
    refused(UnsupportedMediaType, "src", image_input.probe_image, f"data:text/plain;base64,{b64}", field="src",
            match="not as an image")
    # Common aliases are the same type.
    assert image_input.probe_image(f"data:image/jpg;base64,{b64}", field="src").mime == "image/jpeg"


def test_not_an_image_is_415():
    err = refused(UnsupportedMediaType, "target_image", image_input.decode_image, b"hello, I am text",
                  field="target_image")
    assert "PNG, JPEG" in err.message
    refused(UnsupportedMediaType, "target_image", image_input.decode_image, wav_bytes(0.1), field="target_image")


def test_truncated_images_are_refused():
    for raw in (png_bytes(pattern(64, 64)), jpeg_bytes(pattern(64, 64))):
        cut = raw[: len(raw) * 2 // 3]
        image_input.probe_image(cut, field="img")  # the header alone looks fine
        err = refused(InvalidInput, "img", image_input.decode_image, cut, field="img", match="truncated or corrupt")
        assert err.status == 400


def test_pixel_limit_is_per_call_and_read_from_the_header():
    from PIL import Image

    global_limit = Image.MAX_IMAGE_PIXELS
    raw = png_bytes(pattern(100, 100))
    assert image_input.decode_image(raw, max_pixels=10_000).width == 100
    err = refused(PayloadTooLarge, "x", image_input.decode_image, raw, field="x", max_pixels=9_999)
    assert "100x100" in err.message and err.status == 413

    # 8000 x 8000 declared, a few bytes sent: refused before any pixel is decoded.
    bomb = png_header_only(8_000, 8_000)
    started = time.perf_counter()
    refused(PayloadTooLarge, "x", image_input.probe_image, bomb, field="x", match="8000x8000 = 64.0 MP")
    refused(PayloadTooLarge, "x", image_input.decode_image, bomb, field="x", match="the limit is 40.0 MP")
    # Past Pillow's own global cap too (Pillow refuses first; same error for the client).
    refused(PayloadTooLarge, "x", image_input.decode_image, png_header_only(100_000, 100_000), field="x",
            match="10000.0 MP")
    assert time.perf_counter() - started < 0.5
    assert Image.MAX_IMAGE_PIXELS == global_limit  # never changed


def test_exif_orientation_is_applied():
    from PIL import Image

    rgb = np.zeros((20, 40, 3), dtype=np.uint8)
    rgb[:, :10] = 255  # a white band on the left of the stored picture
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    raw = jpeg_bytes(rgb, exif=exif)
    info = image_input.probe_image(raw)
    assert (info.width, info.height, info.orientation) == (20, 40, 6)
    decoded = image_input.decode_image(raw, channels="RGB")
    assert decoded.pixels.shape == (40, 20, 3)
    # After a clockwise turn the left band is on top.
    assert decoded.pixels[:8].mean() > 200 and decoded.pixels[-20:].mean() < 30


def test_alpha_is_kept_apart_and_channels_ordered():
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 0] = 200  # red
    rgba[..., 3] = 255
    rgba[:4, :, 3] = 0
    decoded = image_input.decode_image(png_bytes(rgba), channels="BGR")
    assert decoded.alpha is not None and decoded.alpha[:4].max() == 0 and decoded.alpha[4:].min() == 255
    assert decoded.pixels[..., 2].min() == 200 and decoded.pixels[..., 0].max() == 0  # BGR: red is last
    rgba[..., 3] = 255  # fully opaque alpha is dropped
    assert image_input.decode_image(png_bytes(rgba)).alpha is None
    # encode_png round trip, alpha re-attached.
    out = image_input.decode_image(image_input.encode_png(decoded.pixels, alpha=decoded.alpha), channels="BGR")
    assert np.array_equal(out.pixels, decoded.pixels) and np.array_equal(out.alpha, decoded.alpha)


def test_other_formats_and_modes():
    from PIL import Image

    frames = [Image.fromarray(np.full((6, 6, 3), v, dtype=np.uint8)) for v in (10, 250)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    gif = image_input.decode_image(buf.getvalue(), channels="RGB")
    assert gif.info.format == "GIF" and gif.pixels.shape == (6, 6, 3) and gif.pixels.max() < 50  # first frame

    grey16 = Image.fromarray((np.arange(64).reshape(8, 8) * 1000).astype(np.uint16))
    buf = io.BytesIO()
    grey16.save(buf, "PNG")
    decoded = image_input.decode_image(buf.getvalue())
    assert decoded.pixels.dtype == np.uint8 and decoded.pixels.shape == (8, 8, 3)
    assert decoded.pixels.max() > 200 and decoded.pixels.min() == 0

    buf = io.BytesIO()
    Image.fromarray(pattern(5, 7)).save(buf, "WEBP", lossless=True)
    assert image_input.decode_image(buf.getvalue()).info.mime == "image/webp"


def test_data_uri_round_trip():
    raw = png_bytes(pattern())
    uri = media.data_uri(raw, "image/png")
    assert uri.startswith("data:image/png;base64,")
    assert media.read_payload(uri, field="f", max_bytes=10**6) == media.Payload(raw, "image/png")


# --------------------------------------------------------------------------- audio


def test_audio_decodes_like_faster_whisper():
    from faster_whisper.audio import decode_audio as fw_decode

    raw = wav_bytes(1.5, rate=44100, channels=2)
    decoded = audio_input.decode_audio(raw)
    expected = fw_decode(io.BytesIO(raw))
    assert decoded.sampling_rate == 16000 and decoded.samples.dtype == np.float32
    assert np.array_equal(decoded.samples, expected)  # same resampling, same numbers
    assert decoded.duration == pytest.approx(1.5, abs=0.01)
    assert decoded.info.format == "wav" and decoded.info.channels == 2 and decoded.info.sample_rate == 44100
    assert 0.2 < np.abs(decoded.samples).max() < 0.4

    b64 = base64.b64encode(raw).decode()
    for value in (b64, f"data:audio/wav;base64,{b64}", f"data:video/webm;base64,{b64}"):
        assert np.array_equal(audio_input.decode_audio(value).samples, decoded.samples)


def test_empty_audio_is_empty_not_an_error():
    for value in (b"", "", wav_bytes(0)):
        decoded = audio_input.decode_audio(value)
        assert decoded.empty and decoded.duration == 0.0 and decoded.samples.dtype == np.float32
    assert audio_input.probe_audio(b"").empty


def test_not_audio_is_415_and_names_the_field():
    png = png_bytes(pattern())
    for value, why in ((b"\x00\x01garbage" * 300, "not audio"), (b"just some text " * 50, "not audio"),
                       (png, "no audio stream")):
        refused(UnsupportedMediaType, "file", audio_input.decode_audio, value, field="file", match=why)
        refused(UnsupportedMediaType, "file", audio_input.probe_audio, value, field="file", match=why)
    b64 = base64.b64encode(wav_bytes(0.2)).decode()
    refused(UnsupportedMediaType, "file", audio_input.probe_audio, f"data:image/png;base64,{b64}", field="file",
            match="not as audio")


def test_audio_limits():
    raw = wav_bytes(3.0)
    err = refused(PayloadTooLarge, "audio", audio_input.probe_audio, raw, max_duration_s=2)
    assert "0:00:03" in err.message and "0:00:02" in err.message
    refused(PayloadTooLarge, "audio", audio_input.decode_audio, raw, max_duration_s=2)
    refused(PayloadTooLarge, "audio", audio_input.decode_audio, raw, max_bytes=len(raw) - 1)
    assert audio_input.decode_audio(raw, max_duration_s=3).duration == pytest.approx(3.0)
    # A header that lies: two FLAC streams back to back, the first says 1 s.
    # The header check passes; decoding stops once the limit is passed.
    lying = flac_bytes(1.0) + flac_bytes(3.0)
    assert audio_input.probe_audio(lying, max_duration_s=2.5).duration == pytest.approx(1.0)
    refused(PayloadTooLarge, "audio", audio_input.decode_audio, lying, max_duration_s=2.5, match="decoding stopped")


def test_importing_media_stays_light():
    code = (
        "import sys, enfoads.services.media, enfoads.services.image_input, enfoads.services.audio_input; "
        "heavy = {'PIL', 'av', 'cv2', 'numpy', 'faster_whisper'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
