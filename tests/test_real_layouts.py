"""Defects that only the real install layout shows: each test here failed before its fix.

The Hugging Face cache keeps ``blobs/<hash>`` plus relative snapshot symlinks;
real repositories hold fp16-only folders, repos without some files, and the
catalogue's patterns must select what the loaders then read.
"""
import fnmatch
import hashlib
import os
import shutil
from pathlib import Path

import pytest

from enfoads.models.catalog import CATALOG, PRELOAD_EXTRAS, HubFiles, get_entry
from enfoads.errors import ModelNotInstalled
from enfoads.models.preload import PreloadError, select_models
from enfoads.models.registry import ModelNotInstalledError, local_paths, presence
from enfoads.models.tiny import ensure_tiny


def hf_cache_file(cache: Path, repo_id: str, commit: str, rel: str, content: bytes) -> Path:
    """One file the way huggingface_hub stores it: a blob named by its hash, a relative symlink."""
    storage = cache / ("models--" + repo_id.replace("/", "--"))
    blob = storage / "blobs" / hashlib.sha256(content).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(content)
    link = storage / "snapshots" / commit / rel
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(os.path.relpath(blob, link.parent))
    (storage / "refs").mkdir(exist_ok=True)
    (storage / "refs" / "main").write_text(commit)
    return link


def test_swapper_loads_from_a_hub_cache_symlink(models_dir, tmp_path):
    from enfoads.models.loaders.faces import CPU, load_swapper

    tiny = ensure_tiny(models_dir, "tiny-buffalo_l") / "models" / "inswapper_128.onnx"
    src = get_entry("inswapper_128").sources["model"]
    cache = tmp_path / "hub"
    link = hf_cache_file(cache, src.repo_id, src.revision, "inswapper_128.onnx", tiny.read_bytes())
    assert link.resolve().suffix == ""  # the blob's name: what the old loader handed insightface
    path = local_paths(get_entry("inswapper_128"), cache)["model"]
    assert path.name == "inswapper_128.onnx" and path.is_symlink()
    swapper = load_swapper(path, providers=[CPU])
    assert hasattr(swapper, "emap") and swapper.input_size == (128, 128)


def test_fp16_only_diffusers_folder_loads_in_fp32(models_dir, tmp_path):
    """What preload installs for SD-Turbo (the *.fp16.safetensors only) loads for the CPU profile's fp32."""
    import torch

    from enfoads.models.loaders.image import load_diffusers_folder, weights_variant

    base = ensure_tiny(models_dir, "tiny-sdxl-lightning") / "base"
    folder = tmp_path / "fp16-only"
    shutil.copytree(base, folder)
    assert not list(folder.glob("*/*model.safetensors")) and list(folder.glob("*/*.fp16.safetensors"))
    assert weights_variant(folder, "float32") == "fp16" and weights_variant(folder, "float16") == "fp16"
    pipe = load_diffusers_folder(folder, device="cpu", dtype="float32")
    assert pipe.text_encoder.dtype == torch.float32
    # A folder with plain files loads those for fp32.
    for f in folder.glob("*/*.fp16.safetensors"):
        f.rename(f.with_name(f.name.replace(".fp16", "")))
    assert weights_variant(folder, "float32") is None


def test_whisper_small_patterns_fit_its_real_file_list():
    """Systran/faster-whisper-small has no preprocessor_config.json; turbo (128 mel bins) must fetch it."""
    small = get_entry("faster-whisper-small").sources["model"]
    real_small = ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt", "README.md", ".gitattributes"]
    literal = [p for p in small.allow_patterns if not any(c in p for c in "*?[")]
    assert all(p in real_small for p in literal), literal
    turbo = get_entry("faster-whisper-large-v3-turbo").sources["model"]
    assert "preprocessor_config.json" in turbo.allow_patterns


def test_not_installed_is_a_503_with_the_command(tmp_path):
    entry = get_entry("faster-whisper-small")
    with pytest.raises(ModelNotInstalledError) as info:
        local_paths(entry, tmp_path)
    exc = info.value
    assert isinstance(exc, ModelNotInstalled) and isinstance(exc, FileNotFoundError)
    assert (exc.status, exc.code) == (503, "model_not_installed")
    assert "enfoads preload --only speech" in str(exc)

    from enfoads.errors import status_and_code
    from enfoads.web.errors import code_for_job_error, status_for_job_error

    # What a job that failed with it records (JobQueue keeps the status and code its type carries).
    recorded = {"type": type(exc).__name__, "message": str(exc), **dict(zip(("status", "code"), status_and_code(exc)))}
    assert status_for_job_error(recorded) == 503 and code_for_job_error(recorded) == "model_not_installed"


def _snapshot(cache: Path, src: HubFiles, files: dict[str, bytes]) -> Path:
    for rel, content in files.items():
        hf_cache_file(cache, src.repo_id, src.revision, rel, content)
    return cache / ("models--" + src.repo_id.replace("/", "--")) / "snapshots" / src.revision


