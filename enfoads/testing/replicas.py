"""Replica repositories of every catalogue source, published on the fake hub.

A replica holds exactly the real repository's file list at the catalogue's
pinned revision (``enfoads.testing.replica_files``), under the same commit
id, so the product's registry finds ``snapshots/<revision>`` after a preload
against it. Weight files the product's loaders read hold tiny random weights
of the real architecture in the real format and variant (``*.fp16.safetensors``
really float16, plain ``*.safetensors`` float32, CTranslate2 ``model.bin`` in
float16 like the published conversions, ONNX graphs for insightface and
Piper), with the tiny configs, tokenizers and vocabularies that match them.
Files the catalogue's allow-patterns skip (flax, ONNX, OpenVINO, single-file
checkpoints, LoRAs, READMEs, images, .gitattributes...) exist too, as small
deterministic placeholders, so a preload that fetched one would be caught.

What each replica is:

- ``stabilityai/stable-diffusion-xl-base-1.0``: the tiny SDXL of
  ``enfoads.models.tiny.sdxl`` as a diffusers folder with both variants of every
  component (``vae_1_0/`` holds the same tiny VAE), its CLIP tokenizers in
  the real four-file layout;
- ``ByteDance/SDXL-Lightning``: ``sdxl_lightning_{1,2,4,8}step_unet*.safetensors``,
  fp16 UNet state dicts matching the base's tiny UNet config (the full
  checkpoints, LoRAs and ComfyUI workflows are placeholders);
- ``madebyollin/sdxl-vae-fp16-fix``: a tiny fp32 VAE with the SDXL tiny VAE's
  config and ``force_upcast: false``;
- ``stabilityai/sd-turbo``: the tiny SD 2.x pipeline of ``enfoads.models.tiny.sd2``,
  fp32 and fp16, with SD-Turbo's published scheduler config;
- ``mobiuslabsgmbh/faster-whisper-large-v3-turbo``: a tiny CTranslate2 Whisper
  with 128 mel bins, ``preprocessor_config.json`` (feature_size 128) and
  ``vocabulary.json``;
- ``Systran/faster-whisper-small``: a tiny CTranslate2 Whisper with 80 mel
  bins, ``vocabulary.txt`` and no ``preprocessor_config.json`` (the real
  repository has none);
- ``ezioruan/inswapper_128.onnx``: the tiny swapper of ``enfoads.models.tiny.faces``;
- ``buffalo_l.zip`` (a release archive, ``FakeHub.add_archive``): the tiny
  pack with the real member names at the zip's root, fixed timestamps;
- the enhance models' release ``.pth`` files (the same release URL path):
  the tiny kit's RRDBNet and compact models, and GFPGAN's full architecture
  with random weights, each under its real name and wrapper key;
- ``rhasspy/piper-voices``: the tiny Piper voice of ``enfoads.models.tiny.piper`` at
  each catalogued voice's real ``.onnx`` / ``.onnx.json`` path (its config
  carries the voice's language; every replica voice has one speaker), a
  ``voices.json`` index of them in Piper's format, two commits: the ``v1.0.0``
  tag and ``main`` (which adds the voices published after the tag).

Builds are deterministic (seeded; fixed zip timestamps) and cached on disk
(``cache_dir``): the first build takes ~10 s on 2 cores, a cached one well
under a second.

``python -m enfoads.testing.replicas``
serves them and prints the ``HF_ENDPOINT`` to use.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Mapping

from enfoads.models.catalog import CATALOG, HubFiles, ModelEntry, UrlArchive, UrlFile
from enfoads.testing import replica_files as data
from enfoads.testing.hub import FakeHub
# The builders: the shared tiny models, then each repository's files out of them.
from enfoads.testing.replica_artifacts import _Artifacts, _buffalo_zip
from enfoads.testing.replica_contents import _repo_files, is_placeholder

__all__ = [
    "REPLICA_VERSION",
    "ReplicaCommit",
    "Replicas",
    "default_entries",
    "default_cache_dir",
    "publish_replicas",
    "replica_catalog",
    "is_placeholder",
    "main",
]

#: Bump when what a replica holds changes, so cached builds are rebuilt.
REPLICA_VERSION = 3


@dataclass
class ReplicaCommit:
    """One published commit of a replica repository."""

    repo_id: str
    revision: str  # the catalogue's revision (a commit id, or a tag/branch for Piper)
    commit: str  # the id it is published under (== revision when that is a commit)
    files: dict[str, bytes] = field(repr=False)
    lfs: frozenset[str] = field(repr=False)
    placeholders: frozenset[str] = field(repr=False)
    listing: data.RepoListing = field(repr=False)

    def sha256(self, path: str) -> str:
        return hashlib.sha256(self.files[path]).hexdigest()


@dataclass
class Replicas:
    """What ``publish_replicas`` put on a fake hub (``commits`` by (repo id, catalogue revision))."""

    hub: FakeHub
    commits: dict[tuple[str, str], ReplicaCommit] = field(default_factory=dict, repr=False)  # (repo_id, revision)
    archives: dict[str, bytes] = field(default_factory=dict, repr=False)  # zips
    release_files: dict[str, bytes] = field(default_factory=dict, repr=False)  # single .pth release assets
    _blob_index: dict[str, list[tuple[str, str]]] | None = field(default=None, repr=False, compare=False)

    def commit(self, repo_id: str, revision: str) -> ReplicaCommit:
        try:
            return self.commits[(repo_id, revision)]
        except KeyError:
            raise KeyError(f"no replica of {repo_id}@{revision} was published") from None

    def files(self, repo_id: str, revision: str) -> dict[str, bytes]:
        return self.commit(repo_id, revision).files

    def archive_url(self, name: str) -> str:
        return self.hub.archive_url(name)

    def archive_sha256(self, name: str) -> str:
        return hashlib.sha256(self.archives[name] if name in self.archives else self.release_files[name]).hexdigest()

    def find_blob(self, sha256: str) -> list[tuple[str, str]]:
        """(repo_id, path) of every replica file with this content digest (what a CDN request fetched)."""
        if self._blob_index is None:
            index: dict[str, list[tuple[str, str]]] = {}
            for c in self.commits.values():
                for p, b in c.files.items():
                    owners = index.setdefault(hashlib.sha256(b).hexdigest(), [])
                    if (c.repo_id, p) not in owners:
                        owners.append((c.repo_id, p))
            self._blob_index = index
        return list(self._blob_index.get(sha256, ()))


# ---------------------------------------------------------------------------
# Which sources to publish
# ---------------------------------------------------------------------------
def default_entries() -> list[ModelEntry]:
    """Every catalogue entry with sources, plus every catalogued Piper voice."""
    from enfoads.models import voices
    from enfoads.models.preload import piper_entries

    entries = [e for e in CATALOG.values() if e.sources]
    entries += piper_entries([v.id for v in voices.piper_voices()])
    return entries


def default_cache_dir() -> Path:
    """``ENFOADS_REPLICA_CACHE``, else ``$XDG_CACHE_HOME/enfoads/replicas`` (``~/.cache/...``)."""
    if os.environ.get("ENFOADS_REPLICA_CACHE"):
        return Path(os.environ["ENFOADS_REPLICA_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "enfoads" / "replicas"


def _wanted(entries: Iterable[ModelEntry]) -> tuple[dict[str, list[str]], list[str], list[str]]:
    repos: dict[str, list[str]] = {}
    archives: list[str] = []
    release_files: list[str] = []
    for entry in entries:
        for src in entry.sources.values():
            if isinstance(src, HubFiles):
                revs = repos.setdefault(src.repo_id, [])
                if src.revision not in revs:
                    revs.append(src.revision)
            elif isinstance(src, UrlFile):
                if src.filename not in data.RELEASE_FILES:
                    raise KeyError(f"replica_files has no listing of the release file {src.filename}")
                if src.filename not in release_files:
                    release_files.append(src.filename)
            elif isinstance(src, UrlArchive):
                name = src.url.rsplit("/", 1)[-1]
                if name not in data.ARCHIVES:
                    raise KeyError(f"replica_files has no listing of the archive {name}")
                if name not in archives:
                    archives.append(name)
    return repos, archives, release_files


# ---------------------------------------------------------------------------
# The on-disk cache
# ---------------------------------------------------------------------------
def _build_key(seed: int) -> str:
    from importlib import metadata

    versions = {}
    for dist in ("torch", "diffusers", "transformers", "ctranslate2", "onnx", "safetensors"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    listing_data = repr(sorted(data.LISTINGS.items())) + repr(data.PIPER_VOICE_FILES) + repr(data.PIPER_TOP_LEVEL)
    listing_data += repr(data.ARCHIVES) + repr(data.RELEASE_FILES)
    blob = json.dumps({"version": REPLICA_VERSION, "seed": seed, "libs": versions}, sort_keys=True) + listing_data
    return f"v{REPLICA_VERSION}-seed{seed}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def _slot(name: str) -> str:
    return name.replace("/", "--")


class _Cache:
    """``<cache_dir>/<build key>/<item>/``: one folder per repository revision or archive, written atomically."""

    def __init__(self, root: Path | None, key: str):
        self.root = None if root is None else Path(root) / key

    def _prune(self) -> None:
        """Drop builds of other keys with the same seed (older versions, other library versions)."""
        seed_part = self.root.name.split("-", 2)[1]
        for other in self.root.parent.glob(f"v*-{seed_part}-*"):
            if other != self.root and other.is_dir():
                shutil.rmtree(other, ignore_errors=True)

    def load(self, item: str) -> tuple[dict[str, bytes], set[str]] | None:
        if self.root is None:
            return None
        folder = self.root / _slot(item)
        try:
            index = json.loads((folder / "index.json").read_text())
            files = {p: (folder / "files" / p).read_bytes() for p in index["paths"]}
        except (OSError, ValueError, KeyError):
            return None
        return files, set(index["placeholders"])

    def store(self, item: str, files: Mapping[str, bytes], placeholders: set[str]) -> None:
        if self.root is None:
            return
        if not self.root.exists():
            self._prune()
        self.root.mkdir(parents=True, exist_ok=True)
        dest = self.root / _slot(item)
        work = Path(tempfile.mkdtemp(prefix=f".{_slot(item)}-", dir=self.root))
        try:
            for path, content in files.items():
                target = work / "files" / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
            (work / "index.json").write_text(json.dumps({"paths": list(files), "placeholders": sorted(placeholders)}))
            if dest.exists():
                shutil.rmtree(dest)
            try:
                os.replace(work, dest)
            except OSError:  # another process stored the same build first
                pass
        finally:
            shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------
# Publishing
# ---------------------------------------------------------------------------
def _is_commit(rev: str) -> bool:
    return len(rev) == 40 and all(c in "0123456789abcdef" for c in rev)


def publish_replicas(
    hub: FakeHub,
    *,
    entries: Iterable[ModelEntry] | None = None,
    seed: int = 0,
    cache_dir: Path | str | None = None,
    use_cache: bool = True,
) -> Replicas:
    """Publish on ``hub`` a replica of every source of ``entries`` at its pinned revision.

    Args:
        hub: a ``FakeHub`` (started or not: archive URLs are read once it is).
        entries: catalogue entries (default :func:`default_entries`: the whole catalogue and
            every catalogued Piper voice); only their sources are built and published.
        seed: seeds every tiny model (same seed, same bytes).
        cache_dir: where built replicas are kept between runs (default :func:`default_cache_dir`);
            ``use_cache=False`` builds in memory only.

    A repository pinned to a commit is published under that very commit id, with ``main``
    pointing at it. ``rhasspy/piper-voices`` gets a commit per revision the voices use
    (``v1.0.0`` as a tag, ``main`` as the branch), under the ids in
    ``replica_files.PIPER_COMMITS`` where known, else content-derived ids.
    """
    entries = list(default_entries() if entries is None else entries)
    repos, archive_names, release_names = _wanted(entries)
    key = _build_key(seed)
    cache = _Cache((default_cache_dir() if cache_dir is None else Path(cache_dir)) if use_cache else None, key)
    replicas = Replicas(hub)
    with tempfile.TemporaryDirectory(prefix="enfoads-replicas-") as tmp:
        art = _Artifacts(seed, Path(tmp))

        def get(item: str, build: Callable[[], tuple[dict[str, bytes], set[str]]]):
            cached = cache.load(item)
            if cached is not None:
                return cached
            files, placeholders = build()
            cache.store(item, files, placeholders)
            return files, placeholders

        for repo_id, revisions in repos.items():
            # Piper: publish the tag before main, so main is the later commit.
            for revision in sorted(revisions, key=lambda r: (r == "main", r)):
                listing = data.listing(repo_id, revision)
                files, placeholders = get(f"{repo_id}@{revision}", lambda: _repo_files(art, listing))
                lfs = frozenset(f.path for f in listing.files if f.lfs)
                if _is_commit(revision):
                    commit = hub.add_commit(repo_id, files, commit=revision, branch="main", lfs=lfs)
                else:
                    known = data.PIPER_COMMITS.get(revision) if repo_id == data.PIPER_REPO else None
                    branch = revision if revision == "main" else None
                    tags = () if revision == "main" else (revision,)
                    commit = hub.add_commit(repo_id, files, commit=known, branch=branch, tags=tags, lfs=lfs)
                replicas.commits[(repo_id, revision)] = ReplicaCommit(
                    repo_id, revision, commit, files, lfs, frozenset(placeholders), listing
                )
        for name in archive_names:
            listing = data.ARCHIVES[name]

            def build_zip():
                pack = {rel.rsplit("/", 1)[-1]: b for rel, b in art.faces().items() if rel.startswith("models/buffalo_l/")}
                return {name: _buffalo_zip(pack, listing)}, set()

            files, _ = get(f"archive/{name}", build_zip)
            replicas.archives[name] = files[name]
            hub.add_archive(name, files[name])
        for name in release_names:
            release = data.RELEASE_FILES[name]
            files, _ = get(f"release/{name}", lambda: ({release.name: art.release_file(release)}, set()))
            replicas.release_files[name] = files[name]
            hub.add_archive(name, files[name])  # served from the same release URL path as the archives
    return replicas


def replica_catalog(replicas: Replicas, catalog: Mapping[str, ModelEntry] | None = None) -> dict[str, ModelEntry]:
    """The catalogue as it must read to install the replicas: the one difference from the real one.

    Everything stays as published (repository ids, pinned revisions, allow-patterns,
    sizes, options) except where a replica cannot match the real thing:

    - a release archive's URL points at the fake hub's CDN, and its ``sha256`` and
      ``bytes`` are the replica archive's;
    - the published sha256 digests a ``HubFiles`` source carries (``sha256=``) are
      replaced by the replica files' digests.

    Entries without sources (tiny kit, espeak-ng) and sources with no replica are
    returned unchanged.
    """
    catalog = CATALOG if catalog is None else catalog
    out: dict[str, ModelEntry] = {}
    for model_id, entry in catalog.items():
        sources = {name: _replica_source(replicas, src) for name, src in entry.sources.items()}
        out[model_id] = replace(entry, sources=sources) if sources != entry.sources else entry
    return out


def _replica_source(replicas: Replicas, src):
    if isinstance(src, UrlFile):
        if src.filename not in replicas.release_files:
            return src
        content = replicas.release_files[src.filename]
        return replace(src, url=replicas.archive_url(src.filename), sha256=hashlib.sha256(content).hexdigest(),
                       bytes=len(content))
    if isinstance(src, UrlArchive):
        name = src.url.rsplit("/", 1)[-1]
        if name not in replicas.archives:
            return src
        content = replicas.archives[name]
        return replace(src, url=replicas.archive_url(name), sha256=hashlib.sha256(content).hexdigest(), bytes=len(content))
    if isinstance(src, HubFiles) and src.sha256 and (src.repo_id, src.revision) in replicas.commits:
        commit = replicas.commit(src.repo_id, src.revision)
        digests = tuple((p, commit.sha256(p) if p in commit.files else d) for p, d in src.sha256)
        return replace(src, sha256=digests)
    return src


# ---------------------------------------------------------------------------
# python -m enfoads.testing.replicas
# ---------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    import argparse
    import threading

    parser = argparse.ArgumentParser(
        prog="python -m enfoads.testing.replicas",
        description="Serve replicas of every catalogue source on a fake Hugging Face hub (127.0.0.1).",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=None, help=f"default: {default_cache_dir()}")
    args = parser.parse_args(argv)

    hub = FakeHub().start()
    try:
        replicas = publish_replicas(hub, seed=args.seed, cache_dir=args.cache_dir)
        for (repo_id, revision), commit in sorted(replicas.commits.items()):
            print(f"  {repo_id}@{revision[:12]}: {len(commit.files)} files (commit {commit.commit[:12]})")
        for name in [*replicas.archives, *replicas.release_files]:
            print(f"  {replicas.archive_url(name)}  sha256 {replicas.archive_sha256(name)}")
        print(
            "The catalogue's release-archive URLs and published digests differ from the replicas':"
            " preload with enfoads.testing.replicas.replica_catalog(...) entries."
        )
        print(f"HF_ENDPOINT={hub.endpoint}  (CDN {hub.cdn_url}); Ctrl-C to stop", flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
