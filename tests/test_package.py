"""Packaging promises: a cheap import, settings from the environment, profiles, CLI."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from enfoads.models.profiles import PROFILES, Hardware, choose_profile
from enfoads.settings import Settings

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "diffusers", "transformers", "ctranslate2", "faster_whisper", "onnxruntime", "insightface", "cv2")


def run_py(code: str, env=None) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return out.stdout


def test_import_enfoads_pulls_no_heavy_module():
    code = (
        "import sys, json, enfoads, enfoads.models.residency, enfoads.models.catalog, enfoads.models.loaders.image, "
        "enfoads.models.loaders.speech, enfoads.models.loaders.faces, enfoads.models.tiny\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    assert json.loads(run_py(code)) == []


def test_import_enfoads_is_fast():
    # Best of three, in fresh interpreters: the budget is 0.3 s.
    code = "import time; t = time.perf_counter(); import enfoads; print(time.perf_counter() - t)"
    best = min(float(run_py(code)) for _ in range(3))
    assert best < 0.3


def cuda_hw(name="Tesla T4", vram_gib=15):
    gib = 1024**3
    return Hardware(True, name, vram_gib * gib, "12.4", "550.54", 12 * gib, 11 * gib, 2)


CPU_HW = Hardware(False, "cpu", 0, None, None, 24 * 1024**3, 20 * 1024**3, 2)


def test_auto_profile_follows_the_hardware():
    assert choose_profile("auto", CPU_HW).name == "cpu"
    assert choose_profile("auto", cuda_hw()).name == "t4"
    assert choose_profile("auto", cuda_hw("NVIDIA L4", 24)).name == "gpu"
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        choose_profile("t4", CPU_HW)
    assert choose_profile("tiny", CPU_HW).name == "tiny"


def test_profiles_use_gpu_dtypes_on_gpu_and_cpu_dtypes_on_cpu():
    t4, cpu = PROFILES["t4"], PROFILES["cpu"]
    assert t4.roles["image"].dtype == "float16" and t4.roles["speech"].dtype == "float16"
    assert cpu.roles["speech"].dtype == "int8"  # float16 on a CPU raises in CTranslate2
    assert cpu.roles["image"].options["width"] == 512
    assert set(PROFILES["tiny"].roles) == set(t4.roles)


def test_settings_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ENFOADS_PROFILE", "tiny")
    monkeypatch.setenv("ENFOADS_PORT", "5055")
    monkeypatch.setenv("ENFOADS_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("ENFOADS_CORS_ORIGINS", "https://app.example, http://localhost:5173")
    monkeypatch.setenv("ENFOADS_API_KEY", "s3cret")
    s = Settings()
    assert (s.profile, s.port, s.data_dir) == ("tiny", 5055, tmp_path / "d")
    assert s.cors_origins == ["https://app.example", "http://localhost:5173"]
    assert s.api_key.get_secret_value() == "s3cret" and "s3cret" not in repr(s)
    # Flags beat the environment.
    assert s.with_overrides(port=6000, profile=None).port == 6000
    assert s.with_overrides(port=6000).profile == "tiny"


def test_settings_reject_bad_values(monkeypatch):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="port"):
        Settings(port=0)
    with pytest.raises(ValidationError, match="not allowed"):
        Settings(cors_origins="*")
    with pytest.raises(ValidationError, match="profile"):
        Settings(profile="huge")


def test_models_dir_defaults_to_the_hf_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("ENFOADS_MODELS_DIR", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert Settings().models_dir == tmp_path / "hf" / "hub"


def test_budgets_from_hardware_and_overrides():
    gib = 1024**3
    s = Settings(profile="auto")
    t4 = PROFILES["t4"]
    assert s.gpu_budget_bytes(t4, cuda_hw()) == 15 * gib - int(2.5 * gib)
    assert s.gpu_budget_bytes(PROFILES["cpu"], CPU_HW) == 0
    assert Settings(gpu_budget_gb=2).gpu_budget_bytes(PROFILES["tiny"], CPU_HW) == 2 * gib  # simulated
    assert s.ram_budget_bytes(t4, cuda_hw()) == 11 * gib - 3 * gib


def test_cli_doctor_reports_and_exits_zero(models_dir, tmp_path):
    env = {**os.environ, "ENFOADS_MODELS_DIR": str(models_dir), "ENFOADS_DATA_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "enfoads", "doctor", "--profile", "tiny", "--gpu-budget-gb", "1"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "profile        tiny" in out.stdout
    assert "GPU budget     1.0 GiB (simulated on the CPU)" in out.stdout
    for model in ("tiny-sdxl-lightning", "tiny-whisper", "tiny-buffalo_l", "espeak-ng"):
        assert model in out.stdout


def test_cli_doctor_lists_missing_real_models(tmp_path):
    env = {**os.environ, "ENFOADS_MODELS_DIR": str(tmp_path / "empty"), "ENFOADS_DATA_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "enfoads", "doctor", "--profile", "cpu"], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "MISSING" in out.stdout and "enfoads preload --profile cpu" in out.stdout


def test_cli_rejects_bad_settings_with_a_message(tmp_path):
    env = {**os.environ, "ENFOADS_PORT": "not-a-port"}
    out = subprocess.run([sys.executable, "-m", "enfoads", "doctor"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode != 0
    assert "invalid settings: port" in out.stderr and "Traceback" not in out.stderr


def test_cli_build_tiny_is_idempotent(models_dir, tmp_path):
    env = {**os.environ, "ENFOADS_MODELS_DIR": str(models_dir)}
    cmd = [sys.executable, "-m", "enfoads", "build-tiny"]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    marker = models_dir / "enfoads-tiny" / "tiny-sdxl-lightning" / "enfoads-tiny.json"
    before = marker.stat().st_mtime_ns
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert second.returncode == 0 and "tiny kit:" in second.stdout
    assert marker.stat().st_mtime_ns == before  # reused, not rebuilt


def test_residency_bench_holds_budgets_and_its_goal():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import residency_trace
    finally:
        sys.path.pop(0)
    trace = json.loads((REPO / "bench" / "traces" / "t4_mixed.json").read_text())["requests"]
    assert len(trace) >= 200
    table = residency_trace.model_table(trace)
    gpu, ram = residency_trace.T4_VRAM - residency_trace.GPU_RESERVE, residency_trace.T4_RAM - residency_trace.RAM_RESERVE
    ours = residency_trace.replay_manager(trace, table, gpu, ram)
    assert ours["over_budget"] == 0
    assert ours["gpu_loads"] / residency_trace.belady_gpu_loads(trace, table, gpu) <= 1.10


# ---------------------------------------------------------------------------
# Packaging metadata: pyproject.toml (PEP 621); the wheel itself is tested in test_wheel_notebook.py
# ---------------------------------------------------------------------------
def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((REPO / "pyproject.toml").read_text())


# What setup.py declared before pyproject.toml: none may be lost.
DEPENDENCIES_BEFORE = {
    "torch>=2.1", "diffusers>=0.30", "transformers>=4.44", "accelerate>=0.33", "safetensors>=0.4",
    "huggingface_hub>=1.0", "faster-whisper>=1.0", "insightface>=0.7.3", "onnx>=1.15", "onnxruntime>=1.17",
    "opencv-python-headless>=4.8", "flask>=3.0", "flask-socketio>=5.3", "simple-websocket>=1.0", "flask-cors>=4.0",
    "flask-limiter>=3.5", "pyngrok>=7.0", "pydantic>=2.5", "pydantic-settings>=2.7", "pillow>=10.0", "numpy>=1.24",
    "tqdm>=4.66", "piper-tts>=1.8", "imageio-ffmpeg>=0.5", "nvidia-ml-py>=12",
}
EXTRAS_BEFORE = {
    "gpu": {"onnxruntime-gpu>=1.24,<1.25"},
    "online": {"edge-tts>=7"},
    "test": {"pytest>=8.0", "nbclient>=0.10", "ipykernel>=6.29", "requests>=2.31", "openai>=1.30",
             "python-socketio[client]>=5.10", "websocket-client>=1.7", "ipywidgets>=8", "jsonschema>=4", "schemathesis>=4.0"},
}


def test_the_version_lives_in_one_place():
    data = _pyproject()
    project = data["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert data["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "enfoads._version.__version__"}
    assert data["build-system"]["build-backend"] == "setuptools.build_meta"
    import re

    for name in ("pyproject.toml", "setup.py"):
        assert not re.search(r"^\s*version\s*=\s*['\"]", (REPO / name).read_text(), re.M), f"a version in {name}"
    assert re.fullmatch(r'__version__ = "[^"]+"\n', (REPO / "enfoads" / "_version.py").read_text())


def test_setup_py_is_a_bare_shim():
    import ast

    tree = ast.parse((REPO / "setup.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "setup"]
    assert len(calls) == 1 and not calls[0].args and not calls[0].keywords, "metadata belongs in pyproject.toml"


def test_dependencies_and_extras_are_kept_in_pyproject():
    project = _pyproject()["project"]
    assert DEPENDENCIES_BEFORE <= set(project["dependencies"])
    extras = {k: set(v) for k, v in project["optional-dependencies"].items()}
    for name, before in EXTRAS_BEFORE.items():
        assert before <= extras[name], name
    # colab: only what Colab lacks. Colab manages ipykernel and ipywidgets (it ships ipywidgets 7).
    assert not any(r.startswith(("ipykernel", "ipywidgets", "nbclient", "enfoads")) for r in extras["colab"])
    assert project["scripts"] == {"enfoads": "enfoads.cli:main"}
    assert project["requires-python"] == ">=3.10"


def test_profile_detection_without_torch(tmp_path):
    def smi(name, script):
        path = tmp_path / name
        path.write_text("#!/bin/sh\n" + script + "\n")
        path.chmod(0o755)
        return str(path)

    code = (
        "import json, sys; from enfoads.models.profiles import detect_profile_without_torch as d; "
        "print(json.dumps([[d(p) for p in sys.argv[1:]], 'torch' in sys.modules]))"
    )
    args = [
        smi("t4", "echo 'Tesla T4, 15360 MiB'"),
        smi("l4", "echo 'NVIDIA L4, 23034 MiB'; echo 'Tesla T4, 15360 MiB'"),  # the first GPU decides
        smi("broken", "echo 'NVIDIA-SMI has failed because it could not communicate with the driver' >&2; exit 9"),
        str(tmp_path / "missing"),
    ]
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [["t4", "gpu", "cpu", "cpu"], False]


def test_the_server_log_shows_each_library_warning_once_in_its_format():
    # What `enfoads serve` sets up; without a network huggingface_hub warns on every retry.
    code = (
        "from enfoads.cli.server import configure_logging\n"
        "configure_logging()\n"
        "from huggingface_hub.utils import logging as hub_logging\n"
        "hub_logging.get_logger('huggingface_hub.utils._http').warning('retry-probe thrown')\n"
        "import logging; logging.getLogger('enfoads.test').info('own-probe')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    assert [x for x in lines if "retry-probe" in x] == [
        next(x for x in lines if "WARNING huggingface_hub.utils._http: retry-probe thrown" in x)], lines
    assert len([x for x in lines if "INFO enfoads.test: own-probe" in x]) == 1, lines
