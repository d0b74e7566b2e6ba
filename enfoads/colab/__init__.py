"""Helpers for the Colab notebook (``notebooks/Enfoads_Colab.ipynb``); importable anywhere.

The notebook only calls these. Outside Colab every helper still works: secrets
come from the environment, Drive is skipped, the GPU check reads nvidia-smi.
Nothing here imports torch: the kernel stays light, and the server (started
as its own process) is the one process that holds the GPU.

- ``notebook_params()``: the parameters, overridable by ``ENFOADS_*`` variables.
- ``get_secret()`` / ``load_secrets()``: ``google.colab.userdata``, falling back
  to the environment, then to a hidden prompt; values are never printed.
- ``setup_storage()``: the data and models dirs, on Google Drive if asked.
- ``gpu_report()``: name, VRAM and driver, or a clear warning on a CPU runtime.
- ``resolve_profile()``: ``auto`` from nvidia-smi; ``run_preload()``: ``enfoads
  preload`` as a child process, its progress streamed into the notebook.
- ``start_server()``: ``enfoads serve`` in the background, waiting for health.
- ``Connection``: the URL to paste and the key, masked in every output, shown
  in full only by a button (see its docstring for what is and is not saved).
- ``Client`` and ``NotebookUI``: the notebook-native UI (ipywidgets 7 or 8)
  that does every job itself (images, face swaps, transcripts, videos) over
  HTTP on 127.0.0.1: each is a job, polled to its end with progress. On Colab's
  free tier this UI is the way to use it (no web-UI server there).

How the notebook installs the package (its "install" cell, which runs before
``enfoads`` can be imported) is described in the notebook itself.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable
from urllib import error as urlerror
from urllib import request as urlrequest

from enfoads.user_secrets import colab_secret, get_secret, in_colab  # noqa: F401 - in_colab, get_secret: this module's API

DRIVE_MOUNT = Path("/content/drive")
DRIVE_FOLDER = "enfoads"
COLAB_CONTENT = Path("/content")


# ---------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class NotebookParams:
    profile: str
    use_drive: bool
    tunnel: str
    port: int
    data_dir: str
    models_dir: str
    cors_origins: str = ""  # extra frontend origins for the root routes, comma-separated


def _flag(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    return value.strip().lower() in ("1", "true", "yes", "on")


def notebook_params(
    profile: str = "auto", use_drive: bool = False, tunnel: str = "ngrok", port: int = 5000,
    data_dir: str = "", models_dir: str = "", cors_origins: str = "",
) -> NotebookParams:
    """The notebook's form values, each overridden by its environment variable when set."""
    env = os.environ
    params = NotebookParams(
        profile=env.get("ENFOADS_PROFILE", profile),
        use_drive=_flag(env.get("ENFOADS_DRIVE", use_drive)),
        tunnel=env.get("ENFOADS_TUNNEL", tunnel).strip().lower(),
        port=int(env.get("ENFOADS_PORT", port)),
        data_dir=env.get("ENFOADS_DATA_DIR", data_dir),
        models_dir=env.get("ENFOADS_MODELS_DIR", models_dir),
        cors_origins=env.get("ENFOADS_CORS_EXTRA_ORIGINS", cors_origins),
    )
    if params.tunnel not in ("ngrok", "cloudflared", "none"):
        raise ValueError(f"tunnel {params.tunnel!r}: choose ngrok, cloudflared or none")
    return params


# ---------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SecretSpec:
    name: str
    why: str
    prompt: bool = False
    help_text: str = ""


def load_secrets(specs: Iterable[SecretSpec]) -> dict[str, bool]:
    """Find each secret and export it to this process's environment (so the server and
    preload see it); print where each came from, never the value."""
    found = {}
    for spec in specs:
        source = "environment" if os.environ.get(spec.name) else None
        value = os.environ.get(spec.name)
        if not value:
            value = colab_secret(spec.name)
            source = "Colab secret" if value else None
        if not value and spec.prompt:
            value = get_secret(spec.name, prompt=True, env=False, help_text=spec.help_text)
            source = "typed in" if value else None
        if value:
            os.environ[spec.name] = value
        found[spec.name] = bool(value)
        print(f"{spec.name:<18} {'found (' + source + ')' if value else 'not set'} - {spec.why}")
    return found


