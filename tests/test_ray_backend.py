"""The Ray Serve backend (``enfoads serve --ray``): a real local Ray, real Serve replicas, the real queue.

One local Ray for the module (``ray.init(num_cpus=2)``), every role deployed,
two replicas of the tiny image deployment. The head is the engine the server
builds (``build_engine`` with ``ray="local"``): its SQLite rows, events and
assets are the local backend's; only the model work crosses to the replicas.
"""
from __future__ import annotations

import base64
import json
import os
import signal
import time

import pytest

ray = pytest.importorskip("ray")

from enfoads.cluster.wire import ClusterUnavailable  # noqa: E402
from enfoads.engine import build_engine  # noqa: E402
from enfoads.models.tiny import build_tiny_kit  # noqa: E402
from enfoads.models.tiny.faces import face_test_pattern  # noqa: E402
from enfoads.settings import Settings  # noqa: E402
from enfoads.work.events import JobProgress  # noqa: E402

from test_service_contract import SAMPLES, _asset_ids, _png_b64  # noqa: E402

pytestmark = pytest.mark.slow  # real processes; `make test-quick` leaves them out

# A slow tiny render: long enough to be killed or cancelled mid-way, with progress every step.
SLOW = {"prompt": "a slow red bicycle", "steps": 30, "width": 512, "height": 512, "preview_every": 1,
        "cache": False}


@pytest.fixture(scope="module")
def engine(models_dir, tmp_path_factory):
    build_tiny_kit(models_dir)
    settings = Settings(profile="tiny", models_dir=models_dir, data_dir=tmp_path_factory.mktemp("ray"),
                        auto_download="off", warm="off", ray="local", ray_replicas="image=2", ray_silence_s=60)
    engine = build_engine(settings)
    assert engine.jobs.available, engine.jobs.last_error
    yield engine
    engine.close(grace_s=5)
    assert not ray.is_initialized()  # a local Ray is stopped with the engine


def _progress(engine, job_id):
    return [e for e in engine.bus.events_since(0, job_id=job_id) if isinstance(e, JobProgress)]


def test_every_role_is_deployed_with_its_replicas(engine):
    plans = {p.role: p for p in engine.jobs.plans}
    assert set(plans) == {"image", "faces", "speech", "enhance", "video"}
    assert plans["image"].replicas == 2 and all(p.replicas == 1 for r, p in plans.items() if r != "image")
    assert all(p.gpu_fraction == 0 for p in plans.values())  # this cluster has no GPU
    assert engine.queue.gpu_workers == 6  # one head thread per replica slot
    assert engine.warmer is None  # the head loads no model; replicas warm their own
    described = engine.jobs.describe()
    assert described["name"] == "ray" and described["available"] and described["address"] == "local"
    assert {r["role"]: r["replicas"] for r in described["roles"]}["image"] == 2


def test_eight_jobs_through_the_real_queue_all_finish_on_both_replicas(engine):
    jobs = [engine.submit("image.generate", {"prompt": f"a red bicycle {i}", "steps": 2, "seed": i})
            for i in range(8)]
    done = [engine.jobs.wait(job.id, timeout=240) for job in jobs]
    assert [job.state for job in done] == ["succeeded"] * 8, [job.error for job in done]
    replicas = {engine.jobs.ran_on[job.id] for job in done}
    assert len(replicas) == 2 and all(name.startswith("SERVE_REPLICA::enfoads-image#") for name in replicas)
    for job in done:  # outputs crossed back as bytes and are the head's assets, under the ids the result names
        assert job.result["image_asset_id"] in job.result["asset_ids"]
        png = engine.assets.read_bytes(job.result["image_asset_id"])
        assert png.startswith(b"\x89PNG") and engine.assets.get(job.result["image_asset_id"]).job_id == job.id
        image = job.result["images"][0]
        assert image["asset_id"] == job.result["image_asset_id"] and image["bytes"] == len(png)
        assert image["sha256"] == engine.assets.get(image["asset_id"]).sha256


@pytest.mark.parametrize("name", ["image.generate", "faces.swap", "speech.transcribe", "enhance.image",
                                  "video.render"])
