"""The model catalogue: what each model is, where it comes from, what it costs.

Pure data. Sizes are the published file sizes; VRAM and RAM figures are
estimates used only until the residency manager has measured a real load.

Every hub source is pinned to a full commit hash, so what ``enfoads preload``
installs never changes underneath a release; the hub's own LFS metadata at
that commit gives each large file's sha256, which preload checks. Where a
checksum is published independently of the hub (many third-party pins agree
on it) it is written here too and checked as well. Moving a pin is a
catalogue change; the previous version stays installed and selectable
(``enfoads models --use``), see ``enfoads.models.preload``.
"""
from __future__ import annotations

from enfoads.models.catalog_types import GB, MB, HubFiles, ModelEntry, UrlArchive, UrlFile
from enfoads.models.catalog_enhance import ENHANCE_ENTRIES
from enfoads.models.catalog_lipsync import LIPSYNC_ENTRIES

# Staging (``ModelEntry.staging_bytes``): host RAM a load onto the GPU holds at its peak,
# read from each loader and the libraries it calls (and measured on a CPU where the step
# runs there). Tensors that stream from a file straight to the device (safetensors
# ``load_file(device=...)``: a mapped view, then ``.to(device)``, one tensor at a time)
# are not counted; tensors a loader keeps on the CPU until its final ``.to(device)`` are,
# whether anonymous memory or mapped from the file; plus a margin for per-tensor copies.

LICENCE_SDXL = "CreativeML Open RAIL++-M"
# ByteDance/SDXL-Lightning's model card: "license: openrail++" (SDXL's own licence).
LICENCE_SDXL_LIGHTNING = "CreativeML Open RAIL++-M (openrail++)"
LICENCE_SD_TURBO = "Stability AI Non-Commercial Research Community License"
LICENCE_INSIGHTFACE = "non-commercial research use only (InsightFace pretrained models)"
LICENCE_MIT = "MIT"
LICENCE_APACHE = "Apache-2.0"


# Commit pins. Each is the commit that many public projects pin or show in
# their Hugging Face cache paths (snapshots/<commit>), not "main".
REV_SDXL_BASE = "462165984030d82259a11f4367a4eed129e94a7b"
REV_SDXL_VAE_FP16_FIX = "207b116dae70ace3637169f1ddd2434b91b3a8cd"
REV_SDXL_LIGHTNING = "c9a24f48e1c025556787b0c58dd67a091ece2e44"
REV_SD_TURBO = "b261bac6fd2cf515557d5d0707481eafa0485ec2"
REV_INSWAPPER = "6ffdf0e83c5996cc425e77b59913fc48d79441be"
REV_WHISPER_TURBO = "0a363e9161cbc7ed1431c9597a8ceaf0c4f78fcf"
REV_WHISPER_SMALL = "536b0662742c02347bc0e980a01041f333bce120"

# The files faster-whisper itself downloads for a model (faster_whisper.utils.download_model),
# less preprocessor_config.json: only the 128-mel repositories (large-v3, turbo)
# have one, and every literal pattern here is required to exist.
WHISPER_FILES = ("config.json", "model.bin", "tokenizer.json", "vocabulary.*")

SDXL_BASE = HubFiles(
    "stabilityai/stable-diffusion-xl-base-1.0",
    revision=REV_SDXL_BASE,
    allow_patterns=(
        "model_index.json",
        "scheduler/*",
        "tokenizer/*",
        "tokenizer_2/*",
        "text_encoder/config.json",
        "text_encoder/model.fp16.safetensors",
        "text_encoder_2/config.json",
        "text_encoder_2/model.fp16.safetensors",
        "unet/config.json",
        "vae/config.json",
    ),
)
SDXL_VAE_FP16_FIX = HubFiles(
    "madebyollin/sdxl-vae-fp16-fix",
    revision=REV_SDXL_VAE_FP16_FIX,
    allow_patterns=("config.json", "diffusion_pytorch_model.safetensors"),
)


