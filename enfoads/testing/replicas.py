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
import io
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Mapping

from enfoads.models.catalog import CATALOG, HubFiles, ModelEntry, UrlArchive
from enfoads.testing import replica_files as data
from enfoads.testing.hub import FakeHub

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
PLACEHOLDER_PREFIX = b"enfoads replica placeholder"
ZIP_DATE = (2024, 1, 1, 0, 0, 0)


def is_placeholder(content: bytes) -> bool:
    """True for the stand-in bytes of a file the replica does not reproduce."""
    return content.startswith(PLACEHOLDER_PREFIX)


def _placeholder(repo_id: str, path: str) -> bytes:
    return (
        f"{PLACEHOLDER_PREFIX.decode()}: the real file is not reproduced in the replica\n"
        f"repository: {repo_id}\npath: {path}\n"
    ).encode()


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
    archives: dict[str, bytes] = field(default_factory=dict, repr=False)
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
        return hashlib.sha256(self.archives[name]).hexdigest()

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


def _wanted(entries: Iterable[ModelEntry]) -> tuple[dict[str, list[str]], list[str]]:
    repos: dict[str, list[str]] = {}
    archives: list[str] = []
    for entry in entries:
        for src in entry.sources.values():
            if isinstance(src, HubFiles):
                revs = repos.setdefault(src.repo_id, [])
                if src.revision not in revs:
                    revs.append(src.revision)
            elif isinstance(src, UrlArchive):
                name = src.url.rsplit("/", 1)[-1]
                if name not in data.ARCHIVES:
                    raise KeyError(f"replica_files has no listing of the archive {name}")
                if name not in archives:
                    archives.append(name)
    return repos, archives


# ---------------------------------------------------------------------------
# Tiny models, built once per build (shared by the repositories that use them)
# ---------------------------------------------------------------------------
class _Artifacts:
    """Lazily built tiny models, as {relative path: bytes}."""

    def __init__(self, seed: int, workdir: Path):
        self.seed = seed
        self.workdir = workdir
        self._memo: dict[str, object] = {}

    def _once(self, key: str, build: Callable[[], object]):
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]

    def sdxl(self) -> dict[str, bytes]:
        return self._once("sdxl", lambda: _build_sdxl(self.seed, self.workdir / "sdxl"))

    def sd2(self) -> dict[str, bytes]:
        def build():
            from enfoads.models.tiny import sd2

            folder = self.workdir / "sd2"
            with _quiet_libraries():
                sd2.build_into(folder, self.seed)
            return _read_tree(folder)

        return self._once("sd2", build)

    def whisper(self, n_mels: int, *, preprocessor: bool, vocabulary: str) -> dict[str, bytes]:
        key = f"whisper-{n_mels}-{preprocessor}-{vocabulary}"
        return self._once(
            key,
            lambda: _build_whisper(self.seed, self.workdir / key, n_mels=n_mels, preprocessor=preprocessor,
                                   vocabulary=vocabulary),
        )

    def faces(self) -> dict[str, bytes]:
        def build():
            from enfoads.models.tiny import faces

            return {rel: model.SerializeToString() for rel, model in faces.build_models(self.seed).items()}

        return self._once("faces", build)

    def piper_voice(self, name: str) -> tuple[bytes, bytes]:
        return self._once(f"piper-{name}", lambda: _build_piper_voice(self.seed, name, self.workdir / f"piper-{name}"))


def _read_tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class _quiet_libraries:
    """Keep diffusers/transformers notices (fp16 casts, weight loading bars) out of test output."""

    def __enter__(self):
        from diffusers.utils import logging as dlog
        from transformers.utils import logging as tlog

        self._levels = (dlog.get_verbosity(), tlog.get_verbosity())
        dlog.set_verbosity_error()
        tlog.set_verbosity_error()
        self._bars = (dlog.is_progress_bar_enabled(), tlog.is_progress_bar_enabled())
        dlog.disable_progress_bar()
        tlog.disable_progress_bar()
        return self

    def __exit__(self, *exc):
        from diffusers.utils import logging as dlog
        from transformers.utils import logging as tlog

        dlog.set_verbosity(self._levels[0])
        tlog.set_verbosity(self._levels[1])
        if self._bars[0]:
            dlog.enable_progress_bar()
        if self._bars[1]:
            tlog.enable_progress_bar()


