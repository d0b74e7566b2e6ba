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


def short_reason(exc: BaseException) -> str:
    """One line for a report: a ``PreloadError``'s own message, else the type and the first line."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return first if isinstance(exc, PreloadError) else f"{type(exc).__name__}: {first}"
