"""Parity with a real install, for the t4, gpu and cpu profiles, offline.

For each profile: preload against replicas of the real repositories
(``enfoads.testing.replicas``: the real file names, paths and variants at
the catalogue's pinned revisions, tiny random weights of the real
architectures) into a fresh Hugging Face cache (blobs plus snapshot
symlinks), then ``enfoads serve --profile P`` on this CPU machine, and
every feature over HTTP. The same selection code, loaders and services as
production: the only difference is in the catalogue handed to preload,
where a replica cannot match the real thing (the release archive's URL and
the published sha256 digests of the real files).

What a CPU forces instead of CUDA, for t4 and gpu (a simulated GPU budget,
``ENFOADS_GPU_BUDGET_GB``): torch in float32 (fp16 on CUDA), CTranslate2 in
int8 (float16), ONNX Runtime's CPU provider (CUDA), and the budget is
simulated (no device-wide free-memory probe).
"""
from __future__ import annotations

import base64
import io
import shutil
import subprocess
import time

import numpy as np
import pytest
import requests
from PIL import Image

from enfoads.models.preload import select_models
from enfoads.testing.hub import FakeHub
from enfoads.testing.replicas import publish_replicas, replica_catalog
from enfoads.models.tiny.faces import face_test_pattern
from server_fixture import start_server

pytestmark = pytest.mark.slow  # real processes; `make test-quick` leaves them out

PROFILES = ("t4", "gpu", "cpu")
# On t4/gpu, preload with every optional download: all Lightning step counts and the quality UNet.
EXTRAS = {"t4": ("quality", "lightning-steps"), "gpu": ("quality", "lightning-steps"), "cpu": ()}
T4_GPU_BUDGET_GB = "12.5"  # 15 GB minus the t4 profile's reserve


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    hub = FakeHub()
    replicas = publish_replicas(hub, cache_dir=tmp_path_factory.getbasetemp() / "replica-cache")
    hub.start()
    yield hub, replicas
    hub.stop()


@pytest.fixture(scope="module", params=PROFILES)
def installed(request, hub, tmp_path_factory):
    """One profile preloaded from the replica hub into a fresh cache, served by `enfoads serve`."""
    from huggingface_hub import constants

    from enfoads.models.preload import preload

    fake, replicas = hub
    profile = request.param
    cache = tmp_path_factory.mktemp(f"hf-cache-{profile}")
    catalog = replica_catalog(replicas)
    entries = select_models(profile, catalog=catalog, extras=EXTRAS[profile])
    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = False  # conftest makes the run offline; preload talks to the fake hub
    try:
        report = preload(entries, models_dir=cache, endpoint=fake.endpoint, progress=False, out=None)
    finally:
        constants.HF_HUB_OFFLINE = saved
    assert report.ok, report.table()
    env = {"ENFOADS_PROFILE": profile}
    if profile in ("t4", "gpu"):
        env["ENFOADS_GPU_BUDGET_GB"] = T4_GPU_BUDGET_GB
    server = start_server(cache, tmp_path_factory.mktemp(f"data-{profile}") / "data", extra_env=env)
    try:
        server.wait_ready()
        yield profile, cache, report, fake, server
    finally:
        server.stop()


def data_uri_size(uri: str) -> tuple[int, int]:
    header, data = uri.split(",", 1)
    assert header.startswith("data:image/")
    return Image.open(io.BytesIO(base64.b64decode(data))).size


