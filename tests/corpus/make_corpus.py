"""Build the bad-input corpus: small hostile files in ``files/`` and the request list ``cases.json``.

Run from the repository root (the output is committed; rerun after editing)::

    .venv/bin/python tests/corpus/make_corpus.py

Every file is made here from code (deterministic, no download, none over a
few KB): decompression-bomb images (huge dimensions, compressed zeros or a
lying header), truncated PNG and JPEG, formats where PNG/JPEG is expected
(GIF, BMP, TIFF, SVG, PDF), broken audio headers, zero-length audio.

``cases.json`` lists one request per case with the status the server
documents for it; ``tests/test_corpus.py`` sends them all to one real
server and checks each answer. The request language:

- ``method``, ``path`` (sent byte for byte: no dot-segment clean-up, so
  ``/media/../..`` reaches the server as written). ``{name}`` in a path is a
  value the test makes at run time (a real asset id, a signed query...).
- ``auth``: ``key`` (default: ``Authorization: Bearer <key>``), ``none``,
  ``bearer:<value>``, ``x-api-key:<value>``, ``ref:<name>`` (a bearer token
  made at run time).
- ``headers``: extra headers.
- ``json``: a JSON body. String values starting with ``$`` are expanded:
  ``$b64:<file>``, ``$datauri:<mime>:<file>``, ``$repeat:<n>:<text>``,
  ``$ref:<name>`` (run-time value).
- ``data``: a raw body (a string, sent as UTF-8) with ``content_type``;
  ``data_gen``: a raw body made at run time: ``{"nest": n}`` (n open and
  close brackets), ``{"big_prompt": n}`` (a JSON object with an n-character
  prompt), ``{"file": name}``; ``chunked``: send it with chunked transfer
  encoding (no Content-Length).
- ``files`` / ``form``: a multipart body; a file is ``{"file": name}`` or
  ``{"size": n}`` (n bytes made at run time) plus ``mime`` and ``filename``.
- ``expect``: the status; ``code``: the error code, when the server
  documents one; ``message_has``: text the message must contain (the field
  at fault, usually).

``accepted.json`` holds the few hostile-looking inputs the server documents
as *valid* (zero-length audio is an empty transcript), checked the same way.
"""
from __future__ import annotations

import io
import json
import struct
import sys
import wave
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
FILES = HERE / "files"
MAX_FILE_BYTES = 200_000

sys.path.insert(0, str(HERE.parents[1]))
from enfoads.tiny.faces import face_test_pattern  # noqa: E402


# --------------------------------------------------------------------------- files


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int, height: int, *, full: bool) -> bytes:
    """A 1-bit greyscale PNG of zeros: ``full`` compresses every row (a real bomb), else a lying header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    if full:
        row = b"\x00" * (1 + (width + 7) // 8)
        comp = zlib.compressobj(9)
        idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    else:
        idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def gif_bomb(width: int = 65535, height: int = 65535) -> bytes:
    """A GIF whose screen and image descriptor claim 65535 x 65535 pixels, with one tiny LZW block."""
    header = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return header + image + b"\x3b"


def encode(array_rgb: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array_rgb).save(buf, format=fmt, **kw)
    return buf.getvalue()


def face_rgb(width: int = 256, height: int = 256) -> np.ndarray:
    return face_test_pattern(width, height)[:, :, ::-1].copy()


def noisy_rgb(width: int = 256, height: int = 256, seed: int = 7) -> np.ndarray:
    """A face pattern with noise, so PNG/JPEG data is long enough to cut in the middle of the pixels."""
    rng = np.random.default_rng(seed)
    img = face_rgb(width, height).astype(np.int16) + rng.integers(-12, 12, (height, width, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def wav_bytes(samples: np.ndarray, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return buf.getvalue()


def tone(seconds: float = 0.5, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


SVG = b"""<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256" viewBox="0 0 256 256">
  <rect width="256" height="256" fill="#808080"/><rect x="80" y="80" width="96" height="96" fill="#fff"/>
  <script>alert(1)</script>