def _build_sdxl(seed: int, work: Path) -> dict[str, bytes]:
    """The tiny SDXL kit (enfoads.models.tiny.sdxl) re-saved in both real variants, plus an fp16-fix VAE.

    Keys: the SDXL base folder's paths, the four ``sdxl_lightning_*`` UNet files, and
    ``vae_fix/config.json`` / ``vae_fix/diffusion_pytorch_model.safetensors``.
    """
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from enfoads.models.tiny import sdxl

    kit = work / "kit"
    kit.mkdir(parents=True, exist_ok=True)
    with _quiet_libraries():
        sdxl.build_into(kit, seed)
        base = kit / sdxl.BASE_SUBDIR
        out: dict[str, bytes] = {
            "model_index.json": (base / "model_index.json").read_bytes(),
            "scheduler/scheduler_config.json": (base / "scheduler" / "scheduler_config.json").read_bytes(),
        }
        # The kit's files carry the fp16 variant's names; load them and save each variant for real.
        components = {
            "text_encoder": CLIPTextModel,
            "text_encoder_2": CLIPTextModelWithProjection,
            "unet": UNet2DConditionModel,
            "vae": AutoencoderKL,
        }
        for name, cls in components.items():
            model = cls.from_pretrained(base / name, variant="fp16").float().eval()
            plain, half = work / "fp32" / name, work / "fp16" / name
            model.save_pretrained(plain, safe_serialization=True)
            model.to(torch.float16).save_pretrained(half, safe_serialization=True, variant="fp16")
            for folder in (plain, half):
                for f in sorted(folder.glob("*.safetensors")):
                    out[f"{name}/{f.name}"] = f.read_bytes()
            # The kit's config as written at build time (a re-saved one records the temporary path).
            out[f"{name}/config.json"] = (base / name / "config.json").read_bytes()
        # CLIP tokenizers in the published four-file layout (vocab.json, merges.txt, ...): the kit's own
        # writer, so the vocabulary is the one its text encoders were sized for.
        for name, pad in (("tokenizer", "<|endoftext|>"), ("tokenizer_2", "!")):
            folder = work / "tokenizers" / name
            sdxl._write_clip_tokenizer(folder, pad)
            for f in sorted(folder.iterdir()):
                out[f"{name}/{f.name}"] = f.read_bytes()
        for filename in sdxl.LIGHTNING_UNET_FILES.values():
            out[filename] = (kit / filename).read_bytes()
        # madebyollin/sdxl-vae-fp16-fix: the same architecture, its own weights, fp32 only, no upcast needed.
        vae_config = dict(AutoencoderKL.load_config(base / "vae"))
        vae_config["force_upcast"] = False
        torch.manual_seed(seed * 1000 + 16)
        fix = AutoencoderKL.from_config({k: v for k, v in vae_config.items() if not k.startswith("_")}).eval()
        fix.save_pretrained(work / "vae_fix", safe_serialization=True)
        for name in ("config.json", "diffusion_pytorch_model.safetensors"):
            out[f"vae_fix/{name}"] = (work / "vae_fix" / name).read_bytes()
    return out


def _build_whisper(seed: int, work: Path, *, n_mels: int, preprocessor: bool, vocabulary: str) -> dict[str, bytes]:
    """A tiny faster-whisper folder like ``enfoads.models.tiny.whisper`` builds, with ``n_mels`` mel bins.

    float16 weights (the published conversions are float16), ``vocabulary.json`` or
    ``vocabulary.txt`` (one token per line, as older converters wrote), with or without
    ``preprocessor_config.json``.
    """
    from enfoads.models.tiny import whisper as tw

    ct2_dir = work / "ct2"
    ct2_dir.mkdir(parents=True, exist_ok=True)
    with _quiet_libraries():
        tw.build_into(ct2_dir, seed * 1000 + n_mels, n_mels=n_mels, quantization="float16", preprocessor=preprocessor)
    out = _read_tree(ct2_dir)
    if vocabulary == "txt":
        tokens = json.loads(out.pop("vocabulary.json"))
        out["vocabulary.txt"] = ("\n".join(tokens) + "\n").encode()
    return out


_ESPEAK_VOICES = {"es_MX": "es-419", "es_AR": "es-419", "es_ES": "es", "en_US": "en-us", "en_GB": "en-gb-x-rp"}
_LANGUAGE_NAMES = {
    "es": ("Español", "Spanish"),
    "en": ("English", "English"),
}
_COUNTRIES = {"MX": "Mexico", "AR": "Argentina", "ES": "Spain", "US": "United States", "GB": "Great Britain"}


def _build_piper_voice(seed: int, name: str, work: Path) -> tuple[bytes, bytes]:
    """The tiny Piper voice (``enfoads.models.tiny.piper``) as voice ``name``: its graph, its config for that language."""
    from enfoads.models.tiny import piper as tp

    index = sorted(data.PIPER_VOICE_FILES).index(name)
    tp.build_into(work, seed * 1000 + index)
    onnx_bytes = (work / f"{tp.VOICE_NAME}.onnx").read_bytes()
    config = json.loads((work / f"{tp.VOICE_NAME}.onnx.json").read_text(encoding="utf-8"))
    locale, speaker, quality = name.split("-", 2)
    family, region = locale.split("_")
    native, english = _LANGUAGE_NAMES.get(family, (family, family))
    config["espeak"] = {"voice": _ESPEAK_VOICES.get(locale, family)}
    config["language"] = {"code": locale, "family": family, "region": region, "name_native": native,
                          "name_english": english, "country_english": _COUNTRIES.get(region, region)}
    config["audio"] = {**config["audio"], "quality": quality}
    config["dataset"] = speaker
    return onnx_bytes, json.dumps(config, ensure_ascii=False, indent=1).encode("utf-8")


