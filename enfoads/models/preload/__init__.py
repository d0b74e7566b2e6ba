"""Download, verify and record every model a profile needs: ``enfoads preload``.

    enfoads preload [--profile t4] [--only image,faces] [--with quality] [--dry-run]
                    [--revision MODEL[.COMPONENT]=REV ...] [--xet]
    enfoads models [--verify] [--use MODEL=VERSION]
    python preload_models.py ...            # the same as `enfoads preload ...`

What one run does:

1. Chooses the models (the profile's roles, or ``--only`` roles / model ids)
   and, for each, the version to install: the catalogue's pinned commits, or
   the version chosen by hand earlier (rollback, below), or ``--revision``.
2. A model whose version is already recorded in the manifest with all its
   files on disk is done, without touching the network: a second run takes
   well under a second.
3. Asks the hub what the rest weighs (commit, file list, sizes, the LFS
   sha256 of every large file), then checks the free disk against what
   remains to download plus a margin, and refuses before downloading
   anything if it does not fit.
4. Downloads into the standard Hugging Face cache (``ENFOADS_MODELS_DIR``,
   by default ``$HF_HOME/hub``) with a tqdm bar per file. Every file goes
   through a partial file under ``.enfoads-downloads/`` that survives an
   interruption (Ctrl-C, a killed kernel, a dropped connection): the next
   run resumes it with an HTTP Range request. huggingface_hub 2.x deletes
   its own partial files when a download is interrupted, so it resumes only
   within one process; its HTTP transfer (``http_get``: retries, Range) is
   what moves the bytes here. With ``--xet`` (``prefer_xet``) its Xet client
   fetches the files the hub stores in Xet instead: faster on a fat pipe, but
   an interrupted file restarts. InsightFace packs are GitHub release zips,
   downloaded the same way, checked against their published sha256 and
   unpacked into ``insightface/models/<pack>``.
5. Verifies each new file's size and sha256 (hub LFS metadata, plus the
   catalogue's published digests; git blob ids for small files), lets
   huggingface_hub lay out the snapshot (blobs, symlinks, refs, tree cache),
   and records the version (commits, files, sizes, checksums, date) in the
   manifest (``enfoads.models.manifest``), which makes it the active version.
6. Prints a summary table. After it, start with ``HF_HUB_OFFLINE=1``: the
   registry resolves every path locally and nothing touches the network.

Rollback: every installed version stays on disk and in the manifest.
``enfoads models`` lists them; ``enfoads models --use MODEL=VERSION`` makes
an installed version active again (offline, instant), and
``enfoads preload --revision MODEL[.COMPONENT]=REV`` installs any hub
revision (commit, tag or branch; a branch is resolved once and recorded).
Either choice is *pinned*: later plain ``preload`` runs keep it instead of
moving to the catalogue's version, until ``enfoads models --use
MODEL=catalog``. Removing old versions is left to ``hf cache`` tools.

A token for gated repositories is read from ``HF_TOKEN`` or the
``HF_TOKEN`` Colab secret (none of the catalogue's models needs one).

The package's parts: ``errors``, ``plans`` (plans, report, table),
``selection`` (models and versions), ``layout`` (what is on disk), ``remote``
(planning against the hub and release servers), ``fetch`` (download, verify,
unpack), ``run`` (``preload()``) and ``verify`` (``enfoads models``). The
public names are re-exported here; code inside the package imports from the
part that defines a name, never from this file.
"""
from enfoads.models.preload.errors import ChecksumMismatchError, InsufficientDiskError, PreloadError
from enfoads.models.preload.fetch import download_resumable, unpack_archive
from enfoads.models.preload.layout import (
    COMMIT_RE,
    DOWNLOADS_SUBDIR,
    component_file_paths,
    free_disk_bytes,
    repo_storage,
)
from enfoads.models.preload.plans import ComponentPlan, FilePlan, ModelPlan, PreloadReport, human_bytes
from enfoads.models.preload.run import DEFAULT_MARGIN_BYTES, GIB, preload, resolve_hf_token
from enfoads.models.preload.selection import parse_revisions, piper_entries, resolve_profile_name, select_models
from enfoads.models.preload.verify import (
    CATALOG_VERSION,
    VerifyResult,
    installed_table,
    use_version,
    verify_installed,
)

__all__ = [
    "CATALOG_VERSION",
    "COMMIT_RE",
    "DEFAULT_MARGIN_BYTES",
    "DOWNLOADS_SUBDIR",
    "GIB",
    "ChecksumMismatchError",
    "ComponentPlan",
    "FilePlan",
    "InsufficientDiskError",
    "ModelPlan",
    "PreloadError",
    "PreloadReport",
    "VerifyResult",
    "component_file_paths",
    "download_resumable",
    "free_disk_bytes",
    "human_bytes",
    "installed_table",
    "parse_revisions",
    "piper_entries",
    "preload",
    "repo_storage",
    "resolve_hf_token",
    "resolve_profile_name",
    "select_models",
    "unpack_archive",
    "use_version",
    "verify_installed",
]
