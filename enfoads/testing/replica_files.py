"""The real file lists of every catalogue source, as data: what the replicas reproduce.

For each repository the catalogue (``enfoads.models.catalog``) and the Piper voice
catalogue (``enfoads.models.voices``) download from, and for the insightface
``buffalo_l.zip`` release archive, this module lists the real files at the
catalogue's pinned revision: path, size, whether the hub stores the file in
LFS/Xet, where the list was read and whether it was *verified* (read from a
page or a pinned download list for that revision) or is a *best
reconstruction* (``verified=False``, with the reason in ``note``).

Sizes: an ``int`` given to :func:`F` is an exact byte count (from a Git LFS
pointer, a third-party pinned download list or the catalogue itself); a
string is the rounded figure the Hugging Face tree page shows (decimal units,
``"5.14 GB"``), kept as shown in ``RealFile.shown`` and converted to an
approximate ``size``. ``None``: not known.

``enfoads.testing.replicas`` publishes a replica of each listing on the fake
hub with exactly these paths, and ``tests/test_replicas.py`` checks that the
replicas' file lists equal this data.

Nothing here is read by the product.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "RealFile",
    "RepoListing",
    "ArchiveListing",
    "F",
    "LISTINGS",
    "ARCHIVES",
    "BUFFALO_L_ZIP",
    "PIPER_REPO",
    "PIPER_TOP_LEVEL",
    "PIPER_VOICE_FILES",
    "PIPER_VOICES_AFTER_V1",
    "PIPER_COMMITS",
    "PIPER_COMMIT_FINDINGS",
    "piper_listing",
    "listing",
]

_UNITS = {"Bytes": 1, "B": 1, "kB": 10**3, "MB": 10**6, "GB": 10**9}


@dataclass(frozen=True)
class RealFile:
    path: str
    size: int | None  # bytes: exact when ``exact``, else converted from ``shown``
    exact: bool = False
    shown: str | None = None  # the rounded size as the tree page shows it
    lfs: bool = False  # stored in LFS/Xet on the hub (a pointer in git)


def F(path: str, size: int | str | None = None, *, lfs: bool = False) -> RealFile:
    """A file: ``size`` an exact byte count (int), the page's rounded figure (str) or unknown (None)."""
    if isinstance(size, int):
        return RealFile(path, size, exact=True, lfs=lfs)
    if size is None:
        return RealFile(path, None, lfs=lfs)
    number, unit = size.split()
    return RealFile(path, int(round(float(number) * _UNITS[unit])), shown=size, lfs=lfs)


@dataclass(frozen=True)
class RepoListing:
    repo_id: str
    revision: str  # the catalogue's revision (a commit; for Piper a tag or branch)
    files: tuple[RealFile, ...]
    verified: bool
    sources: tuple[str, ...]
    note: str = ""
    unverified_paths: tuple[str, ...] = ()  # inside a verified listing: names not seen at the pin

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(f.path for f in self.files)

    def file(self, path: str) -> RealFile:
        for f in self.files:
            if f.path == path:
                return f
        raise KeyError(f"{self.repo_id}@{self.revision} has no {path!r}")


@dataclass(frozen=True)
class ArchiveListing:
    name: str  # the release asset's file name
    url: str
    members: tuple[RealFile, ...]  # zip member names, sizes uncompressed
    sha256: str | None
    bytes: int | None
    verified: bool
    sources: tuple[str, ...]
    note: str = ""

    @property
    def member_names(self) -> tuple[str, ...]:
        return tuple(m.path for m in self.members)


HF = "https://huggingface.co"


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


