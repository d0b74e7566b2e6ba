"""Replica repositories (enfoads.testing.replicas) on the fake hub: the real file lists, tiny real
weights, and `enfoads preload` of the cpu and t4 profiles against them through the real
huggingface_hub download path, into the real cache layout, fetching only what the catalogue's
allow-patterns select; then the product's loaders load what was installed."""
import fnmatch
import io
import json
import os
import zipfile
from pathlib import Path

import pytest

from enfoads.models import registry
from enfoads.models.catalog import CATALOG, HubFiles, UrlArchive, UrlFile
from enfoads.models.preload import preload, select_models
from enfoads.models.profiles import PROFILES
from enfoads.testing import replica_files as data
from enfoads.testing.hub import FakeHub
from enfoads.testing.replicas import default_entries, is_placeholder, publish_replicas, replica_catalog

PROFILES_TESTED = ("t4", "cpu")


class CatalogueBug(AssertionError):
    """The preload failed only for models whose catalogue entry names files the real repository lacks."""


def _literal_patterns_missing(entries) -> dict[str, list[str]]:
    """Model id -> allow-patterns without wildcards that name no file of the real repository (from the data)."""
    missing = {}
    for entry in entries:
        for src in entry.sources.values():
            if not isinstance(src, HubFiles):
                continue
            paths = set(data.listing(src.repo_id, src.revision).paths)
            absent = [p for p in src.allow_patterns if not any(c in p for c in "*?[") and p not in paths]
            if absent:
                missing.setdefault(entry.id, []).extend(absent)
    return missing


def _known_bugs(profile: str) -> dict[str, list[str]]:
    return _literal_patterns_missing(select_models(profile))


def _profile_param(profile: str):
    bugs = _known_bugs(profile)
    if not bugs:
        return profile
    reason = "catalogue bug: " + "; ".join(
        f"{model} lists {', '.join(paths)}, which the real repository does not have at its pin"
        for model, paths in sorted(bugs.items())
    )
    return pytest.param(profile, marks=pytest.mark.xfail(raises=CatalogueBug, strict=True, reason=reason))


@pytest.fixture(scope="module")
def hub():
    with FakeHub() as h:
        yield h


@pytest.fixture(scope="module")
def replicas(hub, request, tmp_path_factory):
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    cache_dir = cache.mkdir("enfoads-replicas") if cache is not None else tmp_path_factory.mktemp("replica-cache")
    return publish_replicas(hub, cache_dir=Path(cache_dir))


@pytest.fixture(scope="module")
def online():
    """conftest sets HF_HUB_OFFLINE=1 for the whole run; these tests talk to the fake hub."""
    from huggingface_hub import constants

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(constants, "HF_HUB_OFFLINE", False)
        yield


@pytest.fixture(scope="module")
def catalog(replicas):
    return replica_catalog(replicas)


_PRELOADS: dict[str, tuple] = {}


@pytest.fixture(scope="module")
def preloaded(hub, replicas, catalog, online, tmp_path_factory):
    """profile -> (models_dir, report, requests, entries): one preload per profile into a fresh dir."""

    def run(profile: str):
        if profile not in _PRELOADS:
            models_dir = tmp_path_factory.mktemp(f"models-{profile}")
            entries = select_models(profile, catalog=catalog)
            hub.requests.clear()
            report = preload(entries, models_dir=models_dir, endpoint=hub.endpoint, progress=False, out=None)
            _PRELOADS[profile] = (models_dir, report, list(hub.requests), entries)
        return _PRELOADS[profile]

    yield run
    _PRELOADS.clear()


def _selected(src: HubFiles, paths) -> set[str]:
    if not src.allow_patterns:
        return set(paths)
    return {p for p in paths if any(fnmatch.fnmatch(p, pat) for pat in src.allow_patterns)}


