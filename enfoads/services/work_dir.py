"""A job's scratch folder: ``<root>/enfoads-<what>-<job id>``, made empty at start and always removed."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

__all__ = ["WorkDir"]


class WorkDir:
    """``<root>/enfoads-<what>-<job id>``: made empty at start, always removed at the end."""

    def __init__(self, root: Path | None, job_id: str, what: str = "video"):
        self.root = Path(root) if root is not None else Path(tempfile.gettempdir())
        self.path = self.root / f"enfoads-{what}-{job_id}"

    def __enter__(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.path.exists():  # a run interrupted by a restart
            shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir()
        return self.path

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
