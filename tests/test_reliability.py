"""Reliability on real `enfoads serve` processes: injected out-of-memory errors, and a SIGKILL mid-job.

1. Out of memory (``ENFOADS_INJECT_OOM``): the model runtime raises a
   CUDA-style out-of-memory error inside the next lease of a role's model.
   - image: ``ImageService`` catches the retryable ``ModelMemoryError`` the
     residency manager raises after evicting the other models and renders
     once more, so the first request *succeeds* (its result notes the retry);
   - faces and speech lease with ``residency.use`` and do not retry, so the
     first request *fails with 503* (a JSON error naming the memory) and
     the next one runs normally.
2. Restart: 20 mixed jobs through the HTTP API, SIGKILL while one runs, a
   new server on the same data dir: every job is accounted for, finished
   ones are unchanged, interrupted ones run again (attempt 2), and every
   asset row has its file with its recorded sha256.
"""
from __future__ import annotations

import base64
import hashlib
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from enfoads.work.assets import AssetStore
from enfoads.work.jobs import JobQueue
from enfoads.models.tiny import build_tiny_kit
from enfoads.models.tiny.faces import face_test_pattern
from server_fixture import start_server

pytestmark = pytest.mark.slow  # real processes; `make test-quick` leaves them out

CORPUS_FILES = Path(__file__).with_name("corpus") / "files"
MEMORY_WORDS = "out of GPU memory"


def png_b64(bgr) -> str:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(bgr[:, :, ::-1].copy()).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def wait_job(server, job_id: str, timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = server.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['state']} after {timeout} s"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory) -> bytes:
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        pytest.skip("espeak-ng is not installed")
    wav = tmp_path_factory.mktemp("wav") / "hola.wav"
    subprocess.run([exe, "-v", "es", "-s", "220", "-w", str(wav), "hola, esto es una prueba"], check=True)
    return wav.read_bytes()


@pytest.fixture(scope="module")
def faces() -> dict:
    return {
        "source_image": png_b64(face_test_pattern(320, 240)),
        "target_image": png_b64(face_test_pattern(640, 480, squares=((100, 100, 96), (400, 200, 96)))),
    }


# =========================================================================== out of memory


@pytest.fixture(scope="module")
def oom_server(models_dir, tmp_path_factory):
    build_tiny_kit(models_dir)
    srv = start_server(models_dir, tmp_path_factory.mktemp("oom") / "data",
                       # Faults count leases; the warm start's would take them before any job.
                       extra_env={"ENFOADS_INJECT_OOM": "image:1,faces:1,speech:1", "ENFOADS_WARM": "off"})
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def oom_recoveries(server) -> int:
    return server.get("/gpu-status").json()["residency"]["oom_recoveries"]


def test_image_oom_is_retried_after_eviction_and_succeeds(oom_server):
    """images.py catches the retryable ModelMemoryError and renders again: the first request succeeds."""
    before = oom_recoveries(oom_server)
    body = {"prompt": "a red chair", "width": 256, "height": 256, "steps": 1, "cache": False}
    first = oom_server.post("/generate-image", json=body)
    assert first.status_code == 200, first.text
    assert first.json()["image"].startswith("data:image/png;base64,")
    job = oom_server.get(f"/api/jobs/{first.json()['job_id']}").json()
    assert job["state"] == "succeeded" and job["attempts"] == 1  # one job, retried inside itself
    assert any("ran out of GPU memory once" in n for n in job["result"]["notes"]), job["result"]["notes"]
    assert oom_recoveries(oom_server) == before + 1

    second = oom_server.post("/generate-image", json=body)
    assert second.status_code == 200, second.text
    notes = oom_server.get(f"/api/jobs/{second.json()['job_id']}").json()["result"]["notes"]
    assert not any("GPU memory" in n for n in notes), notes
    assert oom_recoveries(oom_server) == before + 1  # nothing was injected this time


def test_face_swap_oom_answers_503_then_the_next_swap_works(oom_server, faces):
    """faces.py leases with residency.use and no retry: 503 with a JSON error, then normal service."""
    first = oom_server.post("/face-swap", json=faces)
    assert first.status_code == 503, first.text
    err = first.json()
    assert err["status"] == "error" and MEMORY_WORDS in err["message"]
    assert err["code"] in ("out_of_memory", "no_capacity"), err
    job = oom_server.get(f"/api/jobs/{err['details']['job_id']}").json()
    assert job["state"] == "failed" and job["attempts"] == 1 and MEMORY_WORDS in job["error"]

    second = oom_server.post("/face-swap", json=faces)
    assert second.status_code == 200, second.text
    assert second.json()["image"].startswith("data:image/png;base64,")


def test_transcription_oom_answers_503_then_the_next_one_works(oom_server, speech_wav):
    """speech.py leases with residency.use and no retry: the OpenAI route answers 503, then 200."""
    def transcribe():
        return requests.post(oom_server.base + "/v1/audio/transcriptions", headers=oom_server.headers(),
                             files={"file": ("hola.wav", speech_wav, "audio/wav")}, data={"model": "whisper-1"},
                             timeout=120)

    first = transcribe()
    assert first.status_code == 503, first.text
    err = first.json()
    assert err["status"] == "error" and MEMORY_WORDS in err["message"]
    assert err["error"]["type"] == "server_error" and MEMORY_WORDS in err["error"]["message"]  # OpenAI's shape

    second = transcribe()
    assert second.status_code == 200, second.text
    assert "text" in second.json()
    assert requests.get(oom_server.base + "/", timeout=5).json()["status"] == "online"


