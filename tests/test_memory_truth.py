"""Memory truth on a T4: staging figures, hopeless leases, real catalogue sizes, CUDA-only paths.

Everything here runs on a CPU. The T4 is simulated the way ``enfoads.models.runtime``
sizes a real one (``Settings.gpu_budget_bytes`` / ``ram_budget_bytes`` with the
``t4`` profile on a Colab T4's hardware figures); the models are
``SimulatedAdapter``s sized from the catalogue (VRAM, RAM, staging). The CUDA
code paths that cannot run here are checked at their boundary: the options
handed to ONNX Runtime, the calls to ``torch.cuda.empty_cache``, the probe
readings after a model's first run.
"""
from __future__ import annotations

import json
import struct
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from enfoads.models.adapters import OnnxFacesAdapter, adapter_for, staging_bytes_for
from enfoads.models.catalog import CATALOG, GB, MB
from enfoads.models.profiles import PROFILES
from enfoads.models.residency import ResidencyManager
from enfoads.models.residency_types import CPU, GPU, ModelMemoryError, is_out_of_memory
from enfoads.settings import Settings
from enfoads.testing.simulation import (
    SIMULATED_GPU_DEVICE,
    T4_HARDWARE,
    SimulatedAdapter,
    SimulatedGPU,
    catalog_adapter,
    t4_budgets,
    t4_manager,
)

REPO = Path(__file__).resolve().parents[1]
T4 = PROFILES["t4"]
T4_MODELS = sorted({c.model_id for c in T4.roles.values() if CATALOG[c.model_id].runtime != "process"})


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        self.t += 1.0
        return self.t


def manager(gpu=10, ram=10, **kw):
    kw.setdefault("clock", FakeClock())
    return ResidencyManager(gpu_budget=int(gpu * GB), ram_budget=int(ram * GB), gpu_device=kw.pop("gpu_device", "cpu"),
                            **kw)


# ------------------------------------------------------------------------------------------ staging figures


def test_catalogue_states_what_each_real_loader_stages_in_host_ram():
    """Every real model says how much host RAM its load onto the GPU holds, and the adapters use it."""
    for entry in CATALOG.values():
        if entry.tiny or entry.runtime not in ("torch", "ctranslate2", "onnxruntime"):
            continue
        assert entry.staging_bytes is not None, f"{entry.id}: no staging figure"
        adapter = adapter_for(entry, T4.roles["image"], Path("/nowhere"))
        assert adapter.staging_bytes == entry.staging_bytes == staging_bytes_for(entry)
    lightning = CATALOG["sdxl-lightning-4step"]
    # The UNet (5.1 GB) streams from its file straight to the GPU; the text encoders (1.64 GB
    # fp16) and the VAE (0.17 GB fp16) sit on the CPU until the pipeline moves: ~1.8 GB, not 7.1.
    assert 1.8 * GB <= lightning.staging_bytes <= 2.0 * GB < lightning.ram_bytes
    # CTranslate2 reads all of model.bin (1.62 GB fp16) into host memory before moving it.
    assert CATALOG["faster-whisper-large-v3-turbo"].staging_bytes >= 1.62 * GB
    # insightface re-reads inswapper_128.onnx (554 MB) with onnx.load: file bytes + parsed proto.
    assert CATALOG["inswapper_128"].staging_bytes >= 2 * 554 * MB
    assert CATALOG["buffalo_l"].staging_bytes >= 2 * 174 * MB  # w600k_r50.onnx, the largest of the pack


def test_entries_without_a_figure_stage_their_whole_ram_footprint():
    from dataclasses import replace

    entry = replace(CATALOG["tiny-whisper"], staging_bytes=None)
    assert staging_bytes_for(entry) == entry.ram_bytes


