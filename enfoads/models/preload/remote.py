"""Planning against the sources: whether each host answers at all, what the hub (commit, file list,
sizes, LFS sha256) or a release server says a component weighs, and which of its files are already
on disk or partly downloaded."""
from __future__ import annotations

import os
from pathlib import Path

from enfoads.models.catalog import HubFiles, UrlArchive
from enfoads.models.preload.errors import ChecksumMismatchError, PreloadError, short_reason
from enfoads.models.preload.layout import COMMIT_RE, _partial_path, _snapshot_file, repo_storage
from enfoads.models.preload.plans import ComponentPlan, FilePlan


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


PROBE_TIMEOUT_S = 10.0


class Reachability:
    """Whether each host a run downloads from answers: one request per host per run, no retries.

    Any HTTP answer, an error status included, means reachable; only a request that gets none (no DNS,
    refused, TLS, a timeout) counts. Without a network, every hub file list would otherwise sit through
    huggingface_hub's own five retries (about 23 s per model), and every release file through five more.
    """

    def __init__(self, endpoint: str | None):
        self.endpoint = endpoint
        self._seen: dict[str, str | None] = {}

    def origin(self, src) -> str:
        """The host ``src`` downloads from: the hub for ``HubFiles``, the URL's scheme and host otherwise."""
        from urllib.parse import urlsplit

        from huggingface_hub import constants

        if isinstance(src, HubFiles):
            return (self.endpoint or constants.ENDPOINT).rstrip("/")
        parts = urlsplit(src.url)
        return f"{parts.scheme}://{parts.netloc}"

    def why_not(self, src) -> str | None:
        """Why ``src``'s host gives no answer, or None (asked once per host)."""
        origin = self.origin(src)
        if origin not in self._seen:
            self._seen[origin] = _probe(origin, " (or HF_ENDPOINT)" if isinstance(src, HubFiles) else "")
        return self._seen[origin]


def _probe(origin: str, hint: str) -> str | None:
    from huggingface_hub.utils import get_session

    try:
        get_session().head(origin + "/", timeout=PROBE_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - whatever the HTTP library raises, there was no answer
        return f"cannot reach {origin} ({short_reason(exc)}): check this machine's network{hint}"
    return None


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
