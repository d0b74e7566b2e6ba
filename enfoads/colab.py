"""Helpers for the Colab notebook (``notebooks/Enfoads_Colab.ipynb``); importable anywhere.

The notebook only calls these. Outside Colab every helper still works: secrets
come from the environment, Drive is skipped, the GPU check reads nvidia-smi.

- ``notebook_params()``: the parameters, overridable by ``ENFOADS_*`` variables.
- ``get_secret()`` / ``load_secrets()``: ``google.colab.userdata``, falling back
  to the environment, then to a hidden prompt; values are never printed.
- ``setup_storage()``: the data and models dirs, on Google Drive if asked.
- ``gpu_report()``: name, VRAM and driver, or a clear warning on a CPU runtime.
- ``start_server()``: ``enfoads serve`` in the background, waiting for health.
- ``Client`` and ``NotebookUI``: the notebook-native UI (ipywidgets) that talks
  to the same server over HTTP on 127.0.0.1, so the server stays the one
  process that holds the GPU.
"""
from __future__ import annotations

import base64
import getpass
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable
from urllib import error as urlerror
from urllib import request as urlrequest

DRIVE_MOUNT = Path("/content/drive")
DRIVE_FOLDER = "enfoads"
COLAB_CONTENT = Path("/content")


def in_colab() -> bool:
    if "google.colab" in sys.modules:
        return True
    try:
        import importlib.util

        return importlib.util.find_spec("google.colab") is not None
    except (ImportError, ValueError):
        return False


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


def _flag(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    return value.strip().lower() in ("1", "true", "yes", "on")


def notebook_params(
    profile: str = "auto", use_drive: bool = False, tunnel: str = "ngrok", port: int = 5000,
    data_dir: str = "", models_dir: str = "",
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
    )
    if params.tunnel not in ("ngrok", "cloudflared", "none"):
        raise ValueError(f"tunnel {params.tunnel!r}: choose ngrok, cloudflared or none")
    return params


# ---------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------
def _colab_secret(name: str) -> str | None:
    if not in_colab():
        return None
    try:
        from google.colab import userdata  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        value = userdata.get(name)
    except Exception:  # noqa: BLE001 - SecretNotFoundError, NotebookAccessError, TimeoutException
        return None
    return value or None


def get_secret(name: str, *, prompt: bool = False, env: bool = True, help_text: str = "") -> str | None:
    """A secret from the environment, Colab's secrets, or (``prompt``) a hidden prompt. Never printed."""
    if env and os.environ.get(name):
        return os.environ[name]
    value = _colab_secret(name)
    if value:
        return value
    if prompt:
        if help_text:
            print(help_text)
        try:
            value = getpass.getpass(f"{name} (input hidden, Enter to skip): ").strip()
        except (EOFError, OSError, RuntimeError):  # no stdin (headless run)
            value = ""
        return value or None
    return None


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
            value = _colab_secret(spec.name)
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
    from enfoads.tunnel import NGROK_TOKEN_URL

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


SYSTEM_PACKAGES = {"espeak-ng": "espeak-ng", "ffmpeg": "ffmpeg"}  # program -> Debian package


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


_STARTED: list = []  # servers and tunnels this process started (the notebook's kernel)
_TUNNELS: list = []


def http_json(url: str, *, method: str = "GET", body: dict | bytes | None = None, headers: dict | None = None,
              timeout: float = 30.0, content_type: str = "application/json") -> tuple[int, dict]:
    """One HTTP request with the standard library; (status, JSON body or {"raw": text})."""
    data = None
    headers = dict(headers or {})
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers.setdefault("Content-Type", content_type)
    req = urlrequest.Request(url, data=data, method=method, headers=headers)
    try:
        with urlrequest.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - local server URLs
            status, raw = resp.status, resp.read()
    except urlerror.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw.decode() or "{}")
    except ValueError:
        return status, {"raw": raw.decode(errors="replace")}


@dataclass
class ServerProcess:
    process: subprocess.Popen
    url: str
    log_path: Path

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def pid_path(self) -> Path:
        return self.log_path.with_suffix(".pid")

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

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
    server = ServerProcess(process, f"http://{host}:{port}", log_path)
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


