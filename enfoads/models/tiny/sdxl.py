"""Tiny SDXL pipeline plus SDXL-Lightning-format UNet checkpoints.

Layout written (the same as the real models once downloaded):
  base/                              a diffusers SDXL folder, fp16 variant
                                     file names, like stabilityai/sdxl-base-1.0
  sdxl_lightning_{2,4,8}step_unet.safetensors   UNet state dicts, the format
  sdxl_lightning_1step_unet_x0.safetensors      ByteDance/SDXL-Lightning ships
"""
from __future__ import annotations

import json
from pathlib import Path

# The real SDXL-Lightning checkpoint names, by step count.
LIGHTNING_UNET_FILES = {
    1: "sdxl_lightning_1step_unet_x0.safetensors",
    2: "sdxl_lightning_2step_unet.safetensors",
    4: "sdxl_lightning_4step_unet.safetensors",
    8: "sdxl_lightning_8step_unet.safetensors",
}
BASE_SUBDIR = "base"


def _byte_level_alphabet() -> list[str]:
    # GPT-2 / CLIP byte-to-unicode table: every byte maps to a printable char.
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    keep += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def _write_clip_tokenizer(folder: Path, pad_token: str) -> int:
    """A CLIP BPE tokenizer that loads offline; returns its vocabulary size."""
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = _byte_level_alphabet()
    tokens = alphabet + [c + "</w>" for c in alphabet]
    # A few merges so BPE really merges; every merge result is in the vocab.
    merges = [("t", "h"), ("th", "e</w>"), ("a", "n"), ("an", "d</w>"), ("i", "n"), ("in", "g</w>")]
    tokens += [a + b for a, b in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "CLIPTokenizer",
                "model_max_length": 77,
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "pad_token": pad_token,
                "do_lower_case": True,
            }
        )
    )
    (folder / "special_tokens_map.json").write_text(
        json.dumps(
            {
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "pad_token": pad_token,
            }
        )
    )
    return len(vocab)


def _unet_config() -> dict:
    # Real SDXL shape in miniature: text_time added embeddings, two text
    # encoders concatenated (32 + 32 = cross_attention_dim 64), and
    # projection input = 6 * addition_time_embed_dim + text_encoder_2 projection.
    return dict(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        transformer_layers_per_block=(1, 1),
        use_linear_projection=True,
        cross_attention_dim=64,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=80,
        norm_num_groups=8,
    )


def build_into(folder: Path, seed: int) -> None:
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    folder = Path(folder)
    tok_dirs = {"tokenizer": "<|endoftext|>", "tokenizer_2": "!"}  # SDXL pads tokenizer_2 with "!"
    scratch = folder / ".tokenizers"
    vocab_size = 0
    for name, pad in tok_dirs.items():
        vocab_size = _write_clip_tokenizer(scratch / name, pad)
    tokenizer = CLIPTokenizer.from_pretrained(scratch / "tokenizer")
    tokenizer_2 = CLIPTokenizer.from_pretrained(scratch / "tokenizer_2")

    def text_config() -> CLIPTextConfig:
        return CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=32,
            hidden_act="gelu",
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )

    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(text_config())
    text_encoder_2 = CLIPTextModelWithProjection(text_config())
    unet = UNet2DConditionModel(**_unet_config())
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16, 16, 16),  # 4 blocks: the real downscale factor 8
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=128,
        scaling_factor=0.13025,  # SDXL's VAE factor
        force_upcast=True,
    )
    # The published SDXL base scheduler config; the loader switches it to
    # trailing spacing, as SDXL-Lightning requires.
    scheduler = EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        timestep_spacing="leading",
        steps_offset=1,
        interpolation_type="linear",
        use_karras_sigmas=False,
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
        add_watermarker=False,
    )
    pipe.save_pretrained(folder / BASE_SUBDIR, variant="fp16", safe_serialization=True)

    # Lightning checkpoints are whole UNet state dicts in fp16, one per step count.
    for steps, filename in LIGHTNING_UNET_FILES.items():
        torch.manual_seed(seed * 1000 + steps)
        distilled = UNet2DConditionModel(**_unet_config())
        state = {k: v.to(torch.float16).contiguous() for k, v in distilled.state_dict().items()}
        save_file(state, str(folder / filename))

    for child in sorted(scratch.rglob("*"), reverse=True):
        child.unlink() if child.is_file() else child.rmdir()
    scratch.rmdir()
