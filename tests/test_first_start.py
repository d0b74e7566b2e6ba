"""A first start that serves: `enfoads serve --profile cpu` on an empty cache downloads its models itself.

Against the local fake hub with replicas of the real repositories
(``enfoads.testing.replicas``), through the same ``enfoads.models.preload`` path as
``enfoads preload``. The one test-only input is ``ENFOADS_CATALOG_OVERRIDES``:
the replica release zip's URL and the replicas' sha256 digests, which cannot
be the real ones (``enfoads.models.installer.catalog_overrides`` writes it).

- while SD-Turbo's UNet is held half-way (``FakeHub.stall``), an image
  request answers 503 ``model_downloading`` with the progress, the event bus
  carries ``model.download`` events with bytes, and the log shows progress;
- once the download ends, the first image is served (200);
- with ``HF_HUB_OFFLINE=1`` or ``ENFOADS_AUTO_DOWNLOAD=off`` nothing is asked
  of the hub, and the log and the 503 name ``enfoads preload --profile cpu``.
"""
from __future__ import annotations

import fnmatch
import json
import time

import pytest

from enfoads.models.catalog import CATALOG, UrlArchive
from enfoads.models.installer import apply_catalog_overrides, catalog_overrides
from enfoads.models.preload import select_models
from enfoads.testing.hub import FakeHub
from enfoads.testing.replicas import publish_replicas, replica_catalog
from server_fixture import start_server

pytestmark = pytest.mark.slow  # real processes; `make test-quick` leaves them out

PROFILE = "cpu"
IMAGE = "sd-turbo"
COMMAND = f"enfoads preload --profile {PROFILE}"
IMAGE_REQUEST = {"prompt": "a red chair", "width": 256, "height": 256, "steps": 1, "cache": False}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    hub = FakeHub()
    entries = [e for e in select_models(PROFILE) if e.sources]
    replicas = publish_replicas(hub, entries=entries, cache_dir=tmp_path_factory.getbasetemp() / "replica-cache")
    hub.start()
    overrides = tmp_path_factory.mktemp("overrides") / "catalog-overrides.json"
    overrides.write_text(json.dumps(catalog_overrides(CATALOG, replica_catalog(replicas))))
    yield hub, replicas, overrides
    hub.stop()


def online_env(hub: FakeHub, tmp_path, **extra) -> dict:
    return {
        "ENFOADS_PROFILE": PROFILE,
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_ENDPOINT": hub.endpoint,
        "HF_HOME": str(tmp_path / "hf-home"),
        # A stalled transfer is held until the test releases it, not retried after the default 10 s.
        "HF_HUB_DOWNLOAD_TIMEOUT": "60",
        **extra,
    }


def biggest_lfs_file(replicas, entry) -> tuple[str, int]:
    """(sha256, size) of the largest LFS file the catalogue selects from ``entry``'s repository."""
    src = entry.sources["base"]
    commit = replicas.commit(src.repo_id, src.revision)
    chosen = [p for p in commit.lfs if any(fnmatch.fnmatch(p, pat) for pat in src.allow_patterns)]
    path = max(chosen, key=lambda p: len(commit.files[p]))
    return commit.sha256(path), len(commit.files[path])


def download_events(server, model_id: str) -> list[dict]:
    events = server.get("/api/events?since=0&timeout=0").json()["events"]
    return [e for e in events if e["type"] == "model.download" and e["model_id"] == model_id]


