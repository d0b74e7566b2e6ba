"""The real file lists of the image repositories: SDXL base, SDXL-Lightning, the fp16-fix VAE, SD-Turbo."""
from __future__ import annotations

from enfoads.testing.replica_files.base import HF, F, RepoListing


# ---------------------------------------------------------------------------
# stabilityai/stable-diffusion-xl-base-1.0 @ 462165984030d82259a11f4367a4eed129e94a7b
# ---------------------------------------------------------------------------
def _sdxl_base() -> RepoListing:
    repo = "stabilityai/stable-diffusion-xl-base-1.0"
    rev = "462165984030d82259a11f4367a4eed129e94a7b"
    files = (
        F(".gitattributes", "1.56 kB"),
        F("01.png", "4.61 MB", lfs=True),
        F("LICENSE.md", 14109),
        F("README.md", "8.67 kB"),
        F("comparison.png", "130 kB"),
        F("model_index.json", 609),
        F("pipeline.png", "80.2 kB"),
        F("sd_xl_base_1.0.safetensors", 6938078334, lfs=True),
        F("sd_xl_base_1.0_0.9vae.safetensors", 6938078334, lfs=True),
        F("sd_xl_offset_example-lora_1.0.safetensors", "49.6 MB", lfs=True),
        F("scheduler/scheduler_config.json", 479),
        F("text_encoder/config.json", 565),
        F("text_encoder/flax_model.msgpack", "492 MB", lfs=True),
        F("text_encoder/model.fp16.safetensors", "246 MB", lfs=True),
        F("text_encoder/model.onnx", "493 MB", lfs=True),
        F("text_encoder/model.safetensors", "492 MB", lfs=True),
        F("text_encoder/openvino_model.bin", "492 MB", lfs=True),
        F("text_encoder/openvino_model.xml", "1.06 MB", lfs=True),
        F("text_encoder_2/config.json", 575),
        F("text_encoder_2/flax_model.msgpack", "2.78 GB", lfs=True),
        F("text_encoder_2/model.fp16.safetensors", "1.39 GB", lfs=True),
        F("text_encoder_2/model.onnx", "1.04 MB", lfs=True),
        F("text_encoder_2/model.onnx_data", "2.78 GB", lfs=True),
        F("text_encoder_2/model.safetensors", "2.78 GB", lfs=True),
        F("text_encoder_2/openvino_model.bin", "2.78 GB", lfs=True),
        F("text_encoder_2/openvino_model.xml", "2.79 MB", lfs=True),
        F("tokenizer/merges.txt", 524619),
        F("tokenizer/special_tokens_map.json", 472),
        F("tokenizer/tokenizer_config.json", 737),
        F("tokenizer/vocab.json", 1059962),
        F("tokenizer_2/merges.txt", 524619),
        F("tokenizer_2/special_tokens_map.json", 460),
        F("tokenizer_2/tokenizer_config.json", 725),
        F("tokenizer_2/vocab.json", 1059962),
        F("unet/config.json", 1680),
        F("unet/diffusion_flax_model.msgpack", "10.3 GB", lfs=True),
        F("unet/diffusion_pytorch_model.fp16.safetensors", "5.14 GB", lfs=True),
        F("unet/diffusion_pytorch_model.safetensors", "10.3 GB", lfs=True),
        F("unet/model.onnx", "7.29 MB", lfs=True),
        F("unet/model.onnx_data", "10.3 GB", lfs=True),
        F("unet/openvino_model.bin", "10.3 GB", lfs=True),
        F("unet/openvino_model.xml", "22.6 MB", lfs=True),
        F("vae/config.json", 642),
        F("vae/diffusion_flax_model.msgpack", "335 MB", lfs=True),
        F("vae/diffusion_pytorch_model.fp16.safetensors", "167 MB", lfs=True),
        F("vae/diffusion_pytorch_model.safetensors", "335 MB", lfs=True),
        F("vae_1_0/config.json", "607 Bytes"),
        F("vae_1_0/diffusion_pytorch_model.fp16.safetensors", "167 MB", lfs=True),
        F("vae_1_0/diffusion_pytorch_model.safetensors", "335 MB", lfs=True),
        F("vae_decoder/config.json", "607 Bytes"),
        F("vae_decoder/model.onnx", "198 MB", lfs=True),
        F("vae_decoder/openvino_model.bin", "198 MB", lfs=True),
        F("vae_decoder/openvino_model.xml", "992 kB", lfs=True),
        F("vae_encoder/config.json", "607 Bytes"),
        F("vae_encoder/model.onnx", "137 MB", lfs=True),
        F("vae_encoder/openvino_model.bin", "137 MB", lfs=True),
        F("vae_encoder/openvino_model.xml", "850 kB", lfs=True),
    )
    return RepoListing(
        repo,
        rev,
        files,
        verified=True,
        sources=(
            f"{HF}/{repo}/tree/{rev}/vae",
            f"{HF}/{repo}/tree/main/unet",
            f"{HF}/{repo}/tree/main/text_encoder",
            f"{HF}/{repo}/tree/main/text_encoder_2",
            f"{HF}/{repo}/tree/main/vae_decoder",
            f"{HF}/{repo}/tree/main/vae_encoder",
            f"{HF}/{repo}/tree/refs%2Fpr%2F30/vae_1_0",
            f"{HF}/{repo}/tree/refs%2Fpr%2F128",
            f"{HF}/{repo}/tree/refs%2Fpr%2F172",
            f"{HF}/{repo}/blob/{rev}/tokenizer_2/vocab.json",
            f"{HF}/{repo}/commits/{rev}/sd_xl_offset_example-lora_1.0.safetensors",
            f"{HF}/frankjoshua/stable-diffusion-xl-base-1.0/commit/47cd5302d866fa60cf8fb81f0e34d42e38f6100c",
            "github code search: a pinned installer listing resolve/" + rev + "/{model_index.json, scheduler/,"
            " text_encoder*/config.json, tokenizer*/*, unet/config.json, vae/config.json, LICENSE.md} with exact sizes",
        ),
        note=(
            "4621659 is main's last commit (\"fix-readme (#109)\"; the PRs opened after it have 27 commits on"
            " main's 26, and their root lists main's files plus their own upload). Folders were read on tree pages"
            " of main and of that commit; each folder's last change (#2, #18, #19, #30, #95) predates the pin."
            " The root listing comes from PR branches based on main: the same 10 files minus the PR's own upload."
            " Exact sizes: LFS pointers and a pinned third-party download list; others are the pages' rounded figures."
        ),
    )


