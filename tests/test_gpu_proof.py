"""bench/gpu_proof.py: its CPU smoke run prints every figure and check, and without CUDA it exits 2.

The GPU run itself happens by hand on a GPU machine; here the same code paths
run with tiny shapes (``--cpu-smoke``), and the published configs the GPU run
builds are checked against the published parameter counts on the meta device.
"""
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_proof.py"

HEADER = ["mode", "device", "torch_version", "torch_cuda", "gpu_total_memory_gb", "host_ram_available_gb"]
SDXL = [
    "sdxl_build_seconds", "sdxl_write_seconds", "sdxl_files_gb", "residency_gpu_budget_gb",
    "residency_ram_budget_gb", "sdxl_load_seconds", "check_sdxl_loaded", "sdxl_weights_gb", "sdxl_size_px",
    "sdxl_steps", "sdxl_seconds_per_image", "sdxl_images_per_minute", "sdxl_unet_batch",
    "sdxl_unet_seconds_per_step", "sdxl_non_unet_seconds_per_image", "sdxl_unet_gflops_per_step",
    "sdxl_unet_achieved_tflops", "sdxl_fp16_peak_tflops", "sdxl_unet_mfu", "sdxl_peak_vram_reserved_gb",
    "sdxl_peak_vram_allocated_gb", "sdxl_activation_peak_gb", "sdxl_image_shape", "sdxl_image_std",
    "check_sdxl_image_finite", "check_sdxl", "sdxl_section_seconds",
]
RESIDENCY = [
    "residency_catalog_vram_gb", "residency_measured_gpu_gb", "residency_module_gb",
    "residency_measured_over_module", "residency_gpu_to_cpu_seconds", "residency_gpu_allocated_after_evict_gb",
    "check_residency_evicted_to_cpu", "residency_cpu_to_gpu_seconds", "residency_lease_back_seconds",
    "check_residency_back_on_gpu", "residency_evictions", "check_residency", "residency_section_seconds",
]
ONNX = [
    "onnxruntime_version", "onnx_available_providers", "onnx_load_seconds", "onnx_faces_detected",
    "check_onnx_face_found", "onnx_sessions", "check_onnx_providers", "onnx_face_analysis_ms", "onnx_swap_ms",
    "check_onnx_swap_output", "check_onnx", "onnx_section_seconds",
]
WHISPER = [
    "whisper_build_seconds", "whisper_convert_seconds", "whisper_model_gb", "whisper_ctranslate2_cuda_devices",
    "whisper_load_seconds", "check_whisper_device", "whisper_audio_source", "whisper_audio_seconds",
    "whisper_transcribe_seconds", "whisper_realtime_factor", "whisper_segments", "check_whisper",
    "whisper_section_seconds",
]
ENHANCE = [
    "enhance_x4plus_dtype", "enhance_x4plus_s_per_output_mp", "enhance_x4plus_tile", "check_enhance_x4plus_output",
    "enhance_gfpgan_ms_per_face", "check_enhance_gfpgan_output", "check_enhance", "enhance_section_seconds",
]
LIPSYNC = [
    "lipsync_unet_parameters_m", "lipsync_weights_gb",
    "lipsync_fps_batch8", "lipsync_realtime_x_batch8", "check_lipsync_frames_batch8",
    "lipsync_fps_batch16", "lipsync_realtime_x_batch16", "check_lipsync_frames_batch16",
    "check_lipsync", "lipsync_section_seconds",
]
FOOTER = ["proof_total_seconds", "checks_failed"]
LINE = re.compile(r"^([a-z0-9_]+)=(\S.*)$")


def _env():
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run(*args, timeout=120):
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=timeout)


def _figures(stdout: str) -> dict[str, str]:
    figures = {}
    for line in stdout.splitlines():
        match = LINE.match(line)
        assert match, f"not one name=value figure per line: {line!r}"
        assert match.group(1) not in figures, f"{match.group(1)} printed twice"
        figures[match.group(1)] = match.group(2)
    return figures


