"""``Idempotency-Key``: a retry of a submission gets the job its first try made, never a second job.

The store over a real job queue and SQLite file (replay, other params, failed
jobs, expiry, restarts, concurrent tries); the routes through the app; and the
official ``openai`` client against an app whose sync wait is shorter than a
tiny generation: without a key its retries are held back (``x-should-retry:
false``, one job); with one, its own retries end with the image, from one job.
"""
from __future__ import annotations

import base64
import io
import threading
import uuid

import pytest
from conftest import API_KEY, KEY_HEADERS
from PIL import Image

from enfoads.errors import InvalidInput
from enfoads.work.idempotency import HEADER, IdempotencyKeyReused, IdempotencyKeys
from enfoads.work.jobs import JobQueue
from enfoads.work.schema import open_database


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path):
    db = open_database(tmp_path)
    queue = JobQueue(db)
    release = threading.Event()

    def echo(params, ctx):
        release.wait(10)
        return {"echo": params["text"]}

    def fail(params, ctx):
        raise RuntimeError("this job fails")

    queue.register("test.echo", echo, device="cpu")
    queue.register("test.fail", fail, device="cpu")
    queue.start()
    clock = Clock()
    keys = IdempotencyKeys(db, clock=clock)

    def submit(key, kind="test.echo", params=None):
        params = params if params is not None else {"text": "hola"}
        return keys.submit_once(key, kind, params, lambda: queue.submit(kind, params), queue.get)

    yield type("Store", (), {"db": db, "queue": queue, "keys": keys, "clock": clock, "submit": staticmethod(submit),
                             "release": release, "path": tmp_path})
    release.set()
    queue.close()
    db.close()


def test_a_retry_gets_the_job_the_first_try_made_while_it_runs_and_once_it_is_done(store):
    first, replayed = store.submit("key-1")
    assert not replayed
    again, replayed = store.submit("key-1")
    assert replayed and again.id == first.id and again.state in ("queued", "running")
    store.release.set()
    assert store.queue.wait(first.id, timeout=10).state == "succeeded"
    done, replayed = store.submit("key-1")
    assert replayed and done.id == first.id and done.result == {"echo": "hola"}
    assert store.queue.counts()["succeeded"] == 1 and sum(store.queue.counts().values()) == 1


def test_the_same_key_with_other_params_or_another_kind_is_refused(store):
    first, _ = store.submit("key-2")
    with pytest.raises(IdempotencyKeyReused) as refused:
        store.submit("key-2", params={"text": "adios"})
    assert refused.value.status == 422 and refused.value.fields == {HEADER: "used for another request"}
    assert first.id in str(refused.value)
    with pytest.raises(IdempotencyKeyReused):
        store.submit("key-2", kind="test.fail")
    assert sum(store.queue.counts().values()) == 1


def test_a_key_whose_job_failed_starts_over(store):
    first, _ = store.submit("key-3", kind="test.fail", params={})
    assert store.queue.wait(first.id, timeout=10).state == "failed"
    second, replayed = store.submit("key-3", kind="test.fail", params={})
    assert not replayed and second.id != first.id
    with store.db.read() as conn:  # the key now names the new job
        assert conn.execute("SELECT job_id FROM idempotency_keys WHERE key = 'key-3'").fetchone()[0] == second.id


def test_a_key_is_kept_for_its_ttl_then_starts_over(store):
    first, _ = store.submit("key-4")
    store.clock.now += store.keys.ttl_s - 1
    assert store.submit("key-4")[0].id == first.id
    store.clock.now += 2
    later, replayed = store.submit("key-4")
    assert not replayed and later.id != first.id
    with store.db.read() as conn:  # the expired row was replaced, not kept beside the new one
        rows = conn.execute("SELECT job_id FROM idempotency_keys WHERE key = 'key-4'").fetchall()
    assert [r[0] for r in rows] == [later.id]


