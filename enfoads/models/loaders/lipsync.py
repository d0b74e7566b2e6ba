"""Load MuseTalk 1.5: its UNet, the sd-vae-ft-mse VAE and the whisper-tiny encoder.

The same function loads the real release (MuseTalk's ``models/`` folder) and
the tiny kit's random weights (``enfoads.models.tiny.musetalk``); only the
folder differs. torch, diffusers and transformers are imported inside the
functions, so importing this module stays cheap.

The release ships the UNet as ``unet.pth``, a 3.4 GB fp32 pickle. It is
read once, with ``weights_only=True`` (a pickle that holds code is refused,
not run) and ``mmap=True`` (the file is not copied into host RAM), checked
against the UNet the config builds, and written as
``converted_dir/unet.fp16.safetensors`` (1.7 GB) next to a marker recording
the source's size and mtime, so a changed source is converted again. Every
later load reads only the safetensors file, straight onto the device, into
a UNet built on the meta device (no random init of 800 M parameters).

Layout of a MuseTalk ``models/`` folder (:func:`musetalk_paths`)::

    root/musetalkV15/musetalk.json   root/musetalkV15/unet.pth
    root/sd-vae/                     (stabilityai/sd-vae-ft-mse, diffusers)
    root/whisper/                    (openai/whisper-tiny, transformers)
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path

_DTYPES = ("float16", "float32")
CONVERTED_UNET = "unet.fp16.safetensors"
CONVERTED_MARKER = "unet.fp16.json"
POSITIONAL_MAX_LEN = 5000  # MuseTalk's PositionalEncoding default; a window is 50 tokens

#: MuseTalk 1.5's ``models/musetalkV15/musetalk.json``, as released.
MUSETALK_UNET_CONFIG = {
    "_class_name": "UNet2DConditionModel",
    "_diffusers_version": "0.6.0.dev0",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 384,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 8,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}


class NotAMuseTalkUNet(ValueError):
    """A UNet file that is not a plain tensor state dict matching the MuseTalk UNet config."""


def musetalk_paths(root) -> dict:
    """The ``paths`` of :func:`load_musetalk` in a MuseTalk ``models/`` folder (real or tiny)."""
    root = Path(root)
    return {
        "unet_config": root / "musetalkV15" / "musetalk.json",
        "unet": root / "musetalkV15" / "unet.pth",
        "vae": root / "sd-vae",
        "whisper": root / "whisper",
    }


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{what} not found at {path}; run `enfoads preload` to download it")
    return path


def _dtype_for(device: str, dtype: str):
    """float16 only where it runs fast and is supported by every op here: CUDA."""
    import torch

    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
    return getattr(torch, dtype) if torch.device(device).type == "cuda" else torch.float32


def sinusoidal_positions(d_model: int, max_len: int = POSITIONAL_MAX_LEN):
    """MuseTalk's ``PositionalEncoding``: adds sin/cos positions (interleaved) to (batch, tokens, d_model).

    The class is made here so that this module imports without torch.
    """
    import math

    import torch

    class SinusoidalPositions(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
            frequency = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
            table = torch.zeros(max_len, d_model)
            table[:, 0::2] = torch.sin(position * frequency)
            table[:, 1::2] = torch.cos(position * frequency)
            self.register_buffer("pe", table.unsqueeze(0))

        def forward(self, x):
            return x + self.pe[:, : x.shape[1]].to(x.dtype)

    return SinusoidalPositions()


class MuseTalkModels:
    """Everything MuseTalk 1.5 runs, on one device in one dtype.

    ``unet`` (diffusers UNet2DConditionModel), ``vae`` (AutoencoderKL),
    ``whisper_encoder`` (transformers WhisperEncoder; the decoder is not
    kept), ``features`` (WhisperFeatureExtractor), ``positional`` (the
    sinusoidal encoding added to the audio tokens), ``device`` (str) and
    ``dtype`` (torch dtype: float16 only on CUDA, float32 elsewhere).
    """

    def __init__(self, *, unet, vae, whisper_encoder, features, positional, device: str, dtype,
                 cuda_dtype: str = "float16") -> None:
        self.unet = unet
        self.vae = vae
        self.whisper_encoder = whisper_encoder
        self.features = features
        self.positional = positional
        self.device = str(device)
        self.dtype = dtype
        self.cuda_dtype = cuda_dtype  # what was asked for, used again whenever the models go to CUDA

    def modules(self) -> tuple:
        return (self.unet, self.vae, self.whisper_encoder, self.positional)

    def to(self, device) -> MuseTalkModels:
        import torch

        device = str(device)
        dtype = _dtype_for(device, self.cuda_dtype)
        for module in self.modules():
            # torch's own .to: diffusers' override only adds a warning about fp32-pinned modules, which these lack
            torch.nn.Module.to(module, device=device, dtype=dtype)
        self.device, self.dtype = device, dtype
        return self

    def parameter_bytes(self) -> int:
        seen: set[int] = set()
        total = 0
        for module in self.modules():
            for tensor in list(module.parameters()) + list(module.buffers()):
                if id(tensor) not in seen:
                    seen.add(id(tensor))
                    total += tensor.numel() * tensor.element_size()
        return total


# --------------------------------------------------------------------------- the UNet


def _read_unet_config(path: Path) -> dict:
    try:
        config = json.loads(_require(path, "MuseTalk UNet config").read_text())
    except ValueError as exc:
        raise ValueError(f"{path} is not a JSON UNet config: {exc}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} is not a JSON UNet config (not an object)")
    return config


def _empty_unet(config: dict):
    """The UNet the config describes, with no storage (parameters on the meta device)."""
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel

    with init_empty_weights():
        return UNet2DConditionModel.from_config(config)


def _plain_state_dict(loaded, source: Path) -> dict:
    import torch

    def is_tensors(obj) -> bool:
        return isinstance(obj, dict) and bool(obj) and all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())

    if is_tensors(loaded):
        return loaded
    # Training scripts sometimes wrap the state dict once; nothing deeper is guessed.
    if isinstance(loaded, dict):
        for key in ("state_dict", "module"):
            if is_tensors(loaded.get(key)):
                return loaded[key]
    raise NotAMuseTalkUNet(f"{source} is not a MuseTalk UNet: it holds a {type(loaded).__name__}, "
                           "not a state dict of tensors")


def _check_keys(state: dict, config: dict, source: Path) -> None:
    expected = {k: tuple(v.shape) for k, v in _empty_unet(config).state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        examples = ", ".join((missing + unexpected)[:3])
        raise NotAMuseTalkUNet(f"{source} does not match the MuseTalk UNet config: {len(missing)} missing and "
                               f"{len(unexpected)} unexpected tensors (e.g. {examples})")
    for name, shape in expected.items():
        if tuple(state[name].shape) != shape:
            raise NotAMuseTalkUNet(f"{source}: {name} has shape {tuple(state[name].shape)}, the config's UNet {shape}")


def _source_stamp(source: Path, config: dict) -> dict:
    stat = source.stat()
    config_hash = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    return {"source": source.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "config": config_hash}


def _write_atomically(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the models folder is shared like the rest
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _half_precision_state(source: Path, config: dict) -> dict:
    """``source``'s tensors in float16, after checking they are the config's UNet's."""
    import torch

    try:
        # mmap needs torch's zip format (every torch since 1.6 writes it); an older file is read whole.
        loaded = torch.load(source, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(source))
    except pickle.UnpicklingError:
        raise NotAMuseTalkUNet(f"{source} is not a MuseTalk UNet: it pickles objects other than tensors, "
                               "which are refused (unpickling them could run code)") from None
    except Exception as exc:  # not a torch file at all: truncated, a zip of something else, text...
        raise NotAMuseTalkUNet(f"{source} is not a MuseTalk UNet: not a PyTorch checkpoint "
                               f"({type(exc).__name__}: {str(exc).strip()[:200]})") from None
    state = _plain_state_dict(loaded, source)
    _check_keys(state, config, source)
    return {k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous() for k, v in state.items()}


