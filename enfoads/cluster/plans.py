"""How each role is deployed on Ray: replicas, autoscaling, the GPU fraction and budget of a replica.

A replica's GPU share comes from the catalogue's measured needs: the VRAM of
the models its role uses on the GPU in the profile, plus the profile's
reserve, over one GPU of the cluster (``ray_gpu_gb``), rounded up to a
twentieth. Its residency manager then gets exactly that share as its budget,
so replicas sharing a GPU cannot crowd each other out. On a cluster with no
GPUs a replica asks for a quarter of a CPU and runs the profile's CPU path.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from enfoads.errors import InvalidInput
from enfoads.models.catalog import get_entry
from enfoads.models.profiles import GIB, Profile

__all__ = ["ROLE_MODELS", "RolePlan", "parse_counts", "plan_roles"]

# The model roles each service role leases (enfoads.models.profiles' role names).
ROLE_MODELS = {
    "image": ("image",),
    "faces": ("faces", "swapper", "restore"),
    "speech": ("speech",),
    "enhance": ("upscale", "restore"),
    "video": ("tts", "lipsync", "faces"),
}

CPU_PER_REPLICA = 0.25  # replicas wait on their models, not on Python: a little CPU each


@dataclass(frozen=True)
class RolePlan:
    role: str
    replicas: int
    max_replicas: int
    gpu_fraction: float  # of one GPU, 0 on a cluster without GPUs
    gpu_budget_gb: float | None  # the replica's residency budget; None: the profile's own (a whole GPU, or CPU)

    def deployment_options(self) -> dict:
        """``Deployment.options(...)`` keywords: one job at a time per replica, like the local GPU worker."""
        actor = {"num_cpus": CPU_PER_REPLICA, "num_gpus": self.gpu_fraction}
        options: dict = {"name": f"enfoads-{self.role}", "max_ongoing_requests": 1, "ray_actor_options": actor}
        if self.max_replicas > self.replicas:
            options["autoscaling_config"] = {"min_replicas": self.replicas, "max_replicas": self.max_replicas,
                                             "target_ongoing_requests": 1}
        else:
            options["num_replicas"] = self.replicas
        return options


def parse_counts(value: str, *, setting: str, roles: list[str]) -> dict[str, int]:
    """``"image=2,faces=1"`` -> ``{"image": 2, "faces": 1}`` (known roles, counts of at least 1)."""
    counts: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in (value or "").split(","))):
        role, _, count = item.partition("=")
        role = role.strip()
        if role not in roles:
            raise InvalidInput.field(setting, f"unknown role {role!r}; roles: {', '.join(roles)}")
        try:
            counts[role] = int(count)
        except ValueError:
            raise InvalidInput.field(setting, f"{item!r}: the count must be a whole number") from None
        if counts[role] < 1:
            raise InvalidInput.field(setting, f"{item!r}: at least 1 replica")
    return counts


def role_need_bytes(role: str, profile: Profile) -> int:
    """VRAM the role's models take on the GPU in ``profile`` (the catalogue's measured footprints)."""
    need = 0
    for model_role in ROLE_MODELS.get(role, ()):
        choice = profile.roles.get(model_role)
        if choice is not None and choice.device == "gpu":
            need += get_entry(choice.model_id).vram_bytes
    return need


def plan_roles(settings, profile: Profile, roles: list[str], *, cluster_gpus: float) -> list[RolePlan]:
    wanted = [r.strip() for r in (settings.ray_roles or "").split(",") if r.strip()] or list(roles)
    unknown = [r for r in wanted if r not in roles]
    if unknown:
        raise InvalidInput.field("ray_roles", f"unknown role {unknown[0]!r}; roles: {', '.join(roles)}")
    replicas = parse_counts(settings.ray_replicas, setting="ray_replicas", roles=roles)
    ceilings = parse_counts(settings.ray_max_replicas, setting="ray_max_replicas", roles=roles)
    plans = []
    for role in wanted:
        n = replicas.get(role, 1)
        fraction, budget = 0.0, None
        need = role_need_bytes(role, profile)
        if cluster_gpus > 0 and need > 0:
            share = (need + profile.gpu_reserve_gb * GIB) / (settings.ray_gpu_gb * GIB)
            fraction = min(1.0, math.ceil(share * 20) / 20)
            if fraction < 1.0:  # a whole GPU: the profile sizes the budget from the card itself
                budget = round(max(0.0, fraction * settings.ray_gpu_gb - profile.gpu_reserve_gb), 2)
        plans.append(RolePlan(role=role, replicas=n, max_replicas=max(n, ceilings.get(role, n)),
                              gpu_fraction=fraction, gpu_budget_gb=budget))
    return plans