def _lightning(steps: int) -> ModelEntry:
    unet_file = (
        "sdxl_lightning_1step_unet_x0.safetensors" if steps == 1 else f"sdxl_lightning_{steps}step_unet.safetensors"
    )
    return ModelEntry(
        id=f"sdxl-lightning-{steps}step",
        role="image",
        runtime="torch",
        loader="sdxl_lightning",
        description=f"SDXL base 1.0 with the SDXL-Lightning {steps}-step UNet (ByteDance), fp16-fix VAE",
        licence=f"{LICENCE_SDXL} (base); {LICENCE_SDXL_LIGHTNING} (SDXL-Lightning)",
        # UNet 5.14 GB + text encoders 1.64 GB + VAE 0.33 GB
        download_bytes=int(7.11 * GB),
        vram_bytes=int(7.3 * GB),
        ram_bytes=int(7.1 * GB),
        # load_sdxl_lightning on CUDA: the UNet is built on the meta device and its file
        # streams straight to the GPU (load_file(device=...)); the fp16-fix VAE (fp32 file,
        # cast to fp16 tensor by tensor: 0.17 GB) and the text encoders (fp16 files, 0.25 +
        # 1.39 GB) are built on the CPU and stay there until pipe.to(device). 1.80 GB + 0.1.
        staging_bytes=int(1.9 * GB),
        sources={
            "base": SDXL_BASE,
            "unet": HubFiles("ByteDance/SDXL-Lightning", revision=REV_SDXL_LIGHTNING, allow_patterns=(unet_file,)),
            "vae": SDXL_VAE_FP16_FIX,
        },
        options={"unet_file": unet_file, "steps": steps, "x0_prediction": steps == 1},
    )


