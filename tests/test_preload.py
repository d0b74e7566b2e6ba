"""`enfoads preload` against a fake hub on 127.0.0.1 (tests/hub_server.py): the real
huggingface_hub download path, with tiny files and a test-only catalogue."""
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from enfoads.models import registry
from enfoads.models.catalog import CATALOG, HubFiles
from enfoads.cli import main as cli_main
from enfoads.models.manifest import MANIFEST_FILE, Manifest
from enfoads.models.preload import (
    DOWNLOADS_SUBDIR,
    InsufficientDiskError,
    PreloadError,
    preload,
    unpack_archive,
    use_version,
    verify_installed,
)

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
import hub_server  # noqa: E402
from hub_server import BIG, IMAGE_REPO, SPEECH_REPO, speech_files, standard_catalog, standard_hub  # noqa: E402


@pytest.fixture
def hub():
    with standard_hub() as h:
        yield h


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "models"


def child_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT")}
    env.update(extra)
    return env


def run(catalog, cache, hub, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("out", None)
    return preload(list(catalog.values()), models_dir=cache, endpoint=hub.endpoint, **kw)


def by_id(report):
    return {m.entry.id: m for m in report.models}


def unet_sha():
    return hashlib.sha256(hub_server.image_files()["unet/diffusion_pytorch_model.safetensors"]).hexdigest()


def test_full_preload_downloads_verifies_records_and_resolves(hub, online, cache):
    catalog = standard_catalog(hub)
    report = run(catalog, cache, hub)

    assert report.ok, report.table()
    assert {m.status for m in report.models} == {"downloaded"}
    assert report.downloaded_bytes >= BIG
    # Only the allow-patterns' files came down (README.md did not).
    assert not any("README" in r.path for r in hub.requests if "/resolve/" in r.path)

    manifest = Manifest.load(cache)
    assert manifest.model_ids() == ["test-faces", "test-image", "test-speech"]
    image = manifest.active("test-image").components["base"]
    assert image.commit == hub.repos[IMAGE_REPO].refs["main"]
    rec = image.files["unet/diffusion_pytorch_model.safetensors"]
    assert rec.size == BIG and rec.sha256 == unet_sha()
    assert manifest.active("test-image").installed_at.endswith("Z")

    # The registry finds everything in the standard HF cache layout.
    paths = {e.id: registry.local_paths(e, cache) for e in catalog.values()}
    snapshot = paths["test-image"]["model"]
    assert snapshot == cache / "models--acme--tiny-image" / "snapshots" / image.commit
    assert (snapshot / "unet/diffusion_pytorch_model.safetensors").read_bytes() == hub_server.image_files()[
        "unet/diffusion_pytorch_model.safetensors"
    ]
    assert (paths["test-faces"]["root"] / "models" / "tiny_faces" / "det_10g.onnx").is_file()
    assert all(registry.presence(e, cache).present for e in catalog.values())
    # A branch revision ("main") was resolved once and recorded as a ref, like huggingface_hub does.
    speech_commit = hub.repos[SPEECH_REPO].refs["main"]
    assert (cache / "models--acme--tiny-speech" / "refs" / "main").read_text() == speech_commit
    # No partial file is left behind, and every recorded file verifies.
    assert not any((cache / DOWNLOADS_SUBDIR).rglob("*.part"))
    assert all(r.ok for r in verify_installed(cache))


def test_second_run_downloads_nothing_and_takes_well_under_a_second(hub, online, cache):
    catalog = standard_catalog(hub)
    assert run(catalog, cache, hub).ok
    hub.requests.clear()

    started = time.perf_counter()
    report = run(catalog, cache, hub)
    elapsed = time.perf_counter() - started

    assert report.ok and {m.status for m in report.models} == {"present"}
    assert hub.requests == []  # not even a metadata call
    assert report.downloaded_bytes == 0
    assert elapsed < 1.0, elapsed
    print(f"preload second run: {elapsed * 1000:.1f} ms")


def test_start_with_hf_hub_offline_touches_no_network(hub, online, cache):
    catalog = standard_catalog(hub)
    assert run(catalog, cache, hub).ok
    hub.requests.clear()
    code = f"""
import json, sys
sys.path.insert(0, {str(TESTS)!r})
import hub_server
from enfoads.models import registry
from enfoads.models.preload import preload
hub = hub_server.standard_hub()
hub._servers = [hub_server._Addr({hub.endpoint!r}), hub_server._Addr({hub.cdn_url!r})]
catalog = hub_server.standard_catalog(hub)
report = preload(list(catalog.values()), models_dir={str(cache)!r}, progress=False, out=None)
paths = {{e.id: {{k: str(v) for k, v in registry.local_paths(e, {str(cache)!r}).items()}} for e in catalog.values()}}
print(json.dumps({{"ok": report.ok, "statuses": [m.status for m in report.models], "paths": paths}}))
"""
    env = child_env(HF_HUB_OFFLINE="1", HF_ENDPOINT=hub.endpoint)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["ok"] and set(result["statuses"]) == {"present"}
    assert all(Path(p).exists() for paths in result["paths"].values() for p in paths.values())
    assert hub.requests == []


def test_resume_after_an_interrupted_download(hub, online, cache):
    sha = unet_sha()
    hub.stall(sha, BIG // 2)  # the CDN sends half of the big file, then hangs
    child = subprocess.Popen(
        [sys.executable, str(TESTS / "hub_server.py"), "preload", "--endpoint", hub.endpoint, "--cdn", hub.cdn_url,
         "--models-dir", str(cache)],
        env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        assert hub.stalled.wait(60), "the child never reached the big file"
        partial = cache / DOWNLOADS_SUBDIR / "models--acme--tiny-image" / f"{sha}.part"
        deadline, last = time.monotonic() + 10, -1
        while time.monotonic() < deadline:  # until the child has written what it received
            size = partial.stat().st_size if partial.exists() else 0
            if size == last and size > 0:
                break
            last = size
            time.sleep(0.2)
    finally:
        child.kill()  # like a crashed kernel: no cleanup runs
        child.wait()
    have = partial.stat().st_size
    assert 0 < have <= BIG // 2

    hub.requests.clear()
    report = run(standard_catalog(hub), cache, hub)

    assert report.ok, report.table()
    gets = [r for r in hub.content_requests() if r.path.endswith(sha)]
    assert [r.range for r in gets] == [f"bytes={have}-"]  # only the rest was asked for
    assert by_id(report)["test-image"].downloaded == BIG - have
    assert not partial.exists()
    blob = registry.local_paths(standard_catalog(hub)["test-image"], cache)["model"] / "unet/diffusion_pytorch_model.safetensors"
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == sha


def test_checksum_mismatch_is_detected_and_nothing_is_recorded(hub, online, cache):
    catalog = standard_catalog(hub)
    model_bin = hashlib.sha256(speech_files("v1")["model.bin"]).hexdigest()
    hub.corrupt(model_bin)  # the CDN serves other bytes than the LFS metadata says

    report = run(catalog, cache, hub)

    speech = by_id(report)["test-speech"]
    assert speech.status == "failed" and "sha256" in speech.note and "model.bin" in speech.note
    assert not report.ok
    assert by_id(report)["test-image"].status == "downloaded"  # the others still install
    assert "test-speech" not in Manifest.load(cache).model_ids()
    assert not registry.presence(catalog["test-speech"], cache).present
    assert not (cache / "models--acme--tiny-speech" / "blobs" / model_bin).exists()
    assert not any((cache / DOWNLOADS_SUBDIR).rglob(f"{model_bin}.part"))  # bad bytes are not resumed

    hub.corrupted.clear()
    assert run(catalog, cache, hub).ok


def test_a_published_digest_that_disagrees_with_the_hub_refuses_before_downloading(hub, online, cache):
    catalog = standard_catalog(hub)
    entry = catalog["test-speech"]
    src = entry.sources["model"]
    pinned = HubFiles(src.repo_id, src.revision, src.allow_patterns, sha256=(("model.bin", "0" * 64),))
    catalog["test-speech"] = type(entry)(**{**entry.__dict__, "sources": {"model": pinned}})

    report = run({"test-speech": catalog["test-speech"]}, cache, hub)

    speech = by_id(report)["test-speech"]
    assert speech.status == "failed" and "published digest" in speech.note
    assert hub.content_requests() == []


def test_archive_with_a_wrong_sha256_is_not_unpacked(hub, online, cache):
    catalog = standard_catalog(hub, faces_sha256="f" * 64)
    report = run({"test-faces": catalog["test-faces"]}, cache, hub)
    faces = by_id(report)["test-faces"]
    assert faces.status == "failed" and "sha256" in faces.note
    assert not (cache / "insightface").exists()


def test_not_enough_disk_is_refused_before_any_download(hub, online, cache):
    catalog = standard_catalog(hub)
    with pytest.raises(InsufficientDiskError) as info:
        run(catalog, cache, hub, disk_free=lambda path: 100_000, margin_bytes=0)
    message = str(info.value)
    assert "not enough free disk" in message and "ENFOADS_MODELS_DIR" in message and "--only" in message
    assert info.value.needed > BIG and info.value.free == 100_000
    assert hub.content_requests() == []
    assert not (cache / MANIFEST_FILE).exists()

    # Once everything is there, a full disk does not matter: nothing remains to download.
    assert run(catalog, cache, hub).ok
    assert run(catalog, cache, hub, disk_free=lambda path: 0).ok


def test_dry_run_sizes_the_download_and_changes_nothing(hub, online, cache):
    report = run(standard_catalog(hub), cache, hub, dry_run=True, disk_free=lambda path: 10**12)
    assert report.dry_run and report.fits
    assert BIG < report.needed_bytes < BIG + 400_000  # the zip counts twice (archive + unpacked)
    assert {m.status for m in report.models} == {"download"}
    assert hub.content_requests() == []
    assert not (cache / MANIFEST_FILE).exists()
    assert "dry run" in report.summary() and "fits" in report.summary()


def test_rollback_to_an_earlier_revision(hub, online, cache):
    catalog = standard_catalog(hub)
    assert run(catalog, cache, hub).ok
    first = hub.repos[SPEECH_REPO].refs["main"]
    second = hub.add_commit(SPEECH_REPO, speech_files("v2"))  # "main" moves on upstream

    # A branch is locked to what it resolved to when installed: no surprise upgrade, no network.
    hub.requests.clear()
    assert by_id(run(catalog, cache, hub))["test-speech"].status == "present"
    assert hub.requests == []

    # Install the new revision explicitly: it becomes active and pinned.
    report = run(catalog, cache, hub, revisions={"test-speech": second})
    assert by_id(report)["test-speech"].status == "downloaded"
    speech = catalog["test-speech"]
    assert registry.local_paths(speech, cache)["model"].name == second
    assert Manifest.load(cache).is_pinned("test-speech")
    hub.requests.clear()
    assert by_id(run(catalog, cache, hub))["test-speech"].status == "present"  # the pin holds
    assert hub.requests == []

    # Roll back, offline and instantly, to the first version; then back to the catalogue's choice.
    message = use_version(cache, "test-speech", first[:8], catalog=catalog)
    assert first[:8] in message
    assert registry.local_paths(speech, cache)["model"].name == first
    assert json.loads((registry.local_paths(speech, cache)["model"] / "config.json").read_text()) == {"variant": "v1"}
    use_version(cache, "test-speech", "catalog", catalog=catalog)
    manifest = Manifest.load(cache)
    assert not manifest.is_pinned("test-speech") and manifest.active_commit("test-speech", "model") == first
    assert len(manifest.versions("test-speech")) == 2

    with pytest.raises(PreloadError, match="no installed version"):
        use_version(cache, "test-speech", "deadbeef", catalog=catalog)


def test_revision_keys_must_name_a_selected_model_or_component(tmp_path):
    entry = CATALOG["sdxl-lightning-4step"]  # three hub sources: base, unet, vae
    with pytest.raises(PreloadError, match=r"sdxl-lightning-4step\.base"):
        preload([entry], models_dir=tmp_path, revisions={"sdxl-lightning-4step": "abc"}, dry_run=True, out=None)
    with pytest.raises(PreloadError, match="none of the selected"):
        preload([entry], models_dir=tmp_path, revisions={"nope": "abc"}, dry_run=True, out=None)


def test_offline_dry_run_of_the_t4_profile_uses_catalogue_estimates(tmp_path):
    # conftest keeps HF_HUB_OFFLINE=1: the hub is not asked, sizes come from the catalogue.
    report = preload(profile="t4", models_dir=tmp_path, dry_run=True, out=None, disk_free=lambda p: 10**12)
    ids = [m.entry.id for m in report.models]
    assert ids[:8] == ["sdxl-lightning-4step", "buffalo_l", "inswapper_128", "faster-whisper-large-v3-turbo", "espeak-ng",
                       "realesrgan-x4plus", "gfpgan-v1.4", "musetalk-1.5"]
    assert all(i.startswith("piper:") for i in ids[8:])  # the default Piper voices come with the tts role
    hub_models = [m for m in report.models if m.entry.sources]
    assert all(m.status == "download" and "estimate" in m.note for m in hub_models)
    pack = CATALOG["buffalo_l"].sources["pack"].bytes  # published size; on disk twice while unpacked
    expected = sum(m.entry.download_bytes for m in hub_models if m.entry.id != "buffalo_l") + 2 * pack
    assert report.needed_bytes == expected


def test_preload_refuses_to_download_with_hf_hub_offline(tmp_path):
    entry = CATALOG["faster-whisper-small"]
    with pytest.raises(PreloadError, match="HF_HUB_OFFLINE=1 is set"):
        preload([entry], models_dir=tmp_path, out=None)


def test_unpack_flattens_a_single_top_folder_and_refuses_unsafe_paths(tmp_path):
    import io
    import zipfile

    def make(members):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, data in members.items():
                zf.writestr(name, data)
        path = tmp_path / f"a{len(list(tmp_path.iterdir()))}.zip"
        path.write_bytes(buf.getvalue())
        return path

    dest = tmp_path / "insightface" / "models" / "antelopev2"
    files = unpack_archive(make({"antelopev2/a.onnx": b"1", "antelopev2/b.onnx": b"22"}), dest, "x.zip")
    assert sorted(files) == ["a.onnx", "b.onnx"] and (dest / "b.onnx").read_bytes() == b"22"
    with pytest.raises(PreloadError, match="unsafe path"):
        unpack_archive(make({"../evil.onnx": b"x"}), tmp_path / "other", "evil.zip")
    assert not (tmp_path / "evil.onnx").exists()


def test_cli_preload_tiny_profile_builds_the_tiny_kit(models_dir, capsys):
    assert cli_main(["preload", "--profile", "tiny", "--models-dir", str(models_dir), "--no-progress"]) in (0, 1)
    out = capsys.readouterr().out
    for name in ("tiny-sdxl-lightning", "tiny-buffalo_l", "tiny-whisper"):
        assert name in out
    assert "tiny kit" in out
    from enfoads.models.preload import select_models
    from enfoads.models.tiny import is_built, tiny_path

    recipes = {e.tiny for e in select_models("tiny") if e.tiny}
    assert recipes >= {"tiny-sdxl-lightning", "tiny-buffalo_l", "tiny-whisper"}
    assert all(is_built(tiny_path(models_dir, n), n) for n in recipes)


def test_cli_models_lists_verifies_and_switches(hub, online, cache, capsys):
    catalog = standard_catalog(hub)
    assert run(catalog, cache, hub).ok
    capsys.readouterr()

    assert cli_main(["models", "--models-dir", str(cache), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "test-image" in out and "verified" in out and "* active" in out

    # Damage a file (same size, other bytes): --verify notices.
    path = registry.local_paths(catalog["test-speech"], cache)["model"] / "model.bin"
    real = path.resolve()
    real.write_bytes(b"\0" * real.stat().st_size)
    assert cli_main(["models", "--models-dir", str(cache), "--verify"]) == 1
    assert "BAD" in capsys.readouterr().out

    assert cli_main(["models", "--models-dir", str(cache), "--use", "test-speech=nope"]) == 2
    assert "no installed version" in capsys.readouterr().err


def test_piper_voices_land_where_the_tts_engine_looks(hub, online, cache):
    voices = pytest.importorskip("enfoads.models.voices")
    tts = pytest.importorskip("enfoads.services.tts")
    from enfoads.models.preload import piper_entries

    voice = voices.get("piper:es_MX-claude-high")
    onnx, config = voice.piper_files
    commit = hub.add_commit(
        voices.PIPER_REPO,
        {onnx: b"\x08" * 4096, config: b'{"audio": {"sample_rate": 22050}}\n', "es/es_MX/ald/medium/x.onnx": b"y" * 4096},
        branch=voices.PIPER_REVISION,  # a tag, like the real v1.0.0
    )
    [entry] = piper_entries([voice.id])
    assert entry.sources["voice"].allow_patterns == (onnx, config)

    report = run({entry.id: entry}, cache, hub)

    assert report.ok, report.table()
    snapshot = cache / "models--rhasspy--piper-voices" / "snapshots" / commit
    assert tts.find_piper_voice(cache, voice) == (snapshot / onnx, snapshot / config)
    assert not (snapshot / "es/es_MX/ald/medium/x.onnx").exists()
    assert (cache / "models--rhasspy--piper-voices" / "refs" / voices.PIPER_REVISION).read_text() == commit
    hub.requests.clear()
    assert by_id(run({entry.id: entry}, cache, hub))[entry.id].status == "present" and hub.requests == []
