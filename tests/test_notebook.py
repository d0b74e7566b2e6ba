"""The Colab notebook and the helpers it calls (enfoads.colab)."""
import base64
import io
import json
import os
import signal
import socket
import stat
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nbformat
import pytest

from enfoads import colab

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "Enfoads_Colab.ipynb"
ENV_PARAMS = ("ENFOADS_PROFILE", "ENFOADS_DRIVE", "ENFOADS_TUNNEL", "ENFOADS_PORT", "ENFOADS_DATA_DIR", "ENFOADS_MODELS_DIR")


def tagged(nb, tag):
    return [i for i, c in enumerate(nb.cells) if tag in c.metadata.get("tags", [])]


# ---------------------------------------------------------------------------
# The notebook file
# ---------------------------------------------------------------------------
def test_notebook_is_valid_clean_and_only_calls_the_package():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "outputs must be cleared"
    for tag in ("parameters", "install", "server", "ui", "shutdown"):
        assert len(tagged(nb, tag)) == 1, tag
    assert tagged(nb, "parameters")[0] < tagged(nb, "install")[0] < tagged(nb, "server")[0] < tagged(nb, "shutdown")[0]
    text = "\n".join(c.source for c in nb.cells)
    for var in ENV_PARAMS:
        assert var in text, f"{var} is not documented in the notebook"
    # Every cell is valid IPython (shell escapes included).
    from IPython.core.inputtransformer2 import TransformerManager

    for cell in code:
        compile(TransformerManager().transform_cell(cell.source), "<cell>", "exec")
    # No logic of its own: no function or class definitions.
    assert "def " not in text and "class " not in text


def test_params_are_overridden_by_the_environment(monkeypatch):
    for var in ENV_PARAMS:
        monkeypatch.delenv(var, raising=False)
    assert colab.notebook_params() == colab.NotebookParams("auto", False, "ngrok", 5000, "", "")
    monkeypatch.setenv("ENFOADS_PROFILE", "tiny")
    monkeypatch.setenv("ENFOADS_DRIVE", "1")
    monkeypatch.setenv("ENFOADS_TUNNEL", "none")
    monkeypatch.setenv("ENFOADS_PORT", "5123")
    p = colab.notebook_params("t4", False, "ngrok", 5000)
    assert (p.profile, p.use_drive, p.tunnel, p.port) == ("tiny", True, "none", 5123)
    monkeypatch.setenv("ENFOADS_TUNNEL", "smoke-signals")
    with pytest.raises(ValueError, match="tunnel"):
        colab.notebook_params()


