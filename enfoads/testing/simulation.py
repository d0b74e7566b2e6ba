"""Models with declared sizes, for exercising residency policy without weights.

The residency benchmark replays a trace of real model sizes (a T4's budgets)
through the real manager with these; policy tests use them too. They hold a
small bytearray so that "loading" allocates something real.

``T4_HARDWARE`` and :func:`t4_budgets` size a Colab T4 exactly as
``enfoads.models.runtime.build_runtime`` would on one (``Settings`` and the ``t4``
profile); :func:`catalog_adapter` sizes a model from its catalogue entry (VRAM,
RAM and the host RAM its load onto the GPU stages); :func:`t4_manager` puts the
two together.

A :class:`SimulatedGPU` is a device-wide free-memory probe for simulated
models, as ``CudaProbe`` is for a real card: adapters given one allocate their
size on it while they sit on the GPU tier, plus ``run_growth`` from their first
run on (ONNX Runtime arenas, cuDNN workspaces), so the manager's measurements
run as they do on CUDA. A simulated GPU needs a device string other than
``"cpu"`` (``SIMULATED_GPU_DEVICE``) so that adapters can tell the tiers apart.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable

from enfoads.models.profiles import Hardware

# The device string of a simulated GPU tier whose models report per-tier sizes.
SIMULATED_GPU_DEVICE = "sim-gpu:0"

# A Colab T4 runtime as build_runtime sees it: torch reports 15,828,320,256 bytes of VRAM;
# the VM has 12.7 GB of RAM of which ~3 GB are taken by Colab's own processes and the
# notebook kernel before enfoads starts (what MemAvailable says at start).
T4_HARDWARE = Hardware(
    cuda=True,
    device_name="Tesla T4",
    vram_total_bytes=15_828_320_256,
    cuda_version="12.4",
    driver="550.54.15",
    ram_total_bytes=12_700_000_000,
    ram_available_bytes=12_700_000_000 - 3_000_000_000,
    cpu_count=2,
)


@dataclass
class SimulatedModel:
    key: str
    device: str
    payload: bytearray
    grown: bool = False  # its first run has happened on the GPU


class SimulatedGPU:
    """Free memory of a simulated card, as a ``MemoryProbe``: total minus what the models hold."""

    def __init__(self, total: int):
        self.total = int(total)
        self.held: dict[str, int] = {}  # model key -> bytes on the card
        self._lock = threading.Lock()

    def gpu_free_bytes(self) -> int:
        with self._lock:
            return self.total - sum(self.held.values())

    def set(self, key: str, nbytes: int) -> None:
        with self._lock:
            self.held[key] = int(nbytes)

    def grow(self, key: str, nbytes: int) -> None:
        with self._lock:
            self.held[key] = self.held.get(key, 0) + int(nbytes)

    def release(self, key: str) -> None:
        with self._lock:
            self.held.pop(key, None)


@dataclass
class SimulatedAdapter:
    """A model of ``size`` bytes; ``movable`` like torch, not like CTranslate2/ONNX Runtime.

    ``size`` is its footprint on the GPU tier; ``ram_size`` (default: ``size``)
    its footprint on the CPU tier, reported for loads and moves onto ``"cpu"``.
    """

    key: str
    size: int
    runtime: str = "torch"
    movable: bool = True
    staging_bytes: int = 0
    estimate_bytes: int = 0
    ram_size: int = 0
    # Failure injection: the next N loads raise a CUDA-style OOM error.
    fail_loads: int = 0
    # Device-wide accounting (optional): what the model holds on a simulated card.
    gpu: SimulatedGPU | None = None
    run_growth: int = 0  # bytes its first run adds on the GPU (arenas, workspaces)
    events: list = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if not self.estimate_bytes:
            self.estimate_bytes = self.size

    def estimate(self, tier: str) -> int:
        if tier == "cpu" and self.ram_size:
            return self.ram_size
        return self.estimate_bytes

    def _on_gpu(self, device: str) -> bool:
        return device != "cpu"

    def load(self, device: str) -> SimulatedModel:
        with self._lock:
            if self.fail_loads > 0:
                self.fail_loads -= 1
                self.events.append(("oom", device))
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
            self.events.append(("load", device))
        if self.gpu is not None and self._on_gpu(device):
            self.gpu.set(self.key, self.size)
        return SimulatedModel(self.key, device, bytearray(16))

    def move(self, model: SimulatedModel, device: str) -> SimulatedModel:
        if not self.movable:
            raise RuntimeError(f"{self.runtime} models cannot move between devices")
        self.events.append(("move", device))
        model.device = device
        if self.gpu is not None:
            if self._on_gpu(device):
                self.gpu.set(self.key, self.size)
            else:
                self.gpu.release(self.key)
            model.grown = False
        return model

    def unload(self, model: SimulatedModel) -> None:
        self.events.append(("unload", model.device))
        model.payload = bytearray()
        if self.gpu is not None and self._on_gpu(model.device):
            self.gpu.release(self.key)

    def measure(self, model: SimulatedModel, device: str) -> int:
        if device == "cpu" and self.ram_size:
            return self.ram_size
        return self.size

    def run(self, model: SimulatedModel) -> None:
        """One inference: the first on the GPU grows what the model holds there by ``run_growth``."""
        self.events.append(("run", model.device))
        if self.gpu is not None and self._on_gpu(model.device) and not model.grown:
            self.gpu.grow(self.key, self.run_growth)
            model.grown = True


def t4_budgets(settings=None, hardware: Hardware = T4_HARDWARE) -> tuple[int, int]:
    """(GPU budget, host-RAM budget) in bytes, as ``build_runtime`` derives them on a T4."""
    from enfoads.settings import Settings

    settings = settings or Settings(profile="t4")
    profile = settings.resolve_profile(hardware)
    return settings.gpu_budget_bytes(profile, hardware), settings.ram_budget_bytes(profile, hardware)


def catalog_adapter(entry, **overrides) -> SimulatedAdapter:
    """A simulated model with a catalogue entry's sizes: VRAM, RAM and the staging of a GPU load."""
    from enfoads.models.adapters import staging_bytes_for

    values = dict(key=entry.id, size=entry.vram_bytes, ram_size=entry.ram_bytes, runtime=entry.runtime,
                  movable=entry.movable, staging_bytes=staging_bytes_for(entry))
    values.update(overrides)
    return SimulatedAdapter(**values)