def _fake_checkpoint(path: Path, tensors: dict[str, tuple[str, int]]) -> Path:
    """A sparse ``.safetensors`` with a real header and no data: real sizes, no disk."""
    width = {"F16": 2, "F32": 4}
    table, offset = {}, 0
    for name, (dtype, numel) in tensors.items():
        table[name] = {"dtype": dtype, "shape": [numel], "data_offsets": [offset, offset + numel * width[dtype]]}
        offset += numel * width[dtype]
    header = json.dumps(table).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + offset)
    return path


# Parameter counts of SDXL base 1.0 (UNet, CLIP ViT-L text encoder, OpenCLIP bigG with projection, VAE).
SDXL_PARAMS = {"unet": 2_567_463_684, "te1": 123_060_480, "te2": 694_659_840, "vae": 83_653_863}


def _user_sdxl(tmp_path, dtype="F16"):
    from enfoads.models.user_models import ImageModelInfo, UserImageAdapter

    path = _fake_checkpoint(tmp_path / "juggernaut.safetensors", {
        "model.diffusion_model.input_blocks.0.0.weight": (dtype, SDXL_PARAMS["unet"]),
        "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": (dtype, SDXL_PARAMS["te1"]),
        "conditioner.embedders.1.model.positional_embedding": (dtype, SDXL_PARAMS["te2"]),
        "first_stage_model.encoder.conv_in.weight": (dtype, SDXL_PARAMS["vae"]),
    })
    total = sum(SDXL_PARAMS.values())
    info = ImageModelInfo(id="user:juggernaut", name="juggernaut", path=str(path), kind="single_file", valid=True,
                          family="sdxl", bytes=path.stat().st_size, parameters=total, config_dir=str(tmp_path))
    return UserImageAdapter.create(info, T4.roles["image"], tmp_path), total


@pytest.mark.parametrize("dtype", ["F16", "F32"])
def test_user_sdxl_checkpoint_stages_only_its_text_encoders_in_fp16(tmp_path, dtype):
    adapter, total = _user_sdxl(tmp_path, dtype)
    text_encoders = SDXL_PARAMS["te1"] + SDXL_PARAMS["te2"]
    # UNet and VAE are loaded straight onto the GPU; the text encoders are built on the CPU in fp16.
    assert text_encoders * 2 <= adapter.staging_bytes <= text_encoders * 2 * 1.05 + 0.1 * GB
    assert adapter.staging_bytes < total * 2  # far below the whole fp16 pipeline
    _gpu_budget, ram_budget = t4_budgets()
    assert adapter.staging_bytes < ram_budget


def test_user_diffusers_folder_stages_the_whole_pipeline_in_fp16(tmp_path):
    from enfoads.models.user_models import ImageModelInfo, UserImageAdapter

    info = ImageModelInfo(id="user:xl", name="xl", path=str(tmp_path), kind="diffusers_folder", valid=True,
                          family="sdxl", bytes=int(6.9 * GB), parameters=3_468_837_867)
    adapter = UserImageAdapter.create(info, T4.roles["image"], tmp_path)
    # load_diffusers_folder builds every component on the CPU, then moves the pipeline: params x 2.
    assert info.parameters * 2 <= adapter.staging_bytes <= info.parameters * 2 * 1.05 + 0.1 * GB


def test_a_user_sdxl_checkpoint_loads_on_a_t4(tmp_path):
    user, _total = _user_sdxl(tmp_path)
    m = t4_manager([], lease_wait_s=3, clock=time.monotonic)
    m.register(SimulatedAdapter(user.key, user.estimate(GPU), staging_bytes=user.staging_bytes,
                                ram_size=user.estimate(CPU)), preferred=GPU)
    started = time.monotonic()
    with m.use(user.key):
        pass
    assert time.monotonic() - started < 1
    assert m.stats().over_budget_events == 0


