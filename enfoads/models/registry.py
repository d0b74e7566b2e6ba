"""Where a catalogue model's files are on this machine.

Real models live in the Hugging Face cache (``ENFOADS_MODELS_DIR``) after
``enfoads preload``; insightface packs are unpacked under ``insightface/``
there; tiny models are built on first use under ``enfoads-tiny/``. Nothing
here downloads: a missing real model is a clear error that says what to run.

Which commit of a repository is loaded: the version the manifest
(``enfoads.models.manifest``) marks active for the model, so a rollback chosen with
``enfoads models --use`` takes effect at the next start; without a manifest
entry, the catalogue's pinned revision.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from enfoads.models.catalog import HubFiles, ModelEntry, UrlArchive
from enfoads.models.families import family_for
from enfoads.models.not_installed import ModelNotInstalledError
from enfoads.models.tiny import ensure_tiny, is_built, tiny_path

__all__ = ["ModelNotInstalledError", "Presence", "local_paths", "loadable_problems", "presence"]


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
        raise ModelNotInstalledError(entry, f"{src.repo_id}@{revision[:8]} is not in the models folder") from exc


def _active_commit(entry: ModelEntry, name: str, models_dir: Path) -> str | None:
    from enfoads.models.manifest import Manifest

    return Manifest.load(models_dir).active_commit(entry.id, name)


def local_paths(entry: ModelEntry, models_dir: Path) -> dict[str, Path]:
    """The files a loader needs, by name; tiny models are built here if missing.

    Raises ``ModelNotInstalledError`` (HTTP 503, with the command that installs
    it) unless the loader will find everything it reads: see :func:`loadable_problems`.
    """
    models_dir = Path(models_dir)
    family = family_for(entry)
    if entry.tiny:
        return family.tiny_paths(entry, ensure_tiny(models_dir, entry.tiny))
    paths = family.real_paths(entry, lambda name: _component(entry, name, models_dir))
    problems = loadable_problems(entry, paths)
    if problems:
        raise ModelNotInstalledError(entry, "; ".join(problems))
    return paths


def _pattern_problems(folder: Path, src: HubFiles) -> list[str]:
    """Each allow-pattern of a hub source must match a file in its snapshot folder."""
    problems = []
    for pattern in src.allow_patterns:
        if any(ch in pattern for ch in "*?["):
            if not any(p.is_file() for p in folder.glob(pattern)):
                problems.append(f"no file matching {pattern} in {folder.name}")
        elif not (folder / pattern).is_file():
            problems.append(f"{pattern} is missing")
    return problems


def loadable_problems(entry: ModelEntry, paths: dict[str, Path]) -> list[str]:
    """What the loader would miss in ``paths``, read from files only (no weights loaded); empty when loadable."""
    problems: list[str] = []
    for name, src in entry.sources.items():
        if isinstance(src, HubFiles) and name in paths and Path(paths[name]).is_dir():
            problems += _pattern_problems(Path(paths[name]), src)
    problems += family_for(entry).problems(entry, paths)
    return list(dict.fromkeys(problems))


def presence(entry: ModelEntry, models_dir: Path) -> Presence:
    """Whether the loader will find what it needs, without building, downloading or loading anything."""
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
    return Presence(True, str(next(iter(paths.values()))))
