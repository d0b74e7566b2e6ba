"""The real file lists of every catalogue source, as data: what the replicas reproduce.

For each repository the catalogue (``enfoads.models.catalog``) and the Piper voice
catalogue (``enfoads.models.voices``) download from, for the insightface
``buffalo_l.zip`` release archive and for the enhance models' release files, this package lists the real files at the
catalogue's pinned revision: path, size, whether the hub stores the file in
LFS/Xet, where the list was read and whether it was *verified* (read from a
page or a pinned download list for that revision) or is a *best
reconstruction* (``verified=False``, with the reason in ``note``).

Sizes: an ``int`` given to :func:`F` is an exact byte count (from a Git LFS
pointer, a third-party pinned download list or the catalogue itself); a
string is the rounded figure the Hugging Face tree page shows (decimal units,
``"5.14 GB"``), kept as shown in ``RealFile.shown`` and converted to an
approximate ``size``. ``None``: not known.

``enfoads.testing.replicas`` publishes a replica of each listing on the fake
hub with exactly these paths, and ``tests/test_replicas.py`` checks that the
replicas' file lists equal this data.

Nothing here is read by the product.
"""
from __future__ import annotations

# The records are in ``base``, each family's listings in its own module; everything is importable from here.
from enfoads.testing.replica_files.base import F, RealFile, RepoListing, ArchiveListing, ReleaseFileListing
from enfoads.testing.replica_files.enhance import RELEASE_FILES
from enfoads.testing.replica_files.faces import ARCHIVES, BUFFALO_L_ZIP, _inswapper
from enfoads.testing.replica_files.lipsync import _musetalk, _sd_vae_ft_mse, _whisper_tiny
from enfoads.testing.replica_files.image import _sd_turbo, _sdxl_base, _sdxl_lightning, _sdxl_vae_fp16_fix
from enfoads.testing.replica_files.speech import (
    PIPER_COMMIT_FINDINGS,
    PIPER_COMMITS,
    PIPER_REPO,
    PIPER_TOP_LEVEL,
    PIPER_VOICE_FILES,
    PIPER_VOICES_AFTER_V1,
    _whisper_small,
    _whisper_turbo,
    piper_listing,
)

__all__ = [
    "RealFile",
    "RepoListing",
    "ArchiveListing",
    "F",
    "LISTINGS",
    "ARCHIVES",
    "RELEASE_FILES",
    "ReleaseFileListing",
    "BUFFALO_L_ZIP",
    "PIPER_REPO",
    "PIPER_TOP_LEVEL",
    "PIPER_VOICE_FILES",
    "PIPER_VOICES_AFTER_V1",
    "PIPER_COMMITS",
    "PIPER_COMMIT_FINDINGS",
    "piper_listing",
    "listing",
]

LISTINGS: dict[str, RepoListing] = {
    lst.repo_id: lst
    for lst in (
        _sdxl_base(),
        _sdxl_lightning(),
        _sdxl_vae_fp16_fix(),
        _sd_turbo(),
        _whisper_turbo(),
        _whisper_small(),
        _inswapper(),
        _musetalk(),
        _sd_vae_ft_mse(),
        _whisper_tiny(),
    )
}


def listing(repo_id: str, revision: str) -> RepoListing:
    """The real file list of ``repo_id`` at ``revision``; KeyError when this data has none for it."""
    if repo_id == PIPER_REPO:
        return piper_listing(revision)
    lst = LISTINGS[repo_id]
    if lst.revision != revision:
        raise KeyError(
            f"replica_files lists {repo_id} at {lst.revision}, not at {revision}: read the real file list"
            " at the new pin and update enfoads/testing/replica_files/"
        )
    return lst
