"""Every tiny model through the real runtime: catalogue -> registry -> adapter -> loader -> residency."""
import numpy as np
import pytest

from enfoads.models.catalog import CATALOG
from enfoads.models.loaders.image import module_bytes
from enfoads.models.profiles import PROFILES, detect_hardware
from enfoads.models.residency_types import CPU, GPU
from enfoads.models.runtime import build_runtime
from enfoads.settings import Settings
from enfoads.models.tiny.faces import face_test_pattern

MIB = 1024**2


@pytest.fixture(scope="module")
def hardware():
    return detect_hardware()


def tiny_runtime(models_dir, tmp_path, hardware, gpu_mib, ram_mib=512):
    settings = Settings(
        profile="tiny",
        models_dir=models_dir,
        data_dir=tmp_path / "data",
        gpu_budget_gb=gpu_mib / 1024,
        ram_budget_gb=ram_mib / 1024,
    )
    return build_runtime(settings, hardware)


def tiers(rt):
    return {row["id"]: row["tier"] for row in rt.residency.stats().models}


def test_tiny_profile_registers_every_role_model(models_dir, tmp_path, hardware):
    rt = tiny_runtime(models_dir, tmp_path, hardware, gpu_mib=64)
    expected = {c.model_id for c in PROFILES["tiny"].roles.values() if CATALOG[c.model_id].runtime != "process"}
    assert set(rt.residency.registered()) == expected
    assert all(t is None for t in tiers(rt).values())  # nothing loaded before first use
    rt.close()


def test_each_tiny_model_works_through_its_lease(models_dir, tmp_path, hardware):
    import torch

    rt = tiny_runtime(models_dir, tmp_path, hardware, gpu_mib=64)
    with rt.residency.use(rt.model_key("image")) as pipe:
        steps = []
        out = pipe(
            "a red chair", num_inference_steps=4, guidance_scale=0.0, width=64, height=64,
            generator=torch.Generator().manual_seed(0),
            callback_on_step_end=lambda p, i, t, kw: (steps.append(int(t)), kw)[1],
        )
        assert out.images[0].size == (64, 64)
        assert steps == [999, 749, 499, 249]  # trailing spacing, as Lightning needs
        assert pipe.scheduler.config.timestep_spacing == "trailing"
        measured = module_bytes(pipe)
    with rt.residency.use(rt.model_key("faces")) as app:
        assert len(app.get(face_test_pattern())) == 1
    with rt.residency.use(rt.model_key("speech")) as whisper:
        segments, info = whisper.transcribe(np.zeros(16000, dtype=np.float32), beam_size=1, without_timestamps=True)
        list(segments)
        assert info.duration == pytest.approx(1.0)
    with rt.residency.use(rt.model_key("swapper")) as swapper:
        assert swapper.input_size == (128, 128)
    stats = rt.residency.stats()
    row = {r["id"]: r for r in stats.models}["tiny-sdxl-lightning"]
    assert row["measured"] and row["bytes"] == measured  # measured, not the catalogue guess
    assert stats.gpu_used <= stats.gpu_budget
    rt.close()
    assert all(t is None for t in tiers(rt).values())


def test_squeezed_budget_moves_torch_and_unloads_ctranslate2(models_dir, tmp_path, hardware):
    # ~6 MiB of "GPU": the 4.5 MiB pipeline and the 4 MiB whisper cannot share it.
    rt = tiny_runtime(models_dir, tmp_path, hardware, gpu_mib=6, ram_mib=64)
    image, speech = rt.model_key("image"), rt.model_key("speech")
    with rt.residency.use(image):
        pass
    with rt.residency.use(speech):
        pass
    assert tiers(rt)[image] == CPU  # torch: moved to host RAM
    assert tiers(rt)[speech] == GPU
    with rt.residency.use(image) as pipe:
        assert pipe.unet is not None
    assert tiers(rt)[speech] is None  # CTranslate2 cannot move: unloaded
    rows = {r["id"]: r for r in rt.residency.stats().models}
    assert rows[speech]["evictions"] == 1 and rows[image]["moves"] >= 2
    assert rt.residency.stats().over_budget_events == 0
    # The unloaded model is rebuilt on its next use and still works.
    with rt.residency.use(speech) as whisper:
        segments, _ = whisper.transcribe(np.zeros(8000, dtype=np.float32), beam_size=1, without_timestamps=True)
        list(segments)
    assert rows[speech]["loads"] == 1 and {r["id"]: r for r in rt.residency.stats().models}[speech]["loads"] == 2
    rt.close()


def test_no_gpu_budget_runs_everything_on_cpu(models_dir, tmp_path, hardware):
    rt = tiny_runtime(models_dir, tmp_path, hardware, gpu_mib=0)
    with rt.residency.use(rt.model_key("faces")):
        pass
    assert tiers(rt)[rt.model_key("faces")] == CPU
    rt.close()
