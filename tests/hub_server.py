"""The standard test content for the fake hub (``enfoads.testing.hub``) and its catalogue.

Run as a script, it is the child process of the interrupted-download test:
``python tests/hub_server.py preload --endpoint URL --cdn URL --models-dir DIR``.
"""
from __future__ import annotations

import hashlib
import io
import json
import sys
import threading
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

from enfoads.testing.hub import FakeHub, FakeFile, Request, git_blob_id, lfs_pointer  # noqa: F401


# ---------------------------------------------------------------------------
# The standard test content and its catalogue
# ---------------------------------------------------------------------------
def _bytes(seed: str, n: int) -> bytes:
    out = bytearray()
    block = seed.encode()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


BIG = 2 * 1024 * 1024  # the one "large" file: big enough to interrupt half-way

IMAGE_REPO = "acme/tiny-image"
SPEECH_REPO = "acme/tiny-speech"


def image_files() -> dict[str, bytes]:
    return {
        "model_index.json": b'{"_class_name": "TinyPipeline"}\n',
        "unet/config.json": b'{"sample_size": 8}\n',
        "unet/diffusion_pytorch_model.safetensors": _bytes("unet", BIG),
        "text_encoder/model.safetensors": _bytes("text", 64 * 1024),
        "README.md": b"# not downloaded: outside the allow-patterns\n",
    }


def speech_files(variant: str = "v1") -> dict[str, bytes]:
    return {
        "config.json": json.dumps({"variant": variant}).encode() + b"\n",
        "model.bin": _bytes(f"speech-{variant}", 32 * 1024),
        "vocabulary.txt": b"a\nb\nc\n",
        "tokenizer.json": b'{"model": {}}\n',
    }


def faces_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, seed in (("det_10g.onnx", "det"), ("w600k_r50.onnx", "rec")):
            # A fixed timestamp: the same bytes (and sha256) in every process.
            zf.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), _bytes(seed, 20 * 1024))
    return buf.getvalue()


def standard_hub() -> FakeHub:
    """Content for the standard catalogue (not started)."""
    hub = FakeHub()
    hub.add_commit(IMAGE_REPO, image_files())
    hub.add_commit(SPEECH_REPO, speech_files("v1"))
    hub.add_archive("tiny_faces.zip", faces_zip())
    return hub


def standard_catalog(hub: FakeHub, *, pin_image: bool = True, faces_sha256: str | None = None) -> dict:
    """Three test models: a diffusers-like folder (pinned by commit), a whisper-like
    repo (tracking the ``main`` branch) and an InsightFace-like zip pack."""
    from enfoads.models.catalog import HubFiles, ModelEntry, UrlArchive

    zip_bytes = hub.archives["tiny_faces.zip"]
    archive_url = hub.archive_url("tiny_faces.zip")
    image_commit = hub.repos[IMAGE_REPO].refs["main"]
    entries = (
        ModelEntry(
            id="test-image",
            role="image",
            runtime="torch",
            loader="diffusers_folder",
            description="test pipeline folder",
            licence="test",
            download_bytes=BIG,
            vram_bytes=1,
            ram_bytes=1,
            sources={
                "base": HubFiles(
                    IMAGE_REPO,
                    revision=image_commit if pin_image else "main",
                    allow_patterns=("model_index.json", "unet/*", "text_encoder/*"),
                )
            },
        ),
        ModelEntry(
            id="test-speech",
            role="speech",
            runtime="ctranslate2",
            loader="whisper",
            description="test whisper-like folder",
            licence="test",
            download_bytes=40 * 1024,
            vram_bytes=1,
            ram_bytes=1,
            sources={"model": HubFiles(SPEECH_REPO, revision="main", allow_patterns=("config.json", "model.bin", "tokenizer.json", "vocabulary.*"))},
        ),
        ModelEntry(
            id="test-faces",
            role="faces",
            runtime="onnxruntime",
            loader="face_analysis",
            description="test insightface-like pack",
            licence="test",
            download_bytes=len(zip_bytes),
            vram_bytes=1,
            ram_bytes=1,
            sources={
                "pack": UrlArchive(
                    archive_url,
                    unpack_to="insightface/models/tiny_faces",
                    sha256=faces_sha256 or hashlib.sha256(zip_bytes).hexdigest(),
                    bytes=len(zip_bytes),
                )
            },
        ),
    )
    return {e.id: e for e in entries}


def _child_preload(argv: list[str]) -> int:
    """Run a preload of the standard catalogue against a running fake hub (a test's child process)."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--cdn", required=True)
    parser.add_argument("--models-dir", required=True, type=Path)
    args = parser.parse_args(argv)

    hub = standard_hub()
    hub._servers = [_Addr(args.endpoint), _Addr(args.cdn)]  # only URLs are needed here
    catalog = standard_catalog(hub)
    from huggingface_hub import constants

    from enfoads.models.preload import preload

    # huggingface_hub writes in 10 MB chunks; small ones let a test file be interrupted half-way.
    constants.DOWNLOAD_CHUNK_SIZE = 64 * 1024

    report = preload(list(catalog.values()), models_dir=args.models_dir, endpoint=args.endpoint, progress=False)
    return 0 if report.ok else 1


class _Addr:
    def __init__(self, url: str):
        self.server_address = ("127.0.0.1", int(urlsplit(url).port))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "preload":
        sys.exit(_child_preload(sys.argv[2:]))
    with standard_hub() as hub:  # manual use: a fake hub to point HF_ENDPOINT at
        print(f"HF_ENDPOINT={hub.endpoint}  (CDN {hub.cdn_url}); Ctrl-C to stop", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