def load_notebook_secrets(tunnel: str) -> dict[str, bool]:
    """The notebook's secrets; only the ngrok token is asked for (hidden), and only in Colab with the ngrok tunnel."""
    from enfoads.cli.tunnel import NGROK_TOKEN_URL

    return load_secrets(
        [
            SecretSpec("HF_TOKEN", "only for gated models (none of the defaults is)"),
            SecretSpec(
                "NGROK_AUTHTOKEN",
                "the ngrok tunnel" if tunnel == "ngrok" else "unused (tunnel: %s)" % tunnel,
                prompt=tunnel == "ngrok" and in_colab(),
                help_text=f"Paste your ngrok authtoken ({NGROK_TOKEN_URL}); or leave empty for a Cloudflare quick tunnel. "
                "To skip this prompt next time, add a Colab secret named NGROK_AUTHTOKEN (key icon, left sidebar).",
            ),
            SecretSpec("NGROK_DOMAIN", "optional: your free static ngrok domain, so the URL stays the same"),
            SecretSpec("ENFOADS_API_KEY", "optional: a fixed API key (default: generated once, kept in the data dir)"),
        ]
    )


# ---------------------------------------------------------------------------
# Storage (Google Drive)
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Storage:
    data_dir: Path
    models_dir: Path | None  # None: the default (the Hugging Face cache)
    on_drive: bool


def mount_drive(mount_point: Path = DRIVE_MOUNT) -> Path | None:
    """Mount Google Drive (asks for consent in the browser); None outside Colab."""
    if not in_colab():
        print("Google Drive: not in Colab, skipped")
        return None
    from google.colab import drive  # type: ignore[import-not-found]

    drive.mount(str(mount_point))
    return Path(mount_point) / "MyDrive"


def setup_storage(use_drive: bool, data_dir: str = "", models_dir: str = "") -> Storage:
    """Choose the data and models dirs, put them on Drive when asked, export them as ENFOADS_* variables."""
    root = None
    if use_drive:
        my_drive = mount_drive()
        if my_drive is not None:
            root = my_drive / DRIVE_FOLDER
    if data_dir:
        data = Path(data_dir).expanduser()
    elif root is not None:
        data = root / "data"
    elif COLAB_CONTENT.is_dir() and in_colab():
        data = COLAB_CONTENT / "enfoads-data"
    else:
        data = Path("enfoads-data").resolve()
    models = Path(models_dir).expanduser() if models_dir else (root / "models" if root is not None else None)
    data.mkdir(parents=True, exist_ok=True)
    os.environ["ENFOADS_DATA_DIR"] = str(data)
    if models is not None:
        models.mkdir(parents=True, exist_ok=True)
        os.environ["ENFOADS_MODELS_DIR"] = str(models)
    storage = Storage(data, models, root is not None)
    where = "Google Drive" if storage.on_drive else "this runtime's disk (lost when it stops)"
    print(f"data dir    {data}  [{where}]")
    print(f"models dir  {models or os.environ.get('ENFOADS_MODELS_DIR') or 'the Hugging Face cache'}")
    return storage


# ---------------------------------------------------------------------------
# GPU
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class GpuInfo:
    name: str
    vram_mib: int
    driver: str


CPU_WARNING = (
    "WARNING: this runtime has no GPU. In Colab: Runtime > Change runtime type > T4 GPU, then "
    "Runtime > Run all. Without a GPU the `cpu` profile runs (small models, slow)."
)


def detect_gpus(nvidia_smi: str | None = None) -> list[GpuInfo]:
    binary = nvidia_smi or shutil.which("nvidia-smi")
    if not binary:
        return []
    try:
        out = subprocess.run(
            [binary, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3:
            try:
                gpus.append(GpuInfo(parts[0], int(float(parts[1])), parts[2]))
            except ValueError:
                continue
    return gpus


# program -> Debian package. Not ffmpeg: videos use imageio-ffmpeg's own binary (a pip dependency).
SYSTEM_PACKAGES = {"espeak-ng": "espeak-ng"}


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


def ensure_system_packages(programs: Iterable[str] = tuple(SYSTEM_PACKAGES), *, run=subprocess.run) -> list[str]:
    """Install missing system programs with apt-get where that is possible (Colab runs as root);
    elsewhere say what to install. Returns the programs still missing."""
    missing = [p for p in programs if shutil.which(p) is None]
    if not missing:
        return []
    packages = [SYSTEM_PACKAGES.get(p, p) for p in missing]
    can_apt = shutil.which("apt-get") is not None and hasattr(os, "geteuid") and os.geteuid() == 0 and in_colab()
    if can_apt:
        print(f"installing {', '.join(packages)} (apt-get)...")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "-qq", "update"], check=False, env=env, capture_output=True)
        run(["apt-get", "-qq", "install", "-y", *packages], check=False, env=env, capture_output=True)
        missing = [p for p in missing if shutil.which(p) is None]
    if missing:
        print(f"missing system programs: {', '.join(missing)} (apt-get install {' '.join(SYSTEM_PACKAGES.get(p, p) for p in missing)}); "
              "the features that need them will answer with an error")
    return missing