def connect_text(public_url: str | None, key: str, local_url: str) -> str:
    if not public_url:
        return (
            f"Server: {local_url} (no tunnel: reachable from this machine only)\n"
            f"API key: {key}\n"
            "Use the notebook UI below, or set ENFOADS_TUNNEL=ngrok to reach it from your frontend."
        )
    return "\n".join(
        [
            f"Public URL:   {public_url}",
            f"PASTE THIS into the frontend's settings (API URL):  {paste_url(public_url, key)}",
            f"API key (for other clients: Authorization: Bearer <key>): {key}",
            "How to: open the frontend > Settings > API URL, paste, Save; it tests the connection by itself.",
            "Keep this tab open: the server lives as long as this runtime. The URL changes when the tunnel reopens.",
        ]
    )


def open_public_tunnel(provider: str, port: int, key: str, local_url: str):
    """The notebook's tunnel: ``provider`` (ngrok by default), falling back to a Cloudflare quick
    tunnel when there is no ngrok token; prints what to paste, again whenever the URL changes."""
    from enfoads.tunnel import MissingAuthtokenError, open_tunnel

    def announce(tunnel) -> None:
        print(connect_text(tunnel.public_url, key, local_url))

    for earlier in _TUNNELS:  # "Run all" again: one tunnel at a time (ngrok's free plan allows one)
        earlier.close()
    _TUNNELS.clear()
    if provider == "none":
        print(connect_text(None, key, local_url))
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


def _data_uri_bytes(uri: str) -> bytes:
    if not uri:
        raise ServerError("the server returned no image")
    payload = uri.split(",", 1)[1] if uri.startswith("data:") else uri
    return base64.b64decode(payload)


def _to_data_uri(content: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(content).decode()


class Client:
    """The server's HTTP API, as the frontend uses it (bearer key, JSON)."""

    def __init__(self, base_url: str, key: str, timeout: float = 600.0):
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.timeout = timeout

    def _call(self, method: str, path: str, body=None, content_type: str = "application/json") -> dict:
        status, data = http_json(
            self.base_url + path, method=method, body=body, timeout=self.timeout, content_type=content_type,
            headers={"Authorization": f"Bearer {self.key}", "ngrok-skip-browser-warning": "true"},
        )
        if status >= 400 or data.get("status") == "error":
            raise ServerError(data.get("message") or data.get("error") or f"HTTP {status}")
        return data

    def health(self) -> dict:
        return http_json(self.base_url + "/", timeout=10)[1]

    def gpu_status(self) -> dict:
        return self._call("GET", "/gpu-status")

    def generate_image(self, prompt: str, *, aspect_ratio: str = "1:1", steps: int = 4, guidance: float = 0.0,
                       negative_prompt: str = "", style: str = "None") -> bytes:
        """PNG bytes of one image (``POST /generate-image``)."""
        data = self._call("POST", "/generate-image", {
            "prompt": prompt, "aspect_ratio": aspect_ratio, "steps": steps, "guidance": guidance,
            "negative_prompt": negative_prompt, "style": style,
        })
        return _data_uri_bytes(data.get("image"))

    def face_swap(self, source_image: bytes, target_image: bytes) -> bytes:
        data = self._call("POST", "/face-swap", {
            "source_image": _to_data_uri(source_image), "target_image": _to_data_uri(target_image),
        })
        return _data_uri_bytes(data.get("image"))

    def transcribe(self, audio: bytes, filename: str = "audio.wav", language: str | None = None) -> dict:
        """``POST /v1/audio/transcriptions`` (OpenAI-compatible, multipart)."""
        boundary = uuid.uuid4().hex
        fields = {"model": "whisper-1", "response_format": "verbose_json"}
        if language:
            fields["language"] = language
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in fields.items()
        ]
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode() + audio + b"\r\n"
        )
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        return self._call("POST", "/v1/audio/transcriptions", body, content_type=f"multipart/form-data; boundary={boundary}")

    def jobs(self, limit: int = 20) -> list[dict]:
        return self._call("GET", f"/api/jobs?limit={int(limit)}").get("jobs", [])