def _load_module():
    spec = importlib.util.spec_from_file_location("gpu_proof", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_cpu_smoke_prints_every_figure_and_passes():
    proc = _run("--cpu-smoke")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = _figures(proc.stdout)
    expected = HEADER + SDXL + RESIDENCY + ONNX + WHISPER + ENHANCE + LIPSYNC + FOOTER
    missing = [name for name in expected if name not in figures]
    assert not missing, f"missing figures {missing}\n{proc.stdout}"
    assert list(figures) == expected, "figures out of the documented order"
    checks = {k: v for k, v in figures.items() if k.startswith("check_")}
    assert checks and all(v == "ok" for v in checks.values()), checks
    assert figures["checks_failed"] == "none"
    assert figures["mode"] == "cpu-smoke"
    # No MFU or VRAM on a CPU; real numbers everywhere else.
    for name in ("sdxl_unet_mfu", "sdxl_fp16_peak_tflops", "sdxl_peak_vram_reserved_gb"):
        assert figures[name] == "n/a"
    for name in ("sdxl_seconds_per_image", "sdxl_unet_gflops_per_step", "onnx_swap_ms",
                 "whisper_transcribe_seconds", "residency_gpu_to_cpu_seconds", "residency_cpu_to_gpu_seconds"):
        assert float(figures[name]) > 0, name
    assert figures["sdxl_image_shape"] == "1x64x64x3"
    assert figures["sdxl_unet_batch"] == "1"  # guidance 0: no classifier-free guidance batch
    assert figures["onnx_faces_detected"] == "1"
    assert float(figures["whisper_audio_seconds"]) == 30
    assert float(figures["residency_measured_over_module"]) == pytest.approx(1.0)


@pytest.mark.slow
def test_only_runs_the_named_checks():
    proc = _run("--cpu-smoke", "--only", "onnx")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = _figures(proc.stdout)
    assert list(figures) == HEADER + ONNX + FOOTER


def test_unknown_check_name_is_refused():
    proc = _run("--cpu-smoke", "--only", "sdxl,bogus", timeout=60)
    assert proc.returncode == 2
    assert "--only" in proc.stderr


def test_without_cuda_it_exits_2_naming_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the script would run the GPU checks")
    proc = _run(timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "CUDA" in proc.stderr
    assert "--cpu-smoke" in proc.stderr
    assert proc.stdout == ""


def test_published_configs_have_the_published_parameter_counts():
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    gp = _load_module()

    def count(model):
        return sum(p.numel() for p in model.parameters())

    with init_empty_weights():
        assert count(UNet2DConditionModel.from_config(gp.SDXL_UNET_CONFIG)) == gp.SDXL_UNET_PARAMS
        assert count(AutoencoderKL.from_config(gp.SDXL_VAE_CONFIG)) == gp.SDXL_VAE_PARAMS
        te = CLIPTextModel(CLIPTextConfig(**gp.SDXL_TEXT_ENCODER_CONFIG))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(**gp.SDXL_TEXT_ENCODER_2_CONFIG))
    assert count(te) == gp.SDXL_TEXT_ENCODER_PARAMS
    assert count(te2) == gp.SDXL_TEXT_ENCODER_2_PARAMS
    # The two text encoders feed the UNet: 768 + 1280 = cross_attention_dim; pooled 1280 + 6 x 256 time ids.
    assert te.config.hidden_size + te2.config.hidden_size == gp.SDXL_UNET_CONFIG["cross_attention_dim"]
    assert te2.config.projection_dim + 6 * gp.SDXL_UNET_CONFIG["addition_time_embed_dim"] == (
        gp.SDXL_UNET_CONFIG["projection_class_embeddings_input_dim"])


def test_fp16_peak_table_matches_device_names():
    gp = _load_module()
    peak = gp.fp16_peak_tflops
    assert peak("Tesla T4") == 65
    assert peak("NVIDIA L4") == 121
    assert peak("NVIDIA L40S") is None  # not the L4
    assert peak("NVIDIA A10G") == 125
    assert peak("NVIDIA A100-SXM4-40GB") == 312
    assert peak("NVIDIA A100 80GB PCIe") == 312
    assert peak("NVIDIA H100 80GB HBM3") == 989
    assert peak("NVIDIA H100 PCIe") == 756
    assert peak("NVIDIA H200") == 989
    assert peak("NVIDIA GeForce RTX 4090") == 165
    assert peak("Some Future GPU") is None


def test_streaming_safetensors_writer_round_trips(tmp_path):
    import torch
    from safetensors.torch import load_file

    gp = _load_module()
    state = {
        "a.weight": torch.randn(3, 5, dtype=torch.float16),
        "b.bias": torch.randn(7),
        "c.ids": torch.arange(4, dtype=torch.int64),
        "d.scalar": torch.tensor(2.5, dtype=torch.bfloat16),
        "e.strided": torch.randn(4, 6).t(),
    }
    path = tmp_path / "x.safetensors"
    gp.save_safetensors_streaming(state, path)
    loaded = load_file(str(path))
    assert set(loaded) == set(state)
    for name, tensor in state.items():
        assert loaded[name].dtype == tensor.dtype and loaded[name].shape == tensor.shape
        assert torch.equal(loaded[name], tensor), name


def test_a_failing_check_is_reported_and_the_next_still_runs(monkeypatch, capsys):
    gp = _load_module()

    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(gp, "check_onnx", broken)
    assert gp.main(["--cpu-smoke", "--only", "onnx,whisper"]) == 1
    figures = _figures(capsys.readouterr().out)
    assert figures["check_onnx"] == "FAILED RuntimeError: boom second line"
    assert figures["check_whisper"] == "ok"
    assert figures["checks_failed"] == "onnx"
