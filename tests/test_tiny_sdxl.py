"""The tiny SDXL + Lightning kit, loaded through the product's image loader."""
import hashlib

import pytest
import torch

from enfoads.models.loaders.image import load_lightning_unet, load_sdxl_lightning, module_bytes
from enfoads.models.tiny import ensure_tiny, folder_bytes
from enfoads.models.tiny.sdxl import LIGHTNING_UNET_FILES, build_into


@pytest.fixture(scope="module")
def kit(models_dir):
    return ensure_tiny(models_dir, "tiny-sdxl-lightning")


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_layout_matches_the_real_repos(kit):
    base = kit / "base"
    for sub in ("text_encoder", "text_encoder_2", "unet", "vae"):
        assert list((base / sub).glob("*.fp16.safetensors")), sub  # the fp16 variant the loader asks for
    for name in ("tokenizer", "tokenizer_2", "scheduler"):
        assert (base / name).is_dir()
    for filename in LIGHTNING_UNET_FILES.values():
        assert (kit / filename).is_file()
    assert folder_bytes(kit) < 30e6


def test_same_seed_same_weights(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    build_into(a, 3)
    build_into(b, 3)
    for filename in LIGHTNING_UNET_FILES.values():
        assert sha(a / filename) == sha(b / filename)
    assert sha(a / "base/unet/diffusion_pytorch_model.fp16.safetensors") == sha(
        b / "base/unet/diffusion_pytorch_model.fp16.safetensors"
    )


def test_lightning_pipeline_is_what_it_claims(kit):
    pipe = load_sdxl_lightning(kit / "base", kit / LIGHTNING_UNET_FILES[4], device="cpu", dtype="float32")
    # Inspect the loaded pipeline, not the config we meant to pass.
    assert type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    assert pipe.scheduler.config.timestep_spacing == "trailing"
    assert pipe.scheduler.config.prediction_type == "epsilon"
    assert pipe.vae.config.force_upcast is True
    assert pipe.unet.dtype == torch.float32
    # The UNet holds the Lightning file's weights, not the base folder's.
    from safetensors.torch import load_file

    lightning = load_file(str(kit / LIGHTNING_UNET_FILES[4]))
    name = next(iter(lightning))
    assert torch.equal(pipe.unet.state_dict()[name].to(torch.float16), lightning[name])
    images = pipe("a poster", num_inference_steps=4, guidance_scale=0.0, width=64, height=64,
                  generator=torch.Generator().manual_seed(1)).images
    again = pipe("a poster", num_inference_steps=4, guidance_scale=0.0, width=64, height=64,
                 generator=torch.Generator().manual_seed(1)).images
    assert images[0].tobytes() == again[0].tobytes()
    assert module_bytes(pipe) > 0


def test_fp16_cast_is_applied(kit):
    unet = load_lightning_unet(kit / "base", kit / LIGHTNING_UNET_FILES[2], device="cpu", dtype="float16")
    assert unet.dtype == torch.float16
    assert all(p.dtype == torch.float16 for p in unet.parameters())


def test_one_step_checkpoint_predicts_x0(kit):
    pipe = load_sdxl_lightning(kit / "base", kit / LIGHTNING_UNET_FILES[1], device="cpu", x0_prediction=True)
    assert pipe.scheduler.config.prediction_type == "sample"


def test_missing_and_mismatched_checkpoints_are_clear(kit, tmp_path):
    with pytest.raises(FileNotFoundError, match="enfoads preload"):
        load_sdxl_lightning(kit / "base", tmp_path / "nope.safetensors")
    from safetensors.torch import save_file

    bad = tmp_path / "bad_unet.safetensors"
    save_file({"not.a.unet.weight": torch.zeros(2)}, str(bad))
    with pytest.raises(ValueError, match="does not match the SDXL UNet config"):
        load_lightning_unet(kit / "base", bad, device="cpu", dtype="float32")
