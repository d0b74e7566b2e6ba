"""`enfoads serve` on a production server: gunicorn, one gthread worker, WebSockets, clean shutdown.

- no development-server warning in the log; gunicorn's arbiter plus exactly
  one worker, and torch is loaded only in the worker (nothing forks after it);
- Socket.IO works over the WebSocket transport alone;
- SIGTERM while a job runs: exit 0 within a few seconds, the job re-queued
  (as after a restart), a request waiting for it answered with its id, and
  the job completes after the next start; Ctrl-C (SIGINT to the process
  group) the same; ``kill -9`` of the server leaves no worker behind;
- signals that would start a second worker (SIGTTIN, SIGHUP) are refused.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import requests

from enfoads.work.jobs import JobQueue
from enfoads.models.tiny import build_tiny_kit
from server_fixture import child_pids, start_server

pytestmark = pytest.mark.slow  # real processes; `make test-quick` leaves them out

# Long enough on the tiny kit to be sure the signal lands while it runs (it reports progress each step).
LONG_JOB = {"kind": "image.generate",
            "params": {"prompt": "a long one", "width": 384, "height": 384, "steps": 8, "cache": False}}
# "Promptly": the job stops at its next step; gunicorn keeps connections kept alive up to 2 s more
# (to answer a request already on its way with "Connection: close"), then the arbiter exits.
EXIT_S = 6.0


@pytest.fixture(scope="module")
def kit(models_dir):
    build_tiny_kit(models_dir)
    return models_dir


@pytest.fixture(scope="module")
def server(kit, tmp_path_factory):
    srv = start_server(kit, tmp_path_factory.mktemp("server") / "data")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_running(server, job_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        job = server.get(f"/api/jobs/{job_id}").json()
        if job["state"] == "running" and job["progress"] > 0:
            return
        assert job["state"] in ("queued", "running"), job
        assert time.monotonic() < deadline, f"job {job_id} never started"
        time.sleep(0.02)


def wait_exit(proc, timeout: float) -> tuple[int, float]:
    t0 = time.monotonic()
    rc = proc.wait(timeout)
    return rc, time.monotonic() - t0


def test_production_server_no_development_warning_one_worker(server):
    text = server.log.read_text()
    assert "development server" not in text.lower()
    assert "WARNING: This is a development server" not in text
    assert "Starting gunicorn" in text and "Using worker: EnfoadsWorker" in text
    assert text.count("Enfoads is running.") == 1  # the banner, once
    assert len(child_pids(server.proc.pid)) == 1
    # The engine (torch) lives in the worker; the arbiter that forked it never loaded torch.
    assert "libtorch" in maps(server.worker_pid)
    assert "libtorch" not in maps(server.proc.pid)
    # The tiny profile downloads nothing (its kit is built on first use, as ever).
    events = server.get("/api/events?since=0&timeout=0").json()["events"]
    assert not [e for e in events if e["type"] == "model.download"], events
    assert "model(s) of the tiny profile" not in text


def test_socketio_over_websocket_only(server):
    socketio = pytest.importorskip("socketio")
    client = socketio.Client()
    done, seen = threading.Event(), []

    @client.on("job_update")
    def on_update(data):
        seen.append(data)
        if data.get("status") == "completed":
            done.set()

    client.connect(server.base, auth={"key": server.key}, transports=["websocket"], wait_timeout=10)
    try:
        assert client.transport() == "websocket"
        job = server.post("/api/jobs", json={"kind": "image.generate",
                                             "params": {"prompt": "ws", "width": 256, "height": 256}}).json()
        client.call("subscribe", {"job_id": job["id"]}, timeout=10)
        assert done.wait(60), seen
        assert any(d["job_id"] == job["id"] for d in seen)
    finally:
        client.disconnect()
    # The frontend's way: the pasted URL's namespace, WebSocket only.
    frontend = socketio.Client()
    frontend.connect(server.frontend_base, namespaces=["/" + server.prefix], transports=["websocket"], wait_timeout=10)
    try:
        assert frontend.transport() == "websocket"
    finally:
        frontend.disconnect()


def test_signals_that_would_add_a_worker_are_refused(server):
    worker = server.worker_pid
    for sig in (signal.SIGTTIN, signal.SIGHUP):
        os.kill(server.proc.pid, sig)
    time.sleep(2.5)  # the arbiter handles signals once a second
    assert child_pids(server.proc.pid) == [worker]
    assert requests.get(server.base + "/", timeout=5).json()["ready"]
    text = server.log.read_text()
    assert "SIGTTIN (one more worker) ignored" in text and "SIGHUP (reload) ignored" in text


def test_sigterm_mid_job_exits_0_requeues_and_the_job_completes_after_restart_then_ctrl_c(kit, tmp_path):
    data = tmp_path / "data"
    first = start_server(kit, data)
    try:
        first.wait_ready()
        waiter: dict = {}

        def sync_request():  # a frontend request waiting for the job when the signal comes
            waiter["response"] = first.post("/generate-image", json={**LONG_JOB["params"]}, timeout=60)

        thread = threading.Thread(target=sync_request)
        thread.start()
        deadline = time.monotonic() + 30
        while not (jobs := first.get("/api/jobs?state=running").json()["jobs"]):
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.02)
        job_id = jobs[0]["id"]
        wait_running(first, job_id)
        # A Socket.IO client on the WebSocket transport: told of the re-queue, then disconnected.
        socketio = pytest.importorskip("socketio")
        client, updates, gone = socketio.Client(reconnection=False), [], threading.Event()
        client.on("job_update", updates.append)
        client.on("disconnect", lambda *reason: gone.set())
        client.connect(first.base, auth={"key": first.key}, transports=["websocket"], wait_timeout=10)
        client.call("subscribe", {"job_id": job_id}, timeout=10)
        worker = first.worker_pid
        first.proc.send_signal(signal.SIGTERM)
        rc, took = wait_exit(first.proc, 20)
        thread.join(10)
        assert gone.wait(5), "the WebSocket client was not disconnected"
    finally:
        first.stop()
    assert rc == 0 and took < EXIT_S, (rc, took, first.log.read_text()[-3000:])
    assert not alive(worker)
    assert any(u["job_id"] == job_id and u["state"] == "queued" and u["message"] == "re-queued after a shutdown"
               for u in updates), updates
    response = waiter["response"]
    assert response.status_code == 202 and response.json()["job_id"] == job_id, response.text
    assert f"re-queueing job {job_id}" in first.log.read_text()
    job = JobQueue(data).get(job_id)  # never started: the rows as the stopped server left them
    assert (job.state, job.attempts, job.stage) == ("queued", 1, "re-queued after a shutdown"), job

    second = start_server(kit, data)
    try:
        second.wait_ready()
        deadline = time.monotonic() + 90
        while (done := second.get(f"/api/jobs/{job_id}").json())["state"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert done["state"] == "succeeded" and done["attempts"] == 2, done
        events = second.get(f"/api/events?since=0&job_id={job_id}&timeout=0").json()["events"]
        assert any(e["type"] == "job.progress" and e.get("state") == "queued"
                   and e.get("stage") == "re-queued after a shutdown" for e in events), events

        # Ctrl-C in a terminal: SIGINT to every process of the foreground group.
        other = second.post("/api/jobs", json=LONG_JOB).json()["id"]
        wait_running(second, other)
        worker = second.worker_pid
        os.kill(second.proc.pid, signal.SIGINT)
        os.kill(worker, signal.SIGINT)
        rc, took = wait_exit(second.proc, 20)
    finally:
        second.stop()
    assert rc == 0 and took < EXIT_S, (rc, took, second.log.read_text()[-3000:])
    assert not alive(worker)
    job = JobQueue(data).get(other)
    assert job.state == "queued" and job.stage == "re-queued after a shutdown", job


def test_kill_9_of_the_server_leaves_no_worker_behind(kit, tmp_path):
    srv = start_server(kit, tmp_path / "data")
    try:
        worker = srv.worker_pid
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(10)
        deadline = time.monotonic() + 5
        while alive(worker):
            assert time.monotonic() < deadline, "the worker outlived the arbiter"
            time.sleep(0.02)
    finally:
        srv.stop()
