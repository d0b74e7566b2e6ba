"""Tiny random-weight Stable Diffusion 2.x pipeline (the SD-Turbo layout), both weight variants.

Layout written, as in ``stabilityai/sd-turbo`` (a diffusers ``StableDiffusionPipeline``)::

    model_index.json
    scheduler/scheduler_config.json        SD-Turbo's published scheduler config
    text_encoder/config.json, model.safetensors, model.fp16.safetensors
    tokenizer/merges.txt, special_tokens_map.json, tokenizer_config.json, vocab.json
    unet/config.json, diffusion_pytorch_model.safetensors, diffusion_pytorch_model.fp16.safetensors
    vae/config.json, diffusion_pytorch_model.safetensors, diffusion_pytorch_model.fp16.safetensors

Plain files hold float32 tensors and ``*.fp16.safetensors`` files float16
tensors, like the real repository. The architecture is SD 2.x in miniature:
one OpenCLIP-style ``CLIPTextModel`` (no second encoder, no pooled
embeddings), a ``UNet2DConditionModel`` with linear attention projections and
no added embeddings, an ``AutoencoderKL`` with the real downscale factor 8 and
SD 2.x's latent scaling factor. Outputs are noise.

``build_into(folder, seed)`` follows the tiny-kit recipe convention
(``enfoads.models.tiny``); the replica repositories (``enfoads.testing.replicas``)
use it for their SD-Turbo replica.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

#: ``stabilityai/sd-turbo``'s ``scheduler/scheduler_config.json`` as published (553 bytes at the
#: catalogue's pin; read from https://huggingface.co/stabilityai/sd-turbo/blob/b335f733db09ff60444334351a3bbf6ab4b64332/scheduler/scheduler_config.json,
#: the folder is unchanged since "Add Diffusers weights (#2)").
SD_TURBO_SCHEDULER_CONFIG = {
    "_class_name": "EulerDiscreteScheduler",
    "_diffusers_version": "0.24.0.dev0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "sigma_max": None,
    "sigma_min": None,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "trailing",
    "timestep_type": "discrete",
    "trained_betas": None,
    "use_karras_sigmas": False,
}

SD2_SCALING_FACTOR = 0.18215


def unet_config() -> dict:
    """SD 2.x's UNet shape in miniature: cross-attention on the text encoder's hidden states only."""
    return dict(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,  # SD 2.x, unlike SD 1.x
        cross_attention_dim=32,  # = the text encoder's hidden size
        norm_num_groups=8,
    )


def vae_config() -> dict:
    return dict(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16, 16, 16),  # 4 blocks: the real downscale factor 8
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
        scaling_factor=SD2_SCALING_FACTOR,
    )


def build_into(folder: Path, seed: int) -> None:
    """Write the tiny SD 2.x pipeline folder into ``folder`` (fp32 files and fp16 variant files)."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from enfoads.models.tiny.sdxl import _write_clip_tokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # SD 2.x's OpenCLIP tokenizer pads with "!" (like SDXL's tokenizer_2).
    vocab_size = _write_clip_tokenizer(folder / "tokenizer", "!")
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")

    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=32,
            hidden_act="gelu",  # OpenCLIP ViT-H, as in SD 2.x
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    ).eval()
    unet = UNet2DConditionModel(**unet_config()).eval()
    vae = AutoencoderKL(**vae_config()).eval()
    scheduler = EulerDiscreteScheduler.from_config(
        {k: v for k, v in SD_TURBO_SCHEDULER_CONFIG.items() if not k.startswith("_")}
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    with tempfile.TemporaryDirectory(prefix="tiny-sd2-") as tmp, _quiet():
        plain, half = Path(tmp) / "fp32", Path(tmp) / "fp16"
        pipe.save_pretrained(plain, safe_serialization=True)
        pipe.to(torch.float16).save_pretrained(half, safe_serialization=True, variant="fp16")
        for name in ("model_index.json", "text_encoder/config.json", "unet/config.json", "vae/config.json"):
            _copy(plain / name, folder / name)
        for name in ("text_encoder/model.safetensors", "unet/diffusion_pytorch_model.safetensors",
                     "vae/diffusion_pytorch_model.safetensors"):
            _copy(plain / name, folder / name)
        for name in ("text_encoder/model.fp16.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors",
                     "vae/diffusion_pytorch_model.fp16.safetensors"):
            _copy(half / name, folder / name)
    # The published scheduler config, byte for byte as diffusers writes it.
    (folder / "scheduler").mkdir(exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(
        json.dumps(SD_TURBO_SCHEDULER_CONFIG, indent=2, sort_keys=True) + "\n"
    )


class _quiet:
    """Silence diffusers' "modules that should be kept in float32" notice while casting to fp16."""

    def __enter__(self):
        from diffusers.utils import logging

        self._level = logging.get_verbosity()
        logging.set_verbosity_error()

    def __exit__(self, *exc):
        from diffusers.utils import logging

        logging.set_verbosity(self._level)


def _copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