def test_presence_means_the_loader_will_find_what_it_needs(tmp_path):
    """Files that exist are not enough: the loader's own rules decide (no weights are loaded)."""
    whisper = get_entry("faster-whisper-small")
    cache = tmp_path / "hub"
    folder = _snapshot(cache, whisper.sources["model"], {"config.json": b"{}", "model.bin": b"x", "vocabulary.txt": b"a"})
    here = presence(whisper, cache)
    assert not here.present and "tokenizer.json" in here.detail
    hf_cache_file(cache, whisper.sources["model"].repo_id, whisper.sources["model"].revision, "tokenizer.json", b"{}")
    assert presence(whisper, cache).present, folder

    turbo = get_entry("sd-turbo")
    src = turbo.sources["base"]
    files = {"model_index.json": b'{"unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],'
                                 b' "text_encoder": ["transformers", "CLIPTextModel"]}',
             "scheduler/scheduler_config.json": b"{}", "tokenizer/vocab.json": b"{}",
             "text_encoder/config.json": b"{}", "unet/config.json": b"{}", "vae/config.json": b"{}",
             "text_encoder/model.fp16.safetensors": b"x", "unet/diffusion_pytorch_model.fp16.safetensors": b"x"}
    _snapshot(cache, src, files)
    here = presence(turbo, cache)
    assert not here.present and "vae" in here.detail
    hf_cache_file(cache, src.repo_id, src.revision, "vae/diffusion_pytorch_model.fp16.safetensors", b"x")
    assert presence(turbo, cache).present

    pack = get_entry("buffalo_l")
    folder = cache / pack.sources["pack"].unpack_to
    folder.mkdir(parents=True)
    (folder / "readme.txt").write_text("not a model")
    here = presence(pack, cache)
    assert not here.present and "det_" in here.detail
    for name in ("det_10g.onnx", "w600k_r50.onnx"):
        (folder / name).write_bytes(b"x")
    assert presence(pack, cache).present


def test_quality_mode_has_a_preload_option_that_installs_what_the_service_reads(tmp_path):
    from enfoads.models.loaders.image import base_unet_weights

    t4 = {e.id for e in select_models("t4", extras=["quality"])}
    assert "sdxl-base-unet" in t4 and "sdxl-lightning-4step" in t4
    assert "sdxl-base-unet" not in {e.id for e in select_models("t4")}
    steps = {e.id for e in select_models("gpu", only=["image"], extras=["lightning-steps"])}
    assert {"sdxl-lightning-1step", "sdxl-lightning-2step", "sdxl-lightning-8step"} <= steps
    with pytest.raises(PreloadError, match="no optional downloads"):
        select_models("cpu", extras=["quality"])
    with pytest.raises(PreloadError, match="choose from"):
        select_models("t4", extras=["nope"])
    # The file the option installs is the one the image service loads, in the base snapshot it reads.
    quality = get_entry(PRELOAD_EXTRAS["quality"][0]).sources["base"]
    base = get_entry("sdxl-lightning-4step").sources["base"]
    assert (quality.repo_id, quality.revision) == (base.repo_id, base.revision)
    folder = _snapshot(tmp_path, quality, {p: b"x" for p in quality.allow_patterns})
    assert base_unet_weights(folder) is not None
    assert all(any(fnmatch.fnmatch(str(base_unet_weights(folder).relative_to(folder)), p) for p in quality.allow_patterns)
               for _ in [0])


def test_licences_and_pins_as_the_sources_state():
    lightning = get_entry("sdxl-lightning-4step")
    assert "openrail++" in lightning.licence.lower() and "OpenRAIL-M (SDXL-Lightning)" not in lightning.licence
    for entry in CATALOG.values():
        for src in entry.sources.values():
            if isinstance(src, HubFiles):
                assert len(src.revision) == 40 and all(c in "0123456789abcdef" for c in src.revision), (entry.id, src)


def test_a_simulated_gpu_budget_runs_the_gpu_profiles_on_a_cpu(tmp_path):
    """t4 and gpu on a machine without CUDA only with ENFOADS_GPU_BUDGET_GB (the parity tests' simulated T4)."""
    from enfoads.models.profiles import Hardware
    from enfoads.models.runtime import build_runtime
    from enfoads.settings import Settings

    hw = Hardware(cuda=False, device_name="cpu", vram_total_bytes=0, cuda_version=None, driver=None,
                  ram_total_bytes=16 * 1024**3, ram_available_bytes=12 * 1024**3, cpu_count=2)
    with pytest.raises(ValueError, match="CUDA"):
        build_runtime(Settings(profile="t4", models_dir=tmp_path), hw)
    rt = build_runtime(Settings(profile="t4", models_dir=tmp_path, gpu_budget_gb=12.5), hw)
    try:
        assert rt.profile.name == "t4" and rt.residency.device_for("gpu") == "cpu"
        assert rt.residency.gpu_budget == int(12.5 * 1024**3)
    finally:
        rt.close()


def test_translate_on_turbo_is_warned_and_small_is_not():
    from enfoads.services.speech import translation_warnings

    turbo, small = get_entry("faster-whisper-large-v3-turbo"), get_entry("faster-whisper-small")
    assert translation_warnings(turbo, "translate") and "transcription only" in translation_warnings(turbo, "translate")[0]
    assert translation_warnings(turbo, "transcribe") == [] and translation_warnings(small, "translate") == []


def test_gpu_utilisation_is_nvml_or_says_it_is_unavailable():
    from enfoads.web.routes_system import gpu_utilization

    figures = gpu_utilization(0)
    if figures["utilization_source"] == "nvml":
        assert 0 <= figures["utilization_percent"] <= 100
    else:  # no NVIDIA driver here: no number passed off as utilisation
        assert figures == {"utilization_percent": None, "utilization_source": "unavailable"}