# ---------------------------------------------------------------------------
# mobiuslabsgmbh/faster-whisper-large-v3-turbo @ 0a363e9161cbc7ed1431c9597a8ceaf0c4f78fcf
# ---------------------------------------------------------------------------
def _whisper_turbo() -> RepoListing:
    repo = "mobiuslabsgmbh/faster-whisper-large-v3-turbo"
    rev = "0a363e9161cbc7ed1431c9597a8ceaf0c4f78fcf"
    files = (
        F(".gitattributes", "1.52 kB"),
        F("README.md", "1.43 kB"),
        F("config.json", 2263),
        F("model.bin", 1617884929, lfs=True),
        F("preprocessor_config.json", 340),
        F("tokenizer.json", 2710337),
        F("vocabulary.json", 1068114),
    )
    return RepoListing(
        repo,
        rev,
        files,
        verified=True,
        sources=(
            f"{HF}/{repo}/tree/main",
            "github code search: pinned download lists for resolve/" + rev + "/{config.json,"
            " preprocessor_config.json, tokenizer.json, vocabulary.json, model.bin} with exact sizes and the"
            " sha256 digests the catalogue publishes (also under the repository's later name dropbox-dash/...)",
        ),
        unverified_paths=(".gitattributes", "README.md"),
        note=(
            "The stored tree page shows main at 0c94664 (\"Model files\", 3 commits); the pin 0a363e9 is a later"
            " commit. The five model files are confirmed at the pin by third-party download lists (exact sizes,"
            " sha256 equal to the catalogue's); .gitattributes and README.md are from the earlier tree (a later"
            " commit may have changed README.md's size or added files not listed here). The repository now also"
            " answers as dropbox-dash/faster-whisper-large-v3-turbo."
        ),
    )


# ---------------------------------------------------------------------------
# Systran/faster-whisper-small @ 536b0662742c02347bc0e980a01041f333bce120 (main's head, 5 commits)
# ---------------------------------------------------------------------------
def _whisper_small() -> RepoListing:
    repo = "Systran/faster-whisper-small"
    rev = "536b0662742c02347bc0e980a01041f333bce120"
    files = (
        F(".gitattributes", "1.48 kB"),
        F("README.md", "2 kB"),
        F("config.json", "2.37 kB"),
        F("model.bin", 483546902, lfs=True),
        F("tokenizer.json", "2.2 MB"),
        F("vocabulary.txt", "460 kB"),
    )
    return RepoListing(
        repo,
        rev,
        files,
        verified=True,
        sources=(
            f"{HF}/{repo}/tree/{rev}",
            f"{HF}/{repo}/tree/main",
            "github code search: model.bin at " + rev + " is 483,546,902 bytes, sha256 3e305921... (the catalogue's)",
        ),
        note="No preprocessor_config.json: 80 mel bins, faster-whisper's default feature extractor.",
    )


# ---------------------------------------------------------------------------
# ezioruan/inswapper_128.onnx @ 6ffdf0e83c5996cc425e77b59913fc48d79441be (main's head, 2 commits)
# ---------------------------------------------------------------------------
def _inswapper() -> RepoListing:
    repo = "ezioruan/inswapper_128.onnx"
    rev = "6ffdf0e83c5996cc425e77b59913fc48d79441be"
    return RepoListing(
        repo,
        rev,
        (F(".gitattributes", "1.52 kB"), F("inswapper_128.onnx", 554253681, lfs=True)),
        verified=True,
        sources=(
            f"{HF}/{repo}/tree/{rev}",
            f"{HF}/{repo}/tree/main",
            f"{HF}/Chakriya/roop/commit/04c715913e098c7852cc6935e3af8bf984723434",
        ),
        note="The exact size is from an LFS pointer of the same content (sha256 e4a3f08c..., the catalogue's).",
    )


# ---------------------------------------------------------------------------
# insightface buffalo_l.zip (GitHub release asset v0.7)
# ---------------------------------------------------------------------------
BUFFALO_L_ZIP = ArchiveListing(
    name="buffalo_l.zip",
    url="https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip",
    members=(
        F("1k3d68.onnx", 143607619),
        F("2d106det.onnx", 5030888),
        F("det_10g.onnx", 16923827),
        F("genderage.onnx", 1322532),
        F("w600k_r50.onnx", 174383860),
    ),
    sha256="80ffe37d8a5940d59a7384c201a2a38d4741f2f3c51eef46ebb28218a7b0ca2f",
    bytes=288_621_354,
    verified=False,
    sources=(
        "github code search: inventories of unpacked packs, e.g. insightface/models/buffalo_l/{det_10g,genderage,"
        "w600k_r50}.onnx and INSIGHTFACE_BUFFALO_FILES = {genderage 1322532, 2d106det 5030888, det_10g 16923827,"
        " 1k3d68 143607619, w600k_r50 174383860}",
        "insightface.utils.storage.download (the installed package): extracts <name>.zip into models/<name>/,"
        " and FaceAnalysis globs models/<name>/*.onnx",
    ),
    note=(
        "Member names and sizes are verified (several independent inventories of the unpacked pack agree);"
        " the layout (members at the zip's root, no folder) is inferred from insightface's own loader, which"
        " extracts the zip into models/buffalo_l/ and only globs *.onnx there. The zip itself was not listed:"
        " member order and timestamps are unknown (the replica uses sorted names and a fixed timestamp)."
    ),
)

