"""The unchanged frontend's contract to the byte, on a real `enfoads serve` (shared/frontend-contract.md).

Each test sends what the frontend really sends (read from its source:
``src/services/db.ts``, ``src/lib/api-utils.ts``, ``src/pages/*.tsx``) and
checks what it really reads back: library items with its integer IndexedDB
ids and ``Date.now()`` times, kept per browser; saved media URLs that outlive
their expiry; voices with ``gender`` ``Female``/``Male`` and ``country``
``Colombia``/``México``; a green GPU badge on a CPU; CORS from any origin
under the secret URL.
"""
from __future__ import annotations

import threading
import time
import unicodedata

import pytest
import requests

from enfoads.models import voices as catalog
from enfoads.work.assets import AssetStore
from enfoads.models.tiny import build_tiny_kit
from server_fixture import start_server

FRONTEND_HEADERS = {"Content-Type": "application/json", "ngrok-skip-browser-warning": "true"}
STATIC_ORIGIN = "https://some-static-host.example"
PNG_URI = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJ"
           "RU5ErkJggg==")


@pytest.fixture(scope="module")
def server(models_dir, tmp_path_factory):
    build_tiny_kit(models_dir)
    srv = start_server(models_dir, tmp_path_factory.mktemp("contract") / "data",
                       extra_env={"ENFOADS_CORS_ORIGINS": "http://localhost:5173"})
    srv.wait_ready()
    yield srv
    srv.stop()