# ---------------------------------------------------------------------------
# ByteDance/SDXL-Lightning @ c9a24f48e1c025556787b0c58dd67a091ece2e44
# ---------------------------------------------------------------------------
def _sdxl_lightning() -> RepoListing:
    repo = "ByteDance/SDXL-Lightning"
    rev = "c9a24f48e1c025556787b0c58dd67a091ece2e44"
    files = (
        F(".gitattributes", "1.58 kB"),
        F("LICENSE.md", "14.1 kB"),
        F("README.md", "6.53 kB"),
        F("comfyui/sdxl_lightning_workflow_full.jpg", "270 kB"),
        F("comfyui/sdxl_lightning_workflow_full.json", "6.64 kB"),
        F("comfyui/sdxl_lightning_workflow_full_1step.jpg", "285 kB"),
        F("comfyui/sdxl_lightning_workflow_full_1step.json", "7.18 kB"),
        F("comfyui/sdxl_lightning_workflow_lora.jpg", "287 kB"),
        F("comfyui/sdxl_lightning_workflow_lora.json", "7.44 kB"),
        F("sdxl_lightning_1step_unet_x0.safetensors", "5.14 GB", lfs=True),
        F("sdxl_lightning_1step_x0.safetensors", "6.94 GB", lfs=True),
        F("sdxl_lightning_2step.safetensors", "6.94 GB", lfs=True),
        F("sdxl_lightning_2step_lora.safetensors", "394 MB", lfs=True),
        F("sdxl_lightning_2step_unet.safetensors", "5.14 GB", lfs=True),
        F("sdxl_lightning_4step.safetensors", "6.94 GB", lfs=True),
        F("sdxl_lightning_4step_lora.safetensors", "394 MB", lfs=True),
        F("sdxl_lightning_4step_unet.safetensors", "5.14 GB", lfs=True),
        F("sdxl_lightning_8step.safetensors", "6.94 GB", lfs=True),
        F("sdxl_lightning_8step_lora.safetensors", "394 MB", lfs=True),
        F("sdxl_lightning_8step_unet.safetensors", "5.14 GB", lfs=True),
        F("sdxl_lightning_report.pdf", "16.5 MB", lfs=True),
        F("sdxl_lightning_samples.jpg", None),
    )
    return RepoListing(
        repo,
        rev,
        files,
        verified=True,
        sources=(
            f"{HF}/{repo}/tree/{rev}",
            f"{HF}/{repo}/tree/{rev}/comfyui",
            f"{HF}/{repo}/tree/df0fa37a2af67458ea36dc9d803d9eb61098aa32",
            f"{HF}/{repo}/commit/df6d2ecf19c130415816f7d798aa71adace8508b",
        ),
        unverified_paths=("sdxl_lightning_report.pdf", "sdxl_lightning_samples.jpg"),
        note=(
            "The tree page of the pinned commit lists comfyui/ and the root files up to"
            " sdxl_lightning_8step_unet.safetensors, where the stored excerpt ends. The last two root files are"
            " reconstructed: sdxl_lightning_report.pdf (16.5 MB, LFS) is in the root of an earlier tree (df0fa37),"
            " and commit df6d2ec (\"Update ComfyUI workflow\", before the pin) renamed images/intro.jpg to"
            " sdxl_lightning_samples.jpg and dropped images/ (no images/ folder at the pin); its size and LFS"
            " status are unknown."
        ),
    )


