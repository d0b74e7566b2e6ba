"""The Colab notebook and the helpers it calls (enfoads.colab)."""
import base64
import datetime
import io
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import nbformat
import pytest

from enfoads import colab, user_secrets

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "Enfoads_Colab.ipynb"
ENV_PARAMS = ("ENFOADS_PROFILE", "ENFOADS_DRIVE", "ENFOADS_TUNNEL", "ENFOADS_PORT", "ENFOADS_DATA_DIR", "ENFOADS_MODELS_DIR",
              "ENFOADS_SOURCE")
HEAVY = ("torch", "diffusers", "transformers", "onnxruntime", "insightface", "cv2", "ctranslate2", "faster_whisper")


def tagged(nb, tag):
    return [i for i, c in enumerate(nb.cells) if tag in c.metadata.get("tags", [])]


def install_code(nb) -> str:
    """The install cell up to the first import of enfoads: what runs before the package exists."""
    source = nb.cells[tagged(nb, "install")[0]].source
    return source[: source.index("from enfoads import")]


# ---------------------------------------------------------------------------
# The notebook file
# ---------------------------------------------------------------------------
def test_notebook_is_valid_clean_and_only_calls_the_package():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "outputs must be cleared"
    for tag in ("parameters", "install", "server", "connection", "ui", "shutdown"):
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
    # Nothing before the install imports enfoads; no cell but the install one runs pip.
    install = tagged(nb, "install")[0]
    assert not any(re.search(r"^\s*(import|from) enfoads", c.source, re.M) for c in nb.cells[:install + 1]
                   if c.cell_type == "code" and c is not nb.cells[install]), "enfoads imported before the install"
    assert re.search(r"^\s*(import|from) enfoads", install_code(nb), re.M) is None
    assert [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "pip" in c.source] == [install]
    # The kernel never imports torch: preload runs as a child process.
    assert "from enfoads.models.preload" not in text and "import torch" not in text and "colab.run_preload(" in text


def test_notebook_never_installs_enfoads_by_name_from_the_index():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    text = "\n".join(c.source for c in nb.cells)
    assert not re.search(r"pip\s+install\s+(-\S+\s+)*['\"]?enfoads\b(?![-\w./])", text)
    assert not re.search(r"['\"]enfoads(\[[\w,]+\])?\s*(==|>=|~=)", text), "a by-name requirement of enfoads"
    params = nb.cells[tagged(nb, "parameters")[0]].source
    assert re.search(r'^ENFOADS_SOURCE = ""', params, re.M)


def test_notebook_says_the_free_tier_needs_the_notebook_ui():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    intro = nb.cells[0].source
    assert "free tier does not allow a notebook used mainly as a web-UI server" in intro
    assert "does every job by itself" in intro
    assert re.search(r'^TUNNEL = "ngrok"', nb.cells[tagged(nb, "parameters")[0]].source, re.M)
    ui_md = nb.cells[tagged(nb, "ui")[0] - 1].source
    assert all(w in ui_md for w in ("images", "face swaps", "transcripts", "videos", "progress"))


def test_params_are_overridden_by_the_environment(monkeypatch):
    for var in ENV_PARAMS:
        monkeypatch.delenv(var, raising=False)
    assert colab.notebook_params() == colab.NotebookParams("auto", False, "ngrok", 5000, "", "")
    monkeypatch.setenv("ENFOADS_PROFILE", "tiny")
    monkeypatch.setenv("ENFOADS_DRIVE", "1")
    monkeypatch.setenv("ENFOADS_TUNNEL", "ngrok")
    monkeypatch.setenv("ENFOADS_PORT", "5123")
    p = colab.notebook_params("t4", False, "none", 5000)
    assert (p.profile, p.use_drive, p.tunnel, p.port) == ("tiny", True, "ngrok", 5123)
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
    monkeypatch.setattr(user_secrets.getpass, "getpass", lambda prompt: "typed-token")
    assert colab.get_secret("NGROK_AUTHTOKEN") is None  # no prompt unless asked
    assert colab.get_secret("NGROK_AUTHTOKEN", prompt=True) == "typed-token"