def gpu_report(nvidia_smi: str | None = None) -> str:
    gpus = detect_gpus(nvidia_smi)
    if not gpus:
        return CPU_WARNING
    lines = [f"GPU {i}: {g.name}, {g.vram_mib / 1024:.1f} GiB VRAM, driver {g.driver}" for i, g in enumerate(gpus)]
    if not any("T4" in g.name.upper() for g in gpus):
        lines.append("(not a T4: the `gpu` profile sizes its budget from this card's VRAM)")
    return "\n".join(lines)


def resolve_profile(profile: str, nvidia_smi: str | None = None) -> str:
    """The profile the notebook passes to preload and to the server: ``auto`` resolved here,
    from ``nvidia-smi`` (the kernel never imports torch), so both use the same one."""
    from enfoads.models.profiles import PROFILES, detect_profile_without_torch

    if profile == "auto":
        name = detect_profile_without_torch(nvidia_smi)
        print(f"profile     auto -> {name} (from nvidia-smi)")
        return name
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose auto or one of {', '.join(PROFILES)}")
    print(f"profile     {profile}")
    return profile


class PreloadFailed(RuntimeError):
    pass


def _stream(process: subprocess.Popen, out) -> None:
    """Copy a child's output to ``out`` as it comes (tqdm's carriage returns included)."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    fd = process.stdout.fileno()
    while True:
        chunk = os.read(fd, 8192)
        if not chunk:
            break
        out.write(decoder.decode(chunk))
        out.flush()
    out.write(decoder.decode(b"", final=True))
    out.flush()


def run_preload(profile: str, *, args: Iterable[str] = (), env: dict | None = None, out=None) -> int:
    """``python -m enfoads preload --profile PROFILE`` in its own process, its progress shown here.

    A child process, so the notebook's kernel never imports torch (the tiny kit
    is built with it; ``auto`` is resolved with it). Returns the exit status: 0
    every model installed, 1 some failed (the table says which; the features that
    need them answer with an error). Raises ``PreloadFailed`` when preload refused
    to start (2: not enough disk, offline, a bad option).
    """
    out = out or sys.stdout
    cmd = [sys.executable, "-m", "enfoads", "preload", "--profile", profile, *args]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=full_env)
    try:
        _stream(process, out)
        code = process.wait()
    except BaseException:  # a kernel interrupt: stop the download (it resumes next time), then re-raise
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
        raise
    finally:
        process.stdout.close()
    if code == 1:
        print("Some models are missing (see the table): the features that need them will answer with an error.", file=out)
    elif code != 0:
        raise PreloadFailed(f"`enfoads preload --profile {profile}` failed (exit {code}); see its message above")
    return code


# ---------------------------------------------------------------------------
# Secrets in output: masked
# ---------------------------------------------------------------------------
def mask(secret: str | None, keep: int = 4) -> str:
    """The first ``keep`` characters and dots: enough to tell keys apart, useless to anyone else."""
    if not secret:
        return ""
    return secret[:keep] + "\u2022" * 8


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, mask(secret))
    return text


def key_secrets(key: str | None) -> tuple[str, ...]:
    """The strings that must never reach a notebook output: the key and the URL prefix derived from it."""
    if not key:
        return ()
    from enfoads.security import url_prefix

    return (key, url_prefix(key))


# ---------------------------------------------------------------------------
# The server process
# ---------------------------------------------------------------------------
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


_STARTED: list = []  # servers and tunnels this process started (the notebook's kernel)
_TUNNELS: list = []


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


def paste_url(public_url: str, key: str) -> str:
    """The one URL to paste into the frontend: the public URL plus the key's secret path prefix."""
    from enfoads.security import url_prefix

    return f"{public_url.rstrip('/')}/{url_prefix(key)}"


