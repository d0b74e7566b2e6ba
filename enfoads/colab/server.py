"""The server process: ``enfoads serve`` started in the background and stopped again, the environment
it gets, its errors, and the standard-library HTTP helpers that talk to it."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable
from urllib import error as urlerror
from urllib import request as urlrequest

from enfoads.colab.masking import key_secrets, redact
from enfoads.colab.params import _flag


def serve_command_available() -> bool:
    """Whether this install's CLI has ``enfoads serve``."""
    from enfoads.cli import build_parser

    parser = build_parser()
    for action in parser._subparsers._group_actions:  # noqa: SLF001 - argparse keeps them here
        if "serve" in (getattr(action, "choices", None) or {}):
            return True
    return False


def _port_in_use(host: str, port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


class ServerError(RuntimeError):
    pass


class JobFailed(ServerError):
    def __init__(self, job: dict):
        self.job = job
        state = job.get("state") or job.get("status")
        super().__init__(f"job {job.get('id')} {state}: {job.get('error') or 'no message'}")


_STARTED: list = []  # servers this process started (the notebook's kernel)


def http_request(url: str, *, method: str = "GET", body: dict | bytes | None = None, headers: dict | None = None,
                 timeout: float = 30.0, content_type: str = "application/json") -> tuple[int, bytes, str]:
    """One HTTP request with the standard library: (status, body bytes, content type)."""
    data = None
    headers = dict(headers or {})
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers.setdefault("Content-Type", content_type)
    req = urlrequest.Request(url, data=data, method=method, headers=headers)
    try:
        with urlrequest.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - local server URLs
            return resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urlerror.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "") if exc.headers else ""


def http_json(url: str, *, method: str = "GET", body: dict | bytes | None = None, headers: dict | None = None,
              timeout: float = 30.0, content_type: str = "application/json") -> tuple[int, dict]:
    """One HTTP request with the standard library; (status, JSON body or {"raw": text})."""
    status, raw, _ = http_request(url, method=method, body=body, headers=headers, timeout=timeout, content_type=content_type)
    try:
        return status, json.loads(raw.decode() or "{}")
    except ValueError:
        return status, {"raw": raw.decode(errors="replace")}


@dataclass
class ServerProcess:
    process: subprocess.Popen
    url: str
    log_path: Path
    secrets: tuple = ()  # masked in every log line shown here (the server prints the URL to paste)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def pid_path(self) -> Path:
        return self.log_path.with_suffix(".pid")

    def tail(self, lines: int = 20) -> str:
        try:
            text = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
        return redact(text, self.secrets)

    def health(self, timeout: float = 5.0) -> dict | None:
        try:
            status, body = http_json(self.url + "/", timeout=timeout)
        except (OSError, urlerror.URLError):
            return None
        return body if status == 200 else None

    def stop(self, timeout: float = 20.0) -> None:
        if not self.running:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.process.kill()
            self.process.wait(5)
        self.pid_path.unlink(missing_ok=True)


def start_server(port: int, *, log_path: Path, env: dict | None = None, timeout_s: float = 180.0,
                 host: str = "127.0.0.1", extra_args: Iterable[str] = ()) -> ServerProcess:
    """Start ``enfoads serve`` in the background and wait until ``GET /`` says online.

    The server runs with ``HF_HUB_OFFLINE=1``: after ``preload`` it needs no network.
    """
    for earlier in _STARTED:  # "Run all" again in the same session: replace the earlier server
        if earlier.running:
            print(f"stopping the server started earlier in this session ({earlier.url})")
            earlier.stop()
    _STARTED.clear()
    if _port_in_use(host, port):
        raise ServerError(
            f"port {port} on {host} is already in use (a server from another session or program?): "
            "stop it, or choose another PORT"
        )
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # The notebook opens the tunnel itself (so it can print the URL): the server must not.
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env or {}), "ENFOADS_TUNNEL": "none"}
    cmd = [sys.executable, "-m", "enfoads", "serve", "--host", host, "--port", str(port), *extra_args]
    log = open(log_path, "ab")
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env, start_new_session=True)
    log.close()
    server = ServerProcess(process, f"http://{host}:{port}", log_path, key_secrets(full_env.get("ENFOADS_API_KEY")))
    server.pid_path.write_text(str(process.pid))
    _STARTED.append(server)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not server.running:
            server.pid_path.unlink(missing_ok=True)
            raise ServerError(f"the server stopped (exit {process.returncode}); last log lines:\n{server.tail(30)}")
        body = server.health(timeout=2.0)
        if body and body.get("status") == "online":
            return server
        time.sleep(0.5)
    server.stop()
    raise ServerError(f"the server did not answer on {server.url}/ within {timeout_s:.0f} s; log:\n{server.tail(30)}")


def api_key(data_dir: Path) -> str:
    """The key the server will require: ENFOADS_API_KEY, or the one stored in the data dir."""
    from enfoads.security import load_or_create_key

    key, _ = load_or_create_key(Path(data_dir), os.environ.get("ENFOADS_API_KEY") or None)
    return key


def server_env_for_origins(extra: str) -> dict:
    """``ENFOADS_CORS_ORIGINS`` for the server: the default dev origins plus the notebook's extra ones.

    Only the root routes need it: the pasted URL (under the secret prefix) answers any origin.
    """
    from enfoads.settings import DEFAULT_CORS_ORIGINS

    origins = [o.strip().rstrip("/") for o in (extra or "").split(",") if o.strip()]
    if not origins:
        return {}
    bad = [o for o in origins if o == "*" or not o.startswith(("http://", "https://"))]
    if bad:
        raise ValueError(f"CORS origins must be full origins like https://app.example.com, not {', '.join(bad)}")
    return {"ENFOADS_CORS_ORIGINS": ",".join(dict.fromkeys([*DEFAULT_CORS_ORIGINS, *origins]))}


def shutdown(server: ServerProcess | None, tunnel=None, *, confirm: bool = False) -> bool:
    """Close the tunnel and stop the server, when ``confirm`` (or ENFOADS_SHUTDOWN=1) says so."""
    if not (confirm or _flag(os.environ.get("ENFOADS_SHUTDOWN", "0"))):
        print("The server keeps running. To stop it, tick STOP above (or set ENFOADS_SHUTDOWN=1) and run this cell.")
        return False
    if tunnel is not None:
        tunnel.close()
        print("tunnel closed")
    if server is not None:
        server.stop()
        print("server stopped")
    return True