def _tiny_single_file(models_dir, tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from test_image_models import _tiny_pipelines, export_single_file
    finally:
        sys.path.pop(0)
    from enfoads.models.tiny import ensure_tiny

    kit = ensure_tiny(models_dir, "tiny-sdxl-lightning")
    xl, _sd15 = _tiny_pipelines(kit / "base")
    xl.save_pretrained(tmp_path / "xl-folder")
    export_single_file(xl, tmp_path / "xl.safetensors", "sdxl")
    return tmp_path / "xl.safetensors", tmp_path / "xl-folder"


def test_single_file_loads_unet_and_vae_straight_onto_the_device(models_dir, tmp_path, monkeypatch):
    """``load_single_file`` asks diffusers to place the UNet and VAE on the target device as they load."""
    import torch
    from diffusers import StableDiffusionXLPipeline

    from enfoads.models.loaders import image

    path, config = _tiny_single_file(models_dir, tmp_path)
    # diffusers honours the option: on the meta device nothing is allocated, so where each
    # component landed shows what passes through host RAM (only the text encoders).
    pipe = StableDiffusionXLPipeline.from_single_file(str(path), config=str(config), local_files_only=True,
                                                      torch_dtype=torch.float16, add_watermarker=False, device="meta")
    placed = {n: {p.device.type for p in getattr(pipe, n).parameters()}
              for n in ("unet", "vae", "text_encoder", "text_encoder_2")}
    assert placed == {"unet": {"meta"}, "vae": {"meta"}, "text_encoder": {"cpu"}, "text_encoder_2": {"cpu"}}
    # And the product's loader passes it.
    seen = {}
    original = StableDiffusionXLPipeline.from_single_file.__func__

    def spy(cls, *args, **kwargs):
        seen.update(kwargs)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(StableDiffusionXLPipeline, "from_single_file", classmethod(spy))
    pipe = image.load_single_file(path, family="sdxl", config_dir=config, device="cpu", dtype="float32")
    assert seen["device"] == "cpu" and pipe.unet.device.type == "cpu"


# ------------------------------------------------------------------------------------ hopeless leases


def test_staging_larger_than_the_ram_budget_fails_at_once():
    m = manager(gpu=10, ram=4, lease_wait_s=30, clock=time.monotonic)
    a = SimulatedAdapter("big-staging", 3 * GB, staging_bytes=5 * GB)
    m.register(a, preferred=GPU)
    started = time.monotonic()
    with pytest.raises(ModelMemoryError) as err:
        m.run("big-staging", lambda model: None)
    assert time.monotonic() - started < 1
    assert not err.value.retryable and err.value.tier == CPU and err.value.needed == 5 * GB
    assert err.value.budget == 4 * GB
    text = str(err.value)
    assert "host RAM" in text and "ENFOADS_RAM_BUDGET_GB" in text and "5.00 GB" in text and "4.00 GB" in text
    assert "GPU memory" not in text
    assert a.events == []  # never tried


def test_footprint_larger_than_the_gpu_budget_names_the_gpu_setting():
    m = manager(gpu=4, ram=10, lease_wait_s=30, clock=time.monotonic)
    m.register(SimulatedAdapter("huge", 5 * GB), preferred=GPU)
    started = time.monotonic()
    with pytest.raises(ModelMemoryError) as err:
        with m.use("huge"):
            pass
    assert time.monotonic() - started < 1
    assert not err.value.retryable and err.value.tier == GPU
    text = str(err.value)
    assert "GPU memory" in text and "ENFOADS_GPU_BUDGET_GB" in text and "5.00 GB" in text and "4.00 GB" in text


def test_cpu_model_larger_than_the_ram_budget_fails_at_once():
    m = manager(gpu=0, ram=2, lease_wait_s=30, clock=time.monotonic)
    m.register(SimulatedAdapter("cpu-huge", 3 * GB), preferred=CPU)
    started = time.monotonic()
    with pytest.raises(ModelMemoryError, match="ENFOADS_RAM_BUDGET_GB") as err:
        with m.use("cpu-huge"):
            pass
    assert time.monotonic() - started < 1 and not err.value.retryable


def test_staging_held_by_a_leased_cpu_model_waits_then_loads():
    """Leased models hold the RAM, and it fits once they are released: wait, as before."""
    m = manager(gpu=10, ram=6, lease_wait_s=10, clock=time.monotonic)
    m.register(SimulatedAdapter("cpu-model", 3 * GB), preferred=CPU)
    m.register(SimulatedAdapter("staged", 2 * GB, staging_bytes=4 * GB), preferred=GPU)
    entered = threading.Event()

    def hold():
        with m.use("cpu-model"):
            entered.set()
            time.sleep(0.3)

    t = threading.Thread(target=hold)
    t.start()
    entered.wait()
    started = time.monotonic()
    with m.use("staged"):
        waited = time.monotonic() - started
    t.join()
    assert 0.2 < waited < 5
    assert m.stats().over_budget_events == 0


def test_waiting_for_ram_held_by_leases_names_host_ram_when_it_gives_up():
    m = manager(gpu=10, ram=6, lease_wait_s=0.2, clock=time.monotonic)
    m.register(SimulatedAdapter("cpu-model", 3 * GB), preferred=CPU)
    m.register(SimulatedAdapter("staged", 2 * GB, staging_bytes=4 * GB), preferred=GPU)
    with m.use("cpu-model"):
        with pytest.raises(ModelMemoryError) as err:
            with m.use("staged"):
                pass
    assert err.value.retryable and err.value.tier == CPU
    assert "host RAM" in str(err.value) and "cpu-model" in str(err.value)


# --------------------------------------------------------------------------------- the catalogue on a T4


def test_t4_budgets_come_from_the_settings_and_the_t4_profile():
    gpu, ram = t4_budgets()
    settings = Settings(profile="t4")
    assert settings.resolve_profile(T4_HARDWARE) is T4
    assert gpu == settings.gpu_budget_bytes(T4, T4_HARDWARE) == T4_HARDWARE.vram_total_bytes - int(2.5 * 1024**3)
    assert ram == settings.ram_budget_bytes(T4, T4_HARDWARE)
    assert 6.3 * GB < ram < 6.8 * GB  # 12.7 GB, ~3 GB taken by the runtime, the profile's 3 GiB reserve
    assert T4_HARDWARE.device_name == "Tesla T4" and T4_HARDWARE.cuda
    # Settings still win over the profile's derivation.
    assert t4_budgets(Settings(profile="t4", gpu_budget_gb=10, ram_budget_gb=5)) == (10 * 1024**3, 5 * 1024**3)


def test_catalog_adapters_carry_the_catalogue_sizes():
    entry = CATALOG["sdxl-lightning-4step"]
    a = catalog_adapter(entry)
    assert a.estimate(GPU) == entry.vram_bytes and a.estimate(CPU) == entry.ram_bytes
    assert a.staging_bytes == entry.staging_bytes and a.movable and a.runtime == "torch"
    w = catalog_adapter(CATALOG["faster-whisper-large-v3-turbo"])
    assert not w.movable and w.runtime == "ctranslate2"


@pytest.mark.parametrize("model_id", T4_MODELS)
def test_every_t4_model_loads_alone_on_a_t4(model_id):
    m = t4_manager([model_id], lease_wait_s=3, clock=time.monotonic)
    started = time.monotonic()
    with m.use(model_id):
        assert time.monotonic() - started < 1
        row = {r["id"]: r for r in m.stats().models}[model_id]
        assert row["tier"] == GPU
    s = m.stats()
    assert s.over_budget_events == 0 and s.gpu_used <= s.gpu_budget


def test_all_t4_models_fit_on_a_t4_together():
    m = t4_manager(T4_MODELS, lease_wait_s=3, clock=time.monotonic)
    with ExitStack() as stack:
        for key in T4_MODELS:
            started = time.monotonic()
            stack.enter_context(m.use(key))
            assert time.monotonic() - started < 1, key
        s = m.stats()
        assert {r["id"]: r["tier"] for r in s.models} == {k: GPU for k in T4_MODELS}
        assert s.gpu_used <= s.gpu_budget and s.ram_used <= s.ram_budget
    assert m.stats().evictions == 0 and m.stats().over_budget_events == 0


def test_recorded_t4_trace_replays_without_waits_or_overshoot():
    trace = json.loads((REPO / "bench" / "traces" / "t4_mixed.json").read_text())["requests"]
    keys = sorted({k for request in trace for k in request})
    m = t4_manager([k for k in keys if k in CATALOG], extra=[k for k in keys if k not in CATALOG],
                   lease_wait_s=5, clock=time.monotonic)
    slowest = 0.0
    for request in trace:
        with ExitStack() as stack:
            for key in request:
                started = time.monotonic()
                stack.enter_context(m.use(key))
                slowest = max(slowest, time.monotonic() - started)
                s = m.stats()
                assert s.gpu_used <= s.gpu_budget and s.ram_used <= s.ram_budget
    s = m.stats()
    # A lease that waited for memory would sit out the whole lease_wait_s (one thread: nothing frees
    # it) and then fail; the loads themselves are simulated (a 1 s bound once read 1.12 s with the
    # other core busy).
    assert slowest < m.lease_wait_s / 2
    assert s.over_budget_events == 0 and s.loads > 0


def test_residency_bench_uses_the_t4_derivation():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import residency_trace
    finally:
        sys.path.pop(0)
    gpu, ram = t4_budgets()
    assert residency_trace.T4_VRAM - residency_trace.GPU_RESERVE == gpu
    assert residency_trace.T4_RAM - residency_trace.RAM_RESERVE == ram
    trace = json.loads((REPO / "bench" / "traces" / "t4_mixed.json").read_text())["requests"]
    table = residency_trace.model_table(trace)
    assert table["sdxl-lightning-4step"][4] == CATALOG["sdxl-lightning-4step"].staging_bytes


# ------------------------------------------------------------------------------------- CUDA-only paths


def test_onnx_sessions_get_a_tight_arena_and_heuristic_cudnn_on_cuda(models_dir, monkeypatch):
    import onnxruntime

    choice = PROFILES["tiny"].roles["faces"]
    adapter = OnnxFacesAdapter(CATALOG["tiny-buffalo_l"], choice, models_dir)
    cuda = adapter.providers_for("cuda:0")
    assert cuda == [("CUDAExecutionProvider", {"device_id": "0", "arena_extend_strategy": "kSameAsRequested",
                                               "cudnn_conv_algo_search": "HEURISTIC"}),
                    "CPUExecutionProvider"]
    assert adapter.providers_for("cuda:1")[0][1]["device_id"] == "1"
    assert adapter.providers_for("cpu") == ["CPUExecutionProvider"]
    # insightface hands them to every InferenceSession it makes (CUDA is absent here, so ORT
    # falls back to the CPU after receiving them).
    seen = []
    original = onnxruntime.InferenceSession.__init__

    def spy(self, path_or_bytes, *args, **kwargs):
        seen.append((path_or_bytes, kwargs.get("providers")))
        return original(self, path_or_bytes, *args, **kwargs)

    adapter.paths(), OnnxFacesAdapter(CATALOG["tiny-inswapper_128"], choice, models_dir).paths()  # build the kit
    monkeypatch.setattr(onnxruntime.InferenceSession, "__init__", spy)
    adapter.load("cuda:0")
    OnnxFacesAdapter(CATALOG["tiny-inswapper_128"], PROFILES["tiny"].roles["swapper"], models_dir).load("cuda:0")
    # Every session made from a model file: the five of the pack and the swapper. (SCRFD's
    # fixed-shape copies are made from bytes with the providers and options ORT reports for the
    # main session, so on CUDA they carry the same options.)
    from_files = [providers for source, providers in seen if isinstance(source, str)]
    assert len(from_files) == 6 and all(p == cuda for p in from_files), seen


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, device):
        self.calls.append(device)