def png_b64(bgr: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(bgr[:, :, ::-1].copy()).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def wait_job(server, job_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = server.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("completed", "failed"):
            return job
        time.sleep(0.2)
    raise TimeoutError(job_id)


def test_preload_fetched_only_what_the_catalogue_selects(installed):
    profile, cache, report, fake, _ = installed
    fetched = {r.path for r in fake.requests if "/resolve/" in r.path and r.method == "GET"}
    for skipped in ("flax_model.msgpack", "openvino_model", "model.onnx", "sd_xl_base_1.0.safetensors", "README.md"):
        assert not any(skipped in p for p in fetched), skipped
    # The real cache layout: snapshot files are relative symlinks into blobs/.
    links = [p for p in cache.glob("models--*/snapshots/*/**/*") if p.is_symlink()]
    assert links and all(not str(p.readlink()).startswith("/") and "blobs" in str(p.readlink()) for p in links)


def test_every_model_of_the_profile_is_present(installed):
    profile, _, _, _, server = installed
    body = server.get("/models").json()
    roles = {r["role"]: r for r in body["models"]}
    missing = {role: r for role, r in roles.items() if not r.get("present")}
    assert not missing, missing
    status = server.get("/gpu-status").json()
    assert status["profile"] == profile


def image_cases(profile: str):
    if profile == "cpu":  # SD-Turbo: 1-4 steps, guidance 0, 512 px native
        return [({"steps": s, "guidance": 0}, "distilled") for s in (1, 2, 4)] + [({"steps": 30, "guidance": 7}, "distilled")]
    lightning = [({"steps": s, "guidance": 0}, "lightning") for s in (1, 2, 4, 8)]
    return lightning + [({"steps": 30, "guidance": 7}, "quality")]


def test_images_in_every_mode(installed):
    profile, _, _, _, server = installed
    for params, mode in image_cases(profile):
        body = {"prompt": "a red sneaker on a beach", "width": 256, "height": 256, **params}
        r = server.post(f"/{server.prefix}/generate-image", json=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 200, (params, r.text)
        out = r.json()
        assert data_uri_size(out["image"]) == (256, 256)
        job = server.get(f"/api/jobs/{out['job_id']}").json()
        result = job.get("result") or {}
        assert result.get("mode") == mode, (params, result)
        if mode == "lightning":
            assert result.get("steps") == params["steps"] and not any("nearest" in n for n in result.get("notes", []))


def test_face_swap(installed):
    _, _, _, _, server = installed
    source = png_b64(face_test_pattern(320, 240))
    target = png_b64(face_test_pattern(640, 480, squares=((100, 100, 96), (400, 200, 96))))
    r = server.post(f"/{server.prefix}/face-swap", json={"source_image": source, "target_image": target})
    assert r.status_code == 200, r.text
    assert data_uri_size(r.json()["image"]) == (640, 480)


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory):
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.fail("espeak-ng is needed (apt-get install espeak-ng; .ci/run installs it)")
    wav = tmp_path_factory.mktemp("speech") / "hola.wav"
    subprocess.run([espeak, "-v", "es", "-w", str(wav), "hola, esto es una prueba de transcripción"], check=True)
    return wav.read_bytes()


@pytest.mark.parametrize("fmt", ["json", "text", "srt", "vtt", "verbose_json"])
def test_transcription_in_every_format(installed, speech_wav, fmt):
    _, _, _, _, server = installed
    r = server.post("/v1/audio/transcriptions", files={"file": ("hola.wav", speech_wav, "audio/wav")},
                    data={"model": "whisper-1", "response_format": fmt, "temperature": "0"})
    assert r.status_code == 200, r.text
    if fmt in ("json", "verbose_json"):
        body = r.json()
        assert "text" in body
        if fmt == "verbose_json":
            assert body["duration"] > 0.5
    elif fmt == "vtt":
        assert r.text.startswith("WEBVTT")
    elif fmt == "srt":
        assert "-->" in r.text or r.text.strip() == ""


def test_video_render(installed):
    _, _, _, _, server = installed
    r = server.post(f"/{server.prefix}/render-video",
                    json={"script": "Hola. Esto es un anuncio corto.", "avatar_id": "default",
                          "generate_subtitles": True, "resolution": 240})
    assert r.status_code == 202, r.text
    job = wait_job(server, r.json()["job_id"])
    assert job["status"] == "completed", job
    video = requests.get(job["url"], timeout=30)
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"