def status_text(client: Client, server: ServerProcess | None = None, log_lines: int = 15) -> str:
    """GPU residency, recent jobs and the server's last log lines."""
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
    return "\n".join(lines)


class NotebookUI:
    """Tabs for prompt -> image, face swap, transcription and the job list.

    The functions (``generate_image`` ...) work without widgets too; ``show()``
    needs ipywidgets (preinstalled on Colab).
    """

    def __init__(self, client: Client):
        self.client = client
        self.last_image = None
        self._widget = None

    def generate_image(self, prompt: str, aspect_ratio: str = "1:1", steps: int = 4, guidance: float = 0.0):
        """A PIL image for ``prompt``."""
        from io import BytesIO

        from PIL import Image

        png = self.client.generate_image(prompt, aspect_ratio=aspect_ratio, steps=steps, guidance=guidance)
        self.last_image = Image.open(BytesIO(png))
        self.last_image.load()
        return self.last_image

    def face_swap(self, source: bytes, target: bytes):
        from io import BytesIO

        from PIL import Image

        return Image.open(BytesIO(self.client.face_swap(source, target)))

    def transcribe(self, audio: bytes, filename: str = "audio.wav") -> str:
        return self.client.transcribe(audio, filename).get("text", "")

    def widget(self):
        if self._widget is None:
            self._widget = self._build()
        return self._widget

    def show(self):
        from IPython.display import display

        display(self.widget())

    # -- widgets -------------------------------------------------------------
    def _build(self):
        import ipywidgets as w

        def runner(button, output: "w.Output", fn: Callable[[], object]):
            def click(_):
                button.disabled = True
                output.clear_output()
                with output:
                    print("working...")
                    try:
                        result = fn()
                        output.clear_output()
                        if result is not None:
                            from IPython.display import display

                            display(result)
                    except Exception as exc:  # noqa: BLE001 - shown to the user
                        output.clear_output()
                        print(f"error: {exc}")
                button.disabled = False

            button.on_click(click)

        # Image
        prompt = w.Textarea(placeholder="a poster of a red chair in a sunny room", layout=w.Layout(width="100%"))
        ratio = w.Dropdown(options=ASPECT_RATIOS, value="1:1", description="aspect")
        steps = w.IntSlider(value=4, min=1, max=8, description="steps")
        guidance = w.FloatSlider(value=0.0, min=0.0, max=10.0, step=0.5, description="guidance")
        go, out_img = w.Button(description="Generate", button_style="primary"), w.Output()
        runner(go, out_img, lambda: self.generate_image(prompt.value or "a red chair", ratio.value, steps.value, guidance.value))
        image_tab = w.VBox([prompt, w.HBox([ratio, steps, guidance]), go, out_img])

        # Face swap
        src = w.FileUpload(accept="image/*", description="source face")
        tgt = w.FileUpload(accept="image/*", description="target image")
        swap, out_swap = w.Button(description="Swap faces", button_style="primary"), w.Output()
        runner(swap, out_swap, lambda: self.face_swap(_upload_bytes(src), _upload_bytes(tgt)))
        swap_tab = w.VBox([w.HBox([src, tgt]), swap, out_swap])

        # Transcribe
        audio = w.FileUpload(accept="audio/*,video/*", description="audio or video")
        tr, out_tr = w.Button(description="Transcribe", button_style="primary"), w.Output()
        runner(tr, out_tr, lambda: print(self.transcribe(_upload_bytes(audio), _upload_name(audio))))
        tr_tab = w.VBox([audio, tr, out_tr])

        # Jobs
        refresh, out_jobs = w.Button(description="Refresh"), w.Output()
        runner(refresh, out_jobs, lambda: print(status_text(self.client)))
        jobs_tab = w.VBox([refresh, out_jobs])

        tabs = w.Tab(children=[image_tab, swap_tab, tr_tab, jobs_tab])
        for i, title in enumerate(("Image", "Face swap", "Transcribe", "Jobs & GPU")):
            tabs.set_title(i, title)
        return tabs


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