def masked_url(public_url: str, key: str) -> str:
    from enfoads.security import url_prefix

    return f"{public_url.rstrip('/')}/{mask(url_prefix(key))}"


URL_FILE = "frontend-url.txt"
FREE_TIER_NOTE = (
    "Note: Colab's free tier does not allow a notebook used mainly as a web-UI server; there, set TUNNEL = \"none\" "
    "and use the notebook UI below, which does every job itself."
)


def connect_text(public_url: str | None, key: str, local_url: str, *, url_file: Path | None = None) -> str:
    """What to paste, with the secret parts masked: this text goes into the notebook's saved output."""
    where = "the \"Show URL and key\" button below" + (
        f", or the file {url_file} (mode 0600; on Colab: Files panel, left sidebar)" if url_file is not None else "")
    if not public_url:
        return "\n".join([
            f"Server: {local_url} (no tunnel: reachable from this machine only)",
            f"API URL (local): {masked_url(local_url, key)}   API key: {mask(key)}",
            f"(masked here so they are not saved with the notebook; the full values: {where})",
            "Use the notebook UI below: it does every job itself (images, face swaps, transcripts, videos).",
        ])
    return "\n".join([
        f"Public URL:   {public_url}",
        f"PASTE into the frontend's settings (API URL): {masked_url(public_url, key)}",
        f"API key (other clients: Authorization: Bearer <key>): {mask(key)}",
        f"Both are masked here so they are not saved with the notebook; the full values: {where}.",
        "How to: open the frontend > Settings > API URL, paste, Save; it tests the connection by itself.",
        "Keep this tab open: the server lives as long as this runtime. The URL changes when the tunnel reopens.",
        FREE_TIER_NOTE,
    ])


class Connection:
    """The URL to paste and the key, shown without writing either into the notebook's saved output.

    What a notebook saves is its cells' outputs (text, HTML, images), and some
    frontends also save widget state. So: printed text has the secret parts
    masked (:func:`connect_text`); the full values are (1) in ``<data dir>/
    frontend-url.txt`` (mode 0600, next to the ``api-key`` file the server
    already keeps there), and (2) behind a "Show URL and key" button whose text
    box is empty when it is displayed and filled only on click, then emptied
    again after ``reveal_s`` seconds or on "Hide". The displayed output itself
    (its text/plain form is taken at display time) never holds them; only a
    frontend that saves live widget state while they are shown could save them,
    which the auto-hide keeps short.
    """

    def __init__(self, local_url: str, key: str, tunnel=None, data_dir: Path | None = None, *, reveal_s: float = 60.0):
        self.local_url = local_url
        self.key = key
        self.tunnel = tunnel
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.reveal_s = reveal_s
        self._widget = None
        self._timer = None

    @property
    def public_url(self) -> str | None:
        return getattr(self.tunnel, "public_url", None) if self.tunnel is not None else None

    @property
    def paste_url(self) -> str:
        """The full URL to paste (the public one, else the local one): keep it out of outputs."""
        return paste_url(self.public_url or self.local_url, self.key)

    @property
    def url_file(self) -> Path | None:
        return self.data_dir / URL_FILE if self.data_dir is not None else None

    def text(self) -> str:
        return connect_text(self.public_url, self.key, self.local_url, url_file=self.url_file)

    def save(self) -> Path | None:
        """Write the full URL and key to ``<data dir>/frontend-url.txt`` (mode 0600)."""
        path = self.url_file
        if path is None:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"API URL (paste into the frontend's settings): {self.paste_url}\nAPI key: {self.key}\n")
        os.chmod(path, 0o600)
        return path

    def announce(self) -> None:
        self.save()
        print(self.text())

    def widget(self):
        if self._widget is None:
            self._widget = self._build()
        return self._widget

    def show(self) -> None:
        try:
            import ipywidgets  # noqa: F401
        except ImportError:
            return
        from IPython.display import display

        display(self.widget())

    def reveal(self, shown: bool = True) -> None:
        box = self.widget()
        button, text = box.children
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if shown:
            text.value = f"{self.paste_url}    key: {self.key}"
            button.description = "Hide"
            if self.reveal_s:
                import threading

                self._timer = threading.Timer(self.reveal_s, self.reveal, args=(False,))
                self._timer.daemon = True
                self._timer.start()
        else:
            text.value = ""
            button.description = "Show URL and key"

    def _build(self):
        import ipywidgets as w

        button = w.Button(description="Show URL and key", tooltip="shows them for a minute; not saved in the notebook")
        text = w.Text(value="", placeholder="click the button, then copy (Ctrl+C)", layout=w.Layout(width="80%"))
        button.on_click(lambda _b: self.reveal(not text.value))
        return w.HBox([button, text])