# ---------------------------------------------------------------------------
# The data and the replicas
# ---------------------------------------------------------------------------
def test_every_catalogue_source_has_a_real_file_list():
    for entry in default_entries():
        for src in entry.sources.values():
            if isinstance(src, HubFiles):
                listing = data.listing(src.repo_id, src.revision)
                assert listing.files and listing.sources, src.repo_id
                assert len(set(listing.paths)) == len(listing.paths), src.repo_id
                assert set(listing.unverified_paths) <= set(listing.paths)
                if not listing.verified or listing.unverified_paths:
                    assert listing.note, f"{src.repo_id}: say why it is not verified"
            elif isinstance(src, UrlFile):
                release = data.RELEASE_FILES[src.filename]
                assert (release.url, release.sha256, release.bytes) == (src.url, src.sha256, src.bytes), entry.id
            else:
                assert src.url.rsplit("/", 1)[-1] in data.ARCHIVES
    assert data.BUFFALO_L_ZIP.url == CATALOG["buffalo_l"].sources["pack"].url
    assert data.BUFFALO_L_ZIP.sha256 == CATALOG["buffalo_l"].sources["pack"].sha256
    for commit in data.PIPER_COMMITS.values():
        assert len(commit) == 40 and int(commit, 16) >= 0


def test_replica_file_lists_equal_the_real_file_lists(replicas, hub, online):
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    api = HfApi(endpoint=hub.endpoint)
    for (repo_id, revision), commit in sorted(replicas.commits.items()):
        listing = data.listing(repo_id, revision)
        assert set(commit.files) == set(listing.paths), repo_id
        # What the hub answers: the same paths, the same LFS split, at the catalogue's revision.
        assert api.repo_info(repo_id, revision=revision).sha == commit.commit
        if len(revision) == 40:
            assert commit.commit == revision, f"{repo_id} must be published under its pinned commit"
        tree = [f for f in api.list_repo_tree(repo_id, revision=commit.commit, recursive=True) if isinstance(f, RepoFile)]
        assert {f.path for f in tree} == set(listing.paths), repo_id
        assert {f.path for f in tree if f.lfs is not None} == {f.path for f in listing.files if f.lfs}, repo_id
    piper_v1 = replicas.commit(data.PIPER_REPO, "v1.0.0")
    piper_main = replicas.commit(data.PIPER_REPO, "main")
    assert hub.repos[data.PIPER_REPO].refs["v1.0.0"] == piper_v1.commit != piper_main.commit
    assert not any("daniela" in p for p in piper_v1.files) and any("daniela" in p for p in piper_main.files)
    for name, content in replicas.archives.items():
        with zipfile.ZipFile(io.BytesIO(content)) as zf:
            assert tuple(sorted(zf.namelist())) == tuple(sorted(data.ARCHIVES[name].member_names))
            assert {i.date_time for i in zf.infolist()} == {(2024, 1, 1, 0, 0, 0)}
    import torch

    from enfoads.models.loaders.upscale import describe

    assert set(replicas.release_files) == set(data.RELEASE_FILES)
    for name, content in replicas.release_files.items():
        # The real wrapper key, and the architecture spandrel detects in the real file.
        state = torch.load(io.BytesIO(content), map_location="cpu", weights_only=True)
        assert list(state) == [data.RELEASE_FILES[name].top_key], name
        found = describe(state[data.RELEASE_FILES[name].top_key], name=name)
        assert found.architecture.id == data.RELEASE_FILES[name].architecture, name


def test_what_the_catalogue_downloads_is_tiny_weights_of_the_real_format(replicas):
    for entry in default_entries():
        for src in entry.sources.values():
            if isinstance(src, HubFiles):
                commit = replicas.commit(src.repo_id, src.revision)
                for path in _selected(src, commit.files):
                    assert not is_placeholder(commit.files[path]), f"{entry.id}: {src.repo_id}/{path} is a placeholder"
    for (repo_id, _), commit in replicas.commits.items():
        for path, content in commit.files.items():
            if is_placeholder(content):
                assert len(content) < 1024, path
                continue
            if path.endswith(".safetensors"):
                dtypes = _safetensors_dtypes(content)
                half = ".fp16." in path or Path(path).name.startswith("sdxl_lightning_")
                assert dtypes == ({"F16"} if half else {"F32"}), (repo_id, path, dtypes)
            elif path.endswith(".json"):
                json.loads(content)
    turbo = replicas.files("mobiuslabsgmbh/faster-whisper-large-v3-turbo", CATALOG["faster-whisper-large-v3-turbo"].sources["model"].revision)
    small = replicas.files("Systran/faster-whisper-small", CATALOG["faster-whisper-small"].sources["model"].revision)
    assert json.loads(turbo["preprocessor_config.json"])["feature_size"] == 128
    assert "preprocessor_config.json" not in small and "vocabulary.txt" in small
    assert len(small["vocabulary.txt"].decode().split("\n")) == 51865 + 1  # one token a line, trailing newline
    fix = json.loads(replicas.files("madebyollin/sdxl-vae-fp16-fix", CATALOG["sdxl-lightning-4step"].sources["vae"].revision)["config.json"])
    assert fix["force_upcast"] is False