def test_a_key_survives_a_restart(store):
    first, _ = store.submit("key-5")
    reopened = open_database(store.path)
    try:
        queue = JobQueue(reopened)
        keys = IdempotencyKeys(reopened, clock=store.clock)
        job, replayed = keys.submit_once("key-5", "test.echo", {"text": "hola"},
                                         lambda: pytest.fail("a retry after a restart submitted again"), queue.get)
        assert replayed and job.id == first.id
    finally:
        reopened.close()


def test_concurrent_tries_of_one_call_make_one_job(store):
    ids, errors = [], []

    def one_try():
        try:
            ids.append(store.submit("key-6")[0].id)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one_try) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors and len(ids) == 8 and len(set(ids)) == 1
    assert sum(store.queue.counts().values()) == 1


@pytest.mark.parametrize("key", ["", "a key with spaces", "clé", "k" * 256, "tab\there"])
def test_an_unusable_key_is_a_400_naming_the_header(store, key):
    with pytest.raises(InvalidInput) as refused:
        store.submit(key)
    assert refused.value.status == 400 and HEADER in refused.value.fields
    assert sum(store.queue.counts().values()) == 0


# ----------------------------------------------------------------- the routes


def _image_job(api, key: str | None, prompt: str = "a red sneaker"):
    headers = {HEADER: key} if key is not None else {}
    return api.post("/api/jobs", json={"kind": "image.generate", "params": {"prompt": prompt, "width": 256,
                                                                           "height": 256, "steps": 1}},
                    headers=headers)


def _engine(app):
    from enfoads.web.state import EXTENSION

    return app.extensions[EXTENSION].holder.get(timeout=120)


def test_api_jobs_with_a_key_answers_the_same_job_and_queues_one(app, api):
    key = str(uuid.uuid4())
    first = _image_job(api, key)
    assert first.status_code == 202, first.get_json()
    again = _image_job(api, key)
    assert again.status_code == 202 and again.get_json()["id"] == first.get_json()["id"]
    without = _image_job(api, None)
    assert without.status_code == 202 and without.get_json()["id"] != first.get_json()["id"]
    for job_id in (first.get_json()["id"], without.get_json()["id"]):
        assert _engine(app).jobs.wait(job_id, timeout=120).state == "succeeded"
    done = _image_job(api, key)  # and once it is done: its result
    assert done.get_json()["id"] == first.get_json()["id"] and done.get_json()["state"] == "succeeded"


def test_api_jobs_key_reused_for_other_params_is_a_422_and_a_bad_key_a_400(app, api):
    key = str(uuid.uuid4())
    first = _image_job(api, key)
    assert first.status_code == 202
    reused = _image_job(api, key, prompt="a blue bottle")
    body = reused.get_json()
    assert reused.status_code == 422 and body["code"] == "idempotency_key_reused"
    assert body["details"]["fields"] == {HEADER: "used for another request"}
    bad = _image_job(api, "not a key")
    assert bad.status_code == 400 and HEADER in bad.get_json()["details"]["fields"]
    assert _engine(app).jobs.wait(first.get_json()["id"], timeout=120).state == "succeeded"


def test_a_transcription_sent_again_with_its_key_is_the_same_job_though_the_upload_is_stored_again(app, api,
                                                                                                   tmp_path):
    import shutil
    import subprocess

    wav = tmp_path / "hola.wav"
    subprocess.run([shutil.which("espeak-ng"), "-v", "es", "-w", str(wav), "hola, esto es una prueba"], check=True)
    audio = wav.read_bytes()
    engine = _engine(app)
    before = {j.id for j in engine.jobs.list(kind="speech.transcribe", limit=500)}
    key = str(uuid.uuid4())

    def send(data: bytes):
        return api.post("/v1/audio/transcriptions", headers={HEADER: key}, content_type="multipart/form-data",
                        data={"file": (io.BytesIO(data), "hola.wav"), "response_format": "json"})

    first, again = send(audio), send(audio)
    assert first.status_code == 200 and again.status_code == 200, (first.get_json(), again.get_json())
    assert again.get_json() == first.get_json()
    made = [j for j in engine.jobs.list(kind="speech.transcribe", limit=500) if j.id not in before]
    assert len(made) == 1, [(j.id, j.state) for j in made]
    other = send(audio[:-200])  # other bytes under the same key: another request
    assert other.status_code == 422 and other.get_json()["code"] == "idempotency_key_reused"