# ---------------------------------------------------------------------------
# madebyollin/sdxl-vae-fp16-fix @ 207b116dae70ace3637169f1ddd2434b91b3a8cd
# ---------------------------------------------------------------------------
def _sdxl_vae_fp16_fix() -> RepoListing:
    repo = "madebyollin/sdxl-vae-fp16-fix"
    rev = "207b116dae70ace3637169f1ddd2434b91b3a8cd"
    files = (
        F(".gitattributes", "1.52 kB"),
        F("README.md", None),
        F("config.json", 631),
        F("diffusion_pytorch_model.bin", "335 MB", lfs=True),
        F("diffusion_pytorch_model.safetensors", 334643238, lfs=True),
        F("images/activation-magnitudes.jpg", None),
        F("images/fix-fp16.png", None),
        F("images/fix-fp32.png", None),
        F("images/orig-fp16.png", "3.13 kB"),
        F("images/orig-fp32.png", None),
        F("sdxl.vae.safetensors", 334641162, lfs=True),
        F("sdxl_vae.safetensors", 334641162, lfs=True),
    )
    return RepoListing(
        repo,
        rev,
        files,
        verified=False,
        sources=(
            f"{HF}/{repo}/tree/9992f498e6cc2c264708ee91071a97135963ee28",
            f"{HF}/{repo}/commits/aa8ff6451a117df29fb6bbee27e8a8a8e660f0aa",
            f"{HF}/{repo}/commits/9292e146692bb47baa25d8d64e86e46b5f524101/sdxl_vae.safetensors",
            f"{HF}/{repo}/blame/a1a2aceef17b5ef8865a34135263c473d9c7e0d5/README.md",
            f"{HF}/thingthatis/sdxl-vae-fp16-fix/blob/main/images/orig-fp16.png",
            "github code search: pinned download lists for resolve/" + rev + "/{config.json,"
            " diffusion_pytorch_model.safetensors, sdxl.vae.safetensors, sdxl_vae.safetensors} with sizes/sha256",
        ),
        note=(
            "No tree page of this repository after July 2023 was found. Reconstructed from its commit history"
            " (README.md, config.json, diffusion_pytorch_model.bin, sdxl_vae.safetensors, images/orig-fp16.png"
            " uploads), the README's image links (images/{orig,fix}-{fp32,fp16}.png, images/activation-magnitudes.jpg),"
            " and third-party download lists that fetch config.json, diffusion_pytorch_model.safetensors,"
            " sdxl.vae.safetensors and sdxl_vae.safetensors at this very commit (the two single-file checkpoints"
            " share sha256 235745af...). A commit of Feb 2024 (4c7f307, \"new look, same great taste\") touched a"
            " path sdxl_vae_fp16_fix.safetensors: whether such a file exists at the pin is unknown, so it is left out."
        ),
    )