ARCHIVES: dict[str, ArchiveListing] = {BUFFALO_L_ZIP.name: BUFFALO_L_ZIP}


# ---------------------------------------------------------------------------
# rhasspy/piper-voices: the top-level files and the catalogued voices' folders
# ---------------------------------------------------------------------------
PIPER_REPO = "rhasspy/piper-voices"

PIPER_TOP_LEVEL: tuple[RealFile, ...] = (
    F(".gitattributes", "1.56 kB"),
    F("README.md", "311 Bytes"),
    F("_script/voice_names.sh", "213 Bytes"),
    F("_script/voicefest.py", "12.2 kB"),
    F("voices.json", None),
)


def _voice(stem: str, onnx_size: int | str, *, speakers: int = 1, card: int | str | None = None,
           config: int | str | None = None) -> tuple[RealFile, ...]:
    folder = stem.rsplit("/", 1)[0]
    name = stem.rsplit("/", 1)[1]
    return (
        F(f"{folder}/MODEL_CARD", card),
        F(f"{folder}/{name}.onnx", onnx_size, lfs=True),
        F(f"{folder}/{name}.onnx.json", config),
        *(F(f"{folder}/samples/speaker_{i}.mp3", None) for i in range(speakers)),
    )


#: Per catalogued voice (``enfoads.models.voices``), its folder's files. Only es_MX-claude-high's folder was
#: read on a tree page; the others follow the layout every voice folder has (MODEL_CARD, the .onnx,
#: its .onnx.json, samples/speaker_<n>.mp3 per speaker), with the .onnx sizes the voice catalogue
#: gives (approximate) except where an exact one was found.
PIPER_VOICE_FILES: dict[str, tuple[RealFile, ...]] = {
    "es_MX-claude-high": _voice("es/es_MX/claude/high/es_MX-claude-high", "63.1 MB", card="247 Bytes",
                                config="4.96 kB"),
    "es_MX-ald-medium": _voice("es/es_MX/ald/medium/es_MX-ald-medium", "63 MB"),
    "es_AR-daniela-high": _voice("es/es_AR/daniela/high/es_AR-daniela-high", "114 MB"),
    "es_ES-davefx-medium": _voice("es/es_ES/davefx/medium/es_ES-davefx-medium", "63 MB"),
    "es_ES-sharvard-medium": _voice("es/es_ES/sharvard/medium/es_ES-sharvard-medium", "77 MB", speakers=2),
    "es_ES-carlfm-x_low": _voice("es/es_ES/carlfm/x_low/es_ES-carlfm-x_low", "28 MB"),
    "en_US-lessac-medium": _voice("en/en_US/lessac/medium/en_US-lessac-medium", "63 MB"),
    "en_US-amy-medium": _voice("en/en_US/amy/medium/en_US-amy-medium", 63201294),
    "en_US-ryan-medium": _voice("en/en_US/ryan/medium/en_US-ryan-medium", "63 MB"),
    "en_GB-alan-medium": _voice("en/en_GB/alan/medium/en_GB-alan-medium", "63 MB"),
}

#: Voices added to the repository after the ``v1.0.0`` tag (``enfoads.models.voices`` pins them to ``main``).
PIPER_VOICES_AFTER_V1: tuple[str, ...] = ("es_AR-daniela-high",)

PIPER_SOURCES = (
    f"{HF}/{PIPER_REPO}/tree/5e74c24a88ed7d31e308633fa1542433ce2b28d4",
    f"{HF}/{PIPER_REPO}/tree/0c9c5d340496a47205a799eb046aab69334a88e9/_script",
    f"{HF}/{PIPER_REPO}/tree/3d796cc2f2c884b3517c527507e084f7bb245aea/es/es_MX/claude/high",
    f"{HF}/{PIPER_REPO}/tree/refs%2Fpr%2F6/es/es_ES/sharvard/medium/samples",
    f"{HF}/{PIPER_REPO}/tree/main/en/en_US/ryan/high/samples",
    "github code search: en_US-amy-medium.onnx at v1.0.0 is 63,201,294 bytes",
)

