"""Real ``enfoads serve --ray`` processes: a local Ray stopped on exit; a cluster that goes away and comes back.

For the second, the cluster is a real ``ray start --head --block`` in its own process group,
killed with SIGKILL (a crash, not a clean stop) and started again on the same
port. While it is gone the head answers 503 with a clear message and queues
nothing; once it is back the same server (gunicorn restarts the worker that
Ray ends when its cluster vanishes) runs jobs again, and what was queued is
not lost.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

from enfoads.models.tiny import build_tiny_kit  # noqa: E402

from server_fixture import free_port, start_server  # noqa: E402

pytestmark = pytest.mark.slow  # real processes; `make test-quick` leaves them out

RAY = str(Path(sys.executable).with_name("ray"))
# A throwaway cluster on 127.0.0.1: Ray's token auth would need the token passed to the head.
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


class Cluster:
    def __init__(self, tmp: Path):
        self.port = free_port()
        self.tmp = tmp
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, **RAY_ENV, "RAY_TMPDIR": str(self.tmp)}
        log = open(self.tmp / f"ray-{time.monotonic_ns()}.log", "wb")
        self.proc = subprocess.Popen([RAY, "start", "--head", "--block", f"--port={self.port}", "--num-cpus=2",
                                      "--include-dashboard=false", "--disable-usage-stats"],
                                     env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def crash(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def _descendants(pid: int) -> dict[int, str]:
    """Every process under ``pid`` (Linux ``/proc``), with its name."""
    out, todo = {}, [pid]
    while todo:
        parent = todo.pop()
        children = []
        for task in Path(f"/proc/{parent}/task").glob("*"):  # every thread's children, not only the main one's
            try:
                children += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
        for child in children:
            try:
                out[child] = Path(f"/proc/{child}/comm").read_text().strip()  # Ray renames its processes
            except OSError:
                continue
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_serve_ray_starts_a_local_ray_runs_jobs_there_and_stops_it_on_exit(models_dir, tmp_path):
    build_tiny_kit(models_dir)
    server = start_server(models_dir, tmp_path / "data", args=("--ray",), extra_env={
        "ENFOADS_RAY_ROLES": "image,speech", "ENFOADS_WARM": "off",
        "ENFOADS_AUTO_DOWNLOAD": "off"})
    try:
        server.wait_ready(180)
        status = server.get("/gpu-status").json()["backend"]
        assert status["name"] == "ray" and status["address"] == "local" and status["available"]
        assert [r["role"] for r in status["roles"]] == ["image", "speech"]
        worker = server.worker_pid
        ray_processes = {pid: name for pid, name in _descendants(server.proc.pid).items() if pid != worker}
        names = " ".join(ray_processes.values())
        assert "gcs_server" in names and "raylet" in names, ray_processes  # Ray runs under the server's worker
        answer = server.post("/generate-image", json={"prompt": "a lighthouse", "steps": 1})
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "success" and answer.json()["image"].startswith("data:image/png;base64,")
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=60) == 0
        log = server.log.read_text()
        # The worker's own graceful exit, not an abort from Ray's signal handler on the way out.
        assert "SIGABRT" not in log and f"Worker exiting (pid: {worker})" in log, log[-3000:]
        # Every process of the local Ray goes with the server, Ray's agents too (on their own they
        # would notice their raylet is gone on a poll a loaded machine stretches to a minute).
        exited = time.monotonic()
        while left := {pid: name for pid, name in ray_processes.items() if _alive(pid)}:
            assert time.monotonic() - exited < 10, f"Ray outlived the server: {left}"
            time.sleep(0.2)
    finally:
        server.stop()


def _submit(server, prompt: str):
    return server.post("/api/jobs", json={"kind": "image.generate", "params": {"prompt": prompt, "steps": 1}})


def _finished(server, job_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            job = server.get(f"/api/jobs/{job_id}", timeout=10).json()
            if job["state"] in ("succeeded", "failed", "cancelled"):
                return job
        except Exception:  # the worker restarting: connection refused for a moment
            pass
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish")


def test_the_head_answers_503_while_the_cluster_is_gone_and_recovers_when_it_returns(models_dir, tmp_path):
    build_tiny_kit(models_dir)
    ray_tmp = Path("/tmp") / f"enfoads-ray-{os.getpid()}"  # short: Ray's socket paths have a length limit
    ray_tmp.mkdir(exist_ok=True)
    cluster = Cluster(ray_tmp)
    cluster.start()
    server = start_server(models_dir, tmp_path / "data", extra_env={
        **RAY_ENV, "RAY_TMPDIR": str(ray_tmp), "ENFOADS_RAY": f"127.0.0.1:{cluster.port}",
        "ENFOADS_RAY_ROLES": "image", "ENFOADS_WARM": "off", "ENFOADS_AUTO_DOWNLOAD": "off"})
    try:
        server.wait_ready(180)
        first = _submit(server, "before")
        assert first.status_code == 202, first.text
        assert _finished(server, first.json()["id"])["state"] == "succeeded"

        cluster.crash()
        deadline = time.monotonic() + 60
        while True:
            answer = _submit(server, "during")
            if answer.status_code == 503:
                break
            assert answer.status_code == 202, answer.text  # until the health check notices: queued, kept
            assert time.monotonic() < deadline, "the head never noticed the cluster was gone"
            time.sleep(1)
        body = answer.json()
        assert body["code"] == "cluster_unavailable"
        assert f"the Ray cluster at 127.0.0.1:{cluster.port} is not reachable" in body["message"]
        assert int(answer.headers["Retry-After"]) > 0
        assert server.get("/").status_code == 200  # the server itself keeps serving

        cluster.start()
        deadline = time.monotonic() + 180
        while True:
            try:
                answer = _submit(server, "after")
                if answer.status_code == 202:
                    break
            except Exception:
                pass  # the worker Ray ended is being replaced
            assert time.monotonic() < deadline, "the head did not recover"
            time.sleep(1)
        assert _finished(server, answer.json()["id"])["state"] == "succeeded"
        queued = server.get("/api/jobs?limit=100").json()["jobs"]
        assert queued and all(job["state"] in ("succeeded", "queued", "running") for job in queued), queued
        for job in queued:  # what was accepted during the outage's first seconds is not lost
            assert _finished(server, job["id"])["state"] == "succeeded"
        assert server.proc.poll() is None
    finally:
        server.stop()
        if cluster.proc is not None and cluster.proc.poll() is None:
            cluster.crash()
        subprocess.run(["rm", "-rf", str(ray_tmp)])