CATALOG: dict[str, ModelEntry] = {
    e.id: e
    for e in (
        _lightning(1),
        _lightning(2),
        _lightning(4),
        _lightning(8),
        ModelEntry(
            id="sd-turbo",
            role="image",
            runtime="torch",
            loader="diffusers_folder",
            description="SD-Turbo (SD 2.1 distilled, 512 px, 1-4 steps): the CPU profile's image model",
            licence=LICENCE_SD_TURBO,
            download_bytes=int(2.6 * GB),
            vram_bytes=int(2.7 * GB),
            ram_bytes=int(5.2 * GB),  # fp32 on the CPU
            # load_diffusers_folder builds every component on the CPU (fp16: UNet 1.73 GB,
            # text encoder 0.68 GB, VAE 0.17 GB), then moves the pipeline. 2.58 GB + 0.1.
            staging_bytes=int(2.7 * GB),
            sources={
                "base": HubFiles(
                    "stabilityai/sd-turbo",
                    revision=REV_SD_TURBO,
                    allow_patterns=(
                        "model_index.json",
                        "scheduler/*",
                        "tokenizer/*",
                        "text_encoder/config.json",
                        "text_encoder/model.fp16.safetensors",
                        "unet/config.json",
                        "unet/diffusion_pytorch_model.fp16.safetensors",
                        "vae/config.json",
                        "vae/diffusion_pytorch_model.fp16.safetensors",
                    ),
                )
            },
        ),
        ModelEntry(
            id="tiny-sdxl-lightning",
            role="image",
            runtime="torch",
            loader="sdxl_lightning",
            description="Tiny random-weight SDXL + Lightning-format UNet (tests, offline demos; outputs noise)",
            licence=LICENCE_APACHE,
            download_bytes=0,
            vram_bytes=int(4.8 * MB),
            ram_bytes=int(4.8 * MB),
            tiny="tiny-sdxl-lightning",
            options={"unet_file": "sdxl_lightning_4step_unet.safetensors", "steps": 4, "x0_prediction": False},
        ),
        ModelEntry(
            id="buffalo_l",
            role="faces",
            runtime="onnxruntime",
            loader="face_analysis",
            description="InsightFace buffalo_l: SCRFD-10G detection, ArcFace R50 recognition, landmarks",
            licence=LICENCE_INSIGHTFACE,
            download_bytes=int(326 * MB),
            vram_bytes=int(0.7 * GB),
            ram_bytes=int(0.45 * GB),
            # One ONNX Runtime session per file, in turn: ORT parses the file into host memory
            # and frees the initializers once they are on the GPU; then insightface's
            # ArcFaceONNX/Landmark/Attribute re-read the file with onnx.load (bytes + proto,
            # 2x the file). Largest: w600k_r50.onnx, 174 MB -> 0.35 GB, + 0.05.
            staging_bytes=int(0.4 * GB),
            # insightface's v0.7 release asset: the archive insightface 0.7.x downloads,
            # with the sha256 and size that many projects pin. (insightface 2.x
            # fetches the same name from its "model-zoo" release tag.)
            sources={
                "pack": UrlArchive(
                    "https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip",
                    unpack_to="insightface/models/buffalo_l",
                    sha256="80ffe37d8a5940d59a7384c201a2a38d4741f2f3c51eef46ebb28218a7b0ca2f",
                    bytes=288_621_354,
                )
            },
        ),
        ModelEntry(
            id="inswapper_128",
            role="swapper",
            runtime="onnxruntime",
            loader="swapper",
            description="InsightFace inswapper_128 face swapper",
            licence=LICENCE_INSIGHTFACE,
            download_bytes=int(554 * MB),
            vram_bytes=int(0.8 * GB),
            ram_bytes=int(0.6 * GB),
            # ORT parses the 554 MB file into host memory (freed once on the GPU), then
            # insightface's INSwapper reads it again with onnx.load for its emap (bytes +
            # proto: 2 x 554 MB, measured). 1.11 GB + 0.05.
            staging_bytes=int(1.15 * GB),
            sources={
                "model": HubFiles(
                    "ezioruan/inswapper_128.onnx",
                    revision=REV_INSWAPPER,
                    allow_patterns=("inswapper_128.onnx",),
                    # A community mirror of insightface's file: the published digest is the real pin.
                    sha256=(("inswapper_128.onnx", "e4a3f08c753cb72d04e10aa0f7dbe3deebbf39567d4ead6dce08e98aa49e16af"),),
                )
            },
        ),
        ModelEntry(
            id="tiny-buffalo_l",
            role="faces",
            runtime="onnxruntime",
            loader="face_analysis",
            description="Tiny random-weight buffalo_l pack; finds faces in the kit's test pattern",
            licence=LICENCE_APACHE,
            download_bytes=0,
            vram_bytes=int(2.8 * MB),
            ram_bytes=int(2.8 * MB),
            tiny="tiny-buffalo_l",
        ),
        ModelEntry(
            id="tiny-inswapper_128",
            role="swapper",
            runtime="onnxruntime",
            loader="swapper",
            description="Tiny random-weight inswapper_128 (same inputs and outputs)",
            licence=LICENCE_APACHE,
            download_bytes=0,
            vram_bytes=int(2.7 * MB),
            ram_bytes=int(2.7 * MB),
            tiny="tiny-buffalo_l",
        ),
        ModelEntry(
            id="faster-whisper-large-v3-turbo",
            role="speech",
            runtime="ctranslate2",
            loader="whisper",
            description="Whisper large-v3-turbo converted for CTranslate2 (faster-whisper's 'turbo')",
            licence=LICENCE_MIT,
            # OpenAI's turbo was fine-tuned on transcription only: it was not trained to translate.
            options={"translates": False},
            download_bytes=int(1.62 * GB),
            vram_bytes=int(1.8 * GB),
            ram_bytes=int(1.0 * GB),
            # CTranslate2's Model::load reads every variable of model.bin (1.62 GB, fp16) into
            # host memory, converts it to the compute type there, then moves all of it to the
            # device (models/model.cc). 1.62 GB + 0.08.
            staging_bytes=int(1.7 * GB),
            sources={
                "model": HubFiles(
                    "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
                    revision=REV_WHISPER_TURBO,
                    # 128 mel bins: without this file faster-whisper would compute 80.
                    allow_patterns=(*WHISPER_FILES, "preprocessor_config.json"),
                    sha256=(
                        ("config.json", "b0253ea6c0d3bea6b1e19e91a02acfd3b53f4467362efcb5a3e6b16c9b3a9b7e"),
                        ("model.bin", "e76620f83d5f5b69efd3d87e3dc180c1bd21df9fbebacfd4335e5e1efcc018da"),
                        ("preprocessor_config.json", "7ccc62c6f2765af1f3b46c00c9b5894426835a05021c8b9c01eecb6dfb542711"),
                        ("tokenizer.json", "297b13372ac43916285644fb9687add3cc62ee2a1adb60da3dc25cc94c1871fd"),
                        ("vocabulary.json", "c69260f2ab26d659b7c398f9a2b2b48ed0df16c3b47d7326782fd9cba71690c1"),
                    ),
                )
            },
        ),
        ModelEntry(
            id="faster-whisper-small",
            role="speech",
            runtime="ctranslate2",
            loader="whisper",
            description="Whisper small converted for CTranslate2; int8 on the CPU",
            licence=LICENCE_MIT,
            download_bytes=int(0.48 * GB),
            vram_bytes=int(0.6 * GB),
            ram_bytes=int(0.35 * GB),
            # As for large-v3-turbo: all of model.bin (0.48 GB, fp16) in host memory first.
            staging_bytes=int(0.52 * GB),
            sources={
                "model": HubFiles(
                    "Systran/faster-whisper-small",
                    revision=REV_WHISPER_SMALL,
                    allow_patterns=WHISPER_FILES,
                    sha256=(
                        ("config.json", "b55496ac7940a7ae47d2c01eab40edfd8701feec1229d9cce3b40014383fb828"),
                        ("model.bin", "3e305921506d8872816023e4c273e75d2419fb89b24da97b4fe7bce14170d671"),
                        ("tokenizer.json", "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"),
                        ("vocabulary.txt", "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913"),
                    ),
                )
            },
        ),
        ModelEntry(
            id="tiny-whisper",
            role="speech",
            runtime="ctranslate2",
            loader="whisper",
            description="Tiny random-weight CTranslate2 Whisper (multilingual vocabulary; text is noise)",
            licence=LICENCE_APACHE,
            download_bytes=0,
            vram_bytes=int(4.3 * MB),
            ram_bytes=int(4.3 * MB),
            tiny="tiny-whisper",
        ),
        ModelEntry(
            id="espeak-ng",
            role="tts",
            runtime="process",
            loader="espeak",
            description="eSpeak NG speech synthesiser (Debian package): offline, always available",
            licence="GPL-3.0-or-later",
            download_bytes=0,
            vram_bytes=0,
            ram_bytes=int(20 * MB),
        ),
    )
}


