"""The HTTP API on a real `enfoads serve` process: the frontend's contract, jobs, OpenAI routes, security."""
from __future__ import annotations

import base64
import io
import shutil
import subprocess
import threading
import time

import numpy as np
import pytest
import requests
from PIL import Image

from enfoads.models.tiny import build_tiny_kit
from enfoads.models.tiny.faces import face_test_pattern
from server_fixture import start_server

ASPECT_SIZES = {"1:1": (1024, 1024), "16:9": (1344, 768), "9:16": (768, 1344)}
FRONTEND_HEADERS = {"Content-Type": "application/json", "ngrok-skip-browser-warning": "true"}


@pytest.fixture(scope="module")
def server(models_dir, tmp_path_factory):
    build_tiny_kit(models_dir)  # built once for the session; the server reuses it
    srv = start_server(models_dir, tmp_path_factory.mktemp("web") / "data")
    srv.wait_ready()
    yield srv
    srv.stop()


def png_b64(bgr: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(bgr[:, :, ::-1].copy()).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def decode_data_uri(uri: str) -> Image.Image:
    header, data = uri.split(",", 1)
    assert header.startswith("data:image/") and header.endswith(";base64")
    return Image.open(io.BytesIO(base64.b64decode(data)))


def frontend_login(server) -> dict:
    """What the frontend does: POST {base}/auth/login with only Content-Type, then use the token."""
    r = requests.post(server.frontend_base + "/auth/login", json={"username": "demo_user"},
                      headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success" and body["type"] == "Bearer" and body["token"]
    return {**FRONTEND_HEADERS, "Authorization": f"Bearer {body['token']}"}


# ----------------------------------------------------------------- the server


def test_first_answer_within_two_seconds(server):
    assert server.first_answer_s < 2.0


def test_banner_prints_the_url_to_paste(server):
    text = server.log.read_text()
    assert f"http://127.0.0.1:{server.base.rsplit(':', 1)[1]}/{server.prefix}" in text
    assert server.key not in text  # a configured key is never printed


def test_health_is_public_and_says_online(server):
    r = requests.get(server.base + "/", timeout=5)
    assert r.status_code == 200 and r.json()["status"] == "online"
    # The frontend's settings page tests the pasted URL the same way.
    assert requests.get(server.frontend_base + "/", timeout=5).json()["status"] == "online"


# ------------------------------------------------------- the frontend contract


def test_frontend_generate_image_speed_mode(server):
    headers = frontend_login(server)
    body = {"prompt": "a red sneaker on a beach", "aspect_ratio": "16:9", "steps": 4, "guidance": 2,
            "negative_prompt": "blurry", "style": "Cinematic"}
    r = requests.post(server.frontend_base + "/generate-image", json=body, headers=headers, timeout=120)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"] == "success" and out["cached"] is False
    assert decode_data_uri(out["image"]).size == ASPECT_SIZES["16:9"]
    again = requests.post(server.frontend_base + "/generate-image", json={**body, "seed": out["seed"]},
                          headers=headers, timeout=120).json()
    assert again["cached"] is True and again["image"] == out["image"]


def test_frontend_generate_image_quality_mode_and_guidance_scale(server):
    headers = frontend_login(server)
    for extra in ({"steps": 30, "guidance": 7}, {"steps": 10, "guidance_scale": 1}):
        body = {"prompt": "a cup of coffee", "aspect_ratio": "1:1", **extra, "width": 256, "height": 256}
        body.pop("aspect_ratio")
        r = requests.post(server.frontend_base + "/generate-image", json=body, headers=headers, timeout=120)
        assert r.status_code == 200, r.text
        assert decode_data_uri(r.json()["image"]).size == (256, 256)


def test_frontend_generate_image_rejects_bad_fields_by_name(server):
    headers = frontend_login(server)
    for body, field in (({"prompt": ""}, "prompt"), ({"prompt": "x", "aspect_ratio": "5:7"}, "aspect_ratio"),
                        ({"prompt": "x", "style": "Nope"}, "style"), ({"prompt": "x", "steps": -3}, "steps")):
        r = requests.post(server.frontend_base + "/generate-image", json=body, headers=headers, timeout=30)
        assert r.status_code == 400, (body, r.text)
        err = r.json()
        assert err["status"] == "error" and field in err["message"]


def test_frontend_face_swap(server):
    headers = frontend_login(server)
    source = png_b64(face_test_pattern(320, 240))
    target = "data:image/png;base64," + png_b64(face_test_pattern(640, 480, squares=((100, 100, 96), (400, 200, 96))))
    r = requests.post(server.frontend_base + "/face-swap", json={"source_image": source, "target_image": target},
                      headers=headers, timeout=120)
    assert r.status_code == 200, r.text
    assert decode_data_uri(r.json()["image"]).size == (640, 480)
    blank = png_b64(np.full((240, 320, 3), 128, np.uint8))
    r = requests.post(server.frontend_base + "/face-swap", json={"source_image": blank, "target_image": target},
                      headers=headers, timeout=120)
    assert 400 <= r.status_code < 500 and "source_image" in r.json()["message"]


def test_frontend_magic_prompt_styles_and_library(server):
    headers = frontend_login(server)
    r = requests.post(server.frontend_base + "/magic-prompt", json={"prompt": "a cat"}, headers=headers, timeout=10)
    body = r.json()
    assert r.status_code == 200 and body["original"] == "a cat" and body["prompt"] and body["method"]
    styles = requests.get(server.frontend_base + "/styles", headers=headers, timeout=10).json()["styles"]
    assert {"Fooocus V2", "Cinematic", "SAI Anime", "MRE Cinematic Dynamic", "None"} <= set(styles)
    item = {"id": "a1", "type": "image", "content": "data:image/png;base64,AAAA", "prompt": "p",
            "createdAt": "2026-01-01T00:00:00Z"}
    assert requests.post(server.frontend_base + "/api/assets", json=item, headers=headers, timeout=10).status_code == 201
    listed = requests.get(server.frontend_base + "/api/assets", headers=headers, timeout=10).json()
    assert any(a["id"] == "a1" and a["content"] == item["content"] for a in listed["assets"])
    assert listed["assets_count"] >= 1


def test_frontend_gpu_status_fields(server):
    headers = frontend_login(server)
    body = requests.get(server.frontend_base + "/gpu-status", headers=headers, timeout=10).json()
    for field in ("status", "device", "vram_total_gb", "vram_allocated_gb", "vram_reserved_gb", "vram_free_gb",
                  "utilization_percent", "models_loaded", "cuda_version"):
        assert field in body
    assert body["status"] == "online" and body["device"] == "cpu"  # no GPU here: online on the CPU
    assert "models" in body["residency"]


@pytest.mark.parametrize("path,body", [
    ("/live-portrait", {"image": "x", "audio": "y"}),
    ("/enhance-media", {"media_url": "x", "type": "image"}),
])
def test_later_capabilities_answer_501_honestly(server, path, body):
    r = requests.post(server.frontend_base + path, json=body, headers=frontend_login(server), timeout=10)
    assert r.status_code == 501
    assert r.json()["status"] == "error" and "not available in this version" in r.json()["message"]


def test_frontend_voices_and_avatars(server):
    headers = frontend_login(server)
    voices = requests.get(server.frontend_base + "/voices", headers=headers, timeout=10).json()["voices"]
    assert voices and all({"id", "name", "language", "gender", "country"} <= set(v) for v in voices)
    avatars = requests.get(server.frontend_base + "/avatars", headers=headers, timeout=10).json()["avatars"]
    default = next(a for a in avatars if a["id"] == "default")
    picture = requests.get(default["img"], timeout=10)  # like an <img> tag: no headers
    assert picture.status_code == 200 and picture.headers["Content-Type"] == "image/png"
    assert requests.get(default["img"].replace("sig=", "sig=f"), timeout=10).status_code == 403
    upload = "data:image/png;base64," + png_b64(face_test_pattern(256, 256))
    r = requests.post(server.frontend_base + "/avatars", json={"image": upload, "name": "Ana"}, headers=headers, timeout=10)
    assert r.status_code == 201, r.text
    assert r.json()["avatar"]["name"] == "Ana"
    bad = requests.post(server.frontend_base + "/avatars", json={"image": "data:image/png;base64,AAAA"},
                        headers=headers, timeout=10)
    assert 400 <= bad.status_code < 500


def test_frontend_render_video_like_the_commercial_page(server):
    """Only script and avatar_id, as that page sends; the socket opens after the job id is known."""
    socketio = pytest.importorskip("socketio")
    headers = frontend_login(server)
    r = requests.post(server.frontend_base + "/render-video",
                      json={"script": "Hola. Esto es un anuncio corto.", "avatar_id": "default",
                            "generate_subtitles": True, "resolution": 240}, headers=headers, timeout=30)
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    done, updates = threading.Event(), []
    client = socketio.Client()

    @client.on("job_update", namespace="/" + server.prefix)
    def on_update(data):
        if data["job_id"] == job_id:
            updates.append(data)
            if data["status"] in ("completed", "failed"):
                done.set()

    client.connect(server.frontend_base, namespaces=["/" + server.prefix], wait_timeout=10)
    try:
        assert done.wait(120), updates
    finally:
        client.disconnect()
    final = updates[-1]
    assert final["status"] == "completed", final
    video = requests.get(final["url"], timeout=30)
    assert video.status_code == 200 and video.headers["Content-Type"] == "video/mp4"
    assert requests.post(server.frontend_base + "/render-video", json={"script": "", "avatar_id": "default"},
                         headers=headers, timeout=10).status_code == 400
    assert requests.post(server.frontend_base + "/render-video", json={"script": "hola", "avatar_id": "../etc"},
                         headers=headers, timeout=10).status_code == 400


def test_frontend_retries_after_401_with_a_new_token(server):
    stale = {**FRONTEND_HEADERS, "Authorization": "Bearer v1.1.invalid"}
    # Without the prefix a stale token is refused; the frontend then logs in again.
    assert requests.get(server.base + "/gpu-status", headers=stale, timeout=10).status_code == 401
    assert requests.get(server.base + "/gpu-status", headers=frontend_login(server), timeout=10).status_code == 200


# ----------------------------------------------------------------- native jobs


def test_job_api_submit_poll_and_cancel(server):
    r = server.post("/api/jobs", json={"kind": "image.generate", "params": {"prompt": "a lamp", "width": 256, "height": 256}})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("queued", "processing") and r.headers["Location"].endswith(job["id"])
    deadline = time.monotonic() + 60
    while job["status"] not in ("completed", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
        job = server.get(f"/api/jobs/{job['id']}").json()
    assert job["status"] == "completed" and job["progress"] == 100 and job["url"]
    media = requests.get(job["url"], timeout=10)  # no key: the signature is the credential
    assert media.status_code == 200 and media.headers["Content-Type"].startswith("image/")
    assert requests.get(job["url"].replace("sig=", "sig=0"), timeout=10).status_code == 403
    listed = server.get("/api/jobs?state=succeeded").json()["jobs"]
    assert any(j["id"] == job["id"] for j in listed)
    assert server.get("/api/jobs?state=bogus").status_code == 400
    assert server.get("/api/jobs/not-a-job").status_code == 404
    events = server.get(f"/api/events?since=0&job_id={job['id']}&timeout=0").json()["events"]
    assert [e["type"] for e in events][0] == "job.created" and events[-1]["type"] == "job.succeeded"


def test_cancel_a_queued_job(server):
    # A long job keeps the single GPU worker busy; the next one is still queued when cancelled.
    long = server.post("/api/jobs", json={"kind": "image.generate",
                                          "params": {"prompt": "slow", "width": 1536, "height": 1536, "steps": 8}}).json()
    queued = server.post("/api/jobs", json={"kind": "image.generate", "params": {"prompt": "later"}}).json()
    cancelled = server.post(f"/api/jobs/{queued['id']}/cancel").json()
    assert cancelled["state"] == "cancelled" and cancelled["status"] == "failed"
    server.post(f"/api/jobs/{long['id']}/cancel")


# ------------------------------------------------------------------- OpenAI


def test_openai_client_images_models_and_transcription(server, tmp_path):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.base + "/v1", api_key=server.key, timeout=120, max_retries=0)
    models = {m.id for m in client.models.list().data}
    assert {"whisper-1", "dall-e-3", "tiny-sdxl-lightning", "tiny-whisper"} <= models
    result = client.images.generate(model="dall-e-3", prompt="a blue bottle", size="256x256", n=2,
                                    response_format="b64_json")
    assert len(result.data) == 2
    assert Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json))).size == (256, 256)
    wav = tmp_path / "hola.wav"
    subprocess.run([shutil.which("espeak-ng"), "-v", "es", "-w", str(wav), "hola, esto es una prueba"], check=True)
    with open(wav, "rb") as fh:
        text = client.audio.transcriptions.create(model="whisper-1", file=fh, response_format="verbose_json")
    assert text.duration > 0.5
    with open(wav, "rb") as fh:
        srt = client.audio.transcriptions.create(model="whisper-1", file=fh, response_format="srt")
    assert "-->" in srt or srt.strip() == ""
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.base + "/v1", api_key="wrong", max_retries=0).models.list()