def _safetensors_dtypes(content: bytes) -> set[str]:
    """The tensor dtypes a safetensors file declares in its header (nothing else is read)."""
    n = int.from_bytes(content[:8], "little")
    header = json.loads(content[8 : 8 + n])
    return {v["dtype"] for k, v in header.items() if k != "__metadata__"}


def test_replica_catalog_differs_only_where_replicas_cannot_match(replicas, catalog, hub):
    assert catalog.keys() == CATALOG.keys()
    for model_id, entry in CATALOG.items():
        rep = catalog[model_id]
        for name, src in entry.sources.items():
            new = rep.sources[name]
            if isinstance(src, UrlArchive):
                assert new.url.startswith(hub.cdn_url) and new.unpack_to == src.unpack_to
                assert new.sha256 == replicas.archive_sha256(new.url.rsplit("/", 1)[-1])
            else:
                assert (new.repo_id, new.revision, new.allow_patterns, new.subfolder) == (
                    src.repo_id, src.revision, src.allow_patterns, src.subfolder)
                assert [p for p, _ in new.sha256] == [p for p, _ in src.sha256]
        same = {k: v for k, v in entry.__dict__.items() if k != "sources"}
        assert same == {k: v for k, v in rep.__dict__.items() if k != "sources"}


# ---------------------------------------------------------------------------
# enfoads preload against the replicas
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("profile", [_profile_param(p) for p in PROFILES_TESTED])
def test_preload_installs_the_profile_in_the_hf_cache_layout(profile, preloaded, replicas, hub):
    models_dir, report, requests, entries = preloaded(profile)
    bugs = _known_bugs(profile)
    statuses = {m.entry.id: m.status for m in report.models}
    for model in report.models:
        if model.entry.sources and model.entry.id not in bugs:
            assert model.status == "downloaded", (model.entry.id, model.note, report.table())

    # Only what the allow-patterns select came down: no skipped file was even asked for.
    selected: dict[str, set[str]] = {}
    for entry in entries:
        if statuses.get(entry.id) != "downloaded":
            continue
        for src in entry.sources.values():
            if isinstance(src, HubFiles):
                files = replicas.commit(src.repo_id, src.revision).files
                selected.setdefault(src.repo_id, set()).update(_selected(src, files))
    resolved: dict[str, set[str]] = {}
    for r in requests:
        if r.server == "hub" and "/resolve/" in r.path:
            repo_id, _, rest = r.path.strip("/").partition("/resolve/")
            resolved.setdefault(repo_id, set()).add(rest.split("/", 1)[1])
        elif r.server == "cdn" and r.path.startswith("/cdn/"):
            owners = replicas.find_blob(r.path[len("/cdn/"):])
            assert any(p in selected.get(repo, ()) for repo, p in owners), f"CDN fetch of a skipped file: {owners}"
    for repo_id, paths in resolved.items():
        assert paths <= selected.get(repo_id, set()), f"{repo_id}: fetched {sorted(paths - selected[repo_id])}"
    assert {k: v for k, v in resolved.items() if v} == {k: v for k, v in selected.items() if v}

    # The standard Hugging Face cache layout: blobs, relative snapshot symlinks, refs for tags/branches.
    snapshots: dict[tuple[str, str], set[str]] = {}
    for entry in entries:
        if statuses.get(entry.id) != "downloaded":
            continue
        assert registry.presence(entry, models_dir).present, entry.id
        for src in entry.sources.values():
            if isinstance(src, UrlFile):
                placed = models_dir / src.unpack_to / src.filename
                assert placed.read_bytes() == replicas.release_files[src.filename], entry.id
                continue
            if isinstance(src, UrlArchive):
                pack = models_dir / src.unpack_to
                assert sorted(p.name for p in pack.iterdir()) == sorted(data.ARCHIVES["buffalo_l.zip"].member_names)
                continue
            commit = replicas.commit(src.repo_id, src.revision)
            snapshots.setdefault((src.repo_id, commit.commit), set()).update(_selected(src, commit.files))
            if len(src.revision) != 40:
                refs = models_dir / ("models--" + src.repo_id.replace("/", "--")) / "refs"
                assert (refs / src.revision).read_text() == commit.commit
    contents = {c.commit: c.files for c in replicas.commits.values()}
    for (repo_id, commit), expected in snapshots.items():
        storage = models_dir / ("models--" + repo_id.replace("/", "--"))
        snapshot = storage / "snapshots" / commit
        on_disk = {p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file() or p.is_symlink()}
        assert on_disk == expected, repo_id
        for rel in on_disk:
            link = snapshot / rel
            assert link.is_symlink() and not os.path.isabs(os.readlink(link)), link
            assert link.resolve().parent == (storage / "blobs").resolve()
            assert link.read_bytes() == contents[commit][rel]
    if bugs:
        failed = {m.entry.id: m.note for m in report.models if m.entry.sources and m.status != "downloaded"}
        assert set(failed) == set(bugs), failed
        raise CatalogueBug(f"preload of {profile} failed for {failed}")
    assert all(m.status == "downloaded" for m in report.models if m.entry.sources), report.table()


