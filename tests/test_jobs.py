"""The job queue with real SQLite files and real threads (and a real killed process)."""
from __future__ import annotations

import collections
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import logging
import time
from pathlib import Path

import pytest

from enfoads.work import events as ev
from enfoads.work.assets import AssetStore
from enfoads.errors import UnprocessableInput
from enfoads.work.events import EventBus, RecordingBus
from enfoads.work.job_types import (
    CPU,
    GPU,
    JobCancelled,
    JobInterrupted,
    JobNotFound,
    QueueFullError,
    UnknownJobKind,
)
from enfoads.work.jobs import JobQueue

import job_process

JOB_PROCESS = Path(__file__).with_name("job_process.py")


@pytest.fixture
def make_queue(tmp_path):
    """A factory of queues on tmp_path with an asset store and a recording bus; all closed at the end."""
    made = []

    def make(**kw) -> JobQueue:
        kw.setdefault("assets", AssetStore(tmp_path))
        kw.setdefault("bus", RecordingBus(tmp_path))
        q = JobQueue(tmp_path, **kw)
        made.append(q)
        return q

    yield make
    for q in made:
        q.close(grace_s=2)


def wait_until(predicate, timeout=5.0, step=0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    raise AssertionError("condition not reached in time")


def gated():
    """A handler that blocks until the returned event is set."""
    gate = threading.Event()

    def handler(params, ctx):
        assert gate.wait(10)
        return {"ok": True}

    return gate, handler


def test_fifo_order_per_device(make_queue):
    q = make_queue(cpu_workers=1)
    ran = {GPU: [], CPU: []}
    q.register("g", lambda p, ctx: ran[GPU].append(p["i"]) or {}, device=GPU)
    q.register("c", lambda p, ctx: ran[CPU].append(p["i"]) or {}, device=CPU)
    jobs = [q.submit("g" if i % 3 else "c", {"i": i}) for i in range(30)]
    q.start()
    for j in jobs:
        assert q.wait(j.id, timeout=5).state == "succeeded"
    assert ran[GPU] == [i for i in range(30) if i % 3]
    assert ran[CPU] == [i for i in range(30) if not i % 3]


def test_job_fields_and_result(make_queue):
    q = make_queue()

    def handler(params, ctx):
        ctx.progress(50, "half")
        asset = ctx.save_bytes(b"\x89PNG fake", "image/png", width=2, height=3)
        return {"n": params["n"] + 1, "first": asset.id}

    q.register("image.generate", handler, device=GPU)
    q.start()
    job = q.submit_and_wait("image.generate", {"n": 1}, timeout=5)
    assert job.state == "succeeded" and job.progress == 100 and job.attempts == 1
    assert job.result["n"] == 2 and job.result["asset_ids"] == [job.result["first"]]
    assert job.error is None and job.device == GPU
    assert job.created_at <= job.started_at <= job.finished_at
    asset = q.assets.get(job.result["first"])
    assert asset.job_id == job.id and asset.params == {"n": 1} and (asset.width, asset.height) == (2, 3)
    assert len(job.id) == 32 and q.get(job.id) == job


def test_unknown_kind_and_bad_params(make_queue):
    q = make_queue()
    q.register("k", lambda p, ctx: {})
    with pytest.raises(UnknownJobKind):
        q.submit("nope", {})
    with pytest.raises(TypeError):
        q.submit("k", {"x": object()})
    with pytest.raises(JobNotFound):
        q.get("missing")
    assert q.counts()["queued"] == 0  # nothing half-submitted


def test_cancel_queued_job_at_once(make_queue):
    q = make_queue()
    gate, blocker = gated()
    calls = []
    q.register("block", blocker)
    q.register("work", lambda p, ctx: calls.append(p) or {})
    first = q.submit("block")
    second = q.submit("work", {"x": 1})
    q.start()
    wait_until(lambda: q.get(first.id).state == "running")
    cancelled = q.cancel(second.id)
    assert cancelled.state == "cancelled" and cancelled.finished_at is not None
    gate.set()
    assert q.wait(first.id, 5).state == "succeeded"
    time.sleep(0.05)
    assert calls == [] and q.get(second.id).state == "cancelled"
    assert [e.job_id for e in q.bus.of_type(ev.JobCancelled)] == [second.id]


def test_cancel_running_job_stops_at_next_progress(make_queue):
    q = make_queue()
    seen = {}

    def loop(params, ctx):
        try:
            for i in range(10_000):
                ctx.progress(i % 100, f"step {i}")
                time.sleep(0.002)
        except JobCancelled:
            seen["cancelled_flag"] = ctx.cancelled
            seen["step"] = i
            raise
        return {}

    q.register("loop", loop)
    q.start()
    job = q.submit("loop")
    q.bus.wait_for(lambda e: isinstance(e, ev.JobProgress) and e.stage == "step 5")
    flagged = q.cancel(job.id)
    assert flagged.state == "running" and flagged.cancel_requested
    done = q.wait(job.id, timeout=5)
    assert done.state == "cancelled" and seen["cancelled_flag"] and seen["step"] < 10_000
    assert isinstance(q.bus.for_job(job.id)[-1], ev.JobCancelled)
    # The worker is free again.
    q.register("quick", lambda p, ctx: {"ok": 1})
    assert q.submit_and_wait("quick", timeout=5).state == "succeeded"


def test_cancel_finished_job_is_a_noop(make_queue):
    q = make_queue()
    q.register("k", lambda p, ctx: {"v": 1})
    q.start()
    job = q.submit_and_wait("k", timeout=5)
    assert q.cancel(job.id) == job


def test_handler_exception_fails_the_job_with_type_and_message(make_queue):
    q = make_queue()

    def bad(params, ctx):
        ctx.progress(10, "about to fail")
        raise ValueError("the prompt is empty")

    def no_face(params, ctx):
        raise UnprocessableInput("no face in the image")

    q.register("bad", bad)
    q.register("no_face", no_face)
    q.register("good", lambda p, ctx: {"ok": True})
    q.start()
    job = q.submit_and_wait("bad", timeout=5)
    assert job.state == "failed" and job.attempts == 1
    # A plain exception is a server error; an error type that carries its status keeps it with the job.
    assert job.error == {"type": "ValueError", "message": "the prompt is empty", "status": 500,
                         "code": "internal_error"}
    failed = q.bus.of_type(ev.JobFailed, job.id)
    assert failed[0].error_type == "ValueError" and failed[0].error_message == "the prompt is empty"
    assert q.submit_and_wait("no_face", timeout=5).error["status"] == 422
    assert q.submit_and_wait("good", timeout=5).state == "succeeded"  # the worker lives on


def test_the_log_has_a_traceback_for_a_bug_and_one_line_for_a_caller_visible_answer(make_queue, caplog):
    q = make_queue()

    def bug(params, ctx):
        raise ValueError("a bug")

    def no_face(params, ctx):
        raise UnprocessableInput("no face in the image")

    q.register("bug", bug)
    q.register("no_face", no_face)
    q.start()
    with caplog.at_level(logging.INFO, logger="enfoads.work"):
        bug_job = q.submit_and_wait("bug", timeout=5)
        face_job = q.submit_and_wait("no_face", timeout=5)
    records = {r.getMessage().split(" ")[1]: r for r in caplog.records if " failed" in r.getMessage()}
    assert records[bug_job.id].levelno == logging.ERROR and records[bug_job.id].exc_info, records
    face = records[face_job.id]
    assert face.levelno == logging.WARNING and not face.exc_info, face
    assert face.getMessage() == f"job {face_job.id} (no_face) failed: 422 unprocessable: no face in the image"


def test_an_uncharged_interruption_gives_the_attempt_back_and_a_charged_one_uses_it_up(make_queue):
    # A remote backend's outage (the whole cluster away) is not the job's doing: however often it
    # happens the job runs again. A lost replica is charged, so a job that keeps killing it ends.
    q = make_queue(max_attempts=2)
    runs = collections.Counter()

    def outage_three_times(params, ctx):
        runs["outage"] += 1
        if runs["outage"] <= 3:
            raise JobInterrupted("the cluster went away", cause="Ray cluster outage", charged=False)
        return {"runs": runs["outage"]}

    def kills_its_replica(params, ctx):
        runs["poison"] += 1
        raise JobInterrupted("the replica died", cause="replica failure")

    q.register("outage", outage_three_times)
    q.register("poison", kills_its_replica)
    q.start()
    job = q.submit_and_wait("outage", timeout=10)
    assert (job.state, job.result, job.attempts) == ("succeeded", {"runs": 4}, 1)
    stages = [e.stage for e in q.bus.of_type(ev.JobProgress, job.id)]
    assert stages.count("re-queued after a Ray cluster outage") == 3, stages
    job = q.submit_and_wait("poison", timeout=10)
    assert (job.state, job.attempts, runs["poison"]) == ("failed", 2, 2)
    assert job.error["message"] == "interrupted by a replica failure"


def test_submit_and_wait_timeout_returns_the_job_which_goes_on(make_queue):
    q = make_queue()
    gate, handler = gated()
    q.register("slow", handler)
    q.start()
    t0 = time.monotonic()
    job = q.submit_and_wait("slow", {}, timeout=0.2)
    assert 0.15 < time.monotonic() - t0 < 2
    assert job.state in ("queued", "running") and not job.done
    gate.set()
    assert q.wait(job.id, timeout=5).state == "succeeded"


def test_queue_full_past_max_queued(make_queue):
    q = make_queue(max_queued=3)
    q.register("k", lambda p, ctx: {})
    jobs = [q.submit("k") for _ in range(3)]
    with pytest.raises(QueueFullError):
        q.submit("k")
    q.cancel(jobs[0].id)
    q.submit("k")  # room again
    assert q.counts()["queued"] == 3


def test_a_full_queue_says_when_to_retry_from_the_jobs_it_ran(make_queue):
    q = make_queue(max_queued=1)
    q.register("k", lambda p, ctx: time.sleep(0.3) or {})
    q.start()
    assert q.submit_and_wait("k", timeout=5).state == "succeeded"
    gate = threading.Event()
    q.register("block", lambda p, ctx: gate.wait(5) and {})
    q.submit("block")
    deadline = time.monotonic() + 5
    while q.counts()["running"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    q.submit("k")
    with pytest.raises(QueueFullError, match="try again in about 1 s") as info:
        q.submit("k")
    assert info.value.retry_after_s == 1  # the 0.3 s job, rounded up to the header's 1 s floor
    gate.set()


def test_calls_on_a_worker_run_before_its_next_job_and_are_cancelled_at_close(make_queue):
    q = make_queue()
    order, gate = [], threading.Event()
    q.register("g", lambda p, ctx: order.append(f"job {p['n']}") or {}, device=GPU)
    q.register("hold", lambda p, ctx: gate.wait(5) and {}, device=GPU)
    q.start()
    q.submit("hold")
    deadline = time.monotonic() + 5
    while q.counts()["running"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    first = q.submit("g", {"n": 1})
    call = q.call_on_worker(lambda: order.append("call") or 42)
    gate.set()
    assert call.result(timeout=5) == 42
    assert q.wait(first.id, 5).state == "succeeded"
    assert order == ["call", "job 1"]  # submitted after the job, run before it (it is not a job)
    failing = q.call_on_worker(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failing.result(timeout=5)
    assert q.submit_and_wait("g", {"n": 2}, timeout=5).state == "succeeded"  # the worker goes on
    q.register("hold2", lambda p, ctx: time.sleep(0.5) or {}, device=GPU)
    q.submit("hold2")
    time.sleep(0.1)
    late = q.call_on_worker(lambda: order.append("never"))
    q.close(grace_s=2)
    assert late.cancelled() and "never" not in order


def test_close_does_not_wait_for_a_call_in_progress_and_loses_no_job(make_queue, tmp_path, caplog):
    # SIGTERM during the warm start: the model load in progress has no row to re-queue, so the
    # shutdown must not sit out the few seconds a running job gets to reach its next step.
    q = make_queue()
    q.register("g", lambda p, ctx: {}, device=GPU)
    q.start()
    loading, release = threading.Event(), threading.Event()
    q.call_on_worker(lambda: loading.set() or release.wait(30))
    assert loading.wait(5)
    queued = q.submit("g")
    closer = threading.Thread(target=q.close, kwargs={"grace_s": 0})
    closer.start()
    closer.join(3.0)  # the old close waited 5 s here
    try:
        assert not closer.is_alive(), "close waited for the call in progress"
        with JobQueue(tmp_path) as reader:  # the database as the next start finds it
            assert reader.get(queued.id).state == "queued"  # runs then
        assert "abandoning" not in caplog.text
    finally:
        release.set()
        closer.join(10)


def test_many_threads_submitting_at_once(make_queue):
    q = make_queue(cpu_workers=2)
    ran = collections.Counter()
    lock = threading.Lock()

    def count(params, ctx):
        with lock:
            ran[ctx.job_id] += 1
        return {}

    q.register("g", count, device=GPU)
    q.register("c", count, device=CPU)
    q.start()
    ids: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(16)

    def submitter(n):
        try:
            barrier.wait()
            for i in range(25):
                ids.append(q.submit("g" if (n + i) % 2 else "c", {"n": n, "i": i}).id)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=submitter, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(ids) == 400 and len(set(ids)) == 400
    for job_id in ids:
        assert q.wait(job_id, timeout=10).state == "succeeded"
    assert set(ran) == set(ids) and set(ran.values()) == {1}
    assert q.counts()["succeeded"] == 400
    created = q.bus.of_type(ev.JobCreated)
    assert sorted(e.job_id for e in created) == sorted(ids)


def test_reads_during_writes(make_queue):
    q = make_queue(cpu_workers=2)
    assert q.journal_mode == "wal"

    def chatty(params, ctx):
        for i in range(40):
            ctx.progress(i * 100 // 40, f"step {i}")
        return {"done": True}

    q.register("g", chatty, device=GPU)
    q.register("c", chatty, device=CPU)
    q.start()
    stop = threading.Event()
    reads, errors = [0], []
    seen = [collections.defaultdict(list) for _ in range(3)]  # per reader: job id -> progresses seen

    def reader(mine):
        try:
            while not stop.is_set():
                for job in q.list(limit=50):
                    mine[job.id].append(job.progress)
                q.bus.events_since(max(0, q.bus.last_seq - 20))
                reads[0] += 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    readers = [threading.Thread(target=reader, args=(mine,)) for mine in seen]
    for t in readers:
        t.start()
    try:
        jobs = [q.submit("g" if i % 2 else "c") for i in range(30)]
        for j in jobs:
            assert q.wait(j.id, timeout=15).state == "succeeded"
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert errors == [] and reads[0] > 10
    for mine in seen:  # a reader never sees a job's progress go backwards
        for progresses in mine.values():
            assert progresses == sorted(progresses)


def test_wal_can_be_turned_off(tmp_path):
    q = JobQueue(tmp_path / "plain.sqlite3", wal=False)
    try:
        assert q.journal_mode == "delete"
        q.register("k", lambda p, ctx: {"v": p["v"]})
        q.start()
        assert q.submit_and_wait("k", {"v": 3}, timeout=5).result == {"v": 3}
    finally:
        q.close()


def test_close_requeues_a_running_job_after_the_grace_period(tmp_path):
    def loop(params, ctx):
        for i in range(100_000):
            ctx.progress(i % 100, "working")
            time.sleep(0.002)
        return {}

    def quick(params, ctx):
        ctx.progress(50, "again")
        return {"attempt": ctx.attempt}

    q = JobQueue(tmp_path, bus=RecordingBus())
    q.register("loop", loop)
    q.start()
    job = q.submit("loop")
    wait_until(lambda: q.get(job.id).progress > 0)
    t0 = time.monotonic()
    q.close(grace_s=0.2)
    assert time.monotonic() - t0 < 3
    stopped = JobQueue(tmp_path).get(job.id)  # q's database is closed now
    assert stopped.state == "queued" and stopped.stage == "re-queued after a shutdown"

    q2 = JobQueue(tmp_path)
    q2.register("loop", quick)  # the next process runs it again
    q2.start()
    try:
        again = q2.wait(job.id, timeout=5)
        assert again.state == "succeeded" and again.attempts == 2 and again.result == {"attempt": 2}
    finally:
        q2.close()


# --------------------------------------------------------------------------- restart


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("max_attempts", [2, 1])
def test_restart_after_sigkill_mid_job_loses_nothing(tmp_path, max_attempts):
    args = [sys.executable, str(JOB_PROCESS), str(tmp_path)]
    serve = subprocess.Popen(
        [*args, "serve", "--delay", "0.02", "--max-attempts", str(max_attempts)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        ids = json.loads(serve.stdout.readline())
        reader = JobQueue(tmp_path)  # another process's view: reads only, never started
        wait_until(
            lambda: reader.get(ids["slow"]).state == "running"
            and reader.get(ids["slow"]).progress >= 5
            and reader.get(ids["fast"]).state == "succeeded"
            and reader.get(ids["cpu"]).state == "succeeded",
            timeout=20,
        )
        os.kill(serve.pid, signal.SIGKILL)
        assert serve.wait(10) == -signal.SIGKILL
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
    before = {name: reader.get(job_id) for name, job_id in ids.items()}
    assert before["slow"].state == "running" and before["waiting"].state == "queued"

    resume = subprocess.run(
        [*args, "resume", "--delay", "0", "--max-attempts", str(max_attempts)],
        capture_output=True, text=True, timeout=60,
    )
    assert resume.returncode == 0, resume.stderr

    after = {name: reader.get(job_id) for name, job_id in ids.items()}
    assert reader.unfinished_job_ids() == set()
    assert sum(reader.counts().values()) == len(ids)  # 0 jobs lost, none added
    for name in ("fast", "cpu"):  # finished jobs are unchanged
        assert after[name] == before[name]
    assert after["waiting"].state == "succeeded" and after["waiting"].attempts == 1

    slow = after["slow"]
    history = EventBus(tmp_path).events_since(0, job_id=slow.id)
    if max_attempts == 2:
        assert slow.state == "succeeded" and slow.attempts == 2 and slow.result["attempt"] == 2
        assert any(isinstance(e, ev.JobProgress) and e.stage == "re-queued after a restart" and e.state == "queued"
                   for e in history)
    else:
        assert slow.state == "failed" and slow.attempts == 1
        assert slow.error == {"type": "Interrupted", "message": "interrupted by a restart"}
        assert isinstance(history[-1], ev.JobFailed)
    seqs = [e.seq for e in history]
    assert seqs == sorted(set(seqs))  # seq went on increasing across the restart

    store = AssetStore(tmp_path)
    assets = store.list(limit=1000)
    assert assets, "the handlers saved assets"
    for asset in assets:  # every row has its file, byte for byte
        assert sha256_file(store.path(asset.id)) == asset.sha256 and store.path(asset.id).stat().st_size == asset.bytes
    by_job = collections.defaultdict(list)
    for asset in assets:
        by_job[asset.job_id].append(asset)
    partial = hashlib.sha256(job_process.partial_bytes(slow.id)).hexdigest()
    assert partial in {a.sha256 for a in by_job[slow.id]}  # the interrupted attempt's output survived
    for name in ("fast", "cpu"):
        job = after[name]
        assert sorted(a.id for a in by_job[job.id]) == sorted(job.result["asset_ids"])
        assert hashlib.sha256(job_process.final_bytes(job.id)).hexdigest() in {a.sha256 for a in by_job[job.id]}


def test_the_local_queue_is_a_job_backend(make_queue):
    from enfoads.work.backend import JobBackend

    assert isinstance(make_queue(), JobBackend)
