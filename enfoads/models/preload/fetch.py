"""Downloading: resumable transfers into partial files, size and checksum verification, the hub
snapshot laid out by huggingface_hub, and release archives unpacked safely."""
from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from urllib.parse import urlsplit

from enfoads.models.catalog import HubFiles, UrlArchive, UrlFile
from enfoads.models.manifest import ComponentRecord, FileRecord, Manifest, git_blob_sha1, sha256_file
from enfoads.models.preload.errors import ChecksumMismatchError, PreloadError
from enfoads.models.preload.layout import COMMIT_RE, _known_file, _partial_path, _snapshot_file, repo_storage
from enfoads.models.preload.plans import ComponentPlan, FilePlan


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


def place_file(partial: Path, dest: Path, name: str, record: FileRecord) -> dict[str, FileRecord]:
    """A verified release file moved into ``dest`` under its own name (a rename on the same disk)."""
    dest.mkdir(parents=True, exist_ok=True)
    os.replace(partial, dest / name)
    return {name: record}


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
        if isinstance(src, UrlFile):
            files = place_file(partial, dest, src.filename, record)
        else:
            files = unpack_archive(partial, dest, fp.path)
        partial.unlink(missing_ok=True)
    return ComponentRecord("url", src.url, plan.revision, record.sha256, files, src.unpack_to), fetched
