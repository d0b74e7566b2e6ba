"""The errors of ``enfoads preload`` and ``enfoads models``: each message says why and what to do."""
from __future__ import annotations

from pathlib import Path


class PreloadError(RuntimeError):
    """A model could not be installed; the message says why and what to do."""


class InsufficientDiskError(PreloadError):
    def __init__(self, message: str, *, needed: int, free: int, path: Path):
        super().__init__(message)
        self.needed, self.free, self.path = needed, free, path


class ChecksumMismatchError(PreloadError):
    pass
