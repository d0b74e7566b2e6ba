"""Hardware profiles: which model, dtype, device and sizes each role uses.

A profile is data. ``auto`` picks one from the detected hardware: a CUDA
device gets the GPU profile (``t4`` is the tuned one), a CPU gets ``cpu``.
``tiny`` uses the tiny kit's random weights through the same loaders, on a
GPU when there is one (or a simulated GPU budget), else on the CPU.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Mapping

GIB = 1024**3

ROLES = ("image", "faces", "swapper", "speech", "tts", "upscale", "restore", "lipsync")


@dataclass(frozen=True)
class RoleChoice:
    """The model one role uses in a profile, and how it runs."""

    model_id: str
    # "gpu": on the GPU tier whenever there is a GPU budget; "cpu": always on the CPU.
    device: str
    dtype: str  # torch dtype name, or a CTranslate2 compute_type
    options: Mapping = field(default_factory=dict)  # sizes and defaults


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    roles: Mapping[str, RoleChoice]
    # VRAM kept free for activations, the CUDA context and other processes.
    gpu_reserve_gb: float = 0.0
    # Host RAM kept free for Python, Flask, the OS and Colab's own processes.
    ram_reserve_gb: float = 2.0
    requires_cuda: bool = False


def _roles(**choices: RoleChoice) -> Mapping[str, RoleChoice]:
    return MappingProxyType(dict(choices))


# Upscaling tiles: side, context on each side, and the floor halving stops at (enfoads.services.upscale_tiles).
_UPSCALE_TILES = MappingProxyType({"tile": 512, "overlap": 32, "min_tile": 64})


_GPU_ROLES = _roles(
    image=RoleChoice("sdxl-lightning-4step", "gpu", "float16", {"width": 1024, "height": 1024, "steps": 4}),
    faces=RoleChoice("buffalo_l", "gpu", "float32", {"det_size": (640, 640)}),
    swapper=RoleChoice("inswapper_128", "gpu", "float32"),
    speech=RoleChoice("faster-whisper-large-v3-turbo", "gpu", "float16", {"beam_size": 5}),
    tts=RoleChoice("espeak-ng", "cpu", "none"),
    # Tiles of 512 px with 32 px of context: the x4 output of one tile fits the T4 reserve.
    upscale=RoleChoice("realesrgan-x4plus", "gpu", "float16", _UPSCALE_TILES),
    restore=RoleChoice("gfpgan-v1.4", "gpu", "float32", {"size": 512}),
    # Frames per UNet batch: MuseTalk's own default; 16 is measured by bench/gpu_proof.py.
    lipsync=RoleChoice("musetalk-1.5", "gpu", "float16", {"batch_size": 8}),
)

_T4 = Profile(
    name="t4",
    description="NVIDIA T4 (Colab free tier): 15 GB VRAM, ~12 GB host RAM; fp16 everywhere",
    roles=_GPU_ROLES,
    # SDXL at 1024 px, batch 4, needs ~2.5 GB of activations beside its weights.
    gpu_reserve_gb=2.5,
    ram_reserve_gb=3.0,
    requires_cuda=True,
)

PROFILES: Mapping[str, Profile] = MappingProxyType(
    {
        "t4": _T4,
        "gpu": replace(
            _T4, name="gpu", description="Any other CUDA GPU: the T4 models, budget = total VRAM minus a reserve"
        ),
        "cpu": Profile(
            name="cpu",
            description="No GPU: SD-Turbo at 512 px in 1-4 steps, whisper small in int8",
            roles=_roles(
                image=RoleChoice("sd-turbo", "cpu", "float32", {"width": 512, "height": 512, "steps": 2}),
                faces=RoleChoice("buffalo_l", "cpu", "float32", {"det_size": (640, 640)}),
                swapper=RoleChoice("inswapper_128", "cpu", "float32"),
                speech=RoleChoice("faster-whisper-small", "cpu", "int8", {"beam_size": 1}),
                tts=RoleChoice("espeak-ng", "cpu", "none"),
                # The compact model: ~15x fewer operations than RRDBNet, the one a CPU can run.
                upscale=RoleChoice("realesr-general-x4v3", "cpu", "float32", _UPSCALE_TILES),
                restore=RoleChoice("gfpgan-v1.4", "cpu", "float32", {"size": 512}),
                lipsync=RoleChoice("musetalk-1.5", "cpu", "float32", {"batch_size": 4}),
            ),
        ),
        "tiny": Profile(
            name="tiny",
            description="Tiny random-weight models of the real architectures: offline, any machine, noise outputs",
            roles=_roles(
                image=RoleChoice("tiny-sdxl-lightning", "gpu", "float32", {"width": 64, "height": 64, "steps": 4}),
                faces=RoleChoice("tiny-buffalo_l", "gpu", "float32", {"det_size": (640, 640)}),
                swapper=RoleChoice("tiny-inswapper_128", "gpu", "float32"),
                speech=RoleChoice("tiny-whisper", "gpu", "int8", {"beam_size": 1}),
                tts=RoleChoice("espeak-ng", "cpu", "none"),
                upscale=RoleChoice("tiny-realesrgan-x4plus", "gpu", "float32",
                                   {"tile": 64, "overlap": 8, "min_tile": 16}),
                restore=RoleChoice("tiny-gfpgan", "gpu", "float32", {"size": 512}),
                lipsync=RoleChoice("tiny-musetalk", "gpu", "float32", {"batch_size": 4}),
            ),
            ram_reserve_gb=0.5,
        ),
    }
)

PROFILE_NAMES = ("auto", *PROFILES)


@dataclass(frozen=True)
class Hardware:
    """What this machine has, as detected at start."""

    cuda: bool
    device_name: str
    vram_total_bytes: int
    cuda_version: str | None
    driver: str | None
    ram_total_bytes: int
    ram_available_bytes: int
    cpu_count: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def host_memory() -> tuple[int, int]:
    """(total, available) host RAM in bytes, from /proc/meminfo where present."""
    values: dict[str, int] = {}
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                name, rest = line.split(":", 1)
                values[name] = int(rest.strip().split()[0]) * 1024
    except (OSError, ValueError):
        pass
    total = values.get("MemTotal") or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return total, values.get("MemAvailable", total)


def _nvidia_driver() -> str | None:
    try:
        with open("/proc/driver/nvidia/version") as fh:
            first = fh.readline()
    except OSError:
        return None
    for word in first.split():
        if word[:1].isdigit() and word.count(".") >= 1:
            return word
    return first.strip() or None


def detect_hardware() -> Hardware:
    """Probe CUDA through torch (imported here, not at package import) and host RAM."""
    import torch

    total, available = host_memory()
    cuda = bool(torch.cuda.is_available())
    if cuda:
        props = torch.cuda.get_device_properties(0)
        name, vram = props.name, int(props.total_memory)
    else:
        name, vram = "cpu", 0
    return Hardware(
        cuda=cuda,
        device_name=name,
        vram_total_bytes=vram,
        cuda_version=torch.version.cuda if cuda else None,
        driver=_nvidia_driver() if cuda else None,
        ram_total_bytes=total,
        ram_available_bytes=available,
        cpu_count=os.cpu_count() or 1,
    )


def choose_profile(name: str, hardware: Hardware, *, simulated_gpu: bool = False) -> Profile:
    """Resolve ``auto`` from the hardware; reject a GPU profile on a machine without CUDA.

    ``simulated_gpu`` (an explicit ``ENFOADS_GPU_BUDGET_GB`` on a machine without
    CUDA) lets ``t4`` and ``gpu`` run on the CPU: the same models, selection and
    residency policy, with what a CPU forces instead of CUDA: torch in float32,
    CTranslate2 in int8, ONNX Runtime's CPU provider (see ``enfoads.models.adapters``).
    """
    if name == "auto":
        if not hardware.cuda:
            return PROFILES["cpu"]
        return PROFILES["t4" if "T4" in hardware.device_name.upper() else "gpu"]
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILE_NAMES)}")
    profile = PROFILES[name]
    if profile.requires_cuda and not hardware.cuda and not simulated_gpu:
        raise ValueError(
            f"profile {name!r} needs a CUDA GPU and none was found; use 'cpu' or 'tiny' "
            "(or set ENFOADS_GPU_BUDGET_GB to simulate a GPU on the CPU)"
        )
    return profile


def detect_profile_without_torch(nvidia_smi: str | None = None, *, timeout_s: float = 20.0) -> str:
    """``auto`` resolved from ``nvidia-smi`` alone (no torch import): ``t4``, ``gpu`` or ``cpu``.

    For a process that must stay light (the Colab kernel: the server, started
    later, is the one process that imports torch). The first GPU that
    ``nvidia-smi --query-gpu=name,memory.total --format=csv,noheader`` lists
    decides, with the same rule as :func:`choose_profile`; no ``nvidia-smi``,
    or one that fails (no driver), means ``cpu``.
    """
    import shutil
    import subprocess

    binary = nvidia_smi or shutil.which("nvidia-smi")
    name, vram = "", 0
    if binary:
        try:
            out = subprocess.run(
                [binary, "--query-gpu=name,memory.total", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=timeout_s, check=True,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        for line in out.splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) >= 2 and parts[0]:
                amount = parts[1].split()[0] if parts[1].split() else "0"  # "15360 MiB"
                try:
                    vram = int(float(amount)) * 1024**2
                except ValueError:
                    vram = 0
                name = parts[0]
                break
    total, available = host_memory()
    hardware = Hardware(bool(name), name or "cpu", vram, None, None, total, available, os.cpu_count() or 1)
    return choose_profile("auto", hardware).name
