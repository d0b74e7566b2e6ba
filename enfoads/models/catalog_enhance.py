"""The enhance models: Real-ESRGAN upscalers and GFPGAN face restoration, loaded through spandrel.

Each is one ``.pth`` from its authors' GitHub release (the files A1111,
ComfyUI and InvokeAI download), pinned by URL, size and the sha256 that many
independent projects publish for it. They land in ``enhance/<id>/`` of the
models dir, never in ``upscale/``: that folder is the user's, for drop-in
models (``enfoads.models.user_upscalers``).

Memory: the catalogue books the weights (fp16 where spandrel says the
architecture supports it). A tile's activations are working memory of one
run on the one GPU worker, covered by the profile's ``gpu_reserve_gb`` like
SDXL's: RRDBNet x4 on a 512 px tile (+32 px overlap each side) peaks at its
last convolutions, 64 channels at 2304 x 2304 in fp16 (0.68 GB a map, about
two alive), so about 1.5 GB, under the T4 profile's 2.5 GB reserve; a tile
that still runs out is halved (``enfoads.services.upscale_tiles``).
"""
from __future__ import annotations

from enfoads.models.catalog_types import GB, MB, ModelEntry, UrlFile

LICENCE_REAL_ESRGAN = "BSD-3-Clause (Real-ESRGAN code and released weights)"
# GFPGAN's LICENSE: Apache-2.0 except listed third-party parts; the "clean" architecture spandrel
# builds avoids the StyleGAN2 CUDA ops under NVIDIA's licence.
LICENCE_GFPGAN = "Apache-2.0 (GFPGAN v1.4; the clean architecture, without StyleGAN2's NVIDIA-licensed CUDA ops)"
LICENCE_TINY = "Apache-2.0"

REAL_ESRGAN_RELEASES = "https://github.com/xinntao/Real-ESRGAN/releases/download"
GFPGAN_RELEASES = "https://github.com/TencentARC/GFPGAN/releases/download"

#: Roles of the enhance models in a profile.
UPSCALE, RESTORE = "upscale", "restore"


def _release_file(model_id: str, url: str, sha256: str, size: int) -> dict:
    return {"model": UrlFile(url, unpack_to=f"enhance/{model_id}", sha256=sha256, bytes=size)}


def _upscaler(model_id: str, description: str, *, url: str, sha256: str, size: int, parameters: int,
              speed: str) -> ModelEntry:
    return ModelEntry(
        id=model_id,
        role=UPSCALE,
        runtime="torch",
        loader="spandrel",
        description=description,
        licence=LICENCE_REAL_ESRGAN,
        download_bytes=size,
        # fp16 weights on the GPU plus cuDNN's workspace for the tile's convolutions.
        vram_bytes=int(parameters * 2 + 60 * MB),
        ram_bytes=int(parameters * 4 + 20 * MB),
        # spandrel: torch.load of the file onto the CPU (the state dict, fp32), the model built
        # on the CPU beside it, then moved: twice the file, + a margin.
        staging_bytes=int(2 * size + 20 * MB),
        sources=_release_file(model_id, url, sha256, size),
        options={"file": url.rsplit("/", 1)[-1], "scale": 4, "speed": speed},
    )


def _tiny(model_id: str, role: str, description: str, *, recipe: str, file: str, scale: int, footprint: int,
          **options) -> ModelEntry:
    return ModelEntry(id=model_id, role=role, runtime="torch", loader="spandrel", description=description,
                      licence=LICENCE_TINY, download_bytes=0, vram_bytes=footprint, ram_bytes=footprint, tiny=recipe,
                      options={"file": file, "scale": scale, **options})


ENHANCE_ENTRIES: tuple[ModelEntry, ...] = (
    _upscaler(
        "realesrgan-x4plus",
        "Real-ESRGAN x4plus (RRDBNet, 23 blocks): photos, x4; the default upscaler on a GPU",
        url=f"{REAL_ESRGAN_RELEASES}/v0.1.0/RealESRGAN_x4plus.pth",
        sha256="4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1",
        size=67_040_989, parameters=16_697_987, speed="quality",
    ),
    _upscaler(
        "realesrgan-x4plus-anime-6b",
        "Real-ESRGAN x4plus anime (RRDBNet, 6 blocks): illustration and anime, x4",
        url=f"{REAL_ESRGAN_RELEASES}/v0.2.2.4/RealESRGAN_x4plus_anime_6B.pth",
        sha256="f872d837d3c90ed2e05227bed711af5671a6fd1c9f7d7e91c911a61f155e99da",
        size=17_938_799, parameters=4_467_843, speed="quality",
    ),
    _upscaler(
        "realesr-general-x4v3",
        "Real-ESRGAN general x4v3 (SRVGGNetCompact): fast x4 for photos and video; the CPU default",
        url=f"{REAL_ESRGAN_RELEASES}/v0.2.5.0/realesr-general-x4v3.pth",
        sha256="8dc7edb9ac80ccdc30c3a5dca6616509367f05fbc184ad95b731f05bece96292",
        size=4_885_111, parameters=1_213_296, speed="fast",
    ),
    ModelEntry(
        id="gfpgan-v1.4",
        role=RESTORE,
        runtime="torch",
        loader="spandrel",
        description="GFPGAN v1.4 (TencentARC): blind face restoration at 512 px, after upscaling or a face swap",
        licence=LICENCE_GFPGAN,
        download_bytes=348_632_874,
        # spandrel marks GFPGAN fp16-unsafe: float32 (bf16 only on GPUs that have it; not a T4).
        vram_bytes=int(0.40 * GB),
        ram_bytes=int(0.38 * GB),
        staging_bytes=int(0.75 * GB),
        sources=_release_file("gfpgan-v1.4", f"{GFPGAN_RELEASES}/v1.3.0/GFPGANv1.4.pth",
                              "e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad", 348_632_874),
        options={"file": "GFPGANv1.4.pth", "scale": 1, "size": 512},
    ),
    _tiny("tiny-realesrgan-x4plus", UPSCALE, "Tiny random-weight Real-ESRGAN x4plus (RRDBNet, the release "
          "file's key layout; outputs noise)", recipe="tiny-upscalers", file="RealESRGAN_x4plus.pth", scale=4,
          footprint=int(0.2 * MB), speed="quality"),
    _tiny("tiny-realesr-general-x4v3", UPSCALE, "Tiny random-weight realesr-general-x4v3 (SRVGGNetCompact layout; "
          "outputs noise)", recipe="tiny-upscalers", file="realesr-general-x4v3.pth", scale=4, footprint=int(0.1 * MB),
          speed="fast"),
    # spandrel fixes GFPGAN's hyperparameters (512 px, 512 style features): no smaller version loads,
    # so this is the real architecture with random weights, saved in half precision.
    _tiny("tiny-gfpgan", RESTORE, "Random-weight GFPGAN v1.4 architecture (full size, fp16 file; outputs noise)",
          recipe="tiny-gfpgan", file="GFPGANv1.4.pth", scale=1, footprint=int(0.34 * GB), size=512),
)