# ----------------------------------------------------------------- security


def all_operations(server):
    spec = server.get("/openapi.json").json()
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            yield method.upper(), path, op.get("security") == []


def test_auth_matrix_over_every_route(server):
    checked = 0
    for method, path, public in all_operations(server):
        concrete = path.replace("{job_id}", "nojob").replace("{asset_id}", "noasset").replace("{avatar_id}", "none")
        if path == "/api/events":
            concrete += "?timeout=0"
        for label, url, headers in (
            ("none", server.base + concrete, {}),
            ("wrong", server.base + concrete, {"Authorization": "Bearer wrong"}),
            ("wrong-x", server.base + concrete, {"X-API-Key": "wrong"}),
            ("right", server.base + concrete, {"Authorization": f"Bearer {server.key}"}),
            ("right-x", server.base + concrete, {"X-API-Key": server.key}),
            ("prefix", server.frontend_base + concrete, {}),
        ):
            if method == "POST" and path not in ("/auth/login", "/magic-prompt"):
                kwargs = {"data": b"{}", "headers": {**headers, "Content-Type": "text/plain"}}  # cheap: a 415/400
            else:
                kwargs = {"json": {}, "headers": headers} if method == "POST" else {"headers": headers}
            status = requests.request(method, url, timeout=30, **kwargs).status_code
            if public:
                assert status != 401, (label, method, path)
            elif label in ("none", "wrong", "wrong-x"):
                assert status == 401, (label, method, path, status)
            else:
                assert status != 401, (label, method, path, status)
            checked += 1
    assert checked >= 6 * 25