# Models of a trace that are not in the catalogue: key -> (host RAM bytes, runtime). A Piper
# medium voice is ~63 MB of ONNX, ~110 MB once its session runs; always on the CPU.
EXTRA_CPU_MODELS = {"piper-es_MX": (110 * 10**6, "onnxruntime")}


def t4_manager(
    model_ids: Iterable[str] | None = None,
    *,
    extra: Iterable[str] = (),
    settings=None,
    lease_wait_s: float | None = None,
    clock: Callable[[], float] | None = None,
    probe=None,
):
    """A residency manager with a T4's budgets and catalogue-sized simulated models.

    ``model_ids`` default to the t4 profile's models (each on its profile tier);
    ``extra`` names CPU-only models of ``EXTRA_CPU_MODELS``.
    """
    import time

    from enfoads.models.catalog import CATALOG
    from enfoads.models.profiles import PROFILES
    from enfoads.models.residency import ResidencyManager
    from enfoads.models.residency_types import CPU, GPU
    from enfoads.settings import Settings

    settings = settings or Settings(profile="t4")
    gpu_budget, ram_budget = t4_budgets(settings)
    profile = PROFILES["t4"]
    tiers = {c.model_id: (GPU if c.device == "gpu" else CPU) for c in profile.roles.values()}
    if model_ids is None:
        model_ids = [c.model_id for c in profile.roles.values() if CATALOG[c.model_id].runtime != "process"]
    manager = ResidencyManager(
        gpu_budget=gpu_budget,
        ram_budget=ram_budget,
        gpu_device=SIMULATED_GPU_DEVICE,
        probe=probe,
        lease_wait_s=settings.lease_wait_s if lease_wait_s is None else lease_wait_s,
        clock=clock or time.monotonic,
    )
    for key in model_ids:
        manager.register(catalog_adapter(CATALOG[key]), preferred=tiers.get(key, GPU))
    for key in extra:
        ram, runtime = EXTRA_CPU_MODELS[key]
        manager.register(SimulatedAdapter(key, ram, runtime=runtime, movable=runtime == "torch"), preferred=CPU)
    return manager
