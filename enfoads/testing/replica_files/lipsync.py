"""The real file lists of MuseTalk 1.5's three repositories: TMElyralab/MuseTalk, sd-vae-ft-mse, whisper-tiny.

The catalogue reads three files of MuseTalk's repository and two or three of
each other's; every other path is listed so the replicas hold the real
repositories' shape (the hub's ``allow_patterns`` must pick exactly the
catalogue's files out of them).
"""
from __future__ import annotations

from enfoads.models.catalog_lipsync import REV_MUSETALK, REV_SD_VAE_FT_MSE, REV_WHISPER_TINY, UNET_BYTES
from enfoads.testing.replica_files.base import HF, F, RepoListing


def _musetalk() -> RepoListing:
    repo = "TMElyralab/MuseTalk"
    files = (
        F(".gitattributes", "1.52 kB"),
        F("README.md", "11.1 kB"),
        F("musetalk/musetalk.json", 748),
        F("musetalk/pytorch_model.bin", 3_400_076_549, lfs=True),
        F("musetalkV15/musetalk.json", None),
        F("musetalkV15/unet.pth", UNET_BYTES, lfs=True),
    )
    return RepoListing(
        repo, REV_MUSETALK, files, verified=False,
        sources=(
            f"{HF}/{repo}/tree/main (before 1.5: .gitattributes, README.md, musetalk/)",
            f"{HF}/DemonSaint/MuseTalk/tree/main (a duplicate of the repository with musetalkV15/, 6.8 GB)",
            "github code search: download scripts and manifests pinning " + REV_MUSETALK + " with"
            " musetalkV15/unet.pth 3,400,074,924 bytes, sha256 7ebf6c98... and musetalkV15/musetalk.json sha256"
            " 5b6923ae...; musetalk/pytorch_model.bin 3,400,076,549 bytes (an LFS pointer)",
        ),
        note=("Best reconstruction: no tree page of the pin itself is stored. musetalkV15/musetalk.json's size is"
              " not published (its sha256 is); musetalk/musetalk.json is 748 bytes on a copy of the repository."),
    )


def _sd_vae_ft_mse() -> RepoListing:
    repo = "stabilityai/sd-vae-ft-mse"
    files = (
        F(".gitattributes", "1.38 kB"),
        F("README.md", "6.08 kB"),
        F("config.json", 547),
        F("diffusion_pytorch_model.bin", "335 MB", lfs=True),
        F("diffusion_pytorch_model.safetensors", "335 MB", lfs=True),
    )
    return RepoListing(
        repo, REV_SD_VAE_FT_MSE, files, verified=False,
        sources=(
            f"{HF}/{repo}/commits/main: 'Adding safetensors variant of this model (#4)' (651c6dc) then README fixes",
            "github code search: " + REV_SD_VAE_FT_MSE + " in many cache paths (snapshots/<commit>); config.json"
            " sha256 92d3dfb7...; diffusion_pytorch_model.bin sha256 1b4889b6... (335 MB)",
        ),
        note="Best reconstruction: the file names are the repository's since the safetensors commit; sizes rounded.",
        unverified_paths=("README.md",),
    )


def _whisper_tiny() -> RepoListing:
    repo = "openai/whisper-tiny"
    files = (
        F(".gitattributes", "1.44 kB"),
        F("README.md", "19.8 kB"),
        F("added_tokens.json", "34.6 kB"),
        F("config.json", "1.98 kB"),
        F("flax_model.msgpack", "151 MB", lfs=True),
        F("generation_config.json", "3.75 kB"),
        F("merges.txt", "494 kB"),
        F("model.safetensors", "151 MB", lfs=True),
        F("normalizer.json", "52.7 kB"),
        F("preprocessor_config.json", "185 kB"),
        F("pytorch_model.bin", "151 MB", lfs=True),
        F("special_tokens_map.json", "2.19 kB"),
        F("tf_model.h5", "151 MB", lfs=True),
        F("tokenizer.json", "2.48 MB"),
        F("tokenizer_config.json", "283 kB"),
        F("vocab.json", "1.04 MB"),
    )
    return RepoListing(
        repo, REV_WHISPER_TINY, files, verified=True,
        sources=(f"{HF}/{repo}/tree/main (main at 169d4a4, 'Add missing merge to tokenizer (#40)', verified)",),
        note="The stored tree page is cut after pytorch_model.bin; the five files after it are whisper's usual set.",
        unverified_paths=("special_tokens_map.json", "tf_model.h5", "tokenizer.json", "tokenizer_config.json",
                          "vocab.json"),
    )