def converted_unet(source, config: dict, converted_dir) -> Path:
    """``converted_dir/unet.fp16.safetensors`` for ``source`` (a MuseTalk ``unet.pth``), converting it if needed.

    Reconverts when the source's size or mtime, or the config, differ from
    the marker's. Raises :class:`NotAMuseTalkUNet` for a file that is not a
    plain tensor state dict or does not match ``config``.
    """
    from safetensors.torch import save_file

    source = _require(Path(source), "MuseTalk UNet weights")
    converted_dir = Path(converted_dir)
    target, marker = converted_dir / CONVERTED_UNET, converted_dir / CONVERTED_MARKER
    stamp = _source_stamp(source, config)
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError):
        recorded = None
    if target.is_file() and recorded == {**stamp, "converted_size": target.stat().st_size}:
        return target

    half = _half_precision_state(source, config)
    converted_dir.mkdir(parents=True, exist_ok=True)
    metadata = {"format": "pt", "source": source.name}
    _write_atomically(target, functools.partial(save_file, half, metadata=metadata))
    del half
    record = {**stamp, "converted_size": target.stat().st_size}
    _write_atomically(marker, lambda tmp: Path(tmp).write_text(json.dumps(record)))
    return target


def load_musetalk_unet(config: dict, weights, *, device: str, dtype):
    """The UNet from ``config`` with a converted safetensors file's weights, on ``device`` in ``dtype``."""
    from safetensors.torch import load_file

    weights = Path(weights)
    unet = _empty_unet(config)
    state = load_file(str(weights), device=str(device))
    for name in list(state):  # cast one by one: each file tensor is freed as its cast lands
        state[name] = state[name].to(dtype) if state[name].is_floating_point() else state[name]
    missing, unexpected = unet.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise NotAMuseTalkUNet(f"{weights} does not match the MuseTalk UNet config: {len(missing)} missing and "
                               f"{len(unexpected)} unexpected tensors")
    del state
    unet = unet.to(device)
    if any(t.device.type == "meta" for t in list(unet.parameters()) + list(unet.buffers())):
        raise NotAMuseTalkUNet(f"{weights} left UNet tensors uninitialised")
    unet.eval().requires_grad_(False)
    return unet