</svg>
"""


def tiny_pdf() -> bytes:
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 256 256] >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def make_files() -> dict[str, bytes]:
    face_png = encode(face_rgb(), "PNG")
    noisy_png = encode(noisy_rgb(128, 128), "PNG")
    noisy_jpg = encode(noisy_rgb(128, 128), "JPEG", quality=85)
    bad_crc = bytearray(noisy_png)
    idat = bad_crc.index(b"IDAT")
    length = struct.unpack(">I", bad_crc[idat - 4: idat])[0]
    bad_crc[idat + 4 + length // 2] ^= 0xFF  # flip pixel bytes: zlib data and CRC disagree
    good_wav = wav_bytes(tone())
    unknown_codec = bytearray(good_wav)
    unknown_codec[20:22] = b"\xff\xff"  # WAVE format tag 0xFFFF: no decoder exists for it
    return {
        "face.png": face_png,
        "bomb_64mp.png": png_bomb(8000, 8000, full=True),
        "bomb_header_10gp.png": png_bomb(100_000, 100_000, full=False),
        "bomb_header_4gp.gif": gif_bomb(),
        "truncated.png": noisy_png[: len(noisy_png) // 2],
        "truncated.jpg": noisy_jpg[: len(noisy_jpg) // 2],
        "bad_crc.png": bytes(bad_crc),
        "small_32px.png": encode(face_rgb(32, 32), "PNG"),
        "strip_20000x1.png": encode(np.full((1, 20000, 3), 128, np.uint8), "PNG"),
        "strip_1x20000.jpg": encode(np.full((20000, 1, 3), 128, np.uint8), "JPEG"),
        "image.gif": encode(face_rgb(), "GIF"),
        "image.bmp": encode(face_rgb(64, 64), "BMP"),
        "image.tiff": encode(face_rgb(64, 64), "TIFF"),
        "image.svg": SVG,
        "document.pdf": tiny_pdf(),
        "blank.png": encode(np.full((240, 320, 3), 128, np.uint8), "PNG"),
        "tone.wav": good_wav,
        "broken_header.wav": b"RIFF\xff\xff\xff\xffWAVEfmt " + b"\x00" * 8 + b"\x13\x37" * 200,
        "unknown_codec.wav": bytes(unknown_codec),
        "not_audio.txt": b"this is a text file, not audio\n" * 20,
        "empty.wav": b"",
        "no_samples.wav": wav_bytes(np.zeros(0)),
    }


# --------------------------------------------------------------------------- cases

FACE = "$b64:face.png"
SCRIPT = "Hola. Esto es una prueba."


def swap(**kw) -> dict:
    return {"source_image": FACE, "target_image": FACE, **kw}


def case(id: str, about: str, method: str, path: str, expect: int, **kw) -> dict:
    return {"id": id, "about": about, "method": method, "path": path, "expect": expect, **kw}


def post(id, about, path, expect, **kw):
    return case(id, about, "POST", path, expect, **kw)


def get(id, about, path, expect, **kw):
    return case(id, about, "GET", path, expect, **kw)


CASES = [
    # ---------------------------------------------------------------- keys
    get("auth_missing_key", "no key at all", "/gpu-status", 401, auth="none", code="unauthorized"),
    get("auth_wrong_bearer", "a wrong bearer key", "/api/jobs", 401, auth="bearer:wrong-key", code="unauthorized"),
    get("auth_wrong_x_api_key", "a wrong X-API-Key", "/models", 401, auth="x-api-key:wrong-key"),
    # Invalid HTTP: gunicorn refuses the header before the app sees it (a JSON 400, see enfoads.server).
    get("auth_key_with_control_chars", "the right key with control characters appended", "/config", 400,
        auth="x-api-key:test-key-0123456789\x01\x7f"),
    get("auth_key_in_query", "the key in the query string is not a credential", "/gpu-status?key=test-key-0123456789",
        401, auth="none"),
    post("auth_login_without_key", "a stranger asks for a token", "/auth/login", 401, auth="none",
         json={"username": "demo_user"}),
    get("auth_expired_token", "a login token past its expiry (validly signed)", "/gpu-status", 401,
        auth="ref:expired_token"),
    get("auth_tampered_token", "a login token whose expiry was pushed forward", "/gpu-status", 401,
        auth="ref:tampered_token"),
    get("auth_wrong_secret_prefix", "a made-up secret URL prefix", "/aaaaaaaaaaaaaaaaaaaaaaaaaa/gpu-status", 404,
        auth="none"),
    # ---------------------------------------------------------------- content types
    post("ctype_text_plain", "JSON sent as text/plain", "/generate-image", 415, data='{"prompt": "a cat"}',
         content_type="text/plain", code="unsupported_media_type"),
    post("ctype_form_urlencoded", "a form where JSON is expected", "/api/jobs", 415, data="kind=image.generate",
         content_type="application/x-www-form-urlencoded"),
    post("ctype_multipart_for_json", "multipart where JSON is expected", "/generate-image", 415,
         files={"prompt": {"file": "not_audio.txt", "mime": "text/plain", "filename": "p.txt"}}),
    post("ctype_missing", "a body without Content-Type", "/face-swap", 415, data='{"source_image": "x"}'),
    post("ctype_json_for_upload", "JSON where a multipart audio upload is expected", "/v1/audio/transcriptions",
         400, json={"file": "$b64:tone.wav"}, message_has="file"),
    post("ctype_avatar_text_plain", "an avatar upload as text/plain", "/avatars", 415, data="iVBORw0KGgo=",
         content_type="text/plain"),
    # ---------------------------------------------------------------- JSON shape and size
    post("json_invalid", "a body that is not JSON", "/generate-image", 400, data='{"prompt": "a cat",',
         content_type="application/json"),
    post("json_array", "a JSON array instead of an object", "/api/jobs", 400, data="[1, 2, 3]",
         content_type="application/json"),
    post("json_empty_body", "an empty body declared as JSON", "/generate-image", 400, data="",
         content_type="application/json"),
    post("json_not_utf8", "bytes that are not UTF-8 (a UTF-16 BOM)", "/magic-prompt", 400, data="\ufeff{",
         content_type="application/json; charset=utf-16"),
    post("json_deeply_nested", "100,000 nested arrays", "/generate-image", 400, data_gen={"nest": 100_000},
         content_type="application/json"),
    post("json_nested_40_objects", "objects nested 40 deep (limit 32)", "/api/jobs", 400,
         data='{"kind": "image.generate", "params": ' + '{"a": ' * 40 + "1" + "}" * 41,
         content_type="application/json", message_has="nested"),
    post("body_over_limit", "a 1.2 MB JSON body (server started with ENFOADS_MAX_BODY_MB=1)", "/generate-image", 413,
         data_gen={"big_prompt": 1_200_000}, content_type="application/json", code="payload_too_large"),
    post("body_over_limit_jobs", "a 1.2 MB job submission", "/api/jobs", 413, data_gen={"big_prompt": 1_200_000},
         content_type="application/json"),
    post("body_over_limit_chunked", "a 1.2 MB body sent chunked (no Content-Length; the upload limit is 2 MB)", "/generate-image", 413,
         data_gen={"big_prompt": 1_200_000}, content_type="application/json", chunked=True),
    post("upload_over_limit", "a 2.2 MB audio upload (ENFOADS_MAX_UPLOAD_MB=2)", "/v1/audio/transcriptions", 413,
         files={"file": {"size": 2_200_000, "mime": "audio/wav", "filename": "big.wav"}}, form={"model": "whisper-1"}),
    # ---------------------------------------------------------------- prompts and text
    post("prompt_100k", "a 100,000-character prompt", "/generate-image", 400,
         json={"prompt": "$repeat:100000:a"}, message_has="prompt"),
    post("prompt_100k_magic", "a 100,000-character prompt to the enhancer", "/magic-prompt", 400,
         json={"prompt": "$repeat:100000:a"}, message_has="prompt"),
    post("negative_prompt_100k", "a 100,000-character negative prompt", "/generate-image", 400,
         json={"prompt": "a cat", "negative_prompt": "$repeat:100000:b"}, message_has="negative_prompt"),
    post("script_100k", "a 100,000-character video script", "/render-video", 400,
         json={"script": "$repeat:100000:Hola. ", "avatar_id": "default"}, message_has="script"),
    post("prompt_not_text", "a prompt that is a number", "/generate-image", 400, json={"prompt": 12345},
         message_has="prompt"),
    post("prompt_only_whitespace_controls", "a prompt of blanks and line breaks only", "/generate-image", 400,
         json={"prompt": " \t\r\n \u3000 "}, message_has="prompt"),
    post("prompt_lone_surrogate", "a prompt with a lone UTF-16 surrogate (valid JSON, not valid Unicode)",
         "/generate-image", 400, data='{"prompt": "a cat \\ud800 on a sofa"}', content_type="application/json",
         message_has="prompt"),
    post("script_control_chars_only", "a script of control characters only", "/render-video", 400,
         json={"script": "\u0000\u0001\u0002\u001b\u007f\u0085\u200b\u2028", "avatar_id": "default"}, message_has="script"),
    post("script_lone_surrogate", "a script with a lone UTF-16 surrogate", "/render-video", 400,
         data='{"script": "Hola \\udc80 mundo.", "avatar_id": "default"}', content_type="application/json",
         message_has="script"),
    # ---------------------------------------------------------------- sizes and steps
    post("size_zero", "width and height 0", "/generate-image", 400, json={"prompt": "a", "width": 0, "height": 0},
         message_has="width"),
    post("size_negative", "negative width and height", "/generate-image", 400,
         json={"prompt": "a", "width": -512, "height": -512}, message_has="width"),
    post("size_huge", "width and height 10^12", "/generate-image", 400,
         json={"prompt": "a", "width": 10**12, "height": 10**12}, message_has="height"),
    post("size_not_multiple_of_8", "width 260", "/generate-image", 400,
         json={"prompt": "a", "width": 260, "height": 256}, message_has="width"),
    post("steps_zero", "0 steps", "/generate-image", 400, json={"prompt": "a", "steps": 0}, message_has="steps"),
    post("steps_negative", "-4 steps", "/generate-image", 400, json={"prompt": "a", "steps": -4},
         message_has="steps"),
    post("steps_huge", "10^30 steps", "/generate-image", 400, json={"prompt": "a", "steps": 10**30},
         message_has="steps"),
    post("steps_nan", "steps NaN (Python's JSON extension)", "/generate-image", 400,
         data='{"prompt": "a", "steps": NaN}', content_type="application/json", message_has="steps"),
    post("steps_infinite", "steps 1e999 (overflows to infinity)", "/generate-image", 400,
         data='{"prompt": "a", "steps": 1e999}', content_type="application/json", message_has="steps"),
    post("steps_fractional", "2.5 steps", "/generate-image", 400, json={"prompt": "a", "steps": 2.5},
         message_has="steps"),
    post("guidance_negative", "guidance -1", "/generate-image", 400, json={"prompt": "a", "guidance": -1},
         message_has="guidance"),
    post("guidance_huge", "guidance 1e308", "/generate-image", 400, json={"prompt": "a", "guidance": 1e308},
         message_has="guidance"),
    post("n_zero", "0 images", "/api/jobs", 400, json={"kind": "image.generate", "params": {"prompt": "a", "n": 0}},
         message_has="n"),
    post("seed_negative", "a negative seed", "/generate-image", 400, json={"prompt": "a", "seed": -1},
         message_has="seed"),
    post("openai_size_zero", "size 0x0", "/v1/images/generations", 400, json={"prompt": "a", "size": "0x0"},
         message_has="width"),
    post("openai_size_negative", "size -512x-512", "/v1/images/generations", 400,
         json={"prompt": "a", "size": "-512x-512"}, message_has="width"),
    post("openai_size_huge", "size 99999999x99999999", "/v1/images/generations", 400,
         json={"prompt": "a", "size": "99999999x99999999"}, message_has="width"),
    post("openai_size_garbage", "size 1x1x1", "/v1/images/generations", 400, json={"prompt": "a", "size": "1x1x1"},
         message_has="size"),
    post("openai_n_huge", "n 10^6", "/v1/images/generations", 400, json={"prompt": "a", "n": 10**6},
         message_has="n"),
    post("video_resolution_zero", "resolution 0", "/render-video", 400,
         json={"script": SCRIPT, "avatar_id": "default", "resolution": 0}, message_has="resolution"),
    post("video_resolution_negative", "resolution -720", "/render-video", 400,
         json={"script": SCRIPT, "avatar_id": "default", "resolution": -720}, message_has="resolution"),
    post("video_resolution_huge", "resolution 10^9", "/render-video", 400,
         json={"script": SCRIPT, "avatar_id": "default", "resolution": 10**9}, message_has="resolution"),
    post("video_fps_zero", "fps 0", "/render-video", 400, json={"script": SCRIPT, "avatar_id": "default", "fps": 0},
         message_has="fps"),
    post("video_speed_nan", "speech speed NaN", "/render-video", 400,
         data='{"script": "Hola.", "avatar_id": "default", "speed": NaN}', content_type="application/json",
         message_has="speed"),
    post("video_scene_id_nan", "a scene id NaN (the job store refuses NaN)", "/render-multi-scene", 400,
         data='{"scenes": [{"id": NaN, "avatarId": "default", "script": "Hola."}]}', content_type="application/json",
         message_has="scenes[0].id"),
    post("guidance_nan", "guidance NaN", "/generate-image", 400, data='{"prompt": "a", "guidance": NaN}',
         content_type="application/json", message_has="guidance"),
    post("video_too_many_scenes", "11 scenes (limit 10)", "/render-multi-scene", 400,
         json={"scenes": [{"id": i, "avatarId": "default", "script": SCRIPT} for i in range(11)]},
         message_has="scenes"),
    # ---------------------------------------------------------------- unknown names
    post("unknown_style", "a style that does not exist", "/generate-image", 400,
         json={"prompt": "a", "style": "Vaporwave Deluxe"}, message_has="style"),
    post("unknown_aspect_ratio", "aspect ratio 5:7", "/generate-image", 400,
         json={"prompt": "a", "aspect_ratio": "5:7"}, message_has="aspect_ratio"),
    post("unknown_voice", "a voice id that does not exist", "/render-video", 400,
         json={"script": SCRIPT, "avatar_id": "default", "voice_id": "edge:xx-XX-NobodyNeural"},
         message_has="voice_id"),
    post("unknown_avatar", "a well-formed avatar id that does not exist", "/render-video", 400,
         json={"script": SCRIPT, "avatar_id": "0123456789abcdef0123456789abcdef"}, message_has="avatar_id"),
    post("unknown_avatar_multi", "an unknown avatar in a scene", "/render-multi-scene", 400,
         json={"scenes": [{"id": 1, "avatarId": "nobody", "script": SCRIPT}]}, message_has="scenes[0].avatarId"),
    post("unknown_model_openai", "an image model that does not exist", "/v1/images/generations", 400,
         json={"prompt": "a", "model": "dall-e-9"}, message_has="model"),
    post("unknown_job_kind", "a job kind that does not exist", "/api/jobs", 400, json={"kind": "video.explode"},
         message_has="kind"),
    post("unknown_response_format", "a transcript format that does not exist", "/api/jobs", 400,
         json={"kind": "speech.transcribe", "params": {"audio": "$b64:tone.wav", "response_format": "docx"}},
         message_has="response_format"),
    get("unknown_job_state", "a job state that does not exist", "/api/jobs?state=exploded", 400,
        message_has="state"),
    # ---------------------------------------------------------------- path traversal in ids
    get("traversal_job_id_encoded_slash", "../ in a job id, slashes percent-encoded",
        "/api/jobs/..%2F..%2Fapi-key", 404),
    get("traversal_job_id_backslash", "..\\ in a job id", "/api/jobs/..%5C..%5Capi-key", 404),
    get("traversal_job_id_dots", "a job id of dots only", "/api/jobs/%2E%2E", 404),
    post("traversal_job_cancel", "../ in the id of a job to cancel", "/api/jobs/..%2Furl-secret/cancel", 404),
    get("traversal_media_literal", "literal ../ after /media (no client clean-up)", "/media/../../url-secret", 404),
    get("traversal_media_encoded", "encoded ../ in a media id, with a query", "/media/..%2F..%2Furl-secret?{media_query}",
        404),
    get("traversal_media_signed", "a media id of dots, validly signed with the server's secret",
        "/media/..?{dotdot_media_query}", 404),
    get("traversal_avatar_encoded", "encoded ../ in an avatar id", "/avatars/..%2F..%2Fapi-key/image", 404),
    get("traversal_avatar_signed", "avatar id '..' validly signed with the server's secret",
        "/avatars/%2E%2E/image?{dotdot_avatar_query}", 404),
    post("traversal_render_avatar", "../ in render-video's avatar_id", "/render-video", 400,
         json={"script": SCRIPT, "avatar_id": "../../api-key"}, message_has="avatar_id"),
    post("traversal_render_multi_avatar", "../ in a scene's avatarId", "/render-multi-scene", 400,
         json={"scenes": [{"id": 1, "avatarId": "../../../etc/passwd", "script": SCRIPT}]},
         message_has="scenes[0].avatarId"),
    post("traversal_voice", "../ in a voice id", "/render-video", 400,
         json={"script": SCRIPT, "avatar_id": "default", "voice_id": "piper:../../../etc/passwd"},
         message_has="voice_id"),
    post("traversal_face_swap_source", "../ where face-swap expects an image or asset id", "/face-swap", 400,
         json=swap(source_image="../../url-secret"), message_has="source_image"),
    post("face_swap_unknown_asset", "a well-formed asset id that does not exist", "/face-swap", 400,
         json=swap(target_image="0123456789abcdef0123456789abcdef"), message_has="target_image"),
    post("face_swap_asset_not_an_image", "the asset id of a subtitle file as an image", "/face-swap", 400,
         json=swap(source_image="$ref:srt_asset"), message_has="source_image"),
    post("traversal_speech_audio", "../ where transcription expects audio or an asset id", "/api/jobs", 400,
         json={"kind": "speech.transcribe", "params": {"audio": "../../api-key"}}, message_has="audio"),
    post("speech_asset_not_audio", "the asset id of a subtitle file as audio", "/api/jobs", 415,
         json={"kind": "speech.transcribe", "params": {"audio": "$ref:srt_asset"}}, message_has="audio"),
    # ---------------------------------------------------------------- unknown job ids
    get("unknown_job_id", "a well-formed job id that does not exist", "/api/jobs/0123456789abcdef0123456789abcdef",
        404, code="job_not_found"),
    post("unknown_job_cancel", "cancel a job that does not exist", "/api/jobs/no-such-job/cancel", 404),
    get("job_id_control_chars", "a job id of control characters", "/api/jobs/%00%01%1B", 404),
    # ---------------------------------------------------------------- images
    post("bomb_png_face_swap", "a 64 MP PNG of compressed zeros (8 KB)", "/face-swap", 413,
         json=swap(target_image="$b64:bomb_64mp.png"), message_has="target_image"),
    post("bomb_png_header_face_swap", "a PNG header claiming 10 gigapixels", "/face-swap", 413,
         json=swap(source_image="$b64:bomb_header_10gp.png"), message_has="source_image"),
    post("bomb_gif_header_face_swap", "a GIF claiming 65535 x 65535 pixels", "/face-swap", 413,
         json=swap(source_image="$b64:bomb_header_4gp.gif"), message_has="source_image"),
    post("bomb_png_avatar", "a 64 MP PNG bomb as an avatar", "/avatars", 413, json={"image": "$b64:bomb_64mp.png"},
         message_has="image"),
    post("bomb_png_avatar_multipart", "a 10 GP PNG header as an avatar file", "/avatars", 413,
         files={"image": {"file": "bomb_header_10gp.png", "mime": "image/png", "filename": "a.png"}}),
    post("truncated_png_face_swap", "a PNG cut in the middle of its pixels", "/face-swap", 400,
         json=swap(target_image="$b64:truncated.png"), message_has="target_image"),
    post("truncated_jpeg_face_swap", "a JPEG cut in the middle", "/face-swap", 400,
         json=swap(source_image="$b64:truncated.jpg"), message_has="source_image"),
    post("bad_crc_png_face_swap", "a PNG whose pixel data was altered (CRC mismatch)", "/face-swap", 400,
         json=swap(target_image="$b64:bad_crc.png"), message_has="target_image"),
    post("truncated_png_avatar", "a truncated PNG as an avatar", "/avatars", 400, json={"image": "$b64:truncated.png"},
         message_has="image"),
    post("truncated_jpeg_avatar_multipart", "a truncated JPEG as an avatar file", "/avatars", 400,
         files={"image": {"file": "truncated.jpg", "mime": "image/jpeg", "filename": "a.jpg"}}),
    post("gif_avatar", "a GIF where PNG, JPEG or WebP is expected", "/avatars", 415, json={"image": "$b64:image.gif"},
         message_has="image"),
    post("bmp_avatar", "a BMP where PNG, JPEG or WebP is expected", "/avatars", 415, json={"image": "$b64:image.bmp"}),
    post("svg_avatar_multipart", "an SVG (with a script) as an avatar file", "/avatars", 415,
         files={"image": {"file": "image.svg", "mime": "image/svg+xml", "filename": "a.svg"}}),
    post("svg_face_swap", "an SVG as a face-swap image", "/face-swap", 415, json=swap(source_image="$b64:image.svg"),
         message_has="source_image"),
    post("pdf_face_swap", "a PDF as a face-swap image", "/face-swap", 415, json=swap(target_image="$b64:document.pdf"),
         message_has="target_image"),
    post("pdf_avatar", "a PDF as an avatar", "/avatars", 415, json={"image": "$b64:document.pdf"}),
    post("tiff_face_swap", "a TIFF as a face-swap image", "/face-swap", 415, json=swap(target_image="$b64:image.tiff"),
         message_has="target_image"),
    post("base64_garbage_face_swap", "base64 garbage", "/face-swap", 400,
         json=swap(source_image="!!!! this is *not* base64 ####"), message_has="source_image"),
    post("base64_bad_length_avatar", "base64 of a bad length", "/avatars", 400, json={"image": "QUJDR"},
         message_has="image"),
    post("data_uri_text_mime_face_swap", "a PNG in a text/plain data URI", "/face-swap", 415,
         json=swap(source_image="$datauri:text/plain:face.png"), message_has="source_image"),
    post("data_uri_wrong_image_mime_face_swap", "a PNG in an image/jpeg data URI", "/face-swap", 415,
         json=swap(target_image="$datauri:image/jpeg:face.png"), message_has="target_image"),
    post("data_uri_wrong_image_mime_avatar", "a PNG in an image/gif data URI", "/avatars", 415,
         json={"image": "$datauri:image/gif:face.png"}, message_has="image"),
    post("data_uri_html_avatar", "a PNG in a text/html data URI", "/avatars", 415,
         json={"image": "$datauri:text/html:face.png"}, message_has="image"),
    post("data_uri_malformed", "a data URI without its comma", "/face-swap", 400,
         json=swap(source_image="data:image/png;base64"), message_has="source_image"),
    post("face_swap_no_face", "a picture with no face in it", "/face-swap", 422, json=swap(source_image="$b64:blank.png"),
         code="unprocessable", message_has="source_image"),
    post("face_swap_strip_target", "a 20000 x 1 px strip (the detector's letterbox squashed it to 0 px)",
         "/face-swap", 422, json=swap(target_image="$b64:strip_20000x1.png"), message_has="target_image"),
    post("face_swap_strip_source", "a 1 x 20000 px JPEG strip", "/face-swap", 422,
         json=swap(source_image="$b64:strip_1x20000.jpg"), message_has="source_image"),
    post("face_swap_negative_index", "source_face_index -1", "/face-swap", 400, json=swap(source_face_index=-1),
         message_has="source_face_index"),
    post("face_swap_missing_target", "no target image", "/face-swap", 400, json={"source_image": FACE},
         message_has="target_image"),
    post("face_swap_image_not_text", "an image that is a JSON object", "/face-swap", 400,
         json=swap(source_image={"url": "http://169.254.169.254/latest/meta-data"}), message_has="source_image"),
    post("avatar_too_small", "a 32 x 32 avatar (64 px minimum)", "/avatars", 400,
         json={"image": "$b64:small_32px.png"}, message_has="image"),
    post("avatar_name_too_long", "a 61-character avatar name", "/avatars", 400,
         json={"image": "$b64:face.png", "name": "$repeat:61:n"}, message_has="name"),
    post("avatar_name_lone_surrogate", "an avatar name with a lone UTF-16 surrogate", "/avatars", 400,
         json={"image": "$b64:face.png", "name": "Ana \ud83d"}, message_has="name"),
    # ---------------------------------------------------------------- audio
    post("audio_broken_header_upload", "a WAV whose RIFF header is garbage", "/v1/audio/transcriptions", 415,
         files={"file": {"file": "broken_header.wav", "mime": "audio/wav", "filename": "a.wav"}},
         form={"model": "whisper-1"}),
    post("audio_unknown_codec_upload", "a WAV in a codec no decoder exists for", "/v1/audio/transcriptions", 415,
         files={"file": {"file": "unknown_codec.wav", "mime": "audio/wav", "filename": "a.wav"}},
         form={"model": "whisper-1"}),
    post("audio_text_file_upload", "a text file uploaded as text/plain", "/v1/audio/transcriptions", 415,
         files={"file": {"file": "not_audio.txt", "mime": "text/plain", "filename": "a.txt"}},
         form={"model": "whisper-1"}),
    post("audio_broken_header_job", "a broken WAV in base64 to the job API", "/api/jobs", 415,
         json={"kind": "speech.transcribe", "params": {"audio": "$b64:broken_header.wav"}}, message_has="audio"),
    post("audio_unknown_codec_job", "a WAV in an unknown codec to the job API", "/api/jobs", 415,
         json={"kind": "speech.transcribe", "params": {"audio": "$b64:unknown_codec.wav"}}, message_has="audio"),
    post("audio_data_uri_image_mime", "a WAV in an image/png data URI", "/api/jobs", 415,
         json={"kind": "speech.transcribe", "params": {"audio": "$datauri:image/png:tone.wav"}}, message_has="audio"),
    post("audio_base64_garbage", "base64 garbage as audio", "/api/jobs", 400,
         json={"kind": "speech.transcribe", "params": {"audio": "%%%% not audio %%%%"}}, message_has="audio"),
    post("audio_missing_file", "a transcription without its file", "/v1/audio/transcriptions", 400,
         form={"model": "whisper-1"}, files={"other": {"file": "tone.wav", "mime": "audio/wav", "filename": "a.wav"}},
         message_has="file"),
    post("audio_unknown_model", "a transcription model that does not exist", "/v1/audio/transcriptions", 400,
         files={"file": {"file": "tone.wav", "mime": "audio/wav", "filename": "a.wav"}}, form={"model": "whisper-9"},
         message_has="model"),
    # ---------------------------------------------------------------- signed URLs
    get("media_expired", "a media link signed with the server's secret, expired 10 s ago",
        "/media/{video_asset}?{expired_query}", 403, auth="none", code="bad_signature"),
    get("media_tampered_signature", "a real media link with one signature digit changed",
        "/media/{video_asset}?{tampered_query}", 403, auth="none"),
    get("media_altered_expiry", "a real media link whose expiry was pushed forward",
        "/media/{video_asset}?{altered_exp_query}", 403, auth="none"),
    get("media_other_assets_signature", "the signature of another asset", "/media/{video_asset}?{other_asset_query}",
        403, auth="none"),
    get("media_no_signature", "a media link without exp and sig", "/media/{video_asset}", 403, auth="none"),
    get("media_malformed_expiry", "exp that is not a number", "/media/{video_asset}?exp=1e10&sig=00", 403,
        auth="none"),
    get("media_unknown_asset_signed", "a validly signed link to an asset that does not exist",
        "/media/0123456789abcdef0123456789abcdef?{unknown_asset_query}", 404, auth="none"),
    get("avatar_image_expired", "an avatar picture link, expired", "/avatars/default/image?{avatar_expired_query}",
        403, auth="none"),
    get("avatar_image_tampered", "an avatar picture link with a changed signature",
        "/avatars/default/image?{avatar_tampered_query}", 403, auth="none"),
    get("avatar_image_unknown_signed", "a validly signed link to an avatar that does not exist",
        "/avatars/0123456789abcdef0123456789abcdef/image?{avatar_unknown_query}", 404, auth="none"),
    # ---------------------------------------------------------------- the rest of the API
    get("unknown_route", "a route that does not exist", "/admin/shell", 404),
    case("wrong_method", "PUT on a GET route", "PUT", "/gpu-status", 405, code="method_not_allowed"),
    get("jobs_limit_zero", "limit=0", "/api/jobs?limit=0", 400, message_has="limit"),
    get("jobs_limit_huge", "limit=10^12", "/api/jobs?limit=1000000000000", 400, message_has="limit"),
    get("events_since_negative", "since=-1", "/api/events?since=-1&timeout=0", 400, message_has="since"),
    get("events_timeout_text", "timeout=abc", "/api/events?timeout=abc", 400, message_has="timeout"),
    get("library_offset_negative", "offset=-5", "/api/assets?offset=-5", 400, message_has="offset"),
    post("library_unknown_field", "an unknown field in a saved asset", "/api/assets", 400,
         json={"type": "image", "content": "x", "__proto__": {"admin": True}}),
    post("library_missing_content", "a saved asset without content", "/api/assets", 400, json={"type": "image"},
         message_has="content"),
    post("library_nan", "a saved asset holding NaN and Infinity (would poison GET /api/assets for browsers)",
         "/api/assets", 400, data='{"type": "image", "content": "x", "createdAt": NaN, "metadata": {"w": Infinity}}',
         content_type="application/json"),
    post("library_list_of_numbers", "assets: a list of numbers", "/api/assets", 400, json={"assets": [1, 2, 3]}),
    post("audio_zero_length_upload", "a zero-length audio file: nothing to transcribe", "/v1/audio/transcriptions",
         400, files={"file": {"file": "empty.wav", "mime": "audio/wav", "filename": "empty.wav"}},
         form={"model": "whisper-1"}, message_has="file"),
    post("audio_zero_length_job", "zero-length audio in base64 (an empty string) to the job API", "/api/jobs", 400,
         json={"kind": "speech.transcribe", "params": {"audio": ""}}, message_has="audio"),
]

ACCEPTED = [
    post("audio_no_samples", "a well-formed WAV holding no samples: an empty transcript, not an error "
         "(a zero-byte file is refused, see audio_zero_length_upload)", "/v1/audio/transcriptions", 200,
         files={"file": {"file": "no_samples.wav", "mime": "audio/wav", "filename": "no_samples.wav"}},
         form={"model": "whisper-1"}, body_has={"text": ""}),
]


def main() -> None:
    FILES.mkdir(parents=True, exist_ok=True)
    files = make_files()
    for name, data in files.items():
        assert len(data) <= MAX_FILE_BYTES, (name, len(data))
        (FILES / name).write_bytes(data)
    ids = [c["id"] for c in CASES + ACCEPTED]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    for name, cases in (("cases.json", CASES), ("accepted.json", ACCEPTED)):
        (HERE / name).write_text(json.dumps(cases, indent=1, ensure_ascii=True) + "\n")
    print(f"{len(files)} files ({sum(map(len, files.values()))} bytes), {len(CASES)} cases, {len(ACCEPTED)} accepted")


if __name__ == "__main__":
    main()
