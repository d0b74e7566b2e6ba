"""The process-wide objects built once at start and passed explicitly.

``build_runtime(settings)`` detects the hardware, resolves the profile, sizes
both memory budgets and registers every model of the profile with a new
residency manager. Nothing is loaded until first use.
"""
from __future__ import annotations

from dataclasses import dataclass

from enfoads.models.adapters import adapter_for, preferred_tier
from enfoads.models.catalog import ModelEntry, get_entry
from enfoads.models.profiles import Hardware, Profile, RoleChoice, detect_hardware
from enfoads.models.residency import ResidencyManager
from enfoads.models.residency_types import CudaProbe, NoProbe
from enfoads.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    hardware: Hardware
    profile: Profile
    residency: ResidencyManager

    def choice(self, role: str) -> RoleChoice:
        try:
            return self.profile.roles[role]
        except KeyError:
            raise KeyError(f"profile {self.profile.name!r} has no {role!r} role") from None

    def entry(self, role: str) -> ModelEntry:
        return get_entry(self.choice(role).model_id)

    def model_key(self, role: str) -> str:
        """The residency key to lease for a role: ``with rt.residency.use(rt.model_key("image"))``."""
        return self.choice(role).model_id

    def close(self) -> None:
        self.residency.close()


def build_runtime(settings: Settings, hardware: Hardware | None = None) -> Runtime:
    hardware = hardware or detect_hardware()
    profile = settings.resolve_profile(hardware)
    residency = ResidencyManager(
        gpu_budget=settings.gpu_budget_bytes(profile, hardware),
        ram_budget=settings.ram_budget_bytes(profile, hardware),
        # Without CUDA an explicit GPU budget is simulated on the CPU.
        gpu_device="cuda:0" if hardware.cuda else "cpu",
        probe=CudaProbe(0) if hardware.cuda else NoProbe(),
        lease_wait_s=settings.lease_wait_s,
        idle_ttl_s=settings.idle_ttl_s,
    )
    for choice in profile.roles.values():
        entry = get_entry(choice.model_id)
        adapter = adapter_for(entry, choice, settings.models_dir)
        if adapter is not None:
            residency.register(adapter, preferred=preferred_tier(choice))
    runtime = Runtime(settings=settings, hardware=hardware, profile=profile, residency=residency)
    for role, times in parse_fault_switch(settings.inject_oom).items():
        residency.inject_oom(runtime.model_key(role) if role in profile.roles else role, times)
    residency.start_janitor()
    return runtime


def parse_fault_switch(value: str | None) -> dict[str, int]:
    """``"image:1,speech:2"`` -> ``{"image": 1, "speech": 2}`` (a role or a model id, and a count)."""
    faults: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in (value or "").split(","))):
        name, _, count = item.partition(":")
        faults[name.strip()] = int(count or 1)
    return faults
