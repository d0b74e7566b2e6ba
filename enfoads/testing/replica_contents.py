"""What each replica repository holds: exactly the real file list, tiny weights where loaders read them.

One builder per repository picks its files out of the shared tiny models
(``enfoads.testing.replica_artifacts``); :func:`_repo_files` fills every other
path of the real listing with a placeholder.
"""
from __future__ import annotations

import hashlib
import json
from typing import Callable

from enfoads.testing import replica_files as data
from enfoads.testing.replica_artifacts import _Artifacts

PLACEHOLDER_PREFIX = b"enfoads replica placeholder"


def is_placeholder(content: bytes) -> bool:
    """True for the stand-in bytes of a file the replica does not reproduce."""
    return content.startswith(PLACEHOLDER_PREFIX)


def _placeholder(repo_id: str, path: str) -> bytes:
    return (
        f"{PLACEHOLDER_PREFIX.decode()}: the real file is not reproduced in the replica\n"
        f"repository: {repo_id}\npath: {path}\n"
    ).encode()


# ---------------------------------------------------------------------------
# Repository contents: the real file list, tiny weights where loaders read them
# ---------------------------------------------------------------------------
def _sdxl_base_files(art: _Artifacts, listing: data.RepoListing) -> dict[str, bytes]:
    built = {k: v for k, v in art.sdxl().items() if not k.startswith(("sdxl_lightning_", "vae_fix/"))}
    for path in [p for p in listing.paths if p.startswith("vae_1_0/")]:
        twin = "vae/" + path.split("/", 1)[1]
        if twin in built:
            built[path] = built[twin]
    return built


def _lightning_files(art: _Artifacts, listing: data.RepoListing) -> dict[str, bytes]:
    return {k: v for k, v in art.sdxl().items() if k.startswith("sdxl_lightning_")}


def _vae_fix_files(art: _Artifacts, listing: data.RepoListing) -> dict[str, bytes]:
    return {k.split("/", 1)[1]: v for k, v in art.sdxl().items() if k.startswith("vae_fix/")}


def _sd_turbo_files(art: _Artifacts, listing: data.RepoListing) -> dict[str, bytes]:
    return art.sd2()


def _whisper_turbo_files(art: _Artifacts, listing: data.RepoListing) -> dict[str, bytes]:
    return art.whisper(128, preprocessor=True, vocabulary="json")


def _whisper_small_files(art: _Artifacts, listing: data.RepoListing) -> dict[str, bytes]:
    return art.whisper(80, preprocessor=False, vocabulary="txt")


def _inswapper_files(art: _Artifacts, listing: data.RepoListing) -> dict[str, bytes]:
    return {"inswapper_128.onnx": art.faces()["models/inswapper_128.onnx"]}


def _piper_files(art: _Artifacts, listing: data.RepoListing) -> dict[str, bytes]:
    """Each voice's tiny .onnx and .onnx.json, and a voices.json (Piper's index) describing them."""
    built: dict[str, bytes] = {}
    index: dict[str, dict] = {}
    paths = set(listing.paths)
    for name, files in sorted(data.PIPER_VOICE_FILES.items()):
        onnx_path = next(f.path for f in files if f.path.endswith(".onnx"))
        if onnx_path not in paths:
            continue
        onnx_bytes, config = art.piper_voice(name)
        built[onnx_path] = onnx_bytes
        built[onnx_path + ".json"] = config
        cfg = json.loads(config)
        card = next(f.path for f in files if f.path.endswith("/MODEL_CARD"))
        contents = {onnx_path: onnx_bytes, onnx_path + ".json": config, card: _placeholder(listing.repo_id, card)}
        locale, speaker, quality = name.split("-", 2)
        index[name] = {
            "key": name,
            "name": speaker,
            "language": cfg["language"],
            "quality": quality,
            "num_speakers": cfg.get("num_speakers", 1),
            "speaker_id_map": cfg.get("speaker_id_map", {}),
            "files": {
                p: {"size_bytes": len(b), "md5_digest": hashlib.md5(b).hexdigest()} for p, b in sorted(contents.items())
            },
            "aliases": [],
        }
    if "voices.json" in paths:
        built["voices.json"] = (json.dumps(index, ensure_ascii=False, indent=4) + "\n").encode("utf-8")
    return built


def _musetalk_unet_files(art: _Artifacts, listing: data.RepoListing) -> dict[str, bytes]:
    return {k: v for k, v in art.musetalk().items() if k.startswith("musetalkV15/")}


def _sd_vae_files(art: _Artifacts, listing: data.RepoListing) -> dict[str, bytes]:
    return {k.split("/", 1)[1]: v for k, v in art.musetalk().items() if k.startswith("sd-vae/")}


def _whisper_tiny_files(art: _Artifacts, listing: data.RepoListing) -> dict[str, bytes]:
    return {k.split("/", 1)[1]: v for k, v in art.musetalk().items() if k.startswith("whisper/")}


_BUILDERS: dict[str, Callable[[_Artifacts, data.RepoListing], dict[str, bytes]]] = {
    "stabilityai/stable-diffusion-xl-base-1.0": _sdxl_base_files,
    "ByteDance/SDXL-Lightning": _lightning_files,
    "madebyollin/sdxl-vae-fp16-fix": _vae_fix_files,
    "stabilityai/sd-turbo": _sd_turbo_files,
    "mobiuslabsgmbh/faster-whisper-large-v3-turbo": _whisper_turbo_files,
    "Systran/faster-whisper-small": _whisper_small_files,
    "ezioruan/inswapper_128.onnx": _inswapper_files,
    data.PIPER_REPO: _piper_files,
    "TMElyralab/MuseTalk": _musetalk_unet_files,
    "stabilityai/sd-vae-ft-mse": _sd_vae_files,
    "openai/whisper-tiny": _whisper_tiny_files,
}


def _repo_files(art: _Artifacts, listing: data.RepoListing) -> tuple[dict[str, bytes], set[str]]:
    """Exactly the listing's paths: built content where there is some, placeholders elsewhere."""
    builder = _BUILDERS.get(listing.repo_id)
    if builder is None:
        raise KeyError(f"no replica builder for {listing.repo_id}")
    built = builder(art, listing)
    stray = sorted(set(built) - set(listing.paths))
    if stray:
        raise AssertionError(f"{listing.repo_id}: built files the real repository does not have: {stray}")
    files, placeholders = {}, set()
    for path in listing.paths:
        if path in built:
            files[path] = built[path]
        else:
            files[path] = _placeholder(listing.repo_id, path)
            placeholders.add(path)
    return files, placeholders