def test_torch_lease_end_empties_the_cuda_cache(monkeypatch):
    import enfoads.models.residency as residency

    calls = Recorder()
    monkeypatch.setattr(residency, "_release_gpu_cache", calls)
    m = manager(gpu=10, ram=10, gpu_device="cuda:0")
    m.register(SimulatedAdapter("sdxl", 2 * GB), preferred=GPU)
    m.register(SimulatedAdapter("whisper", GB, runtime="ctranslate2", movable=False), preferred=GPU)
    with m.use("sdxl"):
        with m.use("sdxl"):  # nested lease of the same model: not yet
            pass
        assert calls.calls == []
    assert calls.calls == ["cuda:0"]  # once, when the last lease ended
    with m.use("whisper"):
        pass
    assert calls.calls == ["cuda:0"]  # torch's cache holds nothing of CTranslate2's
    cpu = manager(gpu=10, ram=10, gpu_device="cpu")
    cpu.register(SimulatedAdapter("sdxl", 2 * GB), preferred=GPU)
    with cpu.use("sdxl"):
        pass
    assert calls.calls == ["cuda:0"]  # not on a simulated GPU


def _probed(gpu_budget=10, total=16, **kw):
    dev = SimulatedGPU(int(total * GB))
    m = ResidencyManager(gpu_budget=int(gpu_budget * GB), ram_budget=10 * GB, gpu_device=SIMULATED_GPU_DEVICE,
                         probe=dev, clock=FakeClock(), **kw)
    return m, dev