def open_public_tunnel(provider: str, port: int, key: str, local_url: str, data_dir: Path | None = None):
    """The notebook's tunnel: ``provider`` (ngrok by default), falling back to a Cloudflare quick
    tunnel when there is no ngrok token; says what to paste (masked), again whenever the URL changes."""
    from enfoads.cli.tunnel import MissingAuthtokenError, open_tunnel

    def announce(tunnel) -> None:
        Connection(local_url, key, tunnel, data_dir).announce()

    for earlier in _TUNNELS:  # "Run all" again: one tunnel at a time (ngrok's free plan allows one)
        earlier.close()
    _TUNNELS.clear()
    if provider == "none":
        Connection(local_url, key, None, data_dir).announce()
        return None
    try:
        tunnel = open_tunnel(port, provider, on_change=announce)
    except MissingAuthtokenError as exc:
        print(f"{exc}\n\nUsing a Cloudflare quick tunnel for now.")
        tunnel = open_tunnel(port, "cloudflared", on_change=announce)
    _TUNNELS.append(tunnel)
    announce(tunnel)
    return tunnel


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


# ---------------------------------------------------------------------------
# The notebook-native UI: an HTTP client of the local server, plus widgets
# ---------------------------------------------------------------------------
ASPECT_RATIOS = ("1:1", "16:9", "9:16", "4:3", "3:4", "21:9", "9:21", "11:8", "8:11")
ORIENTATIONS = ("vertical", "horizontal", "square")
TERMINAL_STATES = ("succeeded", "failed", "cancelled")