#: Commit ids behind the Piper revisions the voice catalogue uses, where found (ref -> 40-hex commit).
#: Empty: neither the commit ``v1.0.0`` points to nor the ``main`` commit that holds es_AR-daniela-high
#: could be read from a source; see PIPER_COMMIT_FINDINGS. Filled in, the replicas publish these ids.
PIPER_COMMITS: dict[str, str] = {}

PIPER_COMMIT_FINDINGS = """\
Not found: no stored page or file shows which commit the v1.0.0 tag of rhasspy/piper-voices points to, nor
the commit of main used for es_AR-daniela-high (searched: tree/commits pages of the tag, resolve/v1.0.0
download lists, HF cache snapshot paths in public code, issue threads).
What was seen (main's history, oldest first, short ids from commit-history pages): 449c115 "initial commit"
(2023-06-22), 5227e41 "Add v1.0 and v0.2 voices" (2023-06-26), 4c86fd0 "Include speaker info in voices.json",
d910c81 "Fix x-low on carlfm", 3740805 "Fix piper_version", c8a0bb3 "voicefest" (2023-06-27), 2525f22
"Add aliases" (2023-07-13), 215cce7 "Update configs and add samples", 0c9c5d3 "Add cori, kristin, ljspeech,
claude" (2024-03-12: es_MX-claude-high, so v1.0.0 cannot be older than this if it holds that voice, as the
voice catalogue assumes). Full ids of later snapshots that public code loads voices from (the ref they came
from is not shown): 3d796cc2f2c884b3517c527507e084f7bb245aea, 7a6c333ec560f0e688371adc2fbb7bbe105028c6,
0d907f158acc877ddeebcbf827659ee13bea8bcd, b710b0ba0740da88dc36e1ab8fa6b310d43a3a48.
To pin by commit, read them from the hub: HfApi().list_repo_refs("rhasspy/piper-voices").tags.
"""


def piper_listing(revision: str, voices: tuple[str, ...] | None = None) -> RepoListing:
    """The replicated part of rhasspy/piper-voices at ``revision`` (``v1.0.0`` or ``main``).

    ``v1.0.0`` holds every catalogued voice but those added after it; ``main`` holds them all.
    """
    names = tuple(voices if voices is not None else PIPER_VOICE_FILES)
    if revision != "main":
        names = tuple(n for n in names if n not in PIPER_VOICES_AFTER_V1)
    files = PIPER_TOP_LEVEL + tuple(f for n in names for f in PIPER_VOICE_FILES[n])
    claude = PIPER_VOICE_FILES["es_MX-claude-high"]
    return RepoListing(
        PIPER_REPO,
        revision,
        tuple(sorted(files, key=lambda f: f.path)),
        verified=False,
        sources=PIPER_SOURCES,
        unverified_paths=tuple(sorted(f.path for f in files if f not in PIPER_TOP_LEVEL and f not in claude)),
        note=(
            "Only the catalogued voices' folders and the top-level files are listed (the repository holds many"
            " more languages). Top level (.gitattributes, README.md, voices.json, _script/voice_names.sh,"
            " _script/voicefest.py) read on tree pages of main's history; the tag's own tree was not found."
            " es_MX-claude-high's folder was read on a tree page (MODEL_CARD, .onnx, .onnx.json, samples/);"
            " the other folders are reconstructed on that layout (es_ES-sharvard-medium has two speakers,"
            " speaker_0/1.mp3, seen on its samples page)."
        ),
    )


LISTINGS: dict[str, RepoListing] = {
    lst.repo_id: lst
    for lst in (
        _sdxl_base(),
        _sdxl_lightning(),
        _sdxl_vae_fp16_fix(),
        _sd_turbo(),
        _whisper_turbo(),
        _whisper_small(),
        _inswapper(),
    )
}


def listing(repo_id: str, revision: str) -> RepoListing:
    """The real file list of ``repo_id`` at ``revision``; KeyError when this data has none for it."""
    if repo_id == PIPER_REPO:
        return piper_listing(revision)
    lst = LISTINGS[repo_id]
    if lst.revision != revision:
        raise KeyError(
            f"replica_files lists {repo_id} at {lst.revision}, not at {revision}: read the real file list"
            " at the new pin and update enfoads/testing/replica_files.py"
        )
    return lst