@pytest.fixture(scope="module")
def first_start(hub, tmp_path_factory):
    """`enfoads serve --profile cpu` on an empty cache, SD-Turbo's UNet held half-way."""
    fake, replicas, overrides = hub
    sha, size = biggest_lfs_file(replicas, CATALOG[IMAGE])
    fake.stall(sha, size // 2)
    root = tmp_path_factory.mktemp("first-start")
    server = start_server(root / "models", root / "data",
                          extra_env=online_env(fake, root, ENFOADS_CATALOG_OVERRIDES=str(overrides)))
    try:
        server.wait_ready()
        assert fake.stalled.wait(60), server.log.read_text()[-3000:]
        yield server, fake, size
    finally:
        fake._release.set()  # let the stalled transfer go (its client then resumes the rest)
        server.stop()


def test_a_request_during_the_download_answers_503_with_progress(first_start):
    server, _, _ = first_start
    r = server.post("/generate-image", json=IMAGE_REQUEST)
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["code"] == "model_downloading", body
    assert f"model {IMAGE!r} is downloading: " in body["message"] and "%" in body["message"], body
    # The bus: typed model.download events with the bytes on disk (the files before the held one;
    # huggingface_hub writes a transfer in 10 MB chunks, so the held file itself shows at its end).
    events = download_events(server, IMAGE)
    assert events and events[-1]["state"] == "downloading", events
    deadline = time.monotonic() + 10
    while not (events := download_events(server, IMAGE)) or events[-1]["bytes_done"] == 0:
        assert time.monotonic() < deadline, events
        time.sleep(0.2)
    last = events[-1]
    assert 0 < last["bytes_done"] < last["bytes_total"] and 0 < last["percent"] < 100, last
    assert any(e["state"] == "queued" for e in download_events(server, "buffalo_l"))
    log = server.log.read_text()
    assert "model(s) of the cpu profile are missing" in log and f"downloading {IMAGE} (image" in log
    deadline = time.monotonic() + 10  # the log's progress line comes every 5 s
    while f"downloading {IMAGE}: " not in (log := server.log.read_text()):
        assert time.monotonic() < deadline, log[-3000:]
        time.sleep(0.2)
    line = next(x for x in log.splitlines() if f"downloading {IMAGE}: " in x)
    assert "%" in line and " of " in line, line


def test_after_the_download_the_first_image_is_served(first_start):
    import socketio

    server, fake, _ = first_start
    seen = []
    client = socketio.Client()
    client.on("model_download", seen.append, namespace="/" + server.prefix)
    client.connect(server.frontend_base, namespaces=["/" + server.prefix], wait_timeout=10)
    fake._release.set()
    deadline = time.monotonic() + 120
    while not any(e["state"] == "installed" for e in download_events(server, IMAGE)):
        assert not any(e["state"] == "failed" for e in download_events(server, IMAGE)), download_events(server, IMAGE)
        assert time.monotonic() < deadline, server.log.read_text()[-3000:]
        time.sleep(0.2)
    # Socket.IO clients were told too, as model_download events (no job owns a download).
    deadline = time.monotonic() + 10
    while not any(e["model_id"] == IMAGE and e["state"] == "installed" for e in seen):
        assert time.monotonic() < deadline, seen[-5:]
        time.sleep(0.1)
    client.disconnect()
    r = server.post("/generate-image", json=IMAGE_REQUEST)
    assert r.status_code == 200, r.text
    assert r.json()["image"].startswith("data:image/png;base64,")
    assert f"{IMAGE} is installed" in server.log.read_text()
    models = {m["id"]: m for m in server.get("/models").json()["models"]}
    assert models[IMAGE]["present"], models[IMAGE]


def test_gpu_status_reports_downloads(first_start):
    """Needs routes_system's one line: ``figures["downloads"] = eng.installer.status()``."""
    server, _, _ = first_start
    downloads = server.get("/gpu-status").json()["downloads"]
    assert set(downloads) >= {IMAGE, "buffalo_l", "inswapper_128", "faster-whisper-small"}, downloads
    for state in downloads.values():
        assert set(state) >= {"state", "bytes_done", "bytes_total", "percent"}, state


@pytest.mark.parametrize("switch", ["HF_HUB_OFFLINE=1", "ENFOADS_AUTO_DOWNLOAD=off"])
def test_nothing_is_downloaded_and_the_503_names_the_command(hub, tmp_path, switch):
    shared, _, overrides = hub
    name, value = switch.split("=")
    # A hub of its own, release URLs included: the first-start server of this module may still be fetching
    # from the shared one in the background, and only this server's calls must count.
    fake = FakeHub().start()
    own = tmp_path / "catalog-overrides.json"
    own.write_text(overrides.read_text().replace(shared.cdn_url, fake.cdn_url))
    before = len(fake.requests)
    server = start_server(tmp_path / "models", tmp_path / "data",
                          extra_env=online_env(fake, tmp_path, ENFOADS_CATALOG_OVERRIDES=str(own),
                                               **{name: value}))
    try:
        server.wait_ready()
        r = server.post("/generate-image", json=IMAGE_REQUEST)
        assert r.status_code == 503, r.text
        body = r.json()
        assert body["code"] == "model_not_installed" and COMMAND in body["message"], body
        assert switch.split("=")[0] in body["message"], body
        log = server.log.read_text()
        assert COMMAND in log and "nothing is downloaded" in log, log[-3000:]
        states = {e["state"] for e in download_events(server, IMAGE)}
        assert states == {"offline" if name == "HF_HUB_OFFLINE" else "off"}, states
    finally:
        server.stop()
        fake.stop()
    assert len(fake.requests) == before  # not a single call to the hub


def test_overrides_replace_only_what_a_replica_cannot_match(hub):
    _, replicas, overrides = hub
    data = json.loads(overrides.read_text())
    # The release assets' URL, sha256 and size (the zip, the .pth files); the hub files' published digests: nothing else.
    released = {m for m, e in CATALOG.items() if any(isinstance(s, UrlArchive) for s in e.sources.values())}
    assert "buffalo_l" in data and released >= {"buffalo_l", "realesrgan-x4plus", "gfpgan-v1.4"}
    assert all(set(data[m][c]) == {"url", "sha256", "bytes"} for m in released & set(data) for c in data[m])
    assert all(set(comp) <= {"sha256"} for model, comps in data.items() if model not in released
               for comp in comps.values())
    entries = [CATALOG["buffalo_l"], CATALOG[IMAGE]]
    assert apply_catalog_overrides(entries, data) == [replica_catalog(replicas)[e.id] for e in entries]
    for field, value in (("revision", "main"), ("repo_id", "someone/else"), ("unpack_to", "elsewhere")):
        model, comp = ("buffalo_l", "pack") if field == "unpack_to" else (IMAGE, "base")
        with pytest.raises(ValueError, match="may override only"):
            apply_catalog_overrides(entries, {model: {comp: {field: value}}})
