"""The records the real file lists are written in: RealFile (made with F), RepoListing, ArchiveListing.

Each family's module (``image``, ``speech``, ``faces``) lists its repositories
in these records; sizes as the package docstring describes.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RealFile", "RepoListing", "ArchiveListing", "ReleaseFileListing", "F", "HF"]

_UNITS = {"Bytes": 1, "B": 1, "kB": 10**3, "MB": 10**6, "GB": 10**9}


@dataclass(frozen=True)
class RealFile:
    path: str
    size: int | None  # bytes: exact when ``exact``, else converted from ``shown``
    exact: bool = False
    shown: str | None = None  # the rounded size as the tree page shows it
    lfs: bool = False  # stored in LFS/Xet on the hub (a pointer in git)


def F(path: str, size: int | str | None = None, *, lfs: bool = False) -> RealFile:
    """A file: ``size`` an exact byte count (int), the page's rounded figure (str) or unknown (None)."""
    if isinstance(size, int):
        return RealFile(path, size, exact=True, lfs=lfs)
    if size is None:
        return RealFile(path, None, lfs=lfs)
    number, unit = size.split()
    return RealFile(path, int(round(float(number) * _UNITS[unit])), shown=size, lfs=lfs)


@dataclass(frozen=True)
class RepoListing:
    repo_id: str
    revision: str  # the catalogue's revision (a commit; for Piper a tag or branch)
    files: tuple[RealFile, ...]
    verified: bool
    sources: tuple[str, ...]
    note: str = ""
    unverified_paths: tuple[str, ...] = ()  # inside a verified listing: names not seen at the pin

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(f.path for f in self.files)

    def file(self, path: str) -> RealFile:
        for f in self.files:
            if f.path == path:
                return f
        raise KeyError(f"{self.repo_id}@{self.revision} has no {path!r}")


@dataclass(frozen=True)
class ArchiveListing:
    name: str  # the release asset's file name
    url: str
    members: tuple[RealFile, ...]  # zip member names, sizes uncompressed
    sha256: str | None
    bytes: int | None
    verified: bool
    sources: tuple[str, ...]
    note: str = ""

    @property
    def member_names(self) -> tuple[str, ...]:
        return tuple(m.path for m in self.members)


@dataclass(frozen=True)
class ReleaseFileListing:
    """One release asset kept as it is (a ``.pth``): its name, size, digest and the layout inside it."""

    name: str
    url: str
    bytes: int
    sha256: str
    architecture: str  # what spandrel detects in it: "ESRGAN", "Compact", "GFPGAN"
    top_key: str  # the state dict's wrapper key: "params_ema" or "params"
    verified: bool
    sources: tuple[str, ...]
    note: str = ""


HF = "https://huggingface.co"
