"""What is on disk: the Hugging Face cache layout (repo storage, snapshot files), partial files,
installed versions whose files are all present, and free disk."""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Mapping

from enfoads.models.catalog import HubFiles, ModelEntry
from enfoads.models.manifest import ComponentRecord, FileRecord, Manifest, VersionRecord

DOWNLOADS_SUBDIR = ".enfoads-downloads"
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def repo_storage(models_dir: Path, repo_id: str) -> Path:
    return Path(models_dir) / ("models--" + repo_id.replace("/", "--"))


def _snapshot_file(models_dir: Path, repo_id: str, commit: str, path: str) -> Path:
    return repo_storage(models_dir, repo_id) / "snapshots" / commit / path


def component_file_paths(models_dir: Path, comp: ComponentRecord) -> dict[str, Path]:
    """Where each recorded file of an installed component is."""
    models_dir = Path(models_dir)
    if comp.kind == "hub":
        return {p: _snapshot_file(models_dir, comp.source, comp.commit, p) for p in comp.files}
    return {p: models_dir / (comp.path or "") / p for p in comp.files}


def _files_present(models_dir: Path, version: VersionRecord) -> bool:
    for comp in version.components.values():
        if not comp.files:
            return False
        for name, path in component_file_paths(models_dir, comp).items():
            try:
                if path.stat().st_size != comp.files[name].size:
                    return False
            except OSError:
                return False
    return True


def _matching_version(models_dir, manifest: Manifest, entry: ModelEntry, targets: Mapping[str, str]):
    """An installed version with exactly these revisions and every file on disk, else None."""
    for version in reversed(manifest.versions(entry.id)):
        if set(version.components) != set(entry.sources):
            continue
        ok = True
        for name, src in entry.sources.items():
            comp = version.components[name]
            if isinstance(src, HubFiles):
                want = targets[name]
                # A commit must match; a branch or tag matches the commit it was resolved to when recorded.
                ok = comp.commit == want if COMMIT_RE.match(want) else comp.revision == want
            else:
                ok = comp.kind == "url" and comp.source == src.url and (src.sha256 is None or comp.commit == src.sha256)
            if not ok:
                break
        if ok and _files_present(models_dir, version):
            return version
    return None


def _known_file(manifest: Manifest, repo_id: str, commit: str, path: str) -> FileRecord | None:
    """A file already verified for another model that shares the repository (SDXL base)."""
    for model_id in manifest.model_ids():
        for version in manifest.versions(model_id):
            for comp in version.components.values():
                if comp.kind == "hub" and comp.source == repo_id and comp.commit == commit and path in comp.files:
                    return comp.files[path]
    return None


def _partial_path(models_dir: Path, folder: str, key: str) -> Path:
    return Path(models_dir) / DOWNLOADS_SUBDIR / folder / f"{key}.part"


def free_disk_bytes(path: Path) -> int:
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free
