"""Where a catalogue model's files are on this machine.

Real models live in the Hugging Face cache (``ENFOADS_MODELS_DIR``) after
``enfoads preload``; insightface packs are unpacked under ``insightface/``
there; tiny models are built on first use under ``enfoads-tiny/``. Nothing
here downloads: a missing real model is a clear error that says what to run.

Which commit of a repository is loaded: the version the manifest
(``enfoads.manifest``) marks active for the model, so a rollback chosen with
``enfoads models --use`` takes effect at the next start; without a manifest
entry, the catalogue's pinned revision.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from enfoads.catalog import HubFiles, ModelEntry, UrlArchive
from enfoads.tiny import ensure_tiny, is_built, tiny_path


class ModelNotInstalledError(FileNotFoundError):
    """A real model's files are not in the local cache."""

    def __init__(self, entry: ModelEntry, detail: str):
        super().__init__(
            f"model {entry.id!r} is not installed ({detail}); run `enfoads preload --only {entry.role}`"
        )
        self.model_id = entry.id


@dataclass(frozen=True)
class Presence:
    present: bool
    detail: str


def _hub_snapshot(src: HubFiles, models_dir: Path, revision: str | None = None) -> Path:
    from huggingface_hub import snapshot_download

    return Path(
        snapshot_download(
            src.repo_id,
            revision=revision or src.revision,
            allow_patterns=list(src.allow_patterns) or None,
            cache_dir=str(models_dir),
            local_files_only=True,
        )
    )


def _component(entry: ModelEntry, name: str, models_dir: Path) -> Path:
    src = entry.sources[name]
    if isinstance(src, UrlArchive):
        path = models_dir / src.unpack_to
        if not path.is_dir() or not any(path.iterdir()):
            raise ModelNotInstalledError(entry, f"{path} is missing")
        return path
    revision = _active_commit(entry, name, models_dir) or src.revision
    try:
        return _hub_snapshot(src, models_dir, revision)
    except Exception as exc:  # huggingface_hub raises several types for "not cached"
        raise ModelNotInstalledError(entry, f"{src.repo_id}@{revision} is not in {models_dir}") from exc


def _active_commit(entry: ModelEntry, name: str, models_dir: Path) -> str | None:
    from enfoads.manifest import Manifest

    return Manifest.load(models_dir).active_commit(entry.id, name)


def local_paths(entry: ModelEntry, models_dir: Path) -> dict[str, Path]:
    """The files a loader needs, by name; tiny models are built here if missing."""
    models_dir = Path(models_dir)
    if entry.tiny:
        folder = ensure_tiny(models_dir, entry.tiny)
        if entry.loader == "sdxl_lightning":
            return {"base": folder / "base", "unet": folder / entry.options["unet_file"]}
        if entry.loader == "face_analysis":
            return {"root": folder}
        if entry.loader == "swapper":
            return {"model": folder / "models" / "inswapper_128.onnx"}
        return {"model": folder}
    if entry.loader == "sdxl_lightning":
        return {
            "base": _component(entry, "base", models_dir),
            "unet": _component(entry, "unet", models_dir) / entry.options["unet_file"],
            "vae": _component(entry, "vae", models_dir),
        }
    if entry.loader == "face_analysis":
        # insightface wants <root>/models/<pack name>/.
        return {"root": _component(entry, "pack", models_dir).parent.parent}
    if entry.loader == "swapper":
        return {"model": _component(entry, "model", models_dir) / "inswapper_128.onnx"}
    if entry.loader == "espeak":
        binary = shutil.which("espeak-ng")
        if binary is None:
            raise ModelNotInstalledError(entry, "the espeak-ng program is not on PATH; apt-get install espeak-ng")
        return {"binary": Path(binary)}
    first = next(iter(entry.sources))
    return {"model": _component(entry, first, models_dir)}


def presence(entry: ModelEntry, models_dir: Path) -> Presence:
    """Whether the model's files are here, without building or downloading anything."""
    models_dir = Path(models_dir)
    if entry.tiny:
        folder = tiny_path(models_dir, entry.tiny)
        if is_built(folder, entry.tiny):
            return Presence(True, str(folder))
        return Presence(False, "built automatically on first use (or `enfoads build-tiny`)")
    try:
        paths = local_paths(entry, models_dir)
    except ModelNotInstalledError as exc:
        return Presence(False, str(exc))
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        return Presence(False, f"missing {', '.join(missing)}")
    return Presence(True, str(next(iter(paths.values()))))
