"""What the residency manager is made of: tiers, errors, the adapter and probe protocols, entries, stats.

Kept apart from ``enfoads.models.residency`` so the adapters and the callers
that only need a tier name, an error class or ``is_out_of_memory`` do not
import the manager. Also the CUDA helpers (free-memory probe, cache release)
and the words the manager's error messages use.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from enfoads.errors import EnfoadsError

GPU = "gpu"
CPU = "cpu"
TIERS = (GPU, CPU)

# Substrings (lower case) by which the runtimes announce an allocation failure.
_OOM_MARKERS = (
    "out of memory",  # torch, CUDA ("CUDA failure 2: out of memory"), CTranslate2 ("CUDA failed with error ...")
    "cuda_error_out_of_memory",
    "failed to allocate memory",  # ONNX Runtime BFC arena: "Failed to allocate memory for requested buffer of size"
    "is smaller than requested bytes",  # ONNX Runtime arena at its cap: "Available memory of X is smaller than ..."
    "cublas_status_alloc_failed",
    "cudnn_status_alloc_failed",  # cuDNN 8 (an alias of the host-allocation status in cuDNN 9)
    "cudnn_status_internal_error_host_allocation_failed",  # cuDNN 9
    "cudnn_status_internal_error_device_allocation_failed",  # cuDNN 9: its workspace or scratch could not be had
    "cudnn_status_not_enough_workspace",
    "bad_alloc",
    "bad allocation",  # std::bad_alloc's what() under MSVC, as ONNX Runtime reports it
)


class ResidencyError(EnfoadsError, RuntimeError):
    """Base class for residency failures."""


class UnknownModelError(ResidencyError, KeyError):
    status, code = 404, "unknown_model"


class ModelMemoryError(ResidencyError):
    """Not enough GPU or host memory for a model, even after evicting everything unleased.

    The web layer maps this to 503. ``retryable`` is True when memory held by
    other leases may be released soon. ``budget`` is the whole budget of ``tier``
    when the model can never fit in it.
    """

    status, code = 503, "out_of_memory"
    retry_after_s = 30

    def __init__(self, message: str, *, key: str, tier: str, needed: int, retryable: bool = False,
                 budget: int | None = None):
        super().__init__(message)
        self.key = key
        self.tier = tier
        self.needed = needed
        self.retryable = retryable
        self.budget = budget


def is_out_of_memory(exc: BaseException) -> bool:
    """True for an allocation failure of torch, CTranslate2 or ONNX Runtime."""
    if isinstance(exc, (MemoryError, ModelMemoryError)):
        return True
    if type(exc).__name__ in {"OutOfMemoryError", "OutOfMemory"}:
        return True
    text = str(exc).lower()
    return any(marker in text for marker in _OOM_MARKERS)


class ModelAdapter(Protocol):
    """How one model of one runtime is loaded, moved, measured and freed."""

    key: str
    runtime: str  # "torch", "ctranslate2", "onnxruntime", ...
    movable: bool  # can move between GPU and CPU without a reload
    staging_bytes: int  # host RAM used transiently while loading onto the GPU

    def estimate(self, tier: str) -> int:
        """Footprint on ``tier`` before the first measurement (catalogue figures)."""
        ...

    def load(self, device: str) -> Any: ...

    def move(self, model: Any, device: str) -> Any: ...

    def unload(self, model: Any) -> None: ...

    def measure(self, model: Any, device: str) -> int | None: ...


class MemoryProbe(Protocol):
    """Device-wide free GPU memory; None where it cannot be read."""

    def gpu_free_bytes(self) -> int | None: ...


class NoProbe:
    """For a CPU machine or a simulated GPU budget: the adapters' own counts are used."""

    def gpu_free_bytes(self) -> int | None:
        return None


class CudaProbe:
    """Free memory of one CUDA device as the driver sees it (all runtimes included)."""

    def __init__(self, index: int = 0):
        self.index = index

    def gpu_free_bytes(self) -> int | None:
        import torch

        torch.cuda.synchronize(self.index)
        torch.cuda.empty_cache()
        free, _total = torch.cuda.mem_get_info(self.index)
        return int(free)


@dataclass
class _Entry:
    adapter: ModelAdapter
    preferred: str
    model: Any = None
    tier: str | None = None  # None: not loaded
    busy: bool = False  # a transition (load, move, unload) is running
    leases: int = 0
    measured: dict[str, int] = field(default_factory=dict)  # tier -> bytes
    last_used: float = 0.0
    # A second GPU measurement after the first run: (device-wide free bytes before the
    # load, GPU bytes the other models were counted for then); ``ran`` once a lease ended.
    probe_base: tuple[int, int] | None = None
    ran: bool = False
    load_seq: int = 0
    loads: int = 0
    gpu_loads: int = 0
    evictions: int = 0
    moves: int = 0

    def footprint(self, tier: str) -> int:
        if tier in self.measured:
            return self.measured[tier]
        # A size measured on the other tier beats the catalogue's guess.
        for other in self.measured.values():
            return other
        return int(self.adapter.estimate(tier))


@dataclass
class ResidencyStats:
    gpu_budget: int
    ram_budget: int
    gpu_used: int
    ram_used: int
    loads: int
    gpu_loads: int
    evictions: int
    bytes_moved: int
    oom_recoveries: int
    over_budget_events: int
    models: list[dict]

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _release_gpu_cache(device: str) -> None:
    if not device.startswith("cuda"):
        return
    import torch

    torch.cuda.empty_cache()


_TIER_NAMES = {GPU: "GPU memory", CPU: "host RAM"}
_TIER_SETTING = {GPU: "GPU", CPU: "RAM"}


def _what(tier: str, staged: bool) -> str:
    """What a lease needs on ``tier``, in words."""
    if tier == CPU and staged:
        return "host RAM to stage its load onto the GPU"
    return _TIER_NAMES[tier]


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"