def test_the_service_contract_holds_on_ray(engine, name):
    """test_service_contract's job test, run against the Ray backend."""
    job = engine.submit_and_wait(name, SAMPLES[name], timeout=240)
    assert job.state == "succeeded", job.error
    assert job.progress == 100 and json.loads(json.dumps(job.result)) == job.result
    progress = [e.progress for e in _progress(engine, job.id)]
    assert progress and progress == sorted(progress) and all(0 <= p <= 100 for p in progress)
    saved = {asset.id for asset in engine.assets.list(job_id=job.id, limit=1000)}
    named = _asset_ids(job.result)
    assert named and named <= saved, (named, saved)
    for asset_id in named:
        assert engine.assets.read_bytes(asset_id)
    assert engine.jobs.ran_on[job.id].startswith(f"SERVE_REPLICA::enfoads-{name.split('.')[0]}#")


def test_previews_made_in_a_replica_are_head_assets_before_their_progress(engine):
    job = engine.submit_and_wait("image.generate", {"prompt": "a blue kite", "steps": 4, "preview_every": 1,
                                                    "cache": False}, timeout=240)
    assert job.state == "succeeded", job.error
    previews = [e.preview_asset_id for e in _progress(engine, job.id) if e.preview_asset_id]
    assert previews
    for asset_id in previews:
        assert engine.assets.get(asset_id).job_id == job.id


def test_a_replica_error_keeps_its_type_status_and_message(engine):
    blank = face_test_pattern(squares=())
    job = engine.submit_and_wait("faces.swap", {"source_image": _png_b64(blank),
                                                "target_image": _png_b64(face_test_pattern())}, timeout=240)
    assert job.state == "failed"
    assert job.error["type"] == "UnprocessableInput" and job.error["status"] == 422
    assert job.error["message"].startswith("source_image: no face found in the source image")


def test_inputs_named_by_asset_id_are_shipped_to_the_replica(engine):
    png = base64.b64decode(_png_b64(face_test_pattern(64, 48, squares=((16, 8, 32),))))
    stored = engine.assets.save_bytes(png, "image/png", width=64, height=48)
    job = engine.submit_and_wait("enhance.image", {"media": stored.id, "scale": 2}, timeout=240)
    assert job.state == "succeeded", job.error
    out = engine.assets.get(job.result["asset_ids"][0])
    assert (out.width, out.height) == (128, 96)


def _slow_job_under_way(engine):
    """A SLOW render a replica has started and reported progress on; returns it and that replica."""
    job = engine.submit("image.generate", SLOW)
    deadline = time.monotonic() + 120
    while job.id not in engine.jobs.ran_on or engine.jobs.get(job.id).progress < 5:
        assert time.monotonic() < deadline, engine.jobs.get(job.id)
        time.sleep(0.05)
    return job, engine.jobs.ran_on[job.id]


def test_a_replica_killed_mid_job_leaves_the_job_finished_by_a_retry(engine):
    job, victim = _slow_job_under_way(engine)
    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
    done = engine.jobs.wait(job.id, timeout=300)
    assert done.state == "succeeded", done.error
    assert done.attempts == 2
    assert engine.jobs.ran_on[job.id] != victim
    stages = [e.stage for e in _progress(engine, job.id)]
    assert "re-queued after a replica failure" in stages
    # Serve replaces the dead replica: the deployment is back to two.
    deadline = time.monotonic() + 120
    while len({engine.jobs.ran_on[j.id] for j in [engine.submit_and_wait(
            "image.generate", {"prompt": f"after {i}", "steps": 1, "seed": i, "cache": False}, timeout=120)
            for i in range(4)]} - {victim}) < 2:
        assert time.monotonic() < deadline, "the killed replica was not replaced"


