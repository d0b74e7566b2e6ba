"""What one run intends and did: per-file, per-component and per-model plans, the report and its table."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from enfoads.models.catalog import HubFiles, ModelEntry, UrlArchive, UrlFile


@dataclass
class FilePlan:
    path: str  # path in the repository, or the archive's file name
    size: int | None
    sha256: str | None = None  # expected: the catalogue's digest, else the hub's LFS metadata
    git_sha1: str | None = None  # expected git blob id (files not stored in LFS)
    present: bool = False
    partial_bytes: int = 0
    key: str | None = None  # names the partial file: the LFS sha256 or the blob id

    @property
    def remaining(self) -> int:
        return 0 if self.present else max(0, (self.size or 0) - self.partial_bytes)


@dataclass
class ComponentPlan:
    name: str
    source: HubFiles | UrlArchive
    revision: str  # what was asked for
    commit: str | None = None  # the resolved commit (hub) or the expected sha256 (archive)
    files: list[FilePlan] = field(default_factory=list)

    @property
    def is_archive(self) -> bool:
        return isinstance(self.source, UrlArchive)

    @property
    def remaining(self) -> int:
        return sum(f.remaining for f in self.files)

    @property
    def disk_needed(self) -> int:
        # An archive is on disk twice while it is unpacked; a single release file is only renamed.
        unpacked = self.is_archive and not isinstance(self.source, UrlFile)
        return self.remaining * (2 if unpacked else 1)

    @property
    def size(self) -> int:
        return sum(f.size or 0 for f in self.files)

    @property
    def label(self) -> str:
        if self.is_archive:
            return self.source.url.rsplit("/", 1)[-1]
        return f"{self.source.repo_id}@{(self.commit or self.revision)[:8]}"


@dataclass
class ModelPlan:
    entry: ModelEntry
    components: list[ComponentPlan] = field(default_factory=list)
    status: str = "pending"  # present, download, built, system, downloaded, failed, missing
    note: str = ""
    unreachable: str = ""  # the host that gave no answer, when that is why it failed (the note says so)
    pin: bool | None = None  # True: a --revision chose this version (pin it)
    version: str | None = None
    size: int = 0
    downloaded: int = 0
    seconds: float = 0.0

    @property
    def remaining(self) -> int:
        return sum(c.remaining for c in self.components) if self.status == "download" else 0

    @property
    def disk_needed(self) -> int:
        return sum(c.disk_needed for c in self.components) if self.status == "download" else 0


@dataclass
class PreloadReport:
    models_dir: Path
    models: list[ModelPlan]
    dry_run: bool = False
    seconds: float = 0.0
    free_bytes: int | None = None
    needed_bytes: int = 0
    margin_bytes: int = 0

    @property
    def ok(self) -> bool:
        return not any(m.status in ("failed", "missing") for m in self.models) and self.fits

    @property
    def fits(self) -> bool:
        if not self.needed_bytes or self.free_bytes is None:
            return True
        return self.free_bytes >= self.needed_bytes + self.margin_bytes

    @property
    def downloaded_bytes(self) -> int:
        return sum(m.downloaded for m in self.models)

    def table(self) -> str:
        rows = [("model", "role", "version", "size", "status")]
        for m in self.models:
            if m.status == "download":
                status = f"to download: {human_bytes(m.remaining)}"
            elif m.status == "downloaded":
                status = f"downloaded {human_bytes(m.downloaded)} in {m.seconds:.1f} s"
            elif m.status == "failed":
                status = "FAILED"
            else:
                status = m.status
            if m.note and m.status not in ("failed",):
                status += f" ({m.note})"
            rows.append((m.entry.id, m.entry.role, m.version or "-", human_bytes(m.size) if m.size else "-", status))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4] for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        for m in self.models:
            if m.status == "failed":
                lines.append(f"{m.entry.id}: {m.note}")
        return "\n".join(lines)

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for m in self.models:
            counts[m.status] = counts.get(m.status, 0) + 1
        parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        if self.dry_run:
            verdict = "fits" if self.fits else "does NOT fit"
            free = human_bytes(self.free_bytes) if self.free_bytes is not None else "?"
            return (
                f"dry run: {human_bytes(self.needed_bytes)} to download (+{human_bytes(self.margin_bytes)} margin), "
                f"{free} free in {self.models_dir}: {verdict}; {parts}"
            )
        return (
            f"preload done in {self.seconds:.1f} s: downloaded {human_bytes(self.downloaded_bytes)}; {parts}. "
            f"Models are in {self.models_dir}."
        )


def human_bytes(n: int | float | None) -> str:
    if n is None:
        return "?"
    n = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover
