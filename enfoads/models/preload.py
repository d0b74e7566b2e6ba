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
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence
from urllib.parse import urlsplit

from enfoads.models.catalog import CATALOG, MB, HubFiles, ModelEntry, UrlArchive
from enfoads.models.manifest import (
    ComponentRecord,
    FileRecord,
    Manifest,
    ManifestError,
    VersionRecord,
    git_blob_sha1,
    sha256_file,
)

GIB = 1024**3
DEFAULT_MARGIN_BYTES = 1 * GIB
DOWNLOADS_SUBDIR = ".enfoads-downloads"
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
CATALOG_VERSION = "catalog"  # `enfoads models --use MODEL=catalog`: back to the catalogue's pins


class PreloadError(RuntimeError):
    """A model could not be installed; the message says why and what to do."""


class InsufficientDiskError(PreloadError):
    def __init__(self, message: str, *, needed: int, free: int, path: Path):
        super().__init__(message)
        self.needed, self.free, self.path = needed, free, path


class ChecksumMismatchError(PreloadError):
    pass


# ---------------------------------------------------------------------------
# Plans and reports
# ---------------------------------------------------------------------------
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
        # An archive is on disk twice while it is unpacked.
        return self.remaining * (2 if self.is_archive else 1)

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


# ---------------------------------------------------------------------------
# Choosing models and versions
# ---------------------------------------------------------------------------
def resolve_profile_name(name: str) -> str:
    """``auto`` becomes the profile of this machine; others are taken as given (no CUDA needed to download)."""
    from enfoads.models.profiles import PROFILES, choose_profile, detect_hardware

    if name == "auto":
        return choose_profile("auto", detect_hardware()).name
    if name not in PROFILES:
        raise PreloadError(f"unknown profile {name!r}; choose one of auto, {', '.join(PROFILES)}")
    return name


def piper_entries(voice_ids: Iterable[str] | None = None) -> list[ModelEntry]:
    """Piper voices (``enfoads.models.voices``) as catalogue entries: two files each from ``rhasspy/piper-voices``.

    Default: the voices the product reaches for without being asked (``DEFAULT_PREFERENCE``
    and the offline stand-ins of the frontend's four voices).
    """
    try:
        from enfoads.models import voices
    except ImportError:  # an install without the TTS voice catalogue
        return []
    if voice_ids is None:
        wanted = list(voices.DEFAULT_PREFERENCE)
        for frontend in voices.FRONTEND_VOICES.values():
            wanted.extend(frontend.fallbacks)
    else:
        wanted = list(voice_ids)
    by_id = {v.id: v for v in voices.piper_voices()}
    entries = []
    for vid in dict.fromkeys(wanted):
        voice = by_id.get(vid)
        if voice is None or not voice.piper_files:
            continue
        size = int((voice.size_mb or 60) * MB)
        entries.append(
            ModelEntry(
                id=voice.id,
                role="tts",
                runtime="onnxruntime",
                loader="piper",
                description=f"Piper voice {voice.name}",
                licence="per voice: see its MODEL_CARD in rhasspy/piper-voices",
                download_bytes=size,
                vram_bytes=0,
                ram_bytes=size,
                sources={
                    "voice": HubFiles(
                        voices.PIPER_REPO,
                        revision=voice.revision or voices.PIPER_REVISION,
                        allow_patterns=voice.piper_files,
                    )
                },
            )
        )
    return entries


def select_models(
    profile: str,
    only: Iterable[str] | None = None,
    catalog: Mapping[str, ModelEntry] | None = None,
    extras: Iterable[str] = (),
) -> list[ModelEntry]:
    """The catalogue entries a profile uses, optionally limited to some roles or model ids.

    The ``tts`` role also brings the default Piper voices (not in the tiny profile);
    a single voice is chosen by its id (``piper:es_MX-claude-high``). ``extras``
    names optional downloads (``PRELOAD_EXTRAS``: ``quality``, ``lightning-steps``),
    for profiles whose image model is SDXL-Lightning.
    """
    from enfoads.models.profiles import PROFILES, ROLES

    catalog = CATALOG if catalog is None else catalog
    roles = PROFILES[profile].roles
    voices = piper_entries() if profile != "tiny" else []
    added = _extras(profile, extras, catalog)
    wanted = [w.strip() for w in (only or ()) if w.strip()]
    if not wanted:
        return _unique([*(catalog[choice.model_id] for choice in roles.values()), *voices, *added])
    all_voices = {e.id: e for e in piper_entries([w for w in wanted if w.startswith("piper:")])}
    chosen = []
    for word in wanted:
        if word in roles:
            chosen.append(catalog[roles[word].model_id])
            if word == "tts":
                chosen.extend(voices)
        elif word in catalog:
            chosen.append(catalog[word])
        elif word in all_voices:
            chosen.append(all_voices[word])
        else:
            raise PreloadError(
                f"--only {word!r}: not a role ({', '.join(ROLES)}), a model id ({', '.join(sorted(catalog))}) "
                "nor a Piper voice id (piper:NAME)"
            )
    return _unique([*chosen, *added])


def _extras(profile: str, names: Iterable[str], catalog: Mapping[str, ModelEntry]) -> list[ModelEntry]:
    from enfoads.models.catalog import PRELOAD_EXTRAS
    from enfoads.models.profiles import PROFILES

    names = [n.strip() for n in names if n and n.strip()]
    if not names:
        return []
    image = catalog[PROFILES[profile].roles["image"].model_id]
    if image.loader != "sdxl_lightning" or image.tiny:
        raise PreloadError(
            f"--with {','.join(names)}: the {profile!r} profile's image model ({image.id}) has no optional downloads"
        )
    out = []
    for name in names:
        if name not in PRELOAD_EXTRAS:
            raise PreloadError(f"--with {name!r}: choose from {', '.join(PRELOAD_EXTRAS)}")
        out.extend(catalog[i] for i in PRELOAD_EXTRAS[name])
    return out


def _unique(entries: Iterable[ModelEntry]) -> list[ModelEntry]:
    seen: dict[str, ModelEntry] = {}
    for e in entries:
        seen.setdefault(e.id, e)
    return list(seen.values())


def parse_revisions(items: Iterable[str]) -> dict[str, str]:
    """``["MODEL[.COMPONENT]=REV", ...]`` (a repo id also works as the key) -> dict."""
    out = {}
    for item in items or ():
        key, sep, rev = item.partition("=")
        if not sep or not key.strip() or not rev.strip():
            raise PreloadError(f"--revision {item!r}: expected MODEL=REVISION or MODEL.COMPONENT=REVISION")
        out[key.strip()] = rev.strip()
    return out


def _hub_sources(entry: ModelEntry) -> dict[str, HubFiles]:
    return {n: s for n, s in entry.sources.items() if isinstance(s, HubFiles)}


def _override_for(revisions: Mapping[str, str], entry: ModelEntry, name: str, src: HubFiles, used: set) -> str | None:
    keys = [f"{entry.id}.{name}", src.repo_id]
    if len(_hub_sources(entry)) == 1:
        keys.insert(1, entry.id)
    for key in keys:
        if key in revisions:
            used.add(key)
            return revisions[key]
    return None


def _check_unused_revisions(revisions: Mapping[str, str], entries: Sequence[ModelEntry], used: set) -> None:
    unused = sorted(set(revisions) - used)
    if not unused:
        return
    hints = []
    for key in unused:
        entry = next((e for e in entries if e.id == key), None)
        if entry is not None and len(_hub_sources(entry)) > 1:
            hints.append(f"{key} has several sources: use {', '.join(f'{key}.{n}' for n in _hub_sources(entry))}")
        else:
            hints.append(f"{key} is none of the selected models, their components or repositories")
    raise PreloadError("--revision: " + "; ".join(hints))


def _targets(entry, manifest: Manifest, revisions, used) -> tuple[dict[str, str], bool]:
    """Revision to install per hub component, and whether it was overridden on the command line."""
    active = manifest.active(entry.id) if manifest.is_pinned(entry.id) else None
    targets, overridden = {}, False
    for name, src in _hub_sources(entry).items():
        rev = _override_for(revisions, entry, name, src, used)
        if rev is not None:
            overridden = True
        elif active is not None and name in active.components:
            rev = active.components[name].commit  # a version chosen by hand stays chosen
        else:
            rev = src.revision
        targets[name] = rev
    return targets, overridden


# ---------------------------------------------------------------------------
# What is on disk
# ---------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------
# Planning against the hub
# ---------------------------------------------------------------------------
def _plan_hub(api, models_dir: Path, name: str, src: HubFiles, revision: str) -> ComponentPlan:
    from huggingface_hub.hf_api import RepoFile
    from huggingface_hub.utils import filter_repo_objects

    commit = revision if COMMIT_RE.match(revision) else api.repo_info(src.repo_id, revision=revision).sha
    patterns = list(src.allow_patterns) or None
    folder = _common_folder(patterns)
    tree = [
        f
        for f in api.list_repo_tree(src.repo_id, path_in_repo=folder or None, revision=commit, recursive=True)
        if isinstance(f, RepoFile)
    ]
    chosen = list(filter_repo_objects(tree, allow_patterns=patterns, key=lambda f: f.path))
    names = {f.path for f in tree}
    missing = [p for p in (patterns or []) if not any(ch in p for ch in "*?[") and p not in names]
    if missing or not chosen:
        raise PreloadError(
            f"{src.repo_id}@{commit[:8]} has no {', '.join(missing) or 'file matching ' + str(patterns)}: "
            "is the catalogue's revision right?"
        )
    plan = ComponentPlan(name, src, revision, commit)
    for f in chosen:
        lfs_sha = f.lfs.sha256 if f.lfs is not None else None
        published = src.expected_sha256(f.path)
        if published and lfs_sha and published != lfs_sha:
            raise ChecksumMismatchError(
                f"{src.repo_id}@{commit[:8]}/{f.path}: the hub reports sha256 {lfs_sha}, "
                f"but the published digest is {published}; refusing to download it"
            )
        size = f.lfs.size if f.lfs is not None else f.size
        key = lfs_sha or f.blob_id
        fp = FilePlan(
            path=f.path,
            size=size,
            sha256=published or lfs_sha,
            git_sha1=None if f.lfs is not None else f.blob_id,
            key=key,
        )
        fp.present = _snapshot_file(models_dir, src.repo_id, commit, f.path).exists()
        if not fp.present:
            partial = _partial_path(models_dir, repo_storage(models_dir, src.repo_id).name, key)
            fp.partial_bytes = partial.stat().st_size if partial.exists() else 0
        plan.files.append(fp)
    return plan


def _common_folder(patterns: list[str] | None) -> str:
    """The deepest folder holding every pattern (list only that part of a big repository)."""
    if not patterns:
        return ""
    folders = [p.rsplit("/", 1)[0] if "/" in p else "" for p in patterns]
    if any(ch in f for f in folders for ch in "*?["):
        return ""
    common = os.path.commonpath(folders) if all(folders) else ""
    return common.replace(os.sep, "/")


def _archive_size(url: str) -> int | None:
    from huggingface_hub.utils import get_session

    try:
        response = get_session().head(url, follow_redirects=True, timeout=30)
        if response.status_code < 400 and response.headers.get("Content-Length"):
            return int(response.headers["Content-Length"])
    except Exception:  # noqa: BLE001 - the size is only used for the disk check
        return None
    return None


def _archive_key(src: UrlArchive) -> str:
    import hashlib

    return src.sha256 or hashlib.sha256(src.url.encode()).hexdigest()


def _plan_archive(models_dir: Path, name: str, src: UrlArchive, fallback_size: int, online: bool) -> ComponentPlan:
    dest = Path(models_dir) / src.unpack_to
    size = src.bytes or (_archive_size(src.url) if online else None) or fallback_size or None
    fp = FilePlan(path=src.url.rsplit("/", 1)[-1], size=size, sha256=src.sha256, key=_archive_key(src))
    # A pack already unpacked there (by insightface itself, say) is adopted, not fetched again.
    fp.present = dest.is_dir() and any(dest.iterdir())
    partial = _partial_path(models_dir, "archives", fp.key)
    fp.partial_bytes = partial.stat().st_size if partial.exists() and not fp.present else 0
    return ComponentPlan(name, src, src.sha256 or "unpinned", src.sha256, [fp])


# ---------------------------------------------------------------------------
# Downloading
# ---------------------------------------------------------------------------
def _bar_classes(progress: bool):
    from tqdm.auto import tqdm

    class SilentBar(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return (tqdm if progress else SilentBar), SilentBar


def download_resumable(url: str, partial: Path, *, size: int | None, headers: dict, desc: str, bar_cls) -> int:
    """GET ``url`` into ``partial``, continuing where an earlier attempt stopped; returns bytes fetched."""
    from huggingface_hub.file_download import http_get

    partial.parent.mkdir(parents=True, exist_ok=True)
    have = partial.stat().st_size if partial.exists() else 0
    if size is not None and have > size:
        partial.unlink()
        have = 0
    if size is not None and have == size:
        return 0
    with bar_cls(total=size, initial=have, unit="B", unit_scale=True, unit_divisor=1024, desc=desc) as bar:
        with open(partial, "ab") as fh:
            # huggingface_hub's own transfer: retries, and a Range request from `have` on.
            http_get(url, fh, resume_size=have, headers=headers, expected_size=size, _tqdm_bar=bar)
    return max(0, partial.stat().st_size - have)


def _file_lock(partial: Path):
    from huggingface_hub.utils import WeakFileLock

    partial.parent.mkdir(parents=True, exist_ok=True)
    return WeakFileLock(partial.with_name(partial.name + ".lock"))


def _verify(path: Path, fp: FilePlan, label: str) -> FileRecord:
    size = path.stat().st_size
    if fp.size is not None and size != fp.size:
        raise ChecksumMismatchError(f"{label}/{fp.path}: {size} bytes on disk, expected {fp.size}")
    digest = sha256_file(path)
    if fp.sha256 and digest != fp.sha256:
        raise ChecksumMismatchError(f"{label}/{fp.path}: sha256 {digest}, expected {fp.sha256}")
    if fp.git_sha1 and git_blob_sha1(path) != fp.git_sha1:
        raise ChecksumMismatchError(f"{label}/{fp.path}: git blob id differs from the hub's {fp.git_sha1}")
    return FileRecord(size, digest)


def _remove_cached(path: Path) -> None:
    """Drop a snapshot file and the blob behind it, so the next run fetches it again."""
    try:
        target = path.resolve()
        path.unlink()
        if target != path and target.exists():
            target.unlink()
    except OSError:
        pass


def _write_ref(models_dir: Path, repo_id: str, revision: str, commit: str) -> None:
    if revision == commit or COMMIT_RE.match(revision):
        return
    ref = repo_storage(models_dir, repo_id) / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    tmp = ref.with_name(f".{ref.name}.tmp")
    tmp.write_text(commit)
    os.replace(tmp, ref)


def _xet_available() -> bool:
    try:
        from huggingface_hub.utils import is_xet_available
    except ImportError:  # pragma: no cover - older huggingface_hub
        return False
    return bool(is_xet_available())


def _fetch_hub(
    plan: ComponentPlan, models_dir: Path, manifest: Manifest, *, endpoint, token, bars, prefer_xet: bool = False
) -> tuple[ComponentRecord, int]:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url, snapshot_download
    from huggingface_hub.utils import build_hf_headers

    bar_cls, silent = bars
    src: HubFiles = plan.source
    commit = plan.commit
    label = f"{src.repo_id}@{commit[:8]}"
    storage = repo_storage(models_dir, src.repo_id)
    verified: dict[str, FileRecord] = {}
    left_to_library: set[str] = set()
    fetched = 0
    for fp in plan.files:
        if fp.present:
            continue
        url = hf_hub_url(src.repo_id, fp.path, revision=commit, endpoint=endpoint)
        meta = get_hf_file_metadata(url, token=token, endpoint=endpoint)
        if prefer_xet and getattr(meta, "xet_file_data", None) is not None and _xet_available():
            left_to_library.add(fp.path)
            continue
        blob = storage / "blobs" / meta.etag
        headers = build_hf_headers(token=token)
        headers["Accept-Encoding"] = "identity"
        if urlsplit(meta.location).netloc != urlsplit(url).netloc:
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        partial = _partial_path(models_dir, storage.name, fp.key or meta.etag)
        with _file_lock(partial):  # two preloads at once share the work instead of corrupting it
            if blob.exists():
                continue  # fetched already (another revision, another process): the library links it
            fetched += download_resumable(
                meta.location, partial, size=meta.size or fp.size, headers=headers, desc=fp.path, bar_cls=bar_cls
            )
            try:
                verified[fp.path] = _verify(partial, fp, label)
            except ChecksumMismatchError:
                partial.unlink(missing_ok=True)  # which bytes are wrong is unknown: start over next time
                raise
            blob.parent.mkdir(parents=True, exist_ok=True)
            os.replace(partial, blob)

    # huggingface_hub lays out the snapshot (symlinks or copies, tree cache) from the blobs
    # placed above, and fetches the Xet-stored files itself.
    snapshot_download(
        src.repo_id,
        revision=commit,
        allow_patterns=list(src.allow_patterns) or None,
        cache_dir=str(models_dir),
        endpoint=endpoint,
        token=token,
        tqdm_class=bar_cls if left_to_library else silent,
    )
    _write_ref(models_dir, src.repo_id, plan.revision, commit)

    files: dict[str, FileRecord] = {}
    for fp in plan.files:
        if fp.path in verified:
            files[fp.path] = verified[fp.path]
            continue
        path = _snapshot_file(models_dir, src.repo_id, commit, fp.path)
        known = _known_file(manifest, src.repo_id, commit, fp.path)
        if known is not None and path.exists() and path.stat().st_size == known.size:
            files[fp.path] = known
            continue
        try:
            files[fp.path] = _verify(path, fp, label)
        except ChecksumMismatchError:
            _remove_cached(path)
            raise
        if fp.path in left_to_library:
            fetched += files[fp.path].size
    return ComponentRecord("hub", src.repo_id, plan.revision, commit, files), fetched


def _safe_members(zf: zipfile.ZipFile, label: str) -> None:
    for info in zf.infolist():
        parts = Path(info.filename).parts
        if info.filename.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise PreloadError(f"{label} holds an unsafe path {info.filename!r}; not unpacking it")


def unpack_archive(archive: Path, dest: Path, label: str) -> dict[str, FileRecord]:
    """Unpack a zip into ``dest`` (replacing it) atomically; a single top folder is flattened."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        with zipfile.ZipFile(archive) as zf:
            _safe_members(zf, label)
            zf.extractall(work)
        entries = [p for p in work.iterdir() if p.name != "__MACOSX"]
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else work
        files = {
            p.relative_to(root).as_posix(): FileRecord(p.stat().st_size, sha256_file(p))
            for p in sorted(root.rglob("*"))
            if p.is_file() and "__MACOSX" not in p.parts
        }
        if not files:
            raise PreloadError(f"{label} is an empty archive")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(root, dest)
        return files
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _fetch_archive(plan: ComponentPlan, models_dir: Path, *, bars) -> tuple[ComponentRecord, int]:
    src: UrlArchive = plan.source
    fp = plan.files[0]
    dest = Path(models_dir) / src.unpack_to
    if fp.present:
        files = {
            p.relative_to(dest).as_posix(): FileRecord(p.stat().st_size, sha256_file(p))
            for p in sorted(dest.rglob("*"))
            if p.is_file()
        }
        # Adopted as found: the archive's own digest is unknown.
        return ComponentRecord("url", src.url, plan.revision, "", files, src.unpack_to), 0
    partial = _partial_path(models_dir, "archives", fp.key)
    with _file_lock(partial):
        fetched = download_resumable(src.url, partial, size=fp.size, headers={}, desc=fp.path, bar_cls=bars[0])
        try:
            record = _verify(partial, fp, src.url.rsplit("/", 2)[0])
        except ChecksumMismatchError:
            partial.unlink(missing_ok=True)
            raise
        files = unpack_archive(partial, dest, fp.path)
        partial.unlink(missing_ok=True)
    return ComponentRecord("url", src.url, plan.revision, record.sha256, files, src.unpack_to), fetched


# ---------------------------------------------------------------------------
# The whole run
# ---------------------------------------------------------------------------
def resolve_hf_token(token: str | None = None) -> str | None:
    """An explicit token, else ``HF_TOKEN`` from the environment or the Colab secrets (never printed)."""
    if token:
        return token
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        if os.environ.get(var):
            return os.environ[var]
    from enfoads.user_secrets import get_secret

    return get_secret("HF_TOKEN", prompt=False, env=False)


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.is_offline_mode())


def preload(
    models: Sequence[ModelEntry] | None = None,
    *,
    profile: str = "auto",
    only: Iterable[str] | None = None,
    extras: Iterable[str] = (),
    models_dir: Path | None = None,
    revisions: Mapping[str, str] | None = None,
    dry_run: bool = False,
    endpoint: str | None = None,
    token: str | None = None,
    margin_bytes: int = DEFAULT_MARGIN_BYTES,
    disk_free: Callable[[Path], int] = free_disk_bytes,
    progress: bool = True,
    prefer_xet: bool = False,
    out: Callable[[str], None] | None = print,
) -> PreloadReport:
    """Install the models of ``profile`` (or ``models``) into ``models_dir``; see the module docstring.

    Args:
        models: catalogue entries to install; default: those of ``profile`` and ``only``.
        profile: ``auto``, ``t4``, ``gpu``, ``cpu`` or ``tiny`` (tiny builds the tiny kit).
        only: roles (``image``, ``faces``...) or model ids to limit the run to.
        extras: optional downloads by name (``quality``: SDXL base's UNet for 10-50 steps).
        models_dir: the cache root; default ``Settings().models_dir`` (the HF cache).
        revisions: ``{"MODEL[.COMPONENT]" or repo id: revision}`` to install instead of the pins.
        dry_run: plan only (asks the hub for sizes), download nothing.
        endpoint: the hub URL; default ``HF_ENDPOINT`` / huggingface.co.
        margin_bytes: free disk to keep beyond what the downloads need.
        disk_free: how free disk is measured (tests pass their own).
        prefer_xet: let huggingface_hub's Xet client fetch Xet-stored files (faster on a fat
            pipe; an interrupted file then restarts, short of Xet's own chunk cache). By
            default every file goes through the resumable HTTP path.

    Returns:
        A ``PreloadReport``. Raises ``InsufficientDiskError`` before downloading
        when the models do not fit; other per-model failures are reported in it.
    """
    started = time.perf_counter()
    say = out or (lambda _line: None)
    if models_dir is None:
        from enfoads.settings import Settings

        models_dir = Settings().models_dir
    models_dir = Path(models_dir).expanduser()
    if models is None:
        models = select_models(resolve_profile_name(profile), only, extras=extras)
    revisions = dict(revisions or {})
    manifest = Manifest.load(models_dir)
    plans = [ModelPlan(e) for e in models]
    used: set = set()
    needs_hub: list[tuple[ModelPlan, dict[str, str]]] = []
    manifest_changed = False

    # 1. What is settled without the network: tiny kits, system programs, installed versions.
    for plan in plans:
        entry = plan.entry
        if entry.tiny:
            from enfoads.models.tiny import is_built, tiny_path

            built = is_built(tiny_path(models_dir, entry.tiny), entry.tiny)
            plan.status = "present" if built else ("to build" if dry_run else "build")
            plan.version = "tiny kit"
            continue
        if not entry.sources:
            from enfoads.models.registry import presence

            state = presence(entry, models_dir)
            plan.status = "system" if state.present else "missing"
            plan.note = "nothing to download" if state.present else state.detail
            continue
        targets, overridden = _targets(entry, manifest, revisions, used)
        plan.pin = True if overridden else None
        installed = _matching_version(models_dir, manifest, entry, targets)
        if installed is not None:
            plan.status, plan.version, plan.size = "present", installed.id, installed.size
            newly_pinned = overridden and not manifest.is_pinned(entry.id)
            if manifest.active_id(entry.id) != installed.id or newly_pinned:
                plan.note = "now active" + (", pinned" if overridden else "")
                if not dry_run:
                    manifest.set_active(entry.id, installed.id, pinned=overridden or manifest.is_pinned(entry.id))
                    manifest_changed = True
            continue
        needs_hub.append((plan, targets))
    _check_unused_revisions(revisions, models, used)
    if manifest_changed:
        manifest.save()

    # 2. Ask the hub about the rest.
    if needs_hub and _offline() and not dry_run:
        raise PreloadError(
            "HF_HUB_OFFLINE=1 is set, so nothing can be downloaded: unset it for `enfoads preload` "
            f"({', '.join(p.entry.id for p, _ in needs_hub)} still to install)"
        )
    api = None
    if needs_hub:
        from huggingface_hub import HfApi

        token = resolve_hf_token(token)
        api = HfApi(endpoint=endpoint, token=token)
    for plan, targets in needs_hub:
        entry = plan.entry
        try:
            if _offline():
                raise PreloadError("offline (HF_HUB_OFFLINE=1)")
            for name, src in entry.sources.items():
                if isinstance(src, HubFiles):
                    plan.components.append(_plan_hub(api, models_dir, name, src, targets[name]))
                else:
                    plan.components.append(_plan_archive(models_dir, name, src, entry.download_bytes, online=True))
        except Exception as exc:  # noqa: BLE001 - reported per model, the others go on
            if dry_run:
                plan.components = _estimate(entry, models_dir)
                plan.status, plan.note = "download", f"estimate; {_short(exc)}"
                plan.size = sum(c.size for c in plan.components)
                continue
            plan.status, plan.note = "failed", _short(exc)
            continue
        plan.status = "download"
        plan.size = sum(c.size for c in plan.components)
        plan.version = "+".join((c.commit or c.revision or "unpinned")[:8] for c in plan.components)

    # 3. Disk space for what remains, before downloading anything.
    needed = sum(p.disk_needed for p in plans)
    report = PreloadReport(models_dir, plans, dry_run=dry_run, needed_bytes=needed, margin_bytes=margin_bytes)
    if needed:
        report.free_bytes = disk_free(models_dir)
        if not report.fits and not dry_run:
            raise InsufficientDiskError(
                f"not enough free disk for the models: {human_bytes(needed)} to download plus a "
                f"{human_bytes(margin_bytes)} margin, but only {human_bytes(report.free_bytes)} free in {models_dir}. "
                "Free some space, preload fewer models (--only image,faces), or point ENFOADS_MODELS_DIR "
                "at a bigger disk (on Colab: Google Drive).",
                needed=needed + margin_bytes,
                free=report.free_bytes,
                path=models_dir,
            )
    if dry_run:
        report.seconds = time.perf_counter() - started
        say(report.table())
        say(report.summary())
        return report

    # 4. Build, download, verify, record.
    bars = _bar_classes(progress)
    for plan in plans:
        entry = plan.entry
        t0 = time.perf_counter()
        if plan.status == "build":
            from enfoads.models.tiny import ensure_tiny, folder_bytes

            folder = ensure_tiny(models_dir, entry.tiny)
            plan.status, plan.size, plan.seconds = "built", folder_bytes(folder), time.perf_counter() - t0
            continue
        if plan.status != "download":
            continue
        say(f"{entry.id}: {human_bytes(plan.remaining)} to download ({entry.licence})")
        try:
            components = {}
            for comp in plan.components:
                if comp.is_archive:
                    record, fetched = _fetch_archive(comp, models_dir, bars=bars)
                else:
                    record, fetched = _fetch_hub(
                        comp, models_dir, manifest, endpoint=endpoint, token=token, bars=bars, prefer_xet=prefer_xet
                    )
                components[comp.name] = record
                plan.downloaded += fetched
        except Exception as exc:  # noqa: BLE001 - reported per model; partial files stay for a resume
            plan.status, plan.note, plan.seconds = "failed", _short(exc), time.perf_counter() - t0
            continue
        version = VersionRecord(components)
        pinned = True if plan.pin else None
        plan.version = manifest.record(entry.id, version, activate=True, pinned=pinned)
        manifest.save()
        plan.status, plan.size, plan.seconds = "downloaded", version.size, time.perf_counter() - t0
    report.seconds = time.perf_counter() - started
    say(report.table())
    say(report.summary())
    return report


def _estimate(entry: ModelEntry, models_dir: Path) -> list[ComponentPlan]:
    """Without the hub: archives at their published size, hub files at the catalogue's estimate."""
    plans = [
        _plan_archive(models_dir, name, src, entry.download_bytes, online=False)
        for name, src in entry.sources.items()
        if isinstance(src, UrlArchive)
    ]
    hub = _hub_sources(entry)
    if hub:
        name, src = next(iter(hub.items()))
        rest = max(0, entry.download_bytes - sum(p.size for p in plans))
        plans.append(ComponentPlan(name, src, src.revision, None, [FilePlan("*", rest)]))
    return plans


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}" if not isinstance(exc, PreloadError) else first


# ---------------------------------------------------------------------------
# `enfoads models`: list, verify, choose
# ---------------------------------------------------------------------------
@dataclass
class VerifyResult:
    model_id: str
    version: str
    active: bool
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_installed(models_dir: Path, model_ids: Iterable[str] | None = None, *, deep: bool = True, all_versions: bool = False) -> list[VerifyResult]:
    """Check recorded files: present, right size and (``deep``) right sha256."""
    manifest = Manifest.load(models_dir)
    results = []
    for model_id in model_ids or manifest.model_ids():
        active = manifest.active_id(model_id)
        versions = manifest.versions(model_id)
        if not versions:
            results.append(VerifyResult(model_id, "-", False, ["not installed"]))
            continue
        for version in versions:
            if not all_versions and version.id != active:
                continue
            problems = []
            for comp in version.components.values():
                for name, path in component_file_paths(models_dir, comp).items():
                    rec = comp.files[name]
                    try:
                        size = path.stat().st_size
                    except OSError:
                        problems.append(f"{name}: missing ({path})")
                        continue
                    if size != rec.size:
                        problems.append(f"{name}: {size} bytes, recorded {rec.size}")
                    elif deep and sha256_file(path) != rec.sha256:
                        problems.append(f"{name}: sha256 differs from the recorded {rec.sha256[:12]}...")
            results.append(VerifyResult(model_id, version.id, version.id == active, problems))
    return results


def installed_table(models_dir: Path, results: Sequence[VerifyResult] | None = None) -> str:
    manifest = Manifest.load(models_dir)
    checked = {(r.model_id, r.version): r for r in results or ()}
    rows = [("", "model", "version", "installed", "files", "size", "state")]
    for model_id in manifest.model_ids():
        active = manifest.active_id(model_id)
        for v in reversed(manifest.versions(model_id)):
            result = checked.get((model_id, v.id))
            if result is None:
                state = "present" if _files_present(models_dir, v) else "files missing"
            else:
                state = "verified" if result.ok else "BAD: " + "; ".join(result.problems[:3])
            if v.id == active and manifest.is_pinned(model_id):
                state += " (pinned)"
            rows.append(("*" if v.id == active else "", model_id, v.id, v.installed_at.replace("T", " ").rstrip("Z"),
                         str(v.file_count), human_bytes(v.size), state))
    if len(rows) == 1:
        return f"no model recorded in {Path(models_dir) / 'enfoads-manifest.json'}: run `enfoads preload`"
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:6], widths)) + "  " + r[6] for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.append("* active (loaded at the next start); `enfoads models --use MODEL=VERSION` to switch")
    return "\n".join(lines)


def use_version(models_dir: Path, model_id: str, version: str, catalog: Mapping[str, ModelEntry] | None = None) -> str:
    """Make an installed version active (pinned); ``catalog`` unpins and goes back to the catalogue's pins."""
    catalog = CATALOG if catalog is None else catalog
    manifest = Manifest.load(models_dir)
    if version == CATALOG_VERSION:
        if model_id not in catalog:
            raise PreloadError(f"unknown model {model_id!r}")
        entry = catalog[model_id]
        targets = {n: s.revision for n, s in _hub_sources(entry).items()}
        record = _matching_version(models_dir, manifest, entry, targets)
        manifest.unpin(model_id)
        if record is None:
            manifest.save()
            return f"{model_id}: unpinned; the catalogue's version is not installed: run `enfoads preload --only {model_id}`"
        manifest.set_active(model_id, record.id, pinned=False)
        manifest.save()
        return f"{model_id}: {record.id} (the catalogue's version) is active"
    try:
        record = manifest.version(model_id, version)
    except ManifestError as exc:
        raise PreloadError(str(exc)) from None
    if not _files_present(models_dir, record):
        raise PreloadError(f"{model_id} {record.id}: files are missing; reinstall it with `enfoads preload --revision ...`")
    manifest.set_active(model_id, record.id, pinned=True)
    manifest.save()
    return f"{model_id}: {record.id} is active (pinned; `--use {model_id}={CATALOG_VERSION}` to follow the catalogue again)"