def _to_data_uri(content: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(content).decode()


ProgressCallback = Callable[[dict], None]


class Client:
    """The server's HTTP API (bearer key, JSON). Every model call is a job: submitted with
    ``POST /api/jobs`` (202 and the job), then polled on ``GET /api/jobs/<id>`` to the end,
    each new progress figure handed to ``on_progress``."""

    def __init__(self, base_url: str, key: str, timeout: float = 600.0, poll_s: float = 0.5):
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.timeout = timeout
        self.poll_s = poll_s

    def __repr__(self) -> str:  # never the key
        return f"Client({self.base_url!r}, key={mask(self.key)!r})"

    @property
    def _headers(self) -> dict:
        return {"Authorization": f"Bearer {self.key}", "ngrok-skip-browser-warning": "true"}

    def _call(self, method: str, path: str, body=None, content_type: str = "application/json") -> dict:
        status, data = http_json(
            self.base_url + path, method=method, body=body, timeout=self.timeout, content_type=content_type,
            headers=self._headers,
        )
        if status >= 400 or data.get("status") == "error":
            raise ServerError(data.get("message") or data.get("error") or f"HTTP {status}")
        return data

    def health(self) -> dict:
        return http_json(self.base_url + "/", timeout=10)[1]

    def gpu_status(self) -> dict:
        return self._call("GET", "/gpu-status")

    # -- jobs ----------------------------------------------------------------
    def submit(self, kind: str, params: dict) -> dict:
        """Queue a job (``POST /api/jobs``, answered 202 with the job); its view."""
        return self._call("POST", "/api/jobs", {"kind": kind, "params": params})

    def job(self, job_id: str) -> dict:
        return self._call("GET", f"/api/jobs/{job_id}")

    def cancel(self, job_id: str) -> dict:
        return self._call("POST", f"/api/jobs/{job_id}/cancel", {})

    def wait(self, job_id: str, *, on_progress: ProgressCallback | None = None, timeout_s: float | None = None) -> dict:
        """Poll a job to its end; the finished job's view. ``JobFailed`` when it failed or was
        cancelled; a kernel interrupt cancels it."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        seen = None
        try:
            while True:
                view = self.job(job_id)
                figure = (view.get("state"), view.get("progress"), view.get("stage"))
                if on_progress is not None and figure != seen:
                    on_progress(view)
                seen = figure
                if view.get("state") == "succeeded":
                    return view
                if view.get("state") in TERMINAL_STATES:
                    raise JobFailed(view)
                if deadline is not None and time.monotonic() > deadline:
                    raise ServerError(f"job {job_id} is still {view.get('state')} after {timeout_s:.0f} s")
                time.sleep(self.poll_s)
        except KeyboardInterrupt:
            try:
                self.cancel(job_id)
            except (ServerError, OSError):
                pass
            raise

    def run(self, kind: str, params: dict, *, on_progress: ProgressCallback | None = None,
            timeout_s: float | None = None) -> dict:
        """Submit a job and wait for it (see :meth:`wait`)."""
        view = self.submit(kind, params)
        if on_progress is not None:
            on_progress(view)
        return self.wait(view["id"], on_progress=on_progress, timeout_s=timeout_s)

    def media(self, url: str) -> bytes:
        """The bytes behind a job's signed media URL."""
        from urllib.parse import urljoin, urlsplit

        if not urlsplit(url).scheme:
            url = urljoin(self.base_url + "/", url.lstrip("/"))
        status, raw, _ = http_request(url, headers=self._headers, timeout=self.timeout)
        if status != 200:
            raise ServerError(f"could not fetch the result (HTTP {status})")
        return raw

    def _output(self, job: dict) -> bytes:
        if not job.get("url"):
            raise ServerError(f"job {job.get('id')} finished without an output file")
        return self.media(job["url"])

    # -- the work --------------------------------------------------------------
    def generate_image(self, prompt: str, *, aspect_ratio: str = "1:1", steps: int = 4, guidance: float = 0.0,
                       negative_prompt: str = "", style: str = "None", on_progress: ProgressCallback | None = None) -> bytes:
        """PNG bytes of one image (job ``image.generate``, the params of ``POST /generate-image``)."""
        job = self.run("image.generate", {
            "prompt": prompt, "aspect_ratio": aspect_ratio, "steps": steps, "guidance": guidance,
            "negative_prompt": negative_prompt, "style": style,
        }, on_progress=on_progress)
        return self._output(job)

    def face_swap(self, source_image: bytes, target_image: bytes, *, on_progress: ProgressCallback | None = None) -> bytes:
        job = self.run("faces.swap", {
            "source_image": _to_data_uri(source_image), "target_image": _to_data_uri(target_image),
        }, on_progress=on_progress)
        return self._output(job)

    def transcribe(self, audio: bytes, filename: str = "audio.wav", language: str | None = None, *,
                   on_progress: ProgressCallback | None = None) -> dict:
        """The OpenAI ``verbose_json`` transcript (``text``, ``segments``...) of ``audio``."""
        params = {"audio": _to_data_uri(audio, "application/octet-stream"), "response_format": "verbose_json"}
        if language:
            params["language"] = language
        job = self.run("speech.transcribe", params, on_progress=on_progress)
        result = job.get("result") or {}
        return result.get("body") or {"text": result.get("text", "")}

    def render_video(self, script: str, *, avatar_id: str = "default", voice_id: str | None = None,
                     subtitles: bool = True, orientation: str = "vertical", resolution: int | None = None,
                     on_progress: ProgressCallback | None = None) -> bytes:
        """MP4 bytes of a talking-avatar video of ``script`` (job ``video.render``)."""
        params: dict = {"script": script, "avatar_id": avatar_id, "generate_subtitles": subtitles,
                        "orientation": orientation}
        if voice_id:
            params["voice_id"] = voice_id
        if resolution:
            params["resolution"] = resolution
        return self._output(self.run("video.render", params, on_progress=on_progress))

    def voices(self) -> list[dict]:
        return self._call("GET", "/voices").get("voices", [])

    def avatars(self) -> list[dict]:
        return self._call("GET", "/avatars").get("avatars", [])

    def jobs(self, limit: int = 20) -> list[dict]:
        return self._call("GET", f"/api/jobs?limit={int(limit)}").get("jobs", [])


def progress_line(job: dict) -> str:
    return f"{job.get('stage') or job.get('state') or job.get('status') or ''} {int(job.get('progress') or 0)}%".strip()


def status_text(client: Client, server: ServerProcess | None = None, log_lines: int = 15) -> str:
    """GPU residency, recent jobs and the server's last log lines (secrets masked)."""
    lines = []
    try:
        gpu = client.gpu_status()
        lines.append(
            f"device {gpu.get('device')}: {gpu.get('vram_allocated_gb')} GB allocated, "
            f"{gpu.get('vram_free_gb')} GB free of {gpu.get('vram_total_gb')} GB"
        )
        loaded = gpu.get("models_loaded")
        lines.append(f"models loaded: {', '.join(loaded) if isinstance(loaded, list) and loaded else loaded or 'none'}")
    except (ServerError, OSError) as exc:
        lines.append(f"GPU status unavailable: {exc}")
    try:
        jobs = client.jobs(10)
        lines.append(f"recent jobs ({len(jobs)}):")
        for job in jobs:
            lines.append(f"  {job.get('id', '?')[:12]}  {job.get('kind', ''):<18} {job.get('status', ''):<10} {job.get('progress', '')}")
    except (ServerError, OSError) as exc:
        lines.append(f"jobs unavailable: {exc}")
    if server is not None:
        lines.append(f"server {'running' if server.running else 'STOPPED'}; last log lines ({server.log_path}):")
        lines.append(server.tail(log_lines))
    return redact("\n".join(lines), key_secrets(client.key))


TAB_TITLES = ("Image", "Face swap", "Transcribe", "Video", "Jobs & GPU")


def set_tab_titles(tabs, titles: Iterable[str]) -> None:
    """Tab titles on ipywidgets 8 (the ``titles`` trait) and 7 (``set_title``, which Colab ships)."""
    titles = tuple(titles)
    if tabs.has_trait("titles"):
        tabs.titles = titles
    else:
        for i, title in enumerate(titles):
            tabs.set_title(i, title)


def tab_titles(tabs) -> list[str]:
    if tabs.has_trait("titles"):
        return list(tabs.titles)
    return [tabs.get_title(i) for i in range(len(tabs.children))]


class NotebookUI:
    """Tabs for every job the server does: prompt -> image, face swap, transcription, avatar
    video, and the job list. Each button submits a job and shows its progress to the end.

    The methods (``generate_image`` ...) work without widgets too; ``show()``
    needs ipywidgets (Colab ships 7; 8 works the same).
    """

    def __init__(self, client: Client):
        self.client = client
        self.last_image = None
        self._widget = None

    def generate_image(self, prompt: str, aspect_ratio: str = "1:1", steps: int = 4, guidance: float = 0.0,
                       on_progress: ProgressCallback | None = None):
        """A PIL image for ``prompt``."""
        from io import BytesIO

        from PIL import Image

        png = self.client.generate_image(prompt, aspect_ratio=aspect_ratio, steps=steps, guidance=guidance,
                                         on_progress=on_progress)
        self.last_image = Image.open(BytesIO(png))
        self.last_image.load()
        return self.last_image

    def face_swap(self, source: bytes, target: bytes, on_progress: ProgressCallback | None = None):
        from io import BytesIO

        from PIL import Image

        image = Image.open(BytesIO(self.client.face_swap(source, target, on_progress=on_progress)))
        image.load()
        return image

    def transcribe(self, audio: bytes, filename: str = "audio.wav", on_progress: ProgressCallback | None = None) -> str:
        return self.client.transcribe(audio, filename, on_progress=on_progress).get("text", "")

    def render_video(self, script: str, on_progress: ProgressCallback | None = None, **options):
        """An ``IPython.display.Video`` (embedded MP4) of ``script``; options as ``Client.render_video``."""
        from IPython.display import Video

        return Video(self.client.render_video(script, on_progress=on_progress, **options), embed=True, mimetype="video/mp4")

    def widget(self):
        if self._widget is None:
            self._widget = self._build()
        return self._widget

    def show(self):
        from IPython.display import display

        display(self.widget())

    # -- widgets -------------------------------------------------------------
    def _choices(self, fetch: Callable[[], list], label: Callable[[dict], str], first: tuple) -> list:
        try:
            return [first, *[(label(item), item["id"]) for item in fetch()]]
        except (ServerError, OSError, KeyError, TypeError):
            return [first]

    def _build(self):
        import ipywidgets as w
        from IPython.display import display

        def runner(button, output: "w.Output", fn: Callable[[ProgressCallback], object], *, bar_shown: bool = True):
            def click(_):
                button.disabled = True
                output.clear_output()
                bar = w.IntProgress(value=0, min=0, max=100, layout=w.Layout(width="50%"))
                label = w.Label("submitting...")

                def progress(job: dict) -> None:
                    bar.value = max(0, min(100, int(job.get("progress") or 0)))
                    label.value = progress_line(job)

                with output:
                    if bar_shown:
                        display(w.HBox([bar, label]))
                    try:
                        result = fn(progress)
                        bar.value, bar.bar_style, label.value = 100, "success", "done"
                        if result is not None:
                            display(result)
                    except Exception as exc:  # noqa: BLE001 - shown to the user
                        bar.bar_style, label.value = "danger", "failed"
                        print(f"error: {exc}")
                    finally:
                        button.disabled = False

            button.on_click(click)

        # Image
        prompt = w.Textarea(placeholder="a poster of a red chair in a sunny room", layout=w.Layout(width="100%"))
        ratio = w.Dropdown(options=ASPECT_RATIOS, value="1:1", description="aspect")
        steps = w.IntSlider(value=4, min=1, max=8, description="steps")
        guidance = w.FloatSlider(value=0.0, min=0.0, max=10.0, step=0.5, description="guidance")
        go, out_img = w.Button(description="Generate", button_style="primary"), w.Output()
        runner(go, out_img, lambda p: self.generate_image(prompt.value or "a red chair", ratio.value, steps.value,
                                                          guidance.value, on_progress=p))
        image_tab = w.VBox([prompt, w.HBox([ratio, steps, guidance]), go, out_img])

        # Face swap
        src = w.FileUpload(accept="image/*", description="source face")
        tgt = w.FileUpload(accept="image/*", description="target image")
        swap, out_swap = w.Button(description="Swap faces", button_style="primary"), w.Output()
        runner(swap, out_swap, lambda p: self.face_swap(_upload_bytes(src), _upload_bytes(tgt), on_progress=p))
        swap_tab = w.VBox([w.HBox([src, tgt]), swap, out_swap])

        # Transcribe
        audio = w.FileUpload(accept="audio/*,video/*", description="audio or video")
        tr, out_tr = w.Button(description="Transcribe", button_style="primary"), w.Output()
        runner(tr, out_tr, lambda p: print(self.transcribe(_upload_bytes(audio), _upload_name(audio), on_progress=p)))
        tr_tab = w.VBox([audio, tr, out_tr])

        # Video
        script = w.Textarea(placeholder="Hello! This is our new summer collection...", layout=w.Layout(width="100%"))
        avatar = w.Dropdown(options=_dedupe(self._choices(self.client.avatars, lambda a: a.get("name") or a["id"],
                                                          ("default", "default"))), description="avatar")
        voice = w.Dropdown(options=self._choices(self.client.voices, lambda v: f"{v.get('name') or v['id']} ({v.get('language', '')})",
                                                 ("default voice", "")), description="voice")
        orientation = w.Dropdown(options=ORIENTATIONS, value="vertical", description="shape")
        subs = w.Checkbox(value=True, description="subtitles")
        render, out_video = w.Button(description="Render video", button_style="primary"), w.Output()
        runner(render, out_video, lambda p: self.render_video(
            script.value or "Hello from Enfoads.", avatar_id=avatar.value, voice_id=voice.value or None,
            subtitles=subs.value, orientation=orientation.value, on_progress=p))
        video_tab = w.VBox([script, w.HBox([avatar, voice]), w.HBox([orientation, subs]), render, out_video])

        # Jobs
        refresh, out_jobs = w.Button(description="Refresh"), w.Output()
        runner(refresh, out_jobs, lambda _p: print(status_text(self.client)), bar_shown=False)
        jobs_tab = w.VBox([refresh, out_jobs])

        tabs = w.Tab(children=[image_tab, swap_tab, tr_tab, video_tab, jobs_tab])
        set_tab_titles(tabs, TAB_TITLES)
        return tabs


def _dedupe(options: list) -> list:
    seen, out = set(), []
    for label, value in options:
        if value not in seen:
            seen.add(value)
            out.append((label, value))
    return out


def _upload_items(upload) -> list:
    value = upload.value
    items = list(value.values()) if isinstance(value, dict) else list(value)  # ipywidgets 7 vs 8
    if not items:
        raise ServerError(f"choose a file for '{upload.description}' first")
    return items


def _upload_bytes(upload) -> bytes:
    return bytes(_upload_items(upload)[0]["content"])


def _upload_name(upload) -> str:
    item = _upload_items(upload)[0]
    return item.get("name") or item.get("metadata", {}).get("name") or "upload"