def _buffalo_zip(pack: Mapping[str, bytes], listing: data.ArchiveListing) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(listing.member_names):
            zf.writestr(zipfile.ZipInfo(name, date_time=ZIP_DATE), pack[name])
    return buf.getvalue()


# ---------------------------------------------------------------------------
# Repository contents: the real file list, tiny weights where loaders read them
# ---------------------------------------------------------------------------
def _sdxl_base_files(art: _Artifacts, listing: data.RepoListing) -> dict[str, bytes]:
    built = {k: v for k, v in art.sdxl().items() if not k.startswith(("sdxl_lightning_", "vae_fix/"))}
    for path in [p for p in listing.paths if p.startswith("vae_1_0/")]:
        twin = "vae/" + path.split("/", 1)[1]
        if twin in built:
            built[path] = built[twin]
    return built


def _lightning_files(art: _Artifacts, listing: data.RepoListing) -> dict[str, bytes]:
    return {k: v for k, v in art.sdxl().items() if k.startswith("sdxl_lightning_")}


def _vae_fix_files(art: _Artifacts, listing: data.RepoListing) -> dict[str, bytes]:
    return {k.split("/", 1)[1]: v for k, v in art.sdxl().items() if k.startswith("vae_fix/")}


def _sd_turbo_files(art: _Artifacts, listing: data.RepoListing) -> dict[str, bytes]:
    return art.sd2()


def _whisper_turbo_files(art: _Artifacts, listing: data.RepoListing) -> dict[str, bytes]:
    return art.whisper(128, preprocessor=True, vocabulary="json")


def _whisper_small_files(art: _Artifacts, listing: data.RepoListing) -> dict[str, bytes]:
    return art.whisper(80, preprocessor=False, vocabulary="txt")


def _inswapper_files(art: _Artifacts, listing: data.RepoListing) -> dict[str, bytes]:
    return {"inswapper_128.onnx": art.faces()["models/inswapper_128.onnx"]}


def _piper_files(art: _Artifacts, listing: data.RepoListing) -> dict[str, bytes]:
    """Each voice's tiny .onnx and .onnx.json, and a voices.json (Piper's index) describing them."""
    built: dict[str, bytes] = {}
    index: dict[str, dict] = {}
    paths = set(listing.paths)
    for name, files in sorted(data.PIPER_VOICE_FILES.items()):
        onnx_path = next(f.path for f in files if f.path.endswith(".onnx"))
        if onnx_path not in paths:
            continue
        onnx_bytes, config = art.piper_voice(name)
        built[onnx_path] = onnx_bytes
        built[onnx_path + ".json"] = config
        cfg = json.loads(config)
        card = next(f.path for f in files if f.path.endswith("/MODEL_CARD"))
        contents = {onnx_path: onnx_bytes, onnx_path + ".json": config, card: _placeholder(listing.repo_id, card)}
        locale, speaker, quality = name.split("-", 2)
        index[name] = {
            "key": name,
            "name": speaker,
            "language": cfg["language"],
            "quality": quality,
            "num_speakers": cfg.get("num_speakers", 1),
            "speaker_id_map": cfg.get("speaker_id_map", {}),
            "files": {
                p: {"size_bytes": len(b), "md5_digest": hashlib.md5(b).hexdigest()} for p, b in sorted(contents.items())
            },
            "aliases": [],
        }
    if "voices.json" in paths:
        built["voices.json"] = (json.dumps(index, ensure_ascii=False, indent=4) + "\n").encode("utf-8")
    return built


_BUILDERS: dict[str, Callable[[_Artifacts, data.RepoListing], dict[str, bytes]]] = {
    "stabilityai/stable-diffusion-xl-base-1.0": _sdxl_base_files,
    "ByteDance/SDXL-Lightning": _lightning_files,
    "madebyollin/sdxl-vae-fp16-fix": _vae_fix_files,
    "stabilityai/sd-turbo": _sd_turbo_files,
    "mobiuslabsgmbh/faster-whisper-large-v3-turbo": _whisper_turbo_files,
    "Systran/faster-whisper-small": _whisper_small_files,
    "ezioruan/inswapper_128.onnx": _inswapper_files,
    data.PIPER_REPO: _piper_files,
}


def _repo_files(art: _Artifacts, listing: data.RepoListing) -> tuple[dict[str, bytes], set[str]]:
    """Exactly the listing's paths: built content where there is some, placeholders elsewhere."""
    builder = _BUILDERS.get(listing.repo_id)
    if builder is None:
        raise KeyError(f"no replica builder for {listing.repo_id}")
    built = builder(art, listing)
    stray = sorted(set(built) - set(listing.paths))
    if stray:
        raise AssertionError(f"{listing.repo_id}: built files the real repository does not have: {stray}")
    files, placeholders = {}, set()
    for path in listing.paths:
        if path in built:
            files[path] = built[path]
        else:
            files[path] = _placeholder(listing.repo_id, path)
            placeholders.add(path)
    return files, placeholders


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
    listing_data += repr(data.ARCHIVES)
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
    repos, archive_names = _wanted(entries)
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
        for name in replicas.archives:
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