def test_cors_preflight_allowed_and_foreign_origins(server):
    def preflight(origin):
        return requests.options(server.base + "/generate-image", timeout=10, headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,authorization,ngrok-skip-browser-warning"})

    ok = preflight("http://localhost:5173")
    assert ok.headers.get("Access-Control-Allow-Origin") == "http://localhost:5173"
    assert "ngrok-skip-browser-warning" in ok.headers.get("Access-Control-Allow-Headers", "").lower()
    foreign = preflight("https://evil.example")
    assert "Access-Control-Allow-Origin" not in foreign.headers


def test_body_over_the_limit_is_413_and_the_server_keeps_serving(server):
    big = b'{"prompt": "' + b"a" * 60_000_000 + b'"}'
    try:
        r = requests.post(server.base + "/generate-image", data=big, timeout=60,
                          headers=server.headers(**{"Content-Type": "application/json"}))
        assert r.status_code == 413 and r.json()["status"] == "error"
    except requests.ConnectionError:
        pass  # the server may close the socket mid-upload; what matters is that it lives on
    assert requests.get(server.base + "/", timeout=5).status_code == 200


def test_unknown_and_wrong_method_are_json(server):
    r = server.get("/no/such/route")
    assert r.status_code == 404 and r.json()["status"] == "error"
    r = requests.put(server.base + "/gpu-status", headers=server.headers(), timeout=10)
    assert r.status_code == 405 and r.json()["status"] == "error"


# ---------------------------------------------------------------- Socket.IO


def test_late_socketio_subscriber_gets_the_job_state(server):
    socketio = pytest.importorskip("socketio")
    job = server.post("/api/jobs", json={"kind": "image.generate", "params": {"prompt": "late", "width": 256, "height": 256}}).json()
    deadline = time.monotonic() + 60
    while server.get(f"/api/jobs/{job['id']}").json()["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    # Like the frontend: connect to the pasted URL only now, subscribe to nothing.
    received = []
    got = threading.Event()
    client = socketio.Client()

    @client.on("job_update", namespace="/" + server.prefix)
    def on_update(data):
        received.append(data)
        if data["job_id"] == job["id"] and data["status"] == "completed":
            got.set()

    client.connect(server.frontend_base, namespaces=["/" + server.prefix], transports=["websocket"], wait_timeout=10)
    try:
        assert got.wait(10), received
        final = [d for d in received if d["job_id"] == job["id"]][-1]
        assert final["url"].startswith("http") and "sig=" in final["url"]
    finally:
        client.disconnect()


def test_socketio_progress_events_and_refused_strangers(server):
    socketio = pytest.importorskip("socketio")
    stranger = socketio.Client()
    with pytest.raises(socketio.exceptions.ConnectionError):
        stranger.connect(server.base, transports=["polling"], wait_timeout=5)
    client = socketio.Client()
    progress, done = [], threading.Event()

    @client.on("generation_progress")
    def on_progress(data):
        progress.append(data)
        if data["status"] == "completed":
            done.set()

    client.connect(server.base, auth={"key": server.key}, transports=["polling"], wait_timeout=10)
    try:
        job = server.post("/api/jobs", json={"kind": "image.generate",
                                             "params": {"prompt": "steps", "width": 256, "height": 256}}).json()
        client.call("subscribe", {"job_id": job["id"]}, timeout=10)
        assert done.wait(60), progress
        values = [p["progress"] for p in progress if p["job_id"] == job["id"]]
        assert values == sorted(values) and values[-1] == 100
    finally:
        client.disconnect()


def test_light_routes_answer_while_a_long_job_runs(server):
    job = server.post("/api/jobs", json={"kind": "image.generate",
                                         "params": {"prompt": "busy", "width": 1536, "height": 1536, "steps": 8}}).json()
    while server.get(f"/api/jobs/{job['id']}").json()["status"] == "queued":
        time.sleep(0.05)
    worst = 0.0
    for _ in range(20):
        for path in ("/", "/gpu-status", f"/api/jobs/{job['id']}"):
            t = time.perf_counter()
            assert server.get(path).status_code == 200
            worst = max(worst, time.perf_counter() - t)
    still_running = server.get(f"/api/jobs/{job['id']}").json()["status"] == "processing"
    server.post(f"/api/jobs/{job['id']}/cancel")
    assert worst < 0.5
    assert still_running  # the measurement really overlapped the job


def test_frontend_render_multi_scene(server):
    headers = frontend_login(server)
    scenes = [
        {"id": 1, "avatarId": "default", "avatarName": "Ana", "avatarImg": "x", "script": "Primera escena.",
         "generateSubtitles": False},
        {"id": 2, "avatarId": "default", "avatarName": "Ana", "avatarImg": "x", "script": "Segunda escena.",
         "generateSubtitles": True},
    ]
    r = requests.post(server.frontend_base + "/render-multi-scene", json={"scenes": scenes, "resolution": 240},
                      headers=headers, timeout=30)
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    deadline = time.monotonic() + 180
    while (job := server.get(f"/api/jobs/{job_id}").json())["status"] not in ("completed", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert job["status"] == "completed", job
    assert len(job["result"]["scenes"]) == 2
    assert requests.get(job["url"], timeout=30).headers["Content-Type"] == "video/mp4"
    r = requests.post(server.frontend_base + "/render-multi-scene", json={"scenes": [{"script": "x"}] * 50},
                      headers=headers, timeout=10)
    assert r.status_code == 400 and "scenes" in r.json()["message"]


def test_system_routes_models_config_docs(server):
    models = server.get("/models").json()
    roles = {m["role"]: m for m in models["models"]}
    assert roles["image"]["id"] == "tiny-sdxl-lightning" and roles["image"]["present"] is True
    assert all(m["licence"] for m in models["models"])
    config = server.get("/config").json()["config"]
    assert config["profile"] == "tiny" and "api_key" not in config and config["api_key_set"] is True
    assert server.key not in server.get("/config").text
    spec = server.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.") and "/generate-image" in spec["paths"]
    docs = server.get("/docs")
    assert docs.status_code == 200 and "openapi.json" in docs.text
