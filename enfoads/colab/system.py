"""This runtime's hardware and system programs: the GPUs nvidia-smi reports, the profile they choose,
and the programs apt-get installs. Nothing here imports torch."""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Iterable

from enfoads.user_secrets import in_colab


@dataclass(frozen=True)
class GpuInfo:
    name: str
    vram_mib: int
    driver: str


CPU_WARNING = (
    "WARNING: this runtime has no GPU. In Colab: Runtime > Change runtime type > T4 GPU, then "
    "Runtime > Run all. Without a GPU the `cpu` profile runs (small models, slow)."
)


def detect_gpus(nvidia_smi: str | None = None) -> list[GpuInfo]:
    binary = nvidia_smi or shutil.which("nvidia-smi")
    if not binary:
        return []
    try:
        out = subprocess.run(
            [binary, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3:
            try:
                gpus.append(GpuInfo(parts[0], int(float(parts[1])), parts[2]))
            except ValueError:
                continue
    return gpus


# program -> Debian package. Not ffmpeg: videos use imageio-ffmpeg's own binary (a pip dependency).
SYSTEM_PACKAGES = {"espeak-ng": "espeak-ng"}


def ensure_system_packages(programs: Iterable[str] = tuple(SYSTEM_PACKAGES), *, run=subprocess.run) -> list[str]:
    """Install missing system programs with apt-get where that is possible (Colab runs as root);
    elsewhere say what to install. Returns the programs still missing."""
    missing = [p for p in programs if shutil.which(p) is None]
    if not missing:
        return []
    packages = [SYSTEM_PACKAGES.get(p, p) for p in missing]
    can_apt = shutil.which("apt-get") is not None and hasattr(os, "geteuid") and os.geteuid() == 0 and in_colab()
    if can_apt:
        print(f"installing {', '.join(packages)} (apt-get)...")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "-qq", "update"], check=False, env=env, capture_output=True)
        run(["apt-get", "-qq", "install", "-y", *packages], check=False, env=env, capture_output=True)
        missing = [p for p in missing if shutil.which(p) is None]
    if missing:
        print(f"missing system programs: {', '.join(missing)} (apt-get install {' '.join(SYSTEM_PACKAGES.get(p, p) for p in missing)}); "
              "the features that need them will answer with an error")
    return missing


def gpu_report(nvidia_smi: str | None = None) -> str:
    gpus = detect_gpus(nvidia_smi)
    if not gpus:
        return CPU_WARNING
    lines = [f"GPU {i}: {g.name}, {g.vram_mib / 1024:.1f} GiB VRAM, driver {g.driver}" for i, g in enumerate(gpus)]
    if not any("T4" in g.name.upper() for g in gpus):
        lines.append("(not a T4: the `gpu` profile sizes its budget from this card's VRAM)")
    return "\n".join(lines)


def resolve_profile(profile: str, nvidia_smi: str | None = None) -> str:
    """The profile the notebook passes to preload and to the server: ``auto`` resolved here,
    from ``nvidia-smi`` (the kernel never imports torch), so both use the same one."""
    from enfoads.models.profiles import PROFILES, detect_profile_without_torch

    if profile == "auto":
        name = detect_profile_without_torch(nvidia_smi)
        print(f"profile     auto -> {name} (from nvidia-smi)")
        return name
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose auto or one of {', '.join(PROFILES)}")
    print(f"profile     {profile}")
    return profile