def _bytes(m, key):
    return {r["id"]: r for r in m.stats().models}[key]["bytes"]


def test_footprint_is_measured_again_after_the_first_run():
    m, dev = _probed()
    a = SimulatedAdapter("faces", 1 * GB, runtime="onnxruntime", movable=False, gpu=dev, run_growth=int(0.5 * GB))
    m.register(a, preferred=GPU)
    with m.use("faces") as model:
        assert _bytes(m, "faces") == 1 * GB  # measured at load
        a.run(model)  # ORT's arena and cuDNN's workspace grow on the first run
    assert _bytes(m, "faces") == int(1.5 * GB)
    with m.use("faces"):
        dev.held["faces"] += int(0.5 * GB)
    assert _bytes(m, "faces") == int(1.5 * GB)  # read once per load, after the first run


def test_a_smaller_reading_after_the_run_keeps_the_larger_value():
    m, dev = _probed()
    a = SimulatedAdapter("sdxl", 2 * GB, gpu=dev)
    m.register(a, preferred=GPU)
    with m.use("sdxl"):
        dev.held["sdxl"] = int(1.5 * GB)  # something was released meanwhile
    assert _bytes(m, "sdxl") == 2 * GB


def test_other_models_moving_meanwhile_do_not_count_as_growth():
    m, dev = _probed()
    m.register(SimulatedAdapter("old", 2 * GB, gpu=dev), preferred=GPU)
    a = SimulatedAdapter("faces", 1 * GB, runtime="onnxruntime", movable=False, gpu=dev, run_growth=int(0.25 * GB))
    m.register(a, preferred=GPU)
    m.register(SimulatedAdapter("new", 3 * GB, gpu=dev), preferred=GPU)
    with m.use("old"):
        pass
    with m.use("faces") as model:
        a.run(model)
        m.unload("old")  # freed during the first run: not negative growth
        with m.use("new"):  # loaded during it: not this model's growth
            pass
    assert _bytes(m, "faces") == int(1.25 * GB)