# Files-only entries: weights another model loads into itself, installed on request.
SDXL_BASE_UNET = ModelEntry(
    id="sdxl-base-unet",
    role="extra",  # not a model a request can name: weights for the image model
    runtime="files",  # no model of its own: copied into the resident Lightning UNet
    loader="files",
    description="SDXL base 1.0's own UNet, fp16: the quality mode (10-50 steps with guidance)",
    licence=LICENCE_SDXL,
    download_bytes=int(5.14 * GB),
    vram_bytes=0,
    ram_bytes=0,
    sources={
        "base": HubFiles(
            SDXL_BASE.repo_id, revision=REV_SDXL_BASE, allow_patterns=("unet/diffusion_pytorch_model.fp16.safetensors",)
        )
    },
)
CATALOG[SDXL_BASE_UNET.id] = SDXL_BASE_UNET
CATALOG.update({e.id: e for e in ENHANCE_ENTRIES})
CATALOG.update({e.id: e for e in LIPSYNC_ENTRIES})

#: ``enfoads preload --with NAME``: optional downloads for profiles whose image model is SDXL-Lightning.
PRELOAD_EXTRAS: dict[str, tuple[str, ...]] = {
    "quality": (SDXL_BASE_UNET.id,),
    "lightning-steps": ("sdxl-lightning-1step", "sdxl-lightning-2step", "sdxl-lightning-8step"),
    # Every catalogued upscaler, beside the profile's default one.
    "upscalers": ("realesrgan-x4plus", "realesrgan-x4plus-anime-6b", "realesr-general-x4v3"),
}


def get_entry(model_id: str) -> ModelEntry:
    try:
        return CATALOG[model_id]
    except KeyError:
        raise KeyError(f"unknown model {model_id!r}; known: {sorted(CATALOG)}") from None