@pytest.mark.parametrize("profile", PROFILES_TESTED)
def test_preloaded_replicas_load_and_run_through_the_product_loaders(profile, preloaded):
    """What preload installed loads with the product's own adapters, on the CPU, and runs."""
    import numpy as np

    from enfoads.models.adapters import adapter_for
    from enfoads.models.tiny.faces import face_test_pattern

    models_dir, report, _, _ = preloaded(profile)
    installed = {m.entry.id for m in report.models if m.status == "downloaded"}
    roles = PROFILES[profile].roles
    ran = []
    for role in ("image", "faces", "swapper", "speech", "upscale", "restore", "lipsync"):
        choice = roles[role]
        if choice.model_id not in installed:
            continue  # a catalogue bug, reported by the preload test
        model = adapter_for(CATALOG[choice.model_id], choice, models_dir).load("cpu")
        if role == "image":
            image = model("a red chair", num_inference_steps=1, guidance_scale=0.0, height=64, width=64).images[0]
            assert image.size == (64, 64)
        elif role == "faces":
            assert len(model.get(face_test_pattern())) == 1
        elif role == "swapper":
            assert model.input_size == (128, 128)
        elif role in ("upscale", "restore"):
            import torch

            side = 512 if role == "restore" else 8
            with torch.inference_mode():
                out = model(torch.rand(1, 3, side, side))
            assert tuple(out.shape) == (1, 3, side * model.scale, side * model.scale)
        elif role == "lipsync":
            from enfoads.models.catalog_lipsync import REV_MUSETALK
            from enfoads.services.avatars import default_face, packaged_default_avatar, read_rgb
            from enfoads.services.lipsync import LipSync
            from enfoads.services.lipsync_mask import FaceGeometry

            # The hub's .pth was converted once, beside the cache (never inside the snapshot).
            converted = models_dir / "converted" / choice.model_id / REV_MUSETALK / "unet.fp16.safetensors"
            assert converted.is_file() and not list(models_dir.glob("models--*/snapshots/*/*/unet.fp16*"))
            engine = LipSync(model, batch_size=4, fps=25)
            prepared = engine.prepare(read_rgb(packaged_default_avatar()),
                                      FaceGeometry.from_dict(default_face(768, 1024)))
            frames = list(engine.frames(prepared, np.random.default_rng(0).normal(0, 0.1, 4000).astype(np.float32)))
            assert len(frames) == 7 and frames[0].shape == (1024, 768, 3)
        else:
            segments, info = model.transcribe(np.zeros(16000, dtype=np.float32), beam_size=1, temperature=0,
                                              max_new_tokens=2, without_timestamps=True, language="es")
            list(segments)
            n_mels = 128 if choice.model_id.endswith("turbo") else 80
            assert model.feature_extractor.mel_filters.shape[0] == n_mels
        ran.append(role)
    assert ran


def test_preloaded_piper_voices_synthesize(preloaded):
    from enfoads.models import voices
    from enfoads.services.tts_backends import _Piper

    models_dir, _, _, _ = preloaded("t4")
    piper = _Piper(models_dir)
    # es_AR-daniela-high is pinned to main, the others to the v1.0.0 tag: one of each.
    for voice_id in ("piper:es_AR-daniela-high", "piper:es_MX-claude-high"):
        audio, rate = piper.synthesize(voices.get(voice_id), "Hola, mundo.", 1.0)
        assert rate > 0 and len(audio) > rate // 10, voice_id
