"""`enfoads doctor`: what this machine has and what the chosen profile needs."""
from __future__ import annotations

import shutil
from pathlib import Path

from enfoads import __version__
from enfoads.models.catalog import get_entry
from enfoads.models.profiles import Hardware, Profile
from enfoads.models.registry import presence
from enfoads.settings import Settings

GIB = 1024**3


def _gib(n: int | float) -> str:
    return f"{n / GIB:.1f} GiB"


def _free_disk(path: Path) -> int:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def _onnx_providers() -> str:
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - a broken install
        return f"not importable ({exc})"
    return ", ".join(onnxruntime.get_available_providers())


def _drop_in_upscalers(settings: Settings) -> list[str]:
    """The user's upscaler files, each with what spandrel detected or why it cannot be used."""
    from enfoads.models.user_upscalers import discover_upscalers, upscale_dir

    files = discover_upscalers(settings.models_dir, allow_restricted=settings.allow_restricted_upscalers)
    if not files:
        return []
    lines = ["", f"upscalers you added ({upscale_dir(settings.models_dir)}):"]
    for f in files:
        what = f"{f.architecture} x{f.scale} ({f.role})" if f.valid else f"UNUSABLE: {f.reason}"
        lines.append(f"  {f.id:<40} {what}")
    lines.append(f"  {'':<40} licence: unknown (files you added: check each one's licence)")
    return lines


def report(settings: Settings, hardware: Hardware, profile: Profile) -> tuple[str, int]:
    """The doctor's text and how many required models are missing."""
    lines = [f"enfoads {__version__}", ""]
    lines.append(f"profile        {profile.name} (asked: {settings.profile}) - {profile.description}")
    if hardware.cuda:
        lines.append(f"device         {hardware.device_name}, {_gib(hardware.vram_total_bytes)} VRAM")
        lines.append(f"CUDA           {hardware.cuda_version}, driver {hardware.driver or 'unknown'}")
    else:
        lines.append("device         CPU only (no CUDA device found)")
    lines.append(f"host RAM       {_gib(hardware.ram_total_bytes)} total, {_gib(hardware.ram_available_bytes)} available, {hardware.cpu_count} CPUs")
    gpu_budget = settings.gpu_budget_bytes(profile, hardware)
    simulated = " (simulated on the CPU)" if gpu_budget and not hardware.cuda else ""
    lines.append(f"GPU budget     {_gib(gpu_budget)}{simulated}")
    lines.append(f"RAM budget     {_gib(settings.ram_budget_bytes(profile, hardware))}")
    lines.append(f"ONNX Runtime   {_onnx_providers()}")
    lines.append(f"data dir       {settings.data_dir.resolve()} ({_gib(_free_disk(settings.data_dir))} free)")
    lines.append(f"models dir     {settings.models_dir} ({_gib(_free_disk(settings.models_dir))} free)")
    lines.append("")
    lines.append("models of this profile:")
    missing = 0
    for role, choice in profile.roles.items():
        entry = get_entry(choice.model_id)
        state = presence(entry, settings.models_dir)
        if not state.present and not entry.tiny:
            missing += 1
        mark = "present" if state.present else "MISSING"
        lines.append(f"  {role:<8} {entry.id:<32} {choice.device}/{choice.dtype:<8} {mark}: {state.detail}")
        lines.append(f"  {'':<8} licence: {entry.licence}")
    lines += _drop_in_upscalers(settings)
    lines.append("")
    if missing:
        lines.append(f"{missing} model(s) missing: run `enfoads preload --profile {profile.name}` to download them.")
    else:
        lines.append("everything this profile needs is here.")
    return "\n".join(lines), missing
