"""Tiny MuseTalk 1.5: random weights in the release's own on-disk layout.

``build_into(folder, seed)`` (recipe ``tiny-musetalk``) writes the folder
MuseTalk's download script makes (its ``models/``), which
``enfoads.models.loaders.lipsync.musetalk_paths`` reads::

    folder/musetalkV15/musetalk.json          UNet2DConditionModel config: 8 -> 4 channels, cross-attention 384,
                                              blocks (32, 64), 1 layer each, one cross-attention block down and up
    folder/musetalkV15/unet.pth               torch.save of its fp32 state dict (the release's format)
    folder/sd-vae/config.json                 AutoencoderKL: 4 blocks (256 px -> 32 px latents), 4 latent channels,
    folder/sd-vae/diffusion_pytorch_model.safetensors   channels (8, 8, 16, 16), scaling_factor 0.18215
    folder/whisper/config.json                WhisperForConditionalGeneration (as openai/whisper-tiny is saved):
    folder/whisper/model.safetensors          d_model 384 (the UNet's cross-attention width), 1 encoder layer and
    folder/whisper/preprocessor_config.json   1 decoder layer, 6 heads, 80 mel bins, 1500 source positions,
                                              a 64-token vocabulary; float32, as the release's file

~16 MB in all (the whisper file 12 MB, the UNet 3.7 MB), built in about
2 s once torch, diffusers and transformers are imported. The loader
converts ``unet.pth`` to fp16 safetensors and loads every part exactly as
it loads the real release.

Weights are PyTorch's default initialisation (seeded). At these sizes that
is already what the tests need, measured: outputs are finite, the UNet's
output moves by ~40 % of its size between a tone's and silence's audio
tokens (through cross-attention), and the VAE decodes latents to pixels of
std ~0.35 in [-1, 1] with ~3 % clamped, so a different latent is a visibly
different mouth. Outputs are noise.
"""
from __future__ import annotations

import json
from pathlib import Path

UNET_DIR = "musetalkV15"
VAE_DIR = "sd-vae"
WHISPER_DIR = "whisper"

TINY_FILES = (
    f"{UNET_DIR}/musetalk.json",
    f"{UNET_DIR}/unet.pth",
    f"{VAE_DIR}/config.json",
    f"{VAE_DIR}/diffusion_pytorch_model.safetensors",
    f"{WHISPER_DIR}/config.json",
    f"{WHISPER_DIR}/model.safetensors",
    f"{WHISPER_DIR}/preprocessor_config.json",
)

# The release's musetalk.json, shrunk: same class, channel contract and attention width.
TINY_UNET_CONFIG = {
    "_class_name": "UNet2DConditionModel",
    "_diffusers_version": "0.6.0.dev0",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [32, 64],
    "center_input_sample": False,
    "cross_attention_dim": 384,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 8,
    "layers_per_block": 1,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 8,
    "out_channels": 4,
    "sample_size": 32,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
}


def _write_unet(folder: Path) -> None:
    import torch
    from diffusers import UNet2DConditionModel

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "musetalk.json").write_text(json.dumps(TINY_UNET_CONFIG, indent=2))
    unet = UNet2DConditionModel.from_config(TINY_UNET_CONFIG)
    torch.save({k: v.contiguous() for k, v in unet.state_dict().items()}, folder / "unet.pth")


def _write_vae(folder: Path) -> None:
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=256,
        scaling_factor=0.18215,
    )
    vae.save_pretrained(folder, safe_serialization=True)


def _write_whisper(folder: Path) -> None:
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    config = WhisperConfig(
        vocab_size=64,
        num_mel_bins=80,
        d_model=384,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=6,
        decoder_attention_heads=6,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_source_positions=1500,
        max_target_positions=16,
        # Whisper's default special ids are ~50k; they must fit the tiny vocabulary.
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=3,
        suppress_tokens=None,
        begin_suppress_tokens=None,
    )
    model = WhisperForConditionalGeneration(config)  # float32, as openai/whisper-tiny's file is
    model.save_pretrained(folder, safe_serialization=True)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)


def build_into(folder: Path, seed: int = 0) -> None:
    """Write the tiny MuseTalk layout into ``folder`` (exists, may be empty)."""
    import torch

    folder = Path(folder)
    torch.manual_seed(seed)
    _write_unet(folder / UNET_DIR)
    torch.manual_seed(seed + 1)
    _write_vae(folder / VAE_DIR)
    torch.manual_seed(seed + 2)
    _write_whisper(folder / WHISPER_DIR)
    # save_pretrained also writes whisper/generation_config.json, as the release's folder has.