def test_growth_past_the_budget_trims_the_others():
    m, dev = _probed(gpu_budget=4)
    m.register(SimulatedAdapter("other", 2 * GB, gpu=dev), preferred=GPU)
    a = SimulatedAdapter("faces", 1 * GB, runtime="onnxruntime", movable=False, gpu=dev, run_growth=int(1.5 * GB))
    m.register(a, preferred=GPU)
    with m.use("other"):
        pass
    with m.use("faces") as model:
        a.run(model)
    tiers = {r["id"]: r["tier"] for r in m.stats().models}
    assert tiers["faces"] == GPU and tiers["other"] != GPU  # trimmed off the GPU
    s = m.stats()
    assert s.gpu_used <= s.gpu_budget and _bytes(m, "faces") == int(2.5 * GB)


def test_the_second_reading_waits_for_the_other_leases_to_end():
    """While another model is leased (and may be running), device-wide growth is not attributable."""
    m, dev = _probed()
    a = SimulatedAdapter("faces", 1 * GB, runtime="onnxruntime", movable=False, gpu=dev, run_growth=int(0.5 * GB))
    b = SimulatedAdapter("swapper", 1 * GB, runtime="onnxruntime", movable=False, gpu=dev, run_growth=int(0.25 * GB))
    m.register(a, preferred=GPU)
    m.register(b, preferred=GPU)
    with m.use("faces") as faces:
        with m.use("swapper") as swapper:
            a.run(faces)
            b.run(swapper)
        assert _bytes(m, "swapper") == 1 * GB  # faces is still leased: not read yet
    assert _bytes(m, "faces") + _bytes(m, "swapper") == int(2.75 * GB)
    assert _bytes(m, "faces") >= int(1.5 * GB)


