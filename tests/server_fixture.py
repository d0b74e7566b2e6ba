"""A real `enfoads serve` process on 127.0.0.1 for the HTTP, Socket.IO and OpenAI tests.

``Server.proc`` is the process started: gunicorn's arbiter. The app, the
engine and the models live in its one worker, ``Server.worker_pid``.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from enfoads.security import url_prefix


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux ``/proc``)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    base: str
    key: str
    prefix: str
    proc: subprocess.Popen
    log: Path
    data_dir: Path
    first_answer_s: float

    @property
    def worker_pid(self) -> int:
        """The pid of the one worker (the process that holds the engine); waits for it briefly."""
        deadline = time.monotonic() + 10
        while True:
            pids = child_pids(self.proc.pid)
            if pids:
                return pids[0]
            if time.monotonic() > deadline:
                raise RuntimeError(f"enfoads serve (pid {self.proc.pid}) has no worker process")
            time.sleep(0.05)

    @property
    def frontend_base(self) -> str:
        return f"{self.base}/{self.prefix}"

    def headers(self, **extra) -> dict:
        return {"Authorization": f"Bearer {self.key}", **extra}

    def get(self, path: str, **kw):
        kw.setdefault("headers", self.headers())
        kw.setdefault("timeout", 60)
        return requests.get(self.base + path, **kw)

    def post(self, path: str, **kw):
        kw.setdefault("headers", self.headers())
        kw.setdefault("timeout", 120)
        return requests.post(self.base + path, **kw)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = requests.get(self.base + "/", timeout=5).json()
            if body.get("ready"):
                return
            if body.get("engine_error"):
                raise RuntimeError(body["engine_error"])
            time.sleep(0.1)
        raise TimeoutError("the engine did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(models_dir: Path, data_dir: Path, *, key: str = "test-key-0123456789", extra_env=None,
                 args: tuple[str, ...] = ()) -> Server:
    port = free_port()
    log = data_dir.parent / f"server-{port}.log"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "ENFOADS_PROFILE": "tiny",
        "ENFOADS_MODELS_DIR": str(models_dir),
        "ENFOADS_DATA_DIR": str(data_dir),
        "ENFOADS_API_KEY": key,
        "ENFOADS_HOST": "127.0.0.1",
        "ENFOADS_PORT": str(port),
        "ENFOADS_SYNC_TIMEOUT_S": "90",
        "ENFOADS_RATE_LIMIT": "100000/minute",
        "ENFOADS_SUBMIT_RATE_LIMIT": "100000/minute",
        **(extra_env or {}),
    }
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "enfoads", "serve", *args], stdout=out, stderr=subprocess.STDOUT,
                                env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = started + 60
    while True:
        try:
            if requests.get(base + "/", timeout=1).status_code == 200:
                break
        # Refused until gunicorn listens; then a read can time out while its worker still imports the app
        # (torch's CUDA-linked build takes seconds to import on a loaded 2-core machine).
        except (requests.ConnectionError, requests.Timeout):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"enfoads serve did not start:\n{log.read_text()}")
        time.sleep(0.02)
    first_answer = time.monotonic() - started
    return Server(base, key, url_prefix(key), proc, log, data_dir, first_answer)
