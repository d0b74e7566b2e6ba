"""Tiny enhance models: random weights in the release files' own key layouts, which spandrel detects.

``build_into(folder, seed)`` (recipe ``tiny-upscalers``) writes::

    folder/RealESRGAN_x4plus.pth        {"params_ema": RRDBNet state dict}: conv_first, body.N.rdbM.convK,
                                        conv_body, conv_up1, conv_up2, conv_hr, conv_last (8 features, 1 block, growth 32)
    folder/realesr-general-x4v3.pth     {"params": SRVGGNetCompact state dict}: body.N (8 features, 2 convs)

``build_gfpgan_into(folder, seed)`` (recipe ``tiny-gfpgan``) writes
``folder/GFPGANv1.4.pth``, ``{"params_ema": GFPGANv1Clean state dict}``: the
real architecture (spandrel fixes its hyperparameters, so nothing smaller
loads) with random weights, in half precision to halve the file (174 MB;
spandrel's loader copies it into float32 parameters, as it would the release).

The architectures are spandrel's own classes, so the key names are exactly
what its detectors look for, and the files load through the product's one
loader (``enfoads.models.loaders.upscale``) like the real ones.
"""
from __future__ import annotations

from pathlib import Path

UPSCALER_FILES = ("RealESRGAN_x4plus.pth", "realesr-general-x4v3.pth")
GFPGAN_FILE = "GFPGANv1.4.pth"


def _rrdbnet_state(seed: int) -> dict:
    """RRDBNet in Real-ESRGAN's key names (spandrel's class keeps the old ESRGAN "model.N" names)."""
    import torch

    torch.manual_seed(seed)
    nf, gc = 8, 32  # spandrel reads the growth channels as 32, as every ESRGAN release has

    def conv(cin: int, cout: int) -> dict:
        return {"weight": torch.randn(cout, cin, 3, 3) * (0.5 / (cin * 9) ** 0.5), "bias": torch.zeros(cout)}

    state: dict = {}

    def put(prefix: str, layer: dict) -> None:
        for name, tensor in layer.items():
            state[f"{prefix}.{name}"] = tensor

    put("conv_first", conv(3, nf))
    for rdb in (1, 2, 3):
        for k in range(1, 6):
            put(f"body.0.rdb{rdb}.conv{k}", conv(nf + (k - 1) * gc, gc if k < 5 else nf))
    put("conv_body", conv(nf, nf))
    put("conv_up1", conv(nf, nf))
    put("conv_up2", conv(nf, nf))
    put("conv_hr", conv(nf, nf))
    put("conv_last", conv(nf, 3))
    return state


def _compact_state(seed: int) -> dict:
    import torch
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(seed + 1)
    return Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=4).state_dict()


def build_into(folder: Path, seed: int = 0) -> None:
    import torch

    folder = Path(folder)
    torch.save({"params_ema": _rrdbnet_state(seed)}, folder / UPSCALER_FILES[0])
    torch.save({"params": _compact_state(seed)}, folder / UPSCALER_FILES[1])


def build_gfpgan_into(folder: Path, seed: int = 0) -> None:
    import torch
    from spandrel.architectures.GFPGAN import GFPGAN

    torch.manual_seed(seed)
    # The hyperparameters spandrel's GFPGANArch.load builds with (v1.4's).
    model = GFPGAN(out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None,
                   fix_decoder=False, num_mlp=8, input_is_latent=True, different_w=True, narrow=1, sft_half=True)
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save({"params_ema": state}, Path(folder) / GFPGAN_FILE)