def test_secrets_are_exported_but_never_printed(monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    monkeypatch.delenv("NGROK_AUTHTOKEN", raising=False)
    found = colab.load_secrets([colab.SecretSpec("HF_TOKEN", "gated"), colab.SecretSpec("NGROK_AUTHTOKEN", "tunnel")])
    out = capsys.readouterr().out
    assert found == {"HF_TOKEN": True, "NGROK_AUTHTOKEN": False}
    assert "hf_secret_value" not in out and "found (environment)" in out and "not set" in out


def test_hidden_prompt_is_the_last_resort(monkeypatch):
    monkeypatch.delenv("NGROK_AUTHTOKEN", raising=False)
    monkeypatch.setattr(colab.getpass, "getpass", lambda prompt: "typed-token")
    assert colab.get_secret("NGROK_AUTHTOKEN") is None  # no prompt unless asked
    assert colab.get_secret("NGROK_AUTHTOKEN", prompt=True) == "typed-token"


def test_storage_outside_colab_skips_drive(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ENFOADS_MODELS_DIR", raising=False)
    storage = colab.setup_storage(True, str(tmp_path / "data"), str(tmp_path / "models"))
    assert "not in Colab" in capsys.readouterr().out
    assert storage.data_dir.is_dir() and storage.models_dir.is_dir() and not storage.on_drive
    assert os.environ["ENFOADS_DATA_DIR"] == str(tmp_path / "data")
    assert os.environ["ENFOADS_MODELS_DIR"] == str(tmp_path / "models")


def test_gpu_report(tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'Tesla T4, 15360, 550.54.15'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    assert colab.gpu_report(str(fake)) == "GPU 0: Tesla T4, 15.0 GiB VRAM, driver 550.54.15"
    assert colab.gpu_report(str(tmp_path / "missing")).startswith("WARNING: this runtime has no GPU")


def test_shutdown_needs_a_confirmation(capsys, monkeypatch):
    monkeypatch.delenv("ENFOADS_SHUTDOWN", raising=False)
    assert colab.shutdown(None, None) is False
    assert "keeps running" in capsys.readouterr().out
    assert colab.shutdown(None, None, confirm=True) is True


# ---------------------------------------------------------------------------
# The notebook UI's client, against a stand-in for the HTTP API
# ---------------------------------------------------------------------------
def _png(size=(8, 6)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def api():
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _send(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            seen.append(("GET", self.path, self.headers.get("Authorization"), None))
            if self.path == "/":
                return self._send(200, {"status": "online"})
            if self.headers.get("Authorization") != "Bearer k3y":
                return self._send(401, {"status": "error", "message": "missing or wrong API key"})
            if self.path.startswith("/api/jobs"):
                return self._send(200, {"status": "success", "jobs": [{"id": "j1", "kind": "image.generate", "status": "completed", "progress": 100}]})
            if self.path == "/gpu-status":
                return self._send(200, {"status": "online", "device": "cpu", "models_loaded": ["image"]})
            self._send(404, {"status": "error", "message": "no route"})

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append(("POST", self.path, self.headers.get("Authorization"), body))
            if self.path == "/generate-image":
                req = json.loads(body)
                if not req.get("prompt"):
                    return self._send(400, {"status": "error", "message": "prompt: required"})
                return self._send(200, {"status": "success", "image": "data:image/png;base64," + base64.b64encode(_png()).decode()})
            if self.path == "/v1/audio/transcriptions":
                assert b'name="file"; filename="a.wav"' in body
                return self._send(200, {"text": "hola"})
            self._send(404, {"status": "error", "message": "no route"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_ui_generate_returns_an_image_through_the_http_api(api):
    url, seen = api
    ui = colab.NotebookUI(colab.Client(url, "k3y"))
    image = ui.generate_image("a red chair", aspect_ratio="16:9", steps=4, guidance=2)
    assert image.size == (8, 6)
    method, path, auth, body = seen[-1]
    assert (method, path, auth) == ("POST", "/generate-image", "Bearer k3y")
    assert json.loads(body) == {"prompt": "a red chair", "aspect_ratio": "16:9", "steps": 4, "guidance": 2,
                                "negative_prompt": "", "style": "None"}
    assert ui.transcribe(b"RIFF....", "a.wav") == "hola"
    status = colab.status_text(ui.client)
    assert "models loaded: image" in status and "j1" in status
    with pytest.raises(colab.ServerError, match="prompt: required"):
        ui.generate_image("")
    with pytest.raises(colab.ServerError, match="wrong API key"):
        colab.Client(url, "nope").jobs()


def test_ui_widgets_build(api):
    pytest.importorskip("ipywidgets")
    url, _ = api
    tabs = colab.NotebookUI(colab.Client(url, "k3y")).widget()
    assert [tabs.get_title(i) for i in range(4)] == ["Image", "Face swap", "Transcribe", "Jobs & GPU"]


def test_connect_text_puts_the_key_in_the_url_to_paste():
    text = colab.connect_text("https://abc.ngrok-free.app", "the-key", "http://127.0.0.1:5000")
    from enfoads.security import url_prefix

    assert f"https://abc.ngrok-free.app/{url_prefix('the-key')}" in text and "PASTE" in text
    assert "no tunnel" in colab.connect_text(None, "the-key", "http://127.0.0.1:5000")


# ---------------------------------------------------------------------------
# The whole notebook, headless: tiny profile, no tunnel, no Drive
# ---------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CHECK_CELL = """
import json
_img = ui.generate_image("a red chair on a beach", steps=4)
print("NOTEBOOK_CHECK " + json.dumps({"health": server.health(), "image_size": list(_img.size)}))
"""


@pytest.mark.slow
def test_notebook_runs_end_to_end_headless(models_dir, tmp_path, monkeypatch):
    assert colab.serve_command_available(), "the notebook starts `enfoads serve`; it must exist"
    from nbclient import NotebookClient

    data_dir = tmp_path / "data"
    env = {
        "ENFOADS_PROFILE": "tiny", "ENFOADS_TUNNEL": "none", "ENFOADS_DRIVE": "0", "ENFOADS_PORT": str(_free_port()),
        "ENFOADS_DATA_DIR": str(data_dir), "ENFOADS_MODELS_DIR": str(models_dir), "ENFOADS_SHUTDOWN": "1",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)  # the kernel inherits this environment
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.insert(tagged(nb, "shutdown")[0], nbformat.v4.new_code_cell(CHECK_CELL))
    client = NotebookClient(nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(tmp_path)}})
    pid_file = data_dir / "logs" / "server.pid"
    started = time.perf_counter()
    try:
        client.execute()
    finally:
        if pid_file.exists():  # a failed run must not leave the server behind
            try:
                os.killpg(int(pid_file.read_text()), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass
    elapsed = time.perf_counter() - started
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    line = next(l for l in outputs.splitlines() if l.startswith("NOTEBOOK_CHECK "))
    check = json.loads(line[len("NOTEBOOK_CHECK "):])
    assert check["health"]["status"] == "online"
    assert check["image_size"][0] > 0 and check["image_size"][1] > 0
    assert "server stopped" in outputs and not pid_file.exists()
    print(f"notebook executed in {elapsed:.1f} s", file=sys.stderr)


def test_system_programs_are_installed_with_apt_only_in_colab(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(colab.shutil, "which", lambda name: None if name == "espeak-ng" else f"/usr/bin/{name}")
    monkeypatch.setattr(colab, "in_colab", lambda: False)
    assert colab.ensure_system_packages(["espeak-ng", "ffmpeg"], run=lambda *a, **k: calls.append(a)) == ["espeak-ng"]
    assert calls == [] and "apt-get install espeak-ng" in capsys.readouterr().out

    monkeypatch.setattr(colab, "in_colab", lambda: True)
    monkeypatch.setattr(colab.os, "geteuid", lambda: 0)
    colab.ensure_system_packages(["espeak-ng"], run=lambda cmd, **k: calls.append(cmd))
    assert calls[-1] == ["apt-get", "-qq", "install", "-y", "espeak-ng"]


def test_start_server_refuses_a_busy_port(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(colab.ServerError, match="already in use"):
            colab.start_server(port, log_path=tmp_path / "server.log")
    assert colab.serve_command_available() in (True, False)
