"""The catalogue's record types: a model entry and where its files come from (the hub, a release URL).

Pure data, no imports of the package: ``enfoads.models.catalog`` and
``enfoads.models.catalog_enhance`` both build entries from these.
"""
from __future__ import annotations

from dataclasses import dataclass, field

GB = 10**9
MB = 10**6


@dataclass(frozen=True)
class HubFiles:
    """Files of one Hugging Face repository at a pinned revision.

    ``sha256`` pairs a file path with its published sha256, checked on top of
    the hub's LFS metadata (empty where none is published).
    """

    repo_id: str
    revision: str = "main"
    allow_patterns: tuple[str, ...] = ()
    subfolder: str = ""
    sha256: tuple[tuple[str, str], ...] = ()

    def expected_sha256(self, path: str) -> str | None:
        return dict(self.sha256).get(path)


@dataclass(frozen=True)
class UrlArchive:
    """A file outside the hub (insightface packs ship as GitHub release zips)."""

    url: str
    unpack_to: str  # folder under the models dir the archive is extracted into
    sha256: str | None = None
    bytes: int | None = None  # size of the archive, where published


@dataclass(frozen=True)
class UrlFile(UrlArchive):
    """One release file (a ``.pth``) kept as it is, under its own name, in the folder ``unpack_to``.

    An ``UrlArchive`` in every other respect (planning, resuming, verifying,
    the manifest), so preload and the registry treat both alike; only the last
    step differs: the verified file is moved into place instead of unpacked.
    """

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ModelEntry:
    """One model the product can load.

    ``loader`` names the function family in ``enfoads.models.loaders``; ``sources``
    maps a component name (``base``, ``unet``, ``vae``, ``pack``...) to where
    its files come from; ``tiny`` names the kit recipe for random weights.
    """

    id: str
    role: str  # image, faces, swapper, speech, tts
    runtime: str  # torch, ctranslate2, onnxruntime, process
    loader: str
    description: str
    licence: str
    download_bytes: int
    vram_bytes: int  # estimated footprint on the GPU (fp16 where applicable)
    ram_bytes: int  # estimated footprint in host RAM when on the CPU
    # Host RAM a load onto the GPU holds at its peak (what its loader keeps on the CPU
    # before the move), reserved beside the GPU footprint while it runs. None: unknown,
    # the whole ``ram_bytes`` is assumed to pass through host RAM.
    staging_bytes: int | None = None
    sources: dict[str, HubFiles | UrlArchive] = field(default_factory=dict)
    tiny: str | None = None  # tiny kit recipe, for random-weight models
    options: dict = field(default_factory=dict)

    @property
    def movable(self) -> bool:
        # Only torch modules can move between devices in place.
        return self.runtime == "torch"