def test_only_a_rate_limit_hit_gets_the_limiters_retry_after(api):
    # flask-limiter would put when its window resets on every answer, over a 503's or queue_full's own.
    ok = api.get("/gpu-status")
    assert ok.status_code == 200 and "X-RateLimit-Limit" in ok.headers and "Retry-After" not in ok.headers


@pytest.fixture(scope="module")
def impatient_app(app, models_dir, tmp_path_factory):
    """The app with a sync wait far shorter than a tiny generation (and no warm start).

    It asks for the session's app, warm (conftest): two engines in one process must not load models
    at the same time (accelerate's empty-weights init patches torch for every thread; in a server,
    one engine's residency manager loads one model at a time).
    """
    from enfoads.models.tiny import build_tiny_kit
    from enfoads.settings import Settings
    from enfoads.web import create_app
    from enfoads.web.state import EXTENSION

    build_tiny_kit(models_dir)
    settings = Settings(profile="tiny", models_dir=models_dir, data_dir=tmp_path_factory.mktemp("impatient") / "data",
                        api_key=API_KEY, auto_download="off", warm="off", sync_timeout_s=0.01,
                        rate_limit="100000/minute")
    app = create_app(settings)
    app.config["TESTING"] = True
    state = app.extensions[EXTENSION]
    state.holder.get(timeout=120)
    yield app
    state.holder.close()


def test_a_job_that_outlives_the_wait_is_a_503_that_says_whether_a_retry_is_safe(impatient_app):
    client = impatient_app.test_client()
    plain = client.post("/v1/images/generations", json={"prompt": "a green lamp", "size": "256x256"},
                        headers=KEY_HEADERS)
    body = plain.get_json()
    assert plain.status_code == 503 and body["code"] == "timeout" and body["error"]["code"] == "timeout"
    # No key: a retry would queue the same work again, so the client is told not to (and how to poll).
    assert plain.headers["x-should-retry"] == "false" and "Retry-After" not in plain.headers
    assert "poll it with the job API" in body["message"] and HEADER in body["message"]
    keyed = client.post("/v1/images/generations", json={"prompt": "a green lamp", "size": "256x256"},
                        headers={**KEY_HEADERS, HEADER: str(uuid.uuid4())})
    assert keyed.status_code == 503 and keyed.headers["x-should-retry"] == "true"
    assert keyed.headers["Retry-After"] == "1"


def _openai_client(app, max_retries: int):
    openai = pytest.importorskip("openai")
    httpx2 = pytest.importorskip("httpx2")
    return openai, openai.OpenAI(base_url="http://enfoads.test/v1", api_key=API_KEY, max_retries=max_retries,
                                 http_client=httpx2.Client(transport=httpx2.WSGITransport(app=app)))


def _jobs_made(engine, before: set) -> list:
    return [j for j in engine.jobs.list(kind="image.generate", limit=500) if j.id not in before]


def test_the_openai_client_does_not_requeue_a_slow_generation_sent_without_a_key(impatient_app):
    engine = _engine(impatient_app)
    before = {j.id for j in engine.jobs.list(kind="image.generate", limit=500)}
    openai, client = _openai_client(impatient_app, max_retries=5)
    with pytest.raises(openai.InternalServerError) as answered:
        client.images.generate(prompt="a purple kite", size="256x256", n=1, response_format="b64_json")
    assert answered.value.status_code == 503
    made = _jobs_made(engine, before)
    assert len(made) == 1, [(j.id, j.state) for j in made]  # x-should-retry: false held its 5 retries back
    assert engine.jobs.wait(made[0].id, timeout=120).state == "succeeded"  # and the job itself goes on


