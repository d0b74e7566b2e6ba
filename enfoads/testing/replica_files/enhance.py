"""The real release files of the enhance models: Real-ESRGAN's three and GFPGAN v1.4 (GitHub release assets).

Names, sizes and sha256 are the ones many independent projects pin for
these URLs (download scripts, model registries and verified manifests
agree); the wrapper key of each state dict is the one Real-ESRGAN's and
GFPGAN's own loaders read (``params_ema`` for the RRDBNet and GFPGAN
files, ``params`` for the compact model).
"""
from __future__ import annotations

from enfoads.testing.replica_files.base import ReleaseFileListing

_ESRGAN = "https://github.com/xinntao/Real-ESRGAN/releases/download"
_GFPGAN = "https://github.com/TencentARC/GFPGAN/releases/download"
_PINNED = ("github code search: download scripts and model registries pinning this URL with this sha256 and size",)

RELEASE_FILES: dict[str, ReleaseFileListing] = {
    f.name: f
    for f in (
        ReleaseFileListing("RealESRGAN_x4plus.pth", f"{_ESRGAN}/v0.1.0/RealESRGAN_x4plus.pth", 67_040_989,
                           "4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1", "ESRGAN", "params_ema",
                           verified=True, sources=_PINNED),
        ReleaseFileListing("RealESRGAN_x4plus_anime_6B.pth", f"{_ESRGAN}/v0.2.2.4/RealESRGAN_x4plus_anime_6B.pth",
                           17_938_799, "f872d837d3c90ed2e05227bed711af5671a6fd1c9f7d7e91c911a61f155e99da", "ESRGAN",
                           "params_ema", verified=True, sources=_PINNED),
        ReleaseFileListing("realesr-general-x4v3.pth", f"{_ESRGAN}/v0.2.5.0/realesr-general-x4v3.pth", 4_885_111,
                           "8dc7edb9ac80ccdc30c3a5dca6616509367f05fbc184ad95b731f05bece96292", "Compact", "params",
                           verified=True, sources=_PINNED,
                           note="top-level keys ['params'], 101 tensors (an inventory of the downloaded file)"),
        ReleaseFileListing("GFPGANv1.4.pth", f"{_GFPGAN}/v1.3.0/GFPGANv1.4.pth", 348_632_874,
                           "e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad", "GFPGAN", "params_ema",
                           verified=True, sources=_PINNED,
                           note="also attached to the v1.3.4 release, byte for byte (same sha256)"),
    )
}