# =========================================================================== restart after SIGKILL


def mixed_jobs(faces: dict, wav: bytes) -> list[tuple[str, dict]]:
    """20 jobs: 9 images, 4 swaps, 3 transcriptions, 4 videos; the GPU ones run in this order.

    The 10th GPU job is slower (512 px, 8 steps) so the SIGKILL lands while it runs
    with the jobs before it finished and the ones after it still queued.
    """
    audio = base64.b64encode(wav).decode()

    def image(i: int, size: int = 256, steps: int = 1) -> tuple[str, dict]:
        return "image.generate", {"prompt": f"a product photo #{i}", "width": size, "height": size, "steps": steps,
                                  "seed": 1000 + i, "cache": False}

    def video(i: int) -> tuple[str, dict]:
        return "video.render", {"script": f"Hola. Este es el anuncio {i}.", "avatar_id": "default",
                                "resolution": 144, "fps": 10, "generate_subtitles": i % 2 == 0}

    swap = ("faces.swap", dict(faces))
    speech = ("speech.transcribe", {"audio": audio})
    return [
        image(1), swap, speech, video(1), image(2), swap, image(3), video(2), speech, image(4),
        swap, image(5, 512, 8), video(3), image(6), speech, swap, image(7), video(4), image(8), image(9),
    ]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def test_sigkill_mid_job_then_restart_loses_nothing(models_dir, tmp_path, faces, speech_wav):
    build_tiny_kit(models_dir)
    data_dir = tmp_path / "data"
    figures: dict = {}
    first = start_server(models_dir, data_dir)
    try:
        first.wait_ready()
        t0 = time.monotonic()
        ids = []
        for kind, params in mixed_jobs(faces, speech_wav):
            r = first.post("/api/jobs", json={"kind": kind, "params": params})
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
        slow = ids[11]
        assert len(set(ids)) == 20
        # Kill while the slow job runs (it has reported progress), after the jobs before it.
        deadline = time.monotonic() + 90
        while True:
            job = first.get(f"/api/jobs/{slow}").json()
            if job["status"] == "processing" and job["progress"] > 0:
                break
            assert job["status"] in ("queued", "processing"), job
            assert time.monotonic() < deadline, "the slow job never started"
            time.sleep(0.02)
        first.proc.send_signal(signal.SIGKILL)
        assert first.proc.wait(10) == -signal.SIGKILL
        figures["kill_after_s"] = round(time.monotonic() - t0, 2)
    finally:
        first.stop()

    reader = JobQueue(data_dir)  # the database as the killed process left it; never started
    before = {job_id: reader.get(job_id) for job_id in ids}
    finished = [i for i in ids if before[i].done]
    running = [i for i in ids if before[i].state == "running"]
    queued = [i for i in ids if before[i].state == "queued"]
    assert slow in running and finished and queued
    assert len(finished) + len(running) + len(queued) == 20
    assert all(before[i].state == "succeeded" for i in finished), {i: before[i].error for i in finished}
    figures.update(finished_at_kill=len(finished), running_at_kill=len(running), queued_at_kill=len(queued))

    t_restart = time.monotonic()
    second = start_server(models_dir, data_dir)
    try:
        second.wait_ready()
        figures["restart_ready_s"] = round(time.monotonic() - t_restart, 2)
        after = {job_id: wait_job(second, job_id, timeout=90) for job_id in ids}
        figures["all_done_after_restart_s"] = round(time.monotonic() - t_restart, 2)

        listed = second.get("/api/jobs?limit=500").json()["jobs"]
        assert sorted(j["id"] for j in listed) == sorted(ids)  # all 20, none lost, none added
        for job_id in finished:  # unchanged, byte for byte in what the API shows
            old = before[job_id]
            new = after[job_id]
            assert (new["state"], new["result"], new["finished_at"], new["started_at"], new["attempts"]) == (
                old.state, old.result, old.finished_at, old.started_at, old.attempts), job_id
        for job_id in running:  # interrupted: re-queued, run again
            job = after[job_id]
            assert job["state"] == "succeeded" and job["attempts"] == 2, job
            events = second.get(f"/api/events?since=0&job_id={job_id}&timeout=0").json()["events"]
            assert any(e["type"] == "job.progress" and e.get("stage") == "re-queued after a restart"
                       and e.get("state") == "queued" for e in events), events
        for job_id in queued:
            assert after[job_id]["state"] == "succeeded" and after[job_id]["attempts"] == 1, after[job_id]
        figures["requeued"] = sum(1 for j in after.values() if j["attempts"] == 2)
    finally:
        second.stop()

    store = AssetStore(data_dir)
    try:
        assets = store.list(limit=100_000)
        by_id = {a.id: a for a in assets}
        for asset in assets:  # every row has its file, byte for byte
            path = store.path(asset.id)
            assert path.stat().st_size == asset.bytes and sha256_file(path) == asset.sha256, asset
        for job_id in ids:  # and every asset a result names has its row
            result = reader.get(job_id).result or {}
            named = set(result.get("asset_ids") or [])
            if result.get("asset_id"):
                named.add(result["asset_id"])
            assert named and named <= set(by_id), (job_id, named - set(by_id))
        figures["assets_checked"] = len(assets)
    finally:
        store.close()
    print(f"\nrestart figures: {figures}")