def test_the_openai_clients_retries_with_a_key_get_the_slow_generation_from_one_job(impatient_app):
    engine = _engine(impatient_app)
    before = {j.id for j in engine.jobs.list(kind="image.generate", limit=500)}
    _, client = _openai_client(impatient_app, max_retries=60)
    # extra_headers go out again, unchanged, on each of the client's retries (which follow Retry-After: 1).
    result = client.images.generate(prompt="a yellow chair", size="256x256", n=1, response_format="b64_json",
                                    extra_headers={HEADER: str(uuid.uuid4())})
    assert Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json))).size == (256, 256)
    made = _jobs_made(engine, before)
    assert len(made) == 1 and made[0].state == "succeeded", [(j.id, j.state) for j in made]


def test_a_rate_limit_hit_keeps_the_limiters_retry_after(models_dir, tmp_path):
    from enfoads.settings import Settings
    from enfoads.web import create_app
    from enfoads.web.state import EXTENSION

    app = create_app(Settings(profile="tiny", models_dir=models_dir, data_dir=tmp_path / "data", api_key=API_KEY,
                              auto_download="off", warm="off", rate_limit="2/minute"))
    try:
        client = app.test_client()
        answers = [client.get("/styles", headers=KEY_HEADERS) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert "Retry-After" not in answers[0].headers and answers[2].get_json()["code"] == "rate_limited"
        assert 1 <= int(answers[2].headers["Retry-After"]) <= 60
    finally:
        app.extensions[EXTENSION].holder.close()


# ----------------------------------------------------------------- the notebook's client


@pytest.fixture
def lossy_tunnel(app):
    """The app on a real socket, behind a relay that forwards the first ``POST /api/jobs`` and then
    drops the connection instead of answering (a tunnel that lost the answer; the job is queued)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import requests
    from werkzeug.serving import make_server

    backend = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    upstream = f"http://127.0.0.1:{backend.server_port}"
    seen = []

    class Relay(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _relay(self, method):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            seen.append((method, self.path, headers.get("Idempotency-Key")))
            answer = requests.request(method, upstream + self.path, data=body or None, headers=headers, timeout=60)
            if method == "POST" and self.path == "/api/jobs" and len([s for s in seen if s[0] == "POST"]) == 1:
                self.close_connection = True  # queued upstream; the caller never hears of it
                return
            self.send_response(answer.status_code)
            for name in ("Content-Type", "Location"):
                if name in answer.headers:
                    self.send_header(name, answer.headers[name])
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        def do_GET(self):
            self._relay("GET")

        def do_POST(self):
            self._relay("POST")

    relay = ThreadingHTTPServer(("127.0.0.1", 0), Relay)
    threading.Thread(target=relay.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{relay.server_address[1]}", seen
    relay.shutdown()
    relay.server_close()
    backend.shutdown()


def test_the_notebook_client_sends_a_lost_submission_again_and_gets_the_one_job(app, lossy_tunnel):
    from enfoads.colab.client import Client

    url, seen = lossy_tunnel
    prompt = f"a lost answer {uuid.uuid4().hex[:8]}"
    client = Client(url, API_KEY, poll_s=0.05, retry_s=0.05)
    view = client.run("image.generate", {"prompt": prompt, "width": 256, "height": 256, "steps": 1}, timeout_s=120)
    assert view["state"] == "succeeded"
    made = [j for j in _engine(app).jobs.list(kind="image.generate", limit=500) if j.params.get("prompt") == prompt]
    assert [j.id for j in made] == [view["id"]]  # one job, though it was submitted twice
    posts = [s for s in seen if s[0] == "POST"]
    assert len(posts) == 2 and posts[0][2] and posts[0][2] == posts[1][2]  # sent again, with its key
