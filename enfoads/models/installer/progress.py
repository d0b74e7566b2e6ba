"""Download progress read from the disk: the download states, per-model tracks, and where each file
preload still has to fetch lands (its blob or unpacked folder, and its partial file)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from enfoads.models.catalog import ModelEntry

CHECKING, QUEUED, DOWNLOADING, INSTALLED, FAILED, OFFLINE, OFF = (
    "checking", "queued", "downloading", "installed", "failed", "offline", "off",
)
IN_PROGRESS = frozenset({CHECKING, QUEUED, DOWNLOADING})


@dataclass
class _FileProbe:
    size: int
    done: Path | None  # a file (hub blob) or a folder (unpacked archive) that exists once the file is in
    partial: Path


@dataclass
class _Track:
    entry: ModelEntry
    state: str
    bytes_total: int
    bytes_done: int = 0
    message: str = ""
    probes: list[_FileProbe] = field(default_factory=list)
    started_at: float | None = None
    seconds: float | None = None
    attempts: int = 0
    max_attempts: int = 1
    last_error: str = ""  # why the previous attempt failed (kept while the next one runs)

    def percent(self) -> float:
        if self.state == INSTALLED:
            return 100.0
        if not self.bytes_total:
            return 0.0
        return round(min(100.0, 100.0 * self.bytes_done / self.bytes_total), 1)

    def as_dict(self) -> dict[str, Any]:
        out = {
            "state": self.state,
            "bytes_done": int(self.bytes_done),
            "bytes_total": int(self.bytes_total),
            "percent": self.percent(),
            "role": self.entry.role,
        }
        if self.message:
            out["message"] = self.message
        if self.last_error:
            out.update(attempts=self.attempts, max_attempts=self.max_attempts, last_error=self.last_error)
        return out


def _probes(plan, models_dir: Path) -> list[_FileProbe]:
    """Where each file the plan still has to fetch lands: preload's blob and partial paths."""
    from enfoads.models.preload.layout import _partial_path, repo_storage

    probes = []
    for comp in plan.components:
        for fp in comp.files:
            if fp.present or not fp.key:
                continue
            size = int(fp.size or 0)
            if comp.is_archive:
                done = Path(models_dir) / comp.source.unpack_to
                partial = _partial_path(models_dir, "archives", fp.key)
            else:
                storage = repo_storage(models_dir, comp.source.repo_id)
                done = storage / "blobs" / fp.key
                partial = _partial_path(models_dir, storage.name, fp.key)
            probes.append(_FileProbe(size, done, partial))
    return probes


def _bytes_on_disk(probes: Sequence[_FileProbe]) -> int:
    total = 0
    for p in probes:
        try:
            if p.done is not None and (p.done.is_file() or (p.done.is_dir() and any(p.done.iterdir()))):
                total += p.size
                continue
        except OSError:
            pass
        try:
            total += min(p.size or 1 << 62, p.partial.stat().st_size)
        except OSError:
            pass
    return total
