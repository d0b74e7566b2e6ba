"""The lip-sync model: MuseTalk 1.5 (its UNet, the sd-vae-ft-mse VAE, the whisper-tiny encoder) and its tiny version.

Why MuseTalk 1.5: it is a single-step latent inpainting UNet (no diffusion
loop), so a T4 renders faster than real time, and it is licensed for a
business that sells ads: the code is MIT and its README says the trained
weights "are available for any purpose, even commercially" (the Hugging Face
card's metadata says creativeml-openrail-m, which is not a non-commercial
licence either; both are recorded). Its other parts: the sd-vae-ft-mse VAE
(MIT) and OpenAI's whisper-tiny (Apache-2.0). Wav2Lip-class models are
non-commercial. MuseTalk's face parsing network (BiSeNet, trained on
CelebAMask-HQ, non-commercial) and DWPose (mmlab) are not used: the face box
and key points come from InsightFace, already resident for face swaps, and
the paste-back mask is drawn from them (``enfoads.services.lipsync_mask``).

Files: ``musetalkV15/unet.pth`` is a 3.4 GB fp32 state dict of a diffusers
``UNet2DConditionModel`` built from ``musetalkV15/musetalk.json``. It is read
once with ``torch.load(weights_only=True, mmap=True)`` and converted to an
fp16 safetensors file under ``converted/`` of the models dir, which every
later load streams straight to the device (``enfoads.models.loaders.lipsync``).

Memory (T4, fp16): UNet 850 M parameters (1.70 GB), VAE 84 M (0.17 GB),
whisper-tiny's encoder 8 M (0.02 GB); a batch of 16 frames at 32 x 32 latents
adds a few hundred MB of activations, inside the profile's reserve.
"""
from __future__ import annotations

from enfoads.models.catalog_types import GB, MB, HubFiles, ModelEntry

#: The role of the lip-sync model in a profile.
LIPSYNC = "lipsync"

LICENCE_MUSETALK = ("MIT (MuseTalk code); trained weights \"available for any purpose, even commercially\" "
                    "(MuseTalk README; the Hugging Face card says creativeml-openrail-m); sd-vae-ft-mse: MIT; "
                    "whisper-tiny: Apache-2.0")
LICENCE_TINY = "Apache-2.0"

# Commit pins: the revisions many MuseTalk 1.5 deployments pin (download scripts, manifests, cache paths).
REV_MUSETALK = "3ef28bc5cff08c90ad8178a25f1b570cd800170f"
REV_SD_VAE_FT_MSE = "31f26fdeee1355a5c34592e401dd41e45d25a493"
REV_WHISPER_TINY = "169d4a4341b33bc18d8881c4b69c2e104e1cc0af"

UNET_FILE = "musetalkV15/unet.pth"
UNET_CONFIG = "musetalkV15/musetalk.json"
UNET_BYTES = 3_400_074_924
VAE_BYTES = int(334.6 * MB)
WHISPER_BYTES = int(151.1 * MB)

MUSETALK_UNET = HubFiles(
    "TMElyralab/MuseTalk",
    revision=REV_MUSETALK,
    allow_patterns=(UNET_CONFIG, UNET_FILE),
    sha256=(
        (UNET_CONFIG, "5b6923aee04d71692e0e9846c471e0a4ea07a4f686d39545e472bd4ba17e1b47"),
        (UNET_FILE, "7ebf6c98c181e20838e4c0054e96e944ac60d5d692cc01db42839fe11b787007"),
    ),
)
# The safetensors file, not MuseTalk's own download of diffusion_pytorch_model.bin: no pickle to read.
SD_VAE_FT_MSE = HubFiles(
    "stabilityai/sd-vae-ft-mse",
    revision=REV_SD_VAE_FT_MSE,
    allow_patterns=("config.json", "diffusion_pytorch_model.safetensors"),
    sha256=(("config.json", "92d3dfb746fca211a2c9e019e285f8597412211728dce3c5bcf4eda0f2d62e7e"),),
)
WHISPER_TINY = HubFiles(
    "openai/whisper-tiny",
    revision=REV_WHISPER_TINY,
    allow_patterns=("config.json", "model.safetensors", "preprocessor_config.json"),
    sha256=(
        ("config.json", "ffdccec4f3211f4c63310f2b7098f309fe70f3952cedc5e4d11e43f5b2379b98"),
        ("preprocessor_config.json", "9b5cd03a36fbb8a627c64d98a5b5b126ead95a77720723944487311f0110b666"),
    ),
)

LIPSYNC_ENTRIES: tuple[ModelEntry, ...] = (
    ModelEntry(
        id="musetalk-1.5",
        role=LIPSYNC,
        runtime="torch",
        loader="musetalk",
        description="MuseTalk 1.5 (Tencent Music Lyra Lab): the portrait's mouth follows the speech, 25 fps, "
                    "256 px face, one UNet step a frame",
        licence=LICENCE_MUSETALK,
        download_bytes=UNET_BYTES + VAE_BYTES + WHISPER_BYTES,
        # fp16 weights (1.70 + 0.17 + 0.02 GB) plus cuDNN's workspace.
        vram_bytes=int(2.0 * GB),
        ram_bytes=int(3.9 * GB),  # fp32 on the CPU
        # The first load converts unet.pth: torch.load(mmap=True) maps the file and the fp16
        # copy of every tensor (1.70 GB) is built in host RAM before it is written. Later
        # loads stream the fp16 file to the device; the VAE (fp32 file, 0.33 GB) and
        # whisper-tiny (the whole model, 0.15 GB) are built on the CPU first. 1.7 + 0.3.
        staging_bytes=int(2.0 * GB),
        sources={"unet": MUSETALK_UNET, "vae": SD_VAE_FT_MSE, "whisper": WHISPER_TINY},
        options={"unet_file": UNET_FILE, "unet_config": UNET_CONFIG, "fps": 25},
    ),
    ModelEntry(
        id="tiny-musetalk",
        role=LIPSYNC,
        runtime="torch",
        loader="musetalk",
        description="Tiny random-weight MuseTalk layout: UNet .pth + musetalk.json, VAE and whisper folders "
                    "(the mouth region changes with the audio; its pixels are noise)",
        licence=LICENCE_TINY,
        download_bytes=0,
        vram_bytes=int(8 * MB),
        ram_bytes=int(8 * MB),
        tiny="tiny-musetalk",
        options={"unet_file": UNET_FILE, "unet_config": UNET_CONFIG, "fps": 25},
    ),
)
