"""What only a real `enfoads serve` process shows: the first answer, the printed URL, Socket.IO over a
socket, the `openai` client over HTTP, a body cut mid-upload, light routes while the GPU worker is busy.
The rest of the HTTP API is tested through Flask's test client (`test_api.py`)."""
from __future__ import annotations

import base64
import io
import shutil
import subprocess
import threading
import time

import pytest
import requests
from PIL import Image

from enfoads.models.tiny import build_tiny_kit
from server_fixture import start_server

pytestmark = pytest.mark.slow  # real processes; `make test-quick` leaves them out

FRONTEND_HEADERS = {"Content-Type": "application/json", "ngrok-skip-browser-warning": "true"}


@pytest.fixture(scope="module")
def server(models_dir, tmp_path_factory):
    build_tiny_kit(models_dir)  # built once for the session; the server reuses it
    srv = start_server(models_dir, tmp_path_factory.mktemp("web") / "data")
    srv.wait_ready()
    yield srv
    srv.stop()


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


# ------------------------------------------------------- the frontend contract


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


# ----------------------------------------------------------------- native jobs


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


def test_body_over_the_limit_is_413_and_the_server_keeps_serving(server):
    big = b'{"prompt": "' + b"a" * 60_000_000 + b'"}'
    try:
        r = requests.post(server.base + "/generate-image", data=big, timeout=60,
                          headers=server.headers(**{"Content-Type": "application/json"}))
        assert r.status_code == 413 and r.json()["status"] == "error"
    except requests.ConnectionError:
        pass  # the server may close the socket mid-upload; what matters is that it lives on
    assert requests.get(server.base + "/", timeout=5).status_code == 200


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