# ---------------------------------------------------------------------------
# stabilityai/sd-turbo @ b261bac6fd2cf515557d5d0707481eafa0485ec2 (main's head: "Update README.md", 13 commits)
# ---------------------------------------------------------------------------
def _sd_turbo() -> RepoListing:
    repo = "stabilityai/sd-turbo"
    rev = "b261bac6fd2cf515557d5d0707481eafa0485ec2"
    files = (
        F(".gitattributes", "1.52 kB"),
        F("LICENSE.md", "11.9 kB"),
        F("README.md", "5.9 kB"),
        F("image_quality_one_step.png", "196 kB"),
        F("model_index.json", 616),
        F("output_tile.jpg", "741 kB"),
        F("prompt_alignment_one_step.png", "197 kB"),
        F("scheduler/scheduler_config.json", 553),
        F("sd_turbo.safetensors", 5214561328, lfs=True),
        F("text_encoder/config.json", 618),
        F("text_encoder/model.fp16.safetensors", "681 MB", lfs=True),
        F("text_encoder/model.safetensors", "1.36 GB", lfs=True),
        F("tokenizer/merges.txt", "525 kB"),
        F("tokenizer/special_tokens_map.json", 574),
        F("tokenizer/tokenizer_config.json", 855),
        F("tokenizer/vocab.json", "1.06 MB"),
        F("unet/config.json", "1.87 kB"),
        F("unet/diffusion_pytorch_model.fp16.safetensors", "1.73 GB", lfs=True),
        F("unet/diffusion_pytorch_model.safetensors", "3.46 GB", lfs=True),
        F("vae/config.json", 655),
        F("vae/diffusion_pytorch_model.fp16.safetensors", "167 MB", lfs=True),
        F("vae/diffusion_pytorch_model.safetensors", "335 MB", lfs=True),
    )
    return RepoListing(
        repo,
        rev,
        files,
        verified=True,
        sources=(
            f"{HF}/{repo}/tree/main",
            f"{HF}/{repo}/tree/{rev}/vae",
            f"{HF}/{repo}/tree/{rev}/tokenizer",
            f"{HF}/{repo}/tree/main/text_encoder",
            f"{HF}/{repo}/tree/refs%2Fpr%2F8/unet",
            f"{HF}/{repo}/blob/b335f733db09ff60444334351a3bbf6ab4b64332/scheduler/scheduler_config.json",
            "github code search: a pinned download list for resolve/" + rev + "/sd_turbo.safetensors (5214561328 bytes)",
        ),
        note=(
            "tree/main shows b261bac as main's head. unet/ was read on a PR branch and text_encoder/ on main:"
            " both folders' only commit is \"Add Diffusers weights (#2)\", before the pin. The scheduler config's"
            " content is known too (553 bytes; enfoads.models.tiny.sd2 writes it byte for byte)."
        ),
    )