# --------------------------------------------------------------------------- everything


def load_musetalk(paths: dict, *, device: str, dtype: str, converted_dir: Path) -> MuseTalkModels:
    """MuseTalk 1.5's models from local files (nothing is fetched).

    Args:
        paths: ``unet_config`` (musetalk.json), ``unet`` (unet.pth), ``vae``
            (diffusers folder), ``whisper`` (transformers folder); see
            :func:`musetalk_paths`.
        dtype: ``"float16"`` or ``"float32"``; float32 whatever is asked off CUDA.
        converted_dir: where the fp16 safetensors copy of ``unet.pth`` lives.
    """
    from diffusers import AutoencoderKL
    from transformers import WhisperFeatureExtractor, WhisperModel

    torch_dtype = _dtype_for(device, dtype)
    config = _read_unet_config(Path(paths["unet_config"]))
    weights = converted_unet(paths["unet"], config, converted_dir)
    unet = load_musetalk_unet(config, weights, device=device, dtype=torch_dtype)

    vae_dir = _require(Path(paths["vae"]), "MuseTalk VAE folder (sd-vae-ft-mse)")
    vae = AutoencoderKL.from_pretrained(vae_dir, torch_dtype=torch_dtype, local_files_only=True)
    vae = vae.to(device).eval().requires_grad_(False)

    whisper_dir = _require(Path(paths["whisper"]), "MuseTalk whisper folder (whisper-tiny)")
    whisper = WhisperModel.from_pretrained(whisper_dir, dtype=torch_dtype, local_files_only=True)
    encoder = whisper.encoder
    del whisper  # the decoder goes with it: only the encoder's hidden states are used
    encoder = encoder.to(device).eval().requires_grad_(False)
    features = WhisperFeatureExtractor.from_pretrained(whisper_dir, local_files_only=True)

    positional = sinusoidal_positions(encoder.config.d_model).to(device=device, dtype=torch_dtype)
    if encoder.config.d_model != unet.config.cross_attention_dim:
        raise ValueError(f"whisper's d_model ({encoder.config.d_model}) differs from the UNet's cross-attention "
                         f"width ({unet.config.cross_attention_dim}): not a MuseTalk set")
    return MuseTalkModels(unet=unet, vae=vae, whisper_encoder=encoder, features=features, positional=positional,
                          device=str(device), dtype=torch_dtype, cuda_dtype=dtype)