def test_a_replica_that_goes_silent_mid_job_counts_as_lost_and_the_job_runs_again(engine):
    """A hung replica, for real: its process is stopped (SIGSTOP) mid-job."""
    engine.jobs.silence_s = 8  # heartbeats come every 5 s and this job reports every step
    job, hung = _slow_job_under_way(engine)
    pid = engine.jobs.replica_pids[hung]
    os.kill(pid, signal.SIGSTOP)
    try:
        done = engine.jobs.wait(job.id, timeout=300)
    finally:
        engine.jobs.silence_s = 60
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass  # ended by the head, as it should be
    assert done.state == "succeeded", done.error
    assert done.attempts == 2 and engine.jobs.ran_on[job.id] != hung
    assert "re-queued after a replica failure" in [e.stage for e in _progress(engine, job.id)]
    with pytest.raises(ProcessLookupError):  # the hung replica was ended (Serve starts another)
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.1)


def test_waiting_in_serves_queue_for_a_free_replica_is_not_silence(engine):
    """Four requests wait at Serve's router longer than the limit, as when a replica is being replaced.

    The head normally claims no more jobs of a role than it has replicas; that limit is lifted here so
    six head threads send six renders to two replicas.
    """
    engine.jobs.silence_s = 8
    engine.queue.busy_kinds = None
    try:
        jobs = [engine.submit("image.generate", {**SLOW, "seed": i}) for i in range(6)]
        done = [engine.jobs.wait(job.id, timeout=300) for job in jobs]
    finally:
        engine.jobs.silence_s = 60
        engine.queue.busy_kinds = engine.jobs._busy_kinds
    assert [(job.state, job.attempts) for job in done] == [("succeeded", 1)] * 6, [job.error for job in done]
    assert max(job.started_at for job in done) - min(job.started_at for job in done) < 5  # all taken at once
    assert max(job.finished_at for job in done) - min(job.started_at for job in done) > 8  # ... and some waited


def test_a_burst_for_one_role_does_not_hold_back_another(engine):
    """Six head threads, two image replicas: a speech job queued after six renders starts at once."""
    images = [engine.submit("image.generate", {**SLOW, "seed": 100 + i}) for i in range(6)]
    speech = engine.submit("speech.transcribe", SAMPLES["speech.transcribe"])
    heard = engine.jobs.wait(speech.id, timeout=300)
    done = [engine.jobs.wait(job.id, timeout=300) for job in images]
    assert heard.state == "succeeded" and all(job.state == "succeeded" for job in done)
    assert heard.finished_at < sorted(job.finished_at for job in done)[1]  # not behind the renders
    # No thread took a render only to wait at Serve's router: two renders started before one finished.
    first_done = min(job.finished_at for job in done)
    assert sum(job.started_at < first_done - 0.5 for job in done) == 2, [(j.started_at, j.finished_at) for j in done]


def test_a_cancel_reaches_the_replica_and_it_takes_the_next_job(engine):
    job, _ = _slow_job_under_way(engine)
    engine.jobs.cancel(job.id)
    done = engine.jobs.wait(job.id, timeout=120)
    assert done.state == "cancelled"
    after = engine.submit_and_wait("image.generate", {"prompt": "next", "steps": 1, "cache": False}, timeout=120)
    assert after.state == "succeeded", after.error


def test_a_cluster_that_cannot_be_reached_answers_503_and_queues_nothing(engine):
    backend = engine.jobs
    backend._available.clear()  # what the health thread does when the cluster stops answering
    backend.last_error = "ConnectionError: the health check got no answer"
    try:
        before = backend.counts()
        with pytest.raises(ClusterUnavailable) as info:
            engine.submit("image.generate", {"prompt": "while away"})
        assert info.value.status == 503 and info.value.code == "cluster_unavailable"
        assert "not reachable" in info.value.message and "retry" in info.value.message
        assert backend.counts() == before
        # What was queued before the health check noticed waits in the queue: no worker takes it
        # only to fail it, or to spend its attempts on the outage.
        waiting = backend.queue.submit("image.generate", {"prompt": "queued before", "steps": 1})
        time.sleep(1.0)
        assert backend.get(waiting.id).state == "queued"
    finally:
        backend._back()  # what a reconnect ends with
    done = engine.jobs.wait(waiting.id, timeout=120)
    assert (done.state, done.attempts) == ("succeeded", 1)
    assert engine.submit_and_wait("image.generate", {"prompt": "back", "steps": 1}, timeout=120).state == "succeeded"