class Browser:
    """One browser running the frontend: its own token in its own localStorage, its own IndexedDB ids."""

    tokens_seen: set[str] = set()

    def __init__(self, server, user_agent: str):
        self.server = server
        self.user_agent = user_agent
        while True:
            r = requests.post(server.frontend_base + "/auth/login", json={"username": "demo_user"},
                              headers={"Content-Type": "application/json", "User-Agent": user_agent}, timeout=10)
            assert r.status_code == 200, r.text
            self.token = r.json()["token"]
            if self.token not in self.tokens_seen:
                break
            # A login token is made from its expiry second alone: two logins in one second get the
            # same token, hence one library. Browsers opening the page a second apart do not.
            time.sleep(0.2)
        self.tokens_seen.add(self.token)
        self.next_id = 1

    @property
    def headers(self) -> dict:
        return {**FRONTEND_HEADERS, "Authorization": f"Bearer {self.token}", "User-Agent": self.user_agent}

    def add_asset(self, **asset) -> requests.Response:
        """``db.addAsset``: IndexedDB gives the next integer id, then ``api.syncAsset({...asset, id})``."""
        body = {**asset, "id": self.next_id}
        self.next_id += 1
        return self.sync(body)

    def sync(self, asset: dict) -> requests.Response:
        return requests.post(self.server.frontend_base + "/api/assets", json=asset, headers=self.headers, timeout=30)

    def library(self) -> dict:
        r = requests.get(self.server.frontend_base + "/api/assets", headers=self.headers, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()


CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"


@pytest.fixture(scope="module")
def browser(server) -> Browser:
    return Browser(server, CHROME)


def wait_job(server, job_id: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while (job := server.get(f"/api/jobs/{job_id}").json())["status"] not in ("completed", "failed"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    assert job["status"] == "completed", job
    return job


# ------------------------------------------------------------------ /api/assets


@pytest.mark.slow
def test_library_takes_the_frontends_assets_and_keeps_them_per_browser(server):
    a, b = Browser(server, CHROME), Browser(server, CHROME)  # two copies of one browser build
    now = int(time.time() * 1000)
    image = {"type": "image", "content": PNG_URI, "prompt": "a red sneaker on a beach", "createdAt": now}
    video = {"type": "video", "content": "https://tunnel.example/media/abc?exp=1&sig=00",
             "prompt": "Commercial Video: Hola...", "createdAt": now + 1}
    for browser, assets in ((a, (image, video)), (b, (video,))):
        for asset in assets:
            r = browser.add_asset(**asset)
            assert r.status_code == 201, r.text
            saved = r.json()["assets"][0]
            assert isinstance(saved["id"], int) and saved["createdAt"] == asset["createdAt"]
    # Each browser gets back its own items, in exactly the shape it sent: ids 1, 2 (integers), numbers for createdAt.
    listed_a = a.library()
    assert listed_a["assets_count"] == 2
    assert listed_a["assets"] == [{**video, "id": 2}, {**image, "id": 1}]
    assert all(type(x["id"]) is int and type(x["createdAt"]) is int for x in listed_a["assets"])
    assert b.library() == {"status": "success", "assets": [{**video, "id": 1}], "assets_count": 1}
    # Browser B's id 1 is its own: syncing it again (the frontend's syncToCloud) replaces B's item only.
    again = {**image, "id": 1, "prompt": "edited", "createdAt": now + 5}
    assert b.sync(again).status_code == 201
    assert b.library()["assets"] == [again]
    assert a.library() == listed_a
    # A script with the key is a client of its own.
    key_listed = server.get("/api/assets").json()
    assert all(x["prompt"] != "edited" for x in key_listed["assets"])


@pytest.mark.slow
def test_library_survives_a_restart(models_dir, tmp_path):
    build_tiny_kit(models_dir)
    data = tmp_path / "data"
    srv = start_server(models_dir, data)
    try:
        srv.wait_ready()
        browser = Browser(srv, "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0")
        created = int(time.time() * 1000)
        assert browser.add_asset(type="image", content=PNG_URI, prompt="p", createdAt=created).status_code == 201
    finally:
        srv.stop()
    srv = start_server(models_dir, data)
    try:
        srv.wait_ready()
        # The same browser: same token in its localStorage (under the secret URL it is never refused).
        r = requests.get(srv.frontend_base + "/api/assets", headers=browser.headers, timeout=30)
        assert r.json()["assets"] == [{"id": 1, "type": "image", "content": PNG_URI, "prompt": "p",
                                       "createdAt": created}]
    finally:
        srv.stop()


@pytest.mark.parametrize("change,field", [
    ({"id": 1.5}, "id"), ({"id": -1}, "id"), ({"id": True}, "id"), ({"id": 2**53}, "id"), ({"id": ""}, "id"),
    ({"id": "x" * 129}, "id"), ({"id": [1]}, "id"),
    ({"createdAt": -5}, "createdAt"), ({"createdAt": True}, "createdAt"), ({"createdAt": {}}, "createdAt"),
    ({"createdAt": ""}, "createdAt"), ({"createdAt": 2**60}, "createdAt"),
    ({"type": "pdf"}, "type"), ({"type": None}, "type"),
    ({"content": ""}, "content"), ({"content": 5}, "content"), ({"content": "blob:https://x/1"}, "content"),
    ({"content": "data:video/mp4;base64,AAAA"}, "content"), ({"content": "data:image/png,raw"}, "content"),
    ({"prompt": 5}, "prompt"), ({"prompt": "p" * 10_001}, "prompt"), ({"name": 5}, "name"),
    ({"metadata": "x"}, "metadata"), ({"owner": "me"}, "owner"),
])
@pytest.mark.slow
def test_library_refuses_bad_fields_by_name(browser, change, field):
    before = browser.library()["assets_count"]
    asset = {"id": 1, "type": "image", "content": PNG_URI, "prompt": "p", "createdAt": 1767225600000, **change}
    r = browser.sync({k: v for k, v in asset.items() if v is not None})
    assert r.status_code == 400, (change, r.text)
    body = r.json()
    assert body["status"] == "error" and field in body["message"], body
    assert browser.library()["assets_count"] == before


@pytest.mark.slow
def test_library_list_form_names_the_item(browser):
    before = browser.library()["assets_count"]
    good = {"id": 7, "type": "image", "content": PNG_URI, "prompt": "p", "createdAt": 1}
    r = browser.sync({"assets": [good, {**good, "id": 8, "createdAt": ""}]})
    assert r.status_code == 400 and "assets[1]" in r.json()["message"] and "createdAt" in r.json()["message"]
    r = browser.sync({"assets": [good], "type": "image"})
    assert r.status_code == 400 and "assets" in r.json()["message"]
    assert browser.library()["assets_count"] == before  # nothing of a refused list is saved
    assert browser.sync({"assets": [good, {**good, "id": 8}]}).json()["assets_count"] == before + 2


# ------------------------------------------------------------------ saved media URLs


@pytest.mark.slow
def test_a_saved_media_url_outlives_its_expiry(server):
    job = server.post("/api/jobs", json={"kind": "image.generate",
                                         "params": {"prompt": "a bottle", "width": 256, "height": 256}}).json()
    result = wait_job(server, job["id"])["result"]
    asset_id = (result.get("image_asset_ids") or result["asset_ids"])[0]
    # Links as the server hands them out, with a 2-second life instead of 24 hours (signed with its own secret).
    store = AssetStore(server.data_dir)
    try:
        saved_exp, saved_sig = store.sign(asset_id, ttl_s=2)
        other_exp, other_sig = store.sign(asset_id, ttl_s=3)
    finally:
        store.close()
    saved = f"{server.base}/media/{asset_id}?exp={saved_exp}&sig={saved_sig}"
    unsaved = f"{server.base}/media/{asset_id}?exp={other_exp}&sig={other_sig}"
    forged = f"{server.base}/media/{asset_id}?exp={saved_exp + 10**6}&sig={saved_sig}"
    browser = Browser(server, CHROME)
    for url in (saved, forged):  # the library stores both; only this server's own link is kept alive
        r = browser.add_asset(type="video", content=url, prompt="Commercial Video: ...", createdAt=1)
        assert r.status_code == 201, r.text
    assert requests.get(saved, timeout=10).status_code == 200
    time.sleep(max(0.0, other_exp - time.time()) + 1.1)
    # Like the library page's <video> tag a day later: no headers, the old expiry long gone.
    later = requests.get(saved, timeout=10)
    assert later.status_code == 200 and later.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert requests.get(unsaved, timeout=10).status_code == 403  # a link nobody saved still expires
    assert requests.get(forged, timeout=10).status_code == 403
    assert browser.library()["assets"][1]["content"] == saved


@pytest.mark.slow
def test_the_video_url_the_frontend_saves_is_kept(server, browser):
    """The commercial page's flow: job_update's url -> db.addAsset({type: 'video', content: url})."""
    r = server.post("/render-video", json={"script": "Hola.", "avatar_id": "default", "resolution": 144, "fps": 10})
    assert r.status_code == 202, r.text
    job = wait_job(server, r.json()["job_id"])
    assert browser.add_asset(type="video", content=job["url"], prompt="Commercial Video: Hola...",
                             createdAt=int(time.time() * 1000)).status_code == 201
    asset_id = job["result"]["asset_id"]
    store = AssetStore(server.data_dir)
    try:
        exp = int(job["url"].split("exp=")[1].split("&")[0])
        assert store._is_kept(asset_id, exp)
    finally:
        store.close()
    video = requests.get(job["url"], timeout=30)
    assert video.status_code == 200 and video.headers["Content-Type"] == "video/mp4"


# ------------------------------------------------------------------ /voices and /gpu-status


@pytest.mark.slow
def test_voices_speak_the_frontends_gender_and_country(server, browser):
    voices = requests.get(server.frontend_base + "/voices", headers=browser.headers, timeout=10).json()["voices"]
    genders = {v["gender"] for v in voices}
    assert genders <= {"Female", "Male", "Unknown"} and {"Female", "Male"} <= genders, genders
    by_id = {v["id"]: v for v in voices}
    assert by_id["espeak:es-419+f3"]["gender"] == "Female" and by_id["espeak:es-419"]["gender"] == "Male"
    mexican = [v for v in voices if v["language"] == "es-MX"]
    assert mexican and all(v["country"] == "M\u00e9xico" for v in mexican)
    # What the page compares against, for every voice it may list (edge voices when reachable).
    for voice in catalog.CATALOG.values():
        assert unicodedata.is_normalized("NFC", voice.country)
        if voice.language.endswith("-CO"):
            assert voice.country == "Colombia"
        if voice.language.endswith("-MX"):
            assert voice.country == "M\u00e9xico"
        assert catalog.frontend_gender(voice.gender) in ("Female", "Male", "Unknown")


@pytest.mark.slow
def test_gpu_badge_is_green_on_a_cpu(server, browser):
    body = requests.get(server.frontend_base + "/gpu-status", headers=browser.headers, timeout=10).json()
    assert body["status"] == "online" and body["device"] == "cpu" and body["gpu"] is False
    for field in ("vram_total_gb", "vram_allocated_gb", "vram_reserved_gb", "vram_free_gb", "utilization_percent",
                  "utilization_source", "vram_used_percent", "models_loaded", "cuda_version", "residency",
                  "host_ram_total_gb", "host_ram_available_gb"):
        assert field in body, field
    assert body["host_ram_total_gb"] > 0


# ------------------------------------------------------------------ CORS


def preflight(url: str, origin: str, method: str = "POST") -> requests.Response:
    return requests.options(url, timeout=10, headers={
        "Origin": origin, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "content-type,authorization,ngrok-skip-browser-warning"})


@pytest.mark.slow
def test_cors_any_origin_under_the_secret_url_allow_list_at_the_root(server):
    for path, method in (("/auth/login", "POST"), ("/api/assets", "POST"), ("/gpu-status", "GET"), ("/", "GET")):
        r = preflight(server.frontend_base + path, STATIC_ORIGIN, method)
        assert r.status_code == 200, (path, r.text)
        assert r.headers.get("Access-Control-Allow-Origin") == STATIC_ORIGIN, (path, dict(r.headers))
        allowed = {h.strip().lower() for h in r.headers.get("Access-Control-Allow-Headers", "").split(",")}
        assert {"content-type", "authorization", "ngrok-skip-browser-warning"} <= allowed, (path, allowed)
        assert method in r.headers.get("Access-Control-Allow-Methods", "")
        assert r.headers.get("Access-Control-Allow-Credentials") != "true"
    # The actual requests, as the page on a static host sends them.
    login = requests.post(server.frontend_base + "/auth/login", json={"username": "demo_user"},
                          headers={"Content-Type": "application/json", "Origin": STATIC_ORIGIN}, timeout=10)
    assert login.headers.get("Access-Control-Allow-Origin") == STATIC_ORIGIN
    headers = {**FRONTEND_HEADERS, "Authorization": f"Bearer {login.json()['token']}", "Origin": STATIC_ORIGIN}
    for r in (requests.get(server.frontend_base + "/gpu-status", headers=headers, timeout=10),
              requests.get(server.frontend_base + "/", headers=headers, timeout=10),
              requests.post(server.frontend_base + "/api/assets", json={"type": "pdf"}, headers=headers, timeout=10),
              requests.get(server.frontend_base + "/no/such/route", headers=headers, timeout=10)):
        # Errors too: the page reads their message.
        assert r.headers.get("Access-Control-Allow-Origin") == STATIC_ORIGIN, (r.url, r.status_code)
        assert r.headers.get("Access-Control-Allow-Credentials") != "true"
    # At the root the key travels in a header: the allow-list stays.
    for path in ("/generate-image", "/gpu-status"):
        assert "Access-Control-Allow-Origin" not in preflight(server.base + path, STATIC_ORIGIN).headers
    root = requests.get(server.base + "/gpu-status", headers={**server.headers(), "Origin": STATIC_ORIGIN}, timeout=10)
    assert root.status_code == 200 and "Access-Control-Allow-Origin" not in root.headers
    listed = preflight(server.base + "/generate-image", "http://localhost:5173")
    assert listed.headers.get("Access-Control-Allow-Origin") == "http://localhost:5173"


@pytest.mark.slow
def test_socketio_from_any_origin_under_the_secret_url(server):
    socketio = pytest.importorskip("socketio")
    # The Engine.IO handshake a browser on a static host makes (socket.io-client's default path).
    r = requests.get(server.base + "/socket.io/?EIO=4&transport=polling", headers={"Origin": STATIC_ORIGIN}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers.get("Access-Control-Allow-Origin") == STATIC_ORIGIN
    assert r.headers.get("Access-Control-Allow-Credentials") != "true"
    job = server.post("/api/jobs", json={"kind": "image.generate",
                                         "params": {"prompt": "socket", "width": 256, "height": 256}}).json()
    wait_job(server, job["id"])
    got = threading.Event()
    client = socketio.Client()

    @client.on("job_update", namespace="/" + server.prefix)
    def on_update(data):
        if data["job_id"] == job["id"] and data["status"] == "completed":
            got.set()

    client.connect(server.frontend_base, namespaces=["/" + server.prefix], headers={"Origin": STATIC_ORIGIN},
                   transports=["polling"], wait_timeout=10)
    try:
        assert got.wait(20)  # the catch-up of a late client, through a foreign origin
    finally:
        client.disconnect()
    # The root namespace still wants the key, whatever the origin.
    stranger = socketio.Client()
    with pytest.raises(socketio.exceptions.ConnectionError):
        stranger.connect(server.base, headers={"Origin": STATIC_ORIGIN}, transports=["polling"], wait_timeout=5)


# ------------------------------------------------------------------ the stores underneath


def test_kept_links_live_as_long_as_their_asset(tmp_path):
    from enfoads.work.assets import SignatureExpired

    now = [1_000_000.0]
    store = AssetStore(tmp_path, clock=lambda: now[0])
    asset = store.save_bytes(b"\x00" * 10, "video/mp4")
    kept, unkept = store.sign(asset.id, ttl_s=60), store.sign(asset.id, ttl_s=61)
    assert store.keep_link(asset.id, *kept)
    assert not store.keep_link(asset.id, kept[0] + 1, kept[1])  # not this store's signature
    assert not store.keep_link("0" * 32, *store.sign("0" * 32))  # no such asset
    now[0] += 24 * 3600
    store.verify(asset.id, *kept)
    with pytest.raises(SignatureExpired):
        store.verify(asset.id, *unkept)
    store.delete(asset.id)  # the kept link goes with its asset
    with store._db.read() as conn:
        assert conn.execute("SELECT COUNT(*) FROM asset_links_kept").fetchone()[0] == 0
    store.close()


def test_the_first_versions_library_moves_to_a_legacy_client(tmp_path):
    import json

    from enfoads.work.db import DB_FILENAME, Database
    from enfoads.services.library import LEGACY_CLIENT, Library

    db = Database(tmp_path / DB_FILENAME)
    with db.write() as conn:
        conn.execute("CREATE TABLE library (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, "
                     "data TEXT NOT NULL, bytes INTEGER NOT NULL, created REAL NOT NULL)")
        item = {"id": "a1", "type": "image", "content": "x", "createdAt": "2026-01-01T00:00:00Z"}
        conn.execute("INSERT INTO library (id, data, bytes, created) VALUES (?, ?, ?, ?)",
                     ("a1", json.dumps(item), 10, 1.0))
    db.close()
    lib = Library(tmp_path)
    assert lib.list(LEGACY_CLIENT) == [item] and lib.count("token:someone") == 0
    lib.close()
    lib = Library(tmp_path)  # a second start finds nothing more to move
    assert lib.count(LEGACY_CLIENT) == 1
    lib.close()


def test_two_logins_in_the_same_second_get_their_own_tokens():
    """The library is kept per login token: two browsers logging in together must not share one."""
    from enfoads.security import Credentials

    creds = Credentials("k" * 32)
    a, b = creds.issue_token(now=1000.0), creds.issue_token(now=1000.0)
    assert a != b and creds.check_token(a, now=1001.0) and creds.check_token(b, now=1001.0)
    forged = a.rsplit(".", 2)[0] + ".other." + a.rsplit(".", 1)[1]  # another nonce, the same signature
    assert not creds.check_token(forged, now=1001.0)
