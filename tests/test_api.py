"""The HTTP API through Flask's test client (the ``app``, ``client`` and ``api`` fixtures of conftest.py).

The same app ``enfoads serve`` runs, on the tiny profile, with its real
engine, job queue, SQLite file and models; only the socket is missing.
What needs a real server (Socket.IO over a socket, gunicorn, the printed
URL, signals, the ``openai`` client over HTTP) is in ``test_web.py`` and
``test_server.py``.
"""
from __future__ import annotations

import base64
import io
import time

import numpy as np
from PIL import Image

from conftest import API_KEY as KEY, KEY_HEADERS, PREFIX
from enfoads.models.tiny.faces import face_test_pattern

ASPECT_SIZES = {"1:1": (1024, 1024), "16:9": (1344, 768), "9:16": (768, 1344)}
FRONTEND_HEADERS = {"Content-Type": "application/json", "ngrok-skip-browser-warning": "true"}


def png_b64(bgr: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(bgr[:, :, ::-1].copy()).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def decode_data_uri(uri: str) -> Image.Image:
    header, data = uri.split(",", 1)
    assert header.startswith("data:image/") and header.endswith(";base64")
    return Image.open(io.BytesIO(base64.b64decode(data)))


def frontend_login(client) -> dict:
    """What the frontend does: POST {pasted URL}/auth/login with only Content-Type, then use the token."""
    r = client.post(PREFIX + "/auth/login", json={"username": "demo_user"}, headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    body = r.get_json()
    assert body["status"] == "success" and body["type"] == "Bearer" and body["token"]
    return {**FRONTEND_HEADERS, "Authorization": f"Bearer {body['token']}"}


def test_health_is_public_and_says_online(client, api):
    r = client.get("/")
    assert r.status_code == 200 and r.get_json()["status"] == "online"
    # The frontend's settings page tests the pasted URL the same way.
    assert client.get(PREFIX + "/").get_json()["status"] == "online"


def test_frontend_generate_image_speed_mode(client, api):
    headers = frontend_login(client)
    body = {"prompt": "a red sneaker on a beach", "aspect_ratio": "16:9", "steps": 4, "guidance": 2,
            "negative_prompt": "blurry", "style": "Cinematic"}
    r = client.post(PREFIX + "/generate-image", json=body, headers=headers)
    assert r.status_code == 200, r.text
    out = r.get_json()
    assert out["status"] == "success" and out["cached"] is False
    assert decode_data_uri(out["image"]).size == ASPECT_SIZES["16:9"]
    again = client.post(PREFIX + "/generate-image", json={**body, "seed": out["seed"]},
                          headers=headers).get_json()
    assert again["cached"] is True and again["image"] == out["image"]


def test_frontend_generate_image_quality_mode_and_guidance_scale(client, api):
    headers = frontend_login(client)
    for extra in ({"steps": 30, "guidance": 7}, {"steps": 10, "guidance_scale": 1}):
        body = {"prompt": "a cup of coffee", "aspect_ratio": "1:1", **extra, "width": 256, "height": 256}
        body.pop("aspect_ratio")
        r = client.post(PREFIX + "/generate-image", json=body, headers=headers)
        assert r.status_code == 200, r.text
        assert decode_data_uri(r.get_json()["image"]).size == (256, 256)


def test_frontend_generate_image_rejects_bad_fields_by_name(client, api):
    headers = frontend_login(client)
    for body, field in (({"prompt": ""}, "prompt"), ({"prompt": "x", "aspect_ratio": "5:7"}, "aspect_ratio"),
                        ({"prompt": "x", "style": "Nope"}, "style"), ({"prompt": "x", "steps": -3}, "steps")):
        r = client.post(PREFIX + "/generate-image", json=body, headers=headers)
        assert r.status_code == 400, (body, r.text)
        err = r.get_json()
        assert err["status"] == "error" and field in err["message"]


def test_frontend_face_swap(client, api):
    headers = frontend_login(client)
    source = png_b64(face_test_pattern(320, 240))
    target = "data:image/png;base64," + png_b64(face_test_pattern(640, 480, squares=((100, 100, 96), (400, 200, 96))))
    r = client.post(PREFIX + "/face-swap", json={"source_image": source, "target_image": target},
                      headers=headers)
    assert r.status_code == 200, r.text
    assert decode_data_uri(r.get_json()["image"]).size == (640, 480)
    blank = png_b64(np.full((240, 320, 3), 128, np.uint8))
    r = client.post(PREFIX + "/face-swap", json={"source_image": blank, "target_image": target},
                      headers=headers)
    assert 400 <= r.status_code < 500 and "source_image" in r.get_json()["message"]


def test_frontend_magic_prompt_styles_and_library(client, api):
    headers = frontend_login(client)
    r = client.post(PREFIX + "/magic-prompt", json={"prompt": "a cat"}, headers=headers)
    body = r.get_json()
    assert r.status_code == 200 and body["original"] == "a cat" and body["prompt"] and body["method"]
    styles = client.get(PREFIX + "/styles", headers=headers).get_json()["styles"]
    assert {"Fooocus V2", "Cinematic", "SAI Anime", "MRE Cinematic Dynamic", "None"} <= set(styles)
    item = {"id": "a1", "type": "image", "content": "data:image/png;base64,AAAA", "prompt": "p",
            "createdAt": "2026-01-01T00:00:00Z"}
    assert client.post(PREFIX + "/api/assets", json=item, headers=headers).status_code == 201
    listed = client.get(PREFIX + "/api/assets", headers=headers).get_json()
    assert any(a["id"] == "a1" and a["content"] == item["content"] for a in listed["assets"])
    assert listed["assets_count"] >= 1


def test_frontend_gpu_status_fields(client, api):
    headers = frontend_login(client)
    body = client.get(PREFIX + "/gpu-status", headers=headers).get_json()
    for field in ("status", "device", "vram_total_gb", "vram_allocated_gb", "vram_reserved_gb", "vram_free_gb",
                  "utilization_percent", "models_loaded", "cuda_version"):
        assert field in body
    assert body["status"] == "online" and body["device"] == "cpu"  # no GPU here: online on the CPU
    assert "models" in body["residency"]
    assert body["backend"] == {"name": "local", "gpu_workers": 1, "cpu_workers": 2}


def wait_for_job(api, job_id: str, *, timeout: float) -> dict:
    """Poll ``GET /api/jobs/<id>`` as the frontend does until the job ends; it must have completed."""
    deadline = time.monotonic() + timeout
    while (job := api.get(f"/api/jobs/{job_id}").get_json())["status"] not in ("completed", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert job["status"] == "completed", job
    return job


def wav_data_uri(seconds: float, rate: int = 16000) -> str:
    """A spoken-like clip: a tone whose loudness rises and falls four times a second."""
    import wave

    t = np.arange(int(seconds * rate)) / rate
    samples = 0.5 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((samples * 32767).astype("<i2").tobytes())
    return "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode()


def test_live_portrait_speaks_the_clip(client, api):
    import av

    headers = frontend_login(client)
    portrait = "data:image/png;base64," + png_b64(face_test_pattern())
    r = client.post(PREFIX + "/live-portrait", json={"image": portrait, "audio": wav_data_uri(1.3)},
                    headers=headers)
    assert r.status_code == 202, r.text
    job_id = r.get_json()["job_id"]
    job = wait_for_job(api, job_id, timeout=120)
    result = job["result"]
    assert result["lipsync"]["ran"] and result["lipsync"]["frames"] == 33  # ceil(1.3 s x 25 fps)
    video = client.get(job["url"])
    assert video.headers["Content-Type"] == "video/mp4"
    with av.open(io.BytesIO(video.data)) as c:
        assert len(c.streams.video) == 1 and len(c.streams.audio) == 1
        frames = sum(1 for _ in c.decode(video=0))
        duration = c.duration / 1e6
    assert abs(duration - 1.3) <= 1 / 25 + 0.03 and abs(frames - 33) <= 1
    # The uploads were kept as assets (the job's row holds their ids, not the base64).
    assert len(api.get(f"/api/jobs/{job_id}").get_json()["params"]["image"]) < 100


def test_live_portrait_refuses_what_it_cannot_animate(client, api, app):
    from enfoads.web.state import EXTENSION

    headers = frontend_login(client)
    engine = app.extensions[EXTENSION].holder.get(timeout=5)
    before = len(engine.assets.list(kind="upload", limit=100000))
    grey = "data:image/png;base64," + png_b64(np.full((256, 256, 3), 128, np.uint8))
    face = "data:image/png;base64," + png_b64(face_test_pattern())
    cases = [
        ({"image": grey, "audio": wav_data_uri(0.5)}, 400, "image", "no face"),
        ({"image": face, "audio": "data:audio/wav;base64," + base64.b64encode(b"not audio").decode()}, None,
         "audio", ""),
        ({"image": face}, 400, "audio", "required"),
        ({"image": "https://example.com/a.png", "audio": wav_data_uri(0.5)}, 400, "image", "never fetched"),
        ({"image": face, "audio": wav_data_uri(0.5), "fps": 90}, 400, "fps", ""),
    ]
    for body, status, field, words in cases:
        r = client.post(PREFIX + "/live-portrait", json=body, headers=headers)
        assert 400 <= r.status_code < 500 and (status is None or r.status_code == status), (body.keys(), r.text)
        message = r.get_json()["message"]
        assert field in message and words in message, message
    assert len(engine.assets.list(kind="upload", limit=100000)) == before  # a refused request keeps none of its uploads


def test_frontend_voices_and_avatars(client, api):
    headers = frontend_login(client)
    voices = client.get(PREFIX + "/voices", headers=headers).get_json()["voices"]
    assert voices and all({"id", "name", "language", "gender", "country"} <= set(v) for v in voices)
    avatars = client.get(PREFIX + "/avatars", headers=headers).get_json()["avatars"]
    default = next(a for a in avatars if a["id"] == "default")
    picture = client.get(default["img"])  # like an <img> tag: no headers
    assert picture.status_code == 200 and picture.headers["Content-Type"] == "image/png"
    assert client.get(default["img"].replace("sig=", "sig=f")).status_code == 403
    upload = "data:image/png;base64," + png_b64(face_test_pattern(256, 256))
    r = client.post(PREFIX + "/avatars", json={"image": upload, "name": "Ana"}, headers=headers)
    assert r.status_code == 201, r.text
    added = r.get_json()["avatar"]
    assert added["name"] == "Ana"
    # Its face was found once, at upload (the tiny detector finds the test pattern's square), and kept.
    x1, y1, x2, y2 = added["face"]["box"]
    assert 60 < x2 - x1 < 140 and 60 < y2 - y1 < 140 and len(added["face"]["kps"]) == 5
    listed = client.get(PREFIX + "/avatars", headers=headers).get_json()["avatars"]
    assert next(a for a in listed if a["id"] == added["id"])["face"] == added["face"]
    assert default["face"]["box"] and len(default["face"]["kps"]) == 5  # the built-in one carries its own
    # A picture with no face is refused at upload, naming the field, and nothing is kept.
    grey = "data:image/png;base64," + png_b64(np.full((256, 256, 3), 128, np.uint8))
    faceless = client.post(PREFIX + "/avatars", json={"image": grey}, headers=headers)
    assert faceless.status_code == 400 and "image" in faceless.get_json()["message"]
    assert "no face" in faceless.get_json()["message"]
    assert len(client.get(PREFIX + "/avatars", headers=headers).get_json()["avatars"]) == len(listed)
    bad = client.post(PREFIX + "/avatars", json={"image": "data:image/png;base64,AAAA"},
                        headers=headers)
    assert 400 <= bad.status_code < 500


def test_frontend_retries_after_401_with_a_new_token(client, api):
    stale = {**FRONTEND_HEADERS, "Authorization": "Bearer v1.1.invalid"}
    # Without the prefix a stale token is refused; the frontend then logs in again.
    assert client.get("/gpu-status", headers=stale).status_code == 401
    assert client.get("/gpu-status", headers=frontend_login(client)).status_code == 200


def test_job_api_submit_poll_and_cancel(client, api):
    r = api.post("/api/jobs", json={"kind": "image.generate", "params": {"prompt": "a lamp", "width": 256, "height": 256}})
    assert r.status_code == 202, r.text
    job = r.get_json()
    assert job["status"] in ("queued", "processing") and r.headers["Location"].endswith(job["id"])
    deadline = time.monotonic() + 60
    while job["status"] not in ("completed", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
        job = api.get(f"/api/jobs/{job['id']}").get_json()
    assert job["status"] == "completed" and job["progress"] == 100 and job["url"]
    media = client.get(job["url"])  # no key: the signature is the credential
    assert media.status_code == 200 and media.headers["Content-Type"].startswith("image/")
    assert client.get(job["url"].replace("sig=", "sig=0")).status_code == 403
    listed = api.get("/api/jobs?state=succeeded").get_json()["jobs"]
    assert any(j["id"] == job["id"] for j in listed)
    assert api.get("/api/jobs?state=bogus").status_code == 400
    assert api.get("/api/jobs/not-a-job").status_code == 404
    events = api.get(f"/api/events?since=0&job_id={job['id']}&timeout=0").get_json()["events"]
    assert [e["type"] for e in events][0] == "job.created" and events[-1]["type"] == "job.succeeded"


def test_cancel_a_queued_job(client, api):
    # A long job keeps the single GPU worker busy; the next one is still queued when cancelled.
    long = api.post("/api/jobs", json={"kind": "image.generate",
                                          "params": {"prompt": "slow", "width": 1536, "height": 1536, "steps": 8}}).get_json()
    queued = api.post("/api/jobs", json={"kind": "image.generate", "params": {"prompt": "later"}}).get_json()
    cancelled = api.post(f"/api/jobs/{queued['id']}/cancel").get_json()
    assert cancelled["state"] == "cancelled" and cancelled["status"] == "failed"
    api.post(f"/api/jobs/{long['id']}/cancel")


def all_operations(api):
    spec = api.get("/openapi.json").get_json()
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            yield method.upper(), path, op.get("security") == []


def test_auth_matrix_over_every_route(client, api):
    checked = 0
    for method, path, public in all_operations(api):
        concrete = path.replace("{job_id}", "nojob").replace("{asset_id}", "noasset").replace("{avatar_id}", "none")
        if path == "/api/events":
            concrete += "?timeout=0"
        for label, url, headers in (
            ("none", concrete, {}),
            ("wrong", concrete, {"Authorization": "Bearer wrong"}),
            ("wrong-x", concrete, {"X-API-Key": "wrong"}),
            ("right", concrete, {"Authorization": f"Bearer {KEY}"}),
            ("right-x", concrete, {"X-API-Key": KEY}),
            ("prefix", PREFIX + concrete, {}),
        ):
            if method == "POST" and path not in ("/auth/login", "/magic-prompt"):
                kwargs = {"data": b"{}", "headers": {**headers, "Content-Type": "text/plain"}}  # cheap: a 415/400
            else:
                kwargs = {"json": {}, "headers": headers} if method == "POST" else {"headers": headers}
            status = client.open(url, method=method, **kwargs).status_code
            if public:
                assert status != 401, (label, method, path)
            elif label in ("none", "wrong", "wrong-x"):
                assert status == 401, (label, method, path, status)
            else:
                assert status != 401, (label, method, path, status)
            checked += 1
    assert checked >= 6 * 25


def test_cors_preflight_allowed_and_foreign_origins(client, api):
    def preflight(origin):
        return client.options("/generate-image", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,authorization,ngrok-skip-browser-warning"})

    ok = preflight("http://localhost:5173")
    assert ok.headers.get("Access-Control-Allow-Origin") == "http://localhost:5173"
    assert "ngrok-skip-browser-warning" in ok.headers.get("Access-Control-Allow-Headers", "").lower()
    foreign = preflight("https://evil.example")
    assert "Access-Control-Allow-Origin" not in foreign.headers


def test_unknown_and_wrong_method_are_json(client, api):
    r = api.get("/no/such/route")
    assert r.status_code == 404 and r.get_json()["status"] == "error"
    r = client.put("/gpu-status", headers=KEY_HEADERS)
    assert r.status_code == 405 and r.get_json()["status"] == "error"


def test_frontend_render_multi_scene(client, api):
    headers = frontend_login(client)
    scenes = [
        {"id": 1, "avatarId": "default", "avatarName": "Ana", "avatarImg": "x", "script": "Primera escena.",
         "generateSubtitles": False},
        {"id": 2, "avatarId": "default", "avatarName": "Ana", "avatarImg": "x", "script": "Segunda escena.",
         "generateSubtitles": True},
    ]
    r = client.post(PREFIX + "/render-multi-scene", json={"scenes": scenes, "resolution": 240},
                      headers=headers)
    assert r.status_code == 202, r.text
    job = wait_for_job(api, r.get_json()["job_id"], timeout=180)
    assert len(job["result"]["scenes"]) == 2
    assert client.get(job["url"]).headers["Content-Type"] == "video/mp4"
    r = client.post(PREFIX + "/render-multi-scene", json={"scenes": [{"script": "x"}] * 50},
                      headers=headers)
    assert r.status_code == 400 and "scenes" in r.get_json()["message"]


def test_system_routes_models_config_docs(client, api):
    models = api.get("/models").get_json()
    roles = {m["role"]: m for m in models["models"]}
    assert roles["image"]["id"] == "tiny-sdxl-lightning" and roles["image"]["present"] is True
    assert all(m["licence"] for m in models["models"])
    config = api.get("/config").get_json()["config"]
    assert config["profile"] == "tiny" and "api_key" not in config and config["api_key_set"] is True
    assert KEY not in api.get("/config").text
    spec = api.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.") and "/generate-image" in spec["paths"]
    docs = api.get("/docs")
    assert docs.status_code == 200 and "openapi.json" in docs.text