def test_a_lease_starting_during_the_reading_defers_it():
    """Another thread's run may be in flight when the device is read: read again later."""
    dev = SimulatedGPU(16 * GB)
    release = threading.Event()
    holding = threading.Event()

    class RacingProbe:
        armed = False

        def gpu_free_bytes(self):
            if self.armed:
                self.armed = False
                threading.Thread(target=run_other, daemon=True).start()
                holding.wait(5)
            return dev.gpu_free_bytes()

    probe = RacingProbe()
    m = ResidencyManager(gpu_budget=10 * GB, ram_budget=10 * GB, gpu_device=SIMULATED_GPU_DEVICE, probe=probe,
                         clock=time.monotonic)
    other = SimulatedAdapter("other", 1 * GB, gpu=dev)
    faces = SimulatedAdapter("faces", 1 * GB, runtime="onnxruntime", movable=False, gpu=dev,
                             run_growth=int(0.5 * GB))
    m.register(other, preferred=GPU)
    m.register(faces, preferred=GPU)

    def run_other():
        with m.use("other"):
            dev.grow("other", 1 * GB)  # its activations, while it runs
            holding.set()
            release.wait(5)
            dev.set("other", 1 * GB)

    with m.use("other"):
        pass
    with m.use("faces") as model:
        faces.run(model)
        probe.armed = True
    assert _bytes(m, "faces") == 1 * GB  # the reading overlapped a run: not taken
    release.set()
    deadline = time.monotonic() + 5
    while _bytes(m, "faces") == 1 * GB and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _bytes(m, "faces") == int(1.5 * GB)


def test_cudnn_and_runtime_allocation_failures_count_as_out_of_memory():
    for text in (
        "cuDNN error: CUDNN_STATUS_ALLOC_FAILED",
        "cuDNN error: CUDNN_STATUS_NOT_ENOUGH_WORKSPACE",
        "cuDNN error: CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED",  # cuDNN 9
        "CUDNN failure 4003: CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED ; GPU=0",
        "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for requested buffer of size 33554432",
        "BFCArena::AllocateRawInternal: Available memory of 0 is smaller than requested bytes of 97517568",
        "CUDA failed with error out of memory",  # CTranslate2
        "CUBLAS failure 3: CUBLAS_STATUS_ALLOC_FAILED",
    ):
        assert is_out_of_memory(RuntimeError(text)), text
    for text in ("cuDNN error: CUDNN_STATUS_NOT_SUPPORTED", "CUDNN_STATUS_EXECUTION_FAILED", "bad prompt"):
        assert not is_out_of_memory(RuntimeError(text)), text