def test_storage_outside_colab_skips_drive(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ENFOADS_MODELS_DIR", raising=False)
    storage = colab.setup_storage(True, str(tmp_path / "data"), str(tmp_path / "models"))
    assert "not in Colab" in capsys.readouterr().out
    assert storage.data_dir.is_dir() and storage.models_dir.is_dir() and not storage.on_drive
    assert os.environ["ENFOADS_DATA_DIR"] == str(tmp_path / "data")
    assert os.environ["ENFOADS_MODELS_DIR"] == str(tmp_path / "models")


def fake_program(folder: Path, name: str, script: str) -> Path:
    path = folder / name
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_gpu_report(tmp_path):
    fake = fake_program(tmp_path, "nvidia-smi", "echo 'Tesla T4, 15360, 550.54.15'")
    assert colab.gpu_report(str(fake)) == "GPU 0: Tesla T4, 15.0 GiB VRAM, driver 550.54.15"
    assert colab.gpu_report(str(tmp_path / "missing")).startswith("WARNING: this runtime has no GPU")


def test_profile_auto_is_resolved_from_nvidia_smi_for_preload_and_server(tmp_path, capsys):
    t4 = fake_program(tmp_path, "nvidia-smi", "echo 'Tesla T4, 15360 MiB'")
    assert colab.resolve_profile("auto", str(t4)) == "t4"
    assert "auto -> t4 (from nvidia-smi)" in capsys.readouterr().out
    assert colab.resolve_profile("auto", str(tmp_path / "missing")) == "cpu"
    assert colab.resolve_profile("tiny") == "tiny"
    with pytest.raises(ValueError, match="unknown profile"):
        colab.resolve_profile("huge")


def test_preload_runs_as_a_child_process_and_a_refusal_stops_the_notebook(tmp_path, capsys):
    env = {"ENFOADS_MODELS_DIR": str(tmp_path / "models"), "HF_HUB_OFFLINE": "1"}
    with pytest.raises(colab.PreloadFailed, match="exit 2"):
        colab.run_preload("t4", env=env, args=["--only", "image"])
    assert "HF_HUB_OFFLINE=1 is set" in capsys.readouterr().out  # the child's message, streamed here


def test_shutdown_needs_a_confirmation(capsys, monkeypatch):
    monkeypatch.delenv("ENFOADS_SHUTDOWN", raising=False)
    assert colab.shutdown(None, None) is False
    assert "keeps running" in capsys.readouterr().out
    assert colab.shutdown(None, None, confirm=True) is True


# ---------------------------------------------------------------------------
# The install cell, run before enfoads exists (python -S: no site-packages, so
# no enfoads), with a stand-in for pip that records what it was asked
# ---------------------------------------------------------------------------
FAKE_PIP = """
import json, os, sys
with open(os.environ["FAKE_PIP_LOG"], "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\\n")
sys.exit(int(os.environ.get("FAKE_PIP_RC", "0")))
"""


@pytest.fixture
def install_cell(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    fake = tmp_path / "fakepip" / "pip"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text(FAKE_PIP)
    script = tmp_path / "install_cell.py"
    script.write_text('ENFOADS_SOURCE = ""\nUSE_DRIVE = False\n' + install_code(nb) + '\nprint("INSTALL CELL DONE")\n')
    log = tmp_path / "pip.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()

    def run(cwd: Path, *, wheel_dirs=(), source=None, pip_rc=0, gpu=False):
        if gpu:
            fake_program(bin_dir, "nvidia-smi", "echo 'Tesla T4, 15360 MiB'")
        env = {"PATH": str(bin_dir), "PYTHONPATH": str(tmp_path / "fakepip"), "FAKE_PIP_LOG": str(log),
               "FAKE_PIP_RC": str(pip_rc), "ENFOADS_WHEEL_DIRS": os.pathsep.join(str(d) for d in wheel_dirs) or str(tmp_path / "none")}
        if source is not None:
            env["ENFOADS_SOURCE"] = source
        cwd.mkdir(parents=True, exist_ok=True)
        out = subprocess.run([sys.executable, "-S", str(script)], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        log.unlink(missing_ok=True)
        return out, calls

    return run


def make_checkout(root: Path) -> Path:
    (root / "enfoads").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'enfoads'\n")
    return root / "notebooks"


def make_wheel(folder: Path, version: str, age_s: float = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"enfoads-{version}-py3-none-any.whl"
    wheel.write_bytes(b"PK")
    when = time.time() - age_s
    os.utime(wheel, (when, when))
    return wheel


def test_install_finds_no_source_and_names_every_place_it_looked(install_cell, tmp_path):
    out, calls = install_cell(tmp_path / "nb", wheel_dirs=[tmp_path / "uploads"])
    assert out.returncode != 0 and calls == [] and "INSTALL CELL DONE" not in out.stdout
    message = out.stderr
    assert "no source for it was found" in message
    for place in ("an enfoads installed in", "ENFOADS_SOURCE", "not set", f"none at {tmp_path}",
                  "enfoads-*.whl in: " + str(tmp_path / "uploads"), "never installed by name"):
        assert place in message, place


@pytest.mark.parametrize("source", ["enfoads", "enfoads[colab]==0.1.0", "Enfoads>=0.1"])
def test_install_refuses_a_package_name(install_cell, tmp_path, source):
    out, calls = install_cell(tmp_path / "nb", source=source)
    assert out.returncode != 0 and calls == []
    assert "is a package name" in out.stderr and "anyone can register it" in out.stderr


def test_install_order_source_then_checkout_then_newest_wheel(install_cell, tmp_path):
    nb_dir = make_checkout(tmp_path / "repo")
    uploads = tmp_path / "content"
    make_wheel(uploads, "0.0.9", age_s=100)
    newest = make_wheel(uploads, "0.1.0")
    given = make_wheel(tmp_path / "elsewhere", "0.1.0")

    out, calls = install_cell(nb_dir, wheel_dirs=[uploads], source=str(given))  # 1. ENFOADS_SOURCE
    assert out.returncode == 0, out.stderr
    assert calls == [["install", "-q", f"{given}[colab]"]] and "installing enfoads from ENFOADS_SOURCE" in out.stdout

    out, calls = install_cell(nb_dir, wheel_dirs=[uploads])  # 2. the checkout the notebook was opened from
    assert calls == [["install", "-q", f"{tmp_path / 'repo'}[colab]"]] and "INSTALL CELL DONE" in out.stdout

    out, calls = install_cell(tmp_path / "plain" / "nb", wheel_dirs=[tmp_path / "empty", uploads])  # 3. a wheel
    assert calls == [["install", "-q", f"{newest}[colab]"]], out.stderr

    url = "git+https://github.com/example/enfoads@v0.1.0"
    out, calls = install_cell(nb_dir, source=url)  # a URL goes to pip as given
    assert calls == [["install", "-q", url]]


def test_a_failed_install_stops_the_notebook(install_cell, tmp_path):
    wheel = make_wheel(tmp_path / "content", "0.1.0")
    out, calls = install_cell(tmp_path / "nb", wheel_dirs=[wheel.parent], pip_rc=1, gpu=True)
    assert out.returncode != 0 and "INSTALL CELL DONE" not in out.stdout
    assert calls == [["install", "-q", f"{wheel}[colab]"]], "nothing may run after a failed install"
    assert "failed (exit 1)" in out.stderr and "Nothing else was tried" in out.stderr


def test_on_a_gpu_onnxruntime_gpu_goes_last(install_cell, tmp_path):
    wheel = make_wheel(tmp_path / "content", "0.1.0")
    out, calls = install_cell(tmp_path / "nb", wheel_dirs=[wheel.parent], gpu=True)
    assert out.returncode == 0, out.stderr
    assert calls == [["install", "-q", f"{wheel}[colab]"], ["uninstall", "-y", "-q", "onnxruntime"],
                     ["install", "-q", "onnxruntime-gpu>=1.24,<1.25"]]


# ---------------------------------------------------------------------------
# The notebook UI's client, against a stand-in for the HTTP API
# ---------------------------------------------------------------------------
def _png(size=(8, 6)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


MP4 = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 32
# Each poll of a job moves it one step along this path.
STEPS = [("queued", 0, None), ("running", 0, "loading model"), ("running", 40, "denoising"),
         ("running", 80, "denoising"), ("succeeded", 100, None)]


class StandIn:
    """The routes the notebook UI uses, with jobs that take a few polls each."""

    def __init__(self):
        self.seen = []
        self.jobs = {}
        self.media = {"img": ("image/png", _png()), "swap": ("image/png", _png((5, 5))), "vid": ("video/mp4", MP4)}

    def submit(self, kind, params):
        job_id = f"j{len(self.jobs) + 1}"
        failing = params.get("prompt") == "boom"
        self.jobs[job_id] = {"id": job_id, "job_id": job_id, "kind": kind, "step": 0, "failing": failing,
                             "params": params, "cancelled": False}
        return self.view(job_id)

    def view(self, job_id, advance=False):
        job = self.jobs[job_id]
        if advance and not job["cancelled"]:
            job["step"] = min(job["step"] + 1, len(STEPS) - 1)
        state, progress, stage = STEPS[job["step"]]
        if job["cancelled"]:
            state = "cancelled"
        elif job["failing"] and state == "succeeded":
            state, progress = "failed", 80
        result, url = None, None
        if state == "succeeded":
            result, url = {
                "image.generate": ({"image_asset_ids": ["img"]}, "/media/img?exp=1&sig=s"),
                "faces.swap": ({"faces": 1}, "/media/swap?exp=1&sig=s"),
                "speech.transcribe": ({"body": {"text": "hola", "segments": []}, "text": "hola"}, None),
                "video.render": ({"asset_id": "vid"}, f"{self.base}/media/vid?exp=1&sig=s"),
            }[job["kind"]]
        error = {"failed": "CUDA out of memory", "cancelled": "cancelled"}.get(state)
        status = {"queued": "queued", "running": "processing", "succeeded": "completed"}.get(state, "failed")
        return {k: v for k, v in job.items() if k in ("id", "job_id", "kind")} | {
            "state": state, "status": status, "progress": progress, "stage": stage, "url": url, "result": result,
            "error": error}


@pytest.fixture
def api():
    stand_in = StandIn()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _send(self, status, body, mime="application/json"):
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", mime)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self):
            if self.headers.get("Authorization") == "Bearer k3y":
                return True
            self._send(401, {"status": "error", "message": "missing or wrong API key"})
            return False

        def do_GET(self):
            path = urlsplit(self.path)
            stand_in.seen.append(("GET", self.path, None))
            if self.path == "/":
                return self._send(200, {"status": "online"})
            if path.path.startswith("/media/"):
                if "sig=" not in path.query:
                    return self._send(403, {"status": "error", "message": "unsigned"})
                mime, data = stand_in.media[path.path.rsplit("/", 1)[1]]
                return self._send(200, data, mime)
            if not self._authorised():
                return
            match = re.fullmatch(r"/api/jobs/(\w+)", path.path)
            if match:
                return self._send(200, stand_in.view(match.group(1), advance=True))
            if path.path == "/api/jobs":
                return self._send(200, {"status": "success", "jobs": [
                    {"id": "j1", "kind": "image.generate", "status": "completed", "progress": 100}]})
            if path.path == "/gpu-status":
                return self._send(200, {"status": "online", "device": "cpu", "models_loaded": ["image"]})
            if path.path == "/voices":
                return self._send(200, {"status": "success", "voices": [{"id": "espeak:en", "name": "English", "language": "en"}]})
            if path.path == "/avatars":
                return self._send(200, {"status": "success", "avatars": [{"id": "default", "name": "Default"},
                                                                         {"id": "a2", "name": "Ana"}]})
            self._send(404, {"status": "error", "message": "no route"})

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            stand_in.seen.append(("POST", self.path, json.loads(body or b"{}")))
            if not self._authorised():
                return
            if self.path == "/api/jobs":
                req = json.loads(body)
                if req["kind"] == "image.generate" and not req["params"].get("prompt"):
                    return self._send(400, {"status": "error", "message": "prompt: required"})
                return self._send(202, stand_in.submit(req["kind"], req["params"]))
            match = re.fullmatch(r"/api/jobs/(\w+)/cancel", self.path)
            if match:
                stand_in.jobs[match.group(1)]["cancelled"] = True
                return self._send(200, stand_in.view(match.group(1)))
            self._send(404, {"status": "error", "message": "no route"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stand_in.base = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield stand_in.base, stand_in
    server.shutdown()
    server.server_close()


def submitted(stand_in, kind):
    return [body["params"] for method, path, body in stand_in.seen if path == "/api/jobs" and body.get("kind") == kind]


def test_every_ui_job_is_polled_to_the_end_with_progress(api):
    url, stand_in = api
    ui = colab.NotebookUI(colab.Client(url, "k3y", poll_s=0.01))
    calls = {
        "image.generate": lambda p: ui.generate_image("a red chair", aspect_ratio="16:9", steps=4, guidance=2, on_progress=p),
        "faces.swap": lambda p: ui.face_swap(_png(), _png(), on_progress=p),
        "speech.transcribe": lambda p: ui.transcribe(b"RIFF....", "a.wav", on_progress=p),
        "video.render": lambda p: ui.render_video("Hola a todos.", voice_id="espeak:en", resolution=144, on_progress=p),
    }
    results = {}
    for kind, call in calls.items():
        seen = []
        results[kind] = call(seen.append)
        figures = [(job["state"], job["progress"]) for job in seen]
        assert figures[0] == ("queued", 0) and figures[-1] == ("succeeded", 100), (kind, figures)
        assert ("running", 40) in figures and ("running", 80) in figures, (kind, figures)
        assert [p for _, p in figures] == sorted(p for _, p in figures)
        assert len(figures) == len(set(figures)), "each figure is reported once"
        assert all(job["kind"] == kind for job in seen)
    assert results["image.generate"].size == (8, 6) and results["faces.swap"].size == (5, 5)
    assert results["speech.transcribe"] == "hola"
    assert results["video.render"].data == MP4
    assert submitted(stand_in, "image.generate") == [{"prompt": "a red chair", "aspect_ratio": "16:9", "steps": 4, "guidance": 2,
                                                      "negative_prompt": "", "style": "None"}]
    swap = submitted(stand_in, "faces.swap")[0]
    assert base64.b64decode(swap["source_image"].split(",", 1)[1]) == _png()
    speech = submitted(stand_in, "speech.transcribe")[0]
    assert speech["response_format"] == "verbose_json" and speech["audio"].startswith("data:application/octet-stream;base64,")
    assert submitted(stand_in, "video.render") == [{"script": "Hola a todos.", "avatar_id": "default", "generate_subtitles": True,
                                                    "orientation": "vertical", "lipsync": True, "voice_id": "espeak:en",
                                                    "resolution": 144}]
    status = colab.status_text(ui.client)
    assert "models loaded: image" in status and "j1" in status


def test_failed_jobs_and_refused_requests_raise_with_their_message(api):
    url, stand_in = api
    ui = colab.NotebookUI(colab.Client(url, "k3y", poll_s=0.01))
    with pytest.raises(colab.JobFailed, match="failed: CUDA out of memory"):
        ui.generate_image("boom")
    with pytest.raises(colab.ServerError, match="prompt: required"):
        ui.generate_image("")
    with pytest.raises(colab.ServerError, match="wrong API key"):
        colab.Client(url, "nope").jobs()


def test_an_interrupt_cancels_the_job(api):
    url, stand_in = api
    client = colab.Client(url, "k3y", poll_s=0.01)

    def interrupt_when_running(job):
        if job["state"] == "running":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        client.run("image.generate", {"prompt": "x"}, on_progress=interrupt_when_running)
    assert ("POST", "/api/jobs/j1/cancel", {}) in stand_in.seen and stand_in.jobs["j1"]["cancelled"]


def test_ui_widgets_build_and_run_a_job_on_ipywidgets_8(api):
    w = pytest.importorskip("ipywidgets")
    url, stand_in = api
    ui = colab.NotebookUI(colab.Client(url, "k3y", poll_s=0.01))
    tabs = ui.widget()
    assert w.__version__.startswith("8.")
    assert colab.tab_titles(tabs) == list(colab.TAB_TITLES) == ["Image", "Face swap", "Transcribe", "Video",
                                                                "Live portrait", "Jobs & GPU"]
    image_tab, _, _, video_tab, live_tab, _ = tabs.children
    prompt, _, go, _ = image_tab.children
    prompt.value = "a blue chair"
    go.click()
    assert submitted(stand_in, "image.generate")[0]["prompt"] == "a blue chair" and not go.disabled
    avatar = video_tab.children[1].children[0]
    assert [v for _, v in avatar.options] == ["default", "a2"]
    # The live portrait tab sends both uploads, as base64 the server reads the type of.
    portrait, speech = live_tab.children[0].children
    for upload, content in ((portrait, b"\x89PNG"), (speech, b"RIFF")):
        upload.set_trait("value", ({"name": "f", "type": "", "size": 4, "content": memoryview(content),
                                    "last_modified": datetime.datetime(2026, 1, 1)},))
    live_tab.children[1].click()
    sent = submitted(stand_in, "video.live_portrait")[0]
    assert (sent["image"], sent["audio"]) == (base64.b64encode(b"\x89PNG").decode(), base64.b64encode(b"RIFF").decode())


# The same widgets under ipywidgets 7 (what Colab ships), in a child process.
WIDGETS7_CHECK = """
import json, sys
import ipywidgets as w
from enfoads import colab
assert w.__version__.startswith("7."), w.__version__
ui = colab.NotebookUI(colab.Client(sys.argv[1], "k3y", poll_s=0.01))
tabs = ui.widget()
image_tab = tabs.children[0]
image_tab.children[0].value = "a green chair"
image_tab.children[2].click()
upload = w.FileUpload()
upload.set_trait("value", {"a.wav": {"metadata": {"name": "a.wav"}, "content": b"RIFF"}})  # 7's shape (read-only trait)
conn = colab.Connection("http://127.0.0.1:1", "the-secret-key", reveal_s=0)
box = conn.widget()
hidden = repr(box)
conn.reveal(True)
shown = box.children[1].value
conn.reveal(False)
print("W7 " + json.dumps({"titles": colab.tab_titles(tabs), "upload": colab._upload_name(upload),
                          "bytes": len(colab._upload_bytes(upload)), "hidden": hidden, "shown": shown,
                          "after": box.children[1].value, "version": w.__version__}))
"""


@pytest.fixture(scope="session")
def ipywidgets7(tmp_path_factory):
    target = tmp_path_factory.mktemp("ipywidgets7")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                    "ipywidgets>=7.7,<8", "ipython_genutils~=0.2.0"], check=True, capture_output=True, timeout=300)
    return target


def test_ui_widgets_work_on_ipywidgets_7_as_colab_ships_it(api, ipywidgets7):
    url, stand_in = api
    env = {**os.environ, "PYTHONPATH": str(ipywidgets7)}
    out = subprocess.run([sys.executable, "-c", WIDGETS7_CHECK, url], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    check = json.loads(next(l for l in out.stdout.splitlines() if l.startswith("W7 "))[3:])
    assert check["version"].startswith("7.")
    assert check["titles"] == list(colab.TAB_TITLES)
    assert (check["upload"], check["bytes"]) == ("a.wav", 4)
    assert submitted(stand_in, "image.generate")[0]["prompt"] == "a green chair"
    assert "the-secret-key" not in check["hidden"] and "the-secret-key" in check["shown"] and check["after"] == ""


# ---------------------------------------------------------------------------
# The key and the URL that carries it: masked in every output
# ---------------------------------------------------------------------------
def test_connect_text_masks_the_url_to_paste_and_the_key():
    from enfoads.security import url_prefix

    key = "the-key-0123456789"
    text = colab.connect_text("https://abc.ngrok-free.app", key, "http://127.0.0.1:5000")
    assert key not in text and url_prefix(key) not in text
    assert f"https://abc.ngrok-free.app/{url_prefix(key)[:4]}\u2022" in text and "PASTE" in text and "the-\u2022" in text
    local = colab.connect_text(None, key, "http://127.0.0.1:5000")
    assert "no tunnel" in local and key not in local and url_prefix(key) not in local
    assert "notebook UI below" in local and "free tier does not allow" in text


def test_connection_keeps_the_secret_out_of_the_output(tmp_path, capsys):
    pytest.importorskip("ipywidgets")
    from enfoads.security import url_prefix

    key = "the-key-0123456789"

    class Tunnel:
        public_url = "https://abc.ngrok-free.app"

    conn = colab.Connection("http://127.0.0.1:5000", key, Tunnel(), tmp_path, reveal_s=0.2)
    conn.announce()
    out = capsys.readouterr().out
    assert key not in out and url_prefix(key) not in out and str(tmp_path / "frontend-url.txt") in out
    saved = (tmp_path / "frontend-url.txt")
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert f"https://abc.ngrok-free.app/{url_prefix(key)}" in saved.read_text() and key in saved.read_text()
    assert conn.paste_url == f"https://abc.ngrok-free.app/{url_prefix(key)}"
    box = conn.widget()
    button, text = box.children
    assert key not in repr(box) and text.value == ""  # what a display would save
    button.click()
    assert text.value.startswith(conn.paste_url) and key in text.value and button.description == "Hide"
    deadline = time.monotonic() + 15
    # Hidden again by itself: the text is cleared, then the label is reset (wait for both, not the first).
    while (text.value or button.description != "Show URL and key") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert text.value == "" and button.description == "Show URL and key"


def test_server_log_lines_shown_in_the_notebook_are_masked(tmp_path):
    from enfoads.security import url_prefix

    key = "the-key-0123456789"
    log = tmp_path / "server.log"
    log.write_text(f"paste this URL: http://127.0.0.1:5000/{url_prefix(key)}\nkey {key}\n")
    server = colab.ServerProcess(None, "http://127.0.0.1:5000", log, colab.key_secrets(key))
    tail = server.tail()
    assert key not in tail and url_prefix(key) not in tail and url_prefix(key)[:4] + "\u2022" in tail
    assert key not in repr(colab.Client("http://x", key))


# ---------------------------------------------------------------------------
# The whole notebook, headless: tiny profile, no tunnel, no Drive
# ---------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CHECK_CELL = """
import json, sys
import ipywidgets
_img = ui.generate_image("a red chair on a beach", steps=4)
print("NOTEBOOK_CHECK " + json.dumps({
    "health": server.health(),
    "paste_url_health": colab.http_json(connection.paste_url + "/")[1],
    "paste_url_gpu_status": colab.http_json(connection.paste_url + "/gpu-status")[0],
    "bare_gpu_status": colab.http_json(server.url + "/gpu-status")[0],
    "image_size": list(_img.size),
    "heavy_in_kernel": [m for m in %r if m in sys.modules],
    "ipywidgets": ipywidgets.__version__,
    "tabs": colab.tab_titles(ui.widget()),
}))
""" % (HEAVY,)

MEDIA_CHECK_CELL = """
_video = ui.render_video("Hello there. This is a short test.", resolution=144, orientation="square")
_text = ui.transcribe(_video.data, "video.mp4")
print("MEDIA_CHECK " + json.dumps({"video_bytes": len(_video.data), "transcript_type": type(_text).__name__}))
"""


def execute_notebook(nb_dir: Path, env: dict, monkeypatch, *, kernel_name="python3", extra_cells=(), timeout=300):
    """Run the notebook (a copy in ``nb_dir``, its working folder) with ``env`` plus a check cell;
    the executed notebook, its outputs' text and the check's JSON."""
    from nbclient import NotebookClient

    for k, v in env.items():
        monkeypatch.setenv(k, v)  # the kernel inherits this environment
    nb = nbformat.read(NOTEBOOK, as_version=4)
    at = tagged(nb, "shutdown")[0]
    nb.cells[at:at] = [nbformat.v4.new_code_cell(cell) for cell in (CHECK_CELL, *extra_cells)]
    nb_dir.mkdir(parents=True, exist_ok=True)
    client = NotebookClient(nb, kernel_name=kernel_name, timeout=timeout, resources={"metadata": {"path": str(nb_dir)}})
    pid_file = Path(env["ENFOADS_DATA_DIR"]) / "logs" / "server.pid"
    try:
        client.execute()
    finally:
        if pid_file.exists():  # a failed run must not leave the server behind
            try:
                os.killpg(int(pid_file.read_text()), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    line = next(l for l in outputs.splitlines() if l.startswith("NOTEBOOK_CHECK "))
    return nb, outputs, json.loads(line[len("NOTEBOOK_CHECK "):])


def assert_notebook_worked(nb, outputs, check, data_dir: Path, pid_file: Path):
    from enfoads.security import url_prefix

    assert check["health"]["status"] == "online"
    assert check["paste_url_health"]["status"] == "online"  # the URL to paste answers
    assert (check["paste_url_gpu_status"], check["bare_gpu_status"]) == (200, 401)  # and it is the credential
    assert check["image_size"][0] > 0 and check["image_size"][1] > 0
    assert check["heavy_in_kernel"] == [], "the kernel must not import torch & co: the server does"
    assert check["tabs"] == list(colab.TAB_TITLES)
    assert "server stopped" in outputs and not pid_file.exists()
    key = (data_dir / "api-key").read_text().strip()
    saved = nbformat.writes(nb)  # everything the notebook would save, widget views included
    assert key not in saved and url_prefix(key) not in saved, "the key or the URL prefix reached the saved outputs"
    assert url_prefix(key)[:4] + "\u2022" in outputs


def notebook_env(tmp_path, models_dir) -> dict:
    return {
        "ENFOADS_PROFILE": "tiny", "ENFOADS_TUNNEL": "none", "ENFOADS_DRIVE": "0", "ENFOADS_PORT": str(_free_port()),
        "ENFOADS_DATA_DIR": str(tmp_path / "data"), "ENFOADS_MODELS_DIR": str(models_dir), "ENFOADS_SHUTDOWN": "1",
    }


@pytest.mark.slow
def test_notebook_runs_end_to_end_headless(models_dir, tmp_path, monkeypatch):
    assert colab.serve_command_available(), "the notebook starts `enfoads serve`; it must exist"
    import shutil

    env = notebook_env(tmp_path, models_dir)
    monkeypatch.delenv("ENFOADS_SOURCE", raising=False)
    monkeypatch.delenv("ENFOADS_API_KEY", raising=False)
    media = shutil.which("espeak-ng") is not None  # the video's voice (CI installs it)
    started = time.perf_counter()
    nb, outputs, check = execute_notebook(tmp_path / "nb", env, monkeypatch, extra_cells=[MEDIA_CHECK_CELL] if media else [])
    elapsed = time.perf_counter() - started
    assert "installing enfoads" not in outputs  # 1. already importable: nothing installed
    assert_notebook_worked(nb, outputs, check, tmp_path / "data", tmp_path / "data" / "logs" / "server.pid")
    if media:
        line = next(l for l in outputs.splitlines() if l.startswith("MEDIA_CHECK "))
        media_check = json.loads(line[len("MEDIA_CHECK "):])
        assert media_check["video_bytes"] > 1000 and media_check["transcript_type"] == "str"
    print(f"notebook executed in {elapsed:.1f} s", file=sys.stderr)


def test_system_programs_are_installed_with_apt_only_in_colab(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(colab.system.shutil, "which", lambda name: None if name == "espeak-ng" else f"/usr/bin/{name}")
    monkeypatch.setattr(colab.system, "in_colab", lambda: False)
    assert colab.ensure_system_packages(["espeak-ng", "ffmpeg"], run=lambda *a, **k: calls.append(a)) == ["espeak-ng"]
    assert calls == [] and "apt-get install espeak-ng" in capsys.readouterr().out

    monkeypatch.setattr(colab.system, "in_colab", lambda: True)
    monkeypatch.setattr(colab.system.os, "geteuid", lambda: 0)
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


def test_extra_frontend_origins_reach_the_server_and_bad_ones_are_refused():
    from enfoads.settings import DEFAULT_CORS_ORIGINS

    assert colab.server_env_for_origins("") == {}
    env = colab.server_env_for_origins("https://app.example.com/, https://b.example.org")
    origins = env["ENFOADS_CORS_ORIGINS"].split(",")
    assert origins[: len(DEFAULT_CORS_ORIGINS)] == list(DEFAULT_CORS_ORIGINS)
    assert origins[-2:] == ["https://app.example.com", "https://b.example.org"]
    for bad in ("*", "app.example.com"):
        with pytest.raises(ValueError, match="full origins"):
            colab.server_env_for_origins(bad)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert re.search(r'^CORS_ORIGINS = ""', nb.cells[tagged(nb, "parameters")[0]].source, re.M)


def test_no_false_ffmpeg_warning_videos_use_imageio_ffmpeg(monkeypatch, capsys):
    import imageio_ffmpeg

    assert "ffmpeg" not in colab.SYSTEM_PACKAGES and Path(imageio_ffmpeg.get_ffmpeg_exe()).is_file()
    monkeypatch.setattr(colab.system.shutil, "which", lambda name: None if name == "ffmpeg" else f"/usr/bin/{name}")
    assert colab.ensure_system_packages() == []
    assert "ffmpeg" not in capsys.readouterr().out
