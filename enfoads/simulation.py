"""Models with declared sizes, for exercising residency policy without weights.

The residency benchmark replays a trace of real model sizes (a T4's budgets)
through the real manager with these; policy tests use them too. They hold a
small bytearray so that "loading" allocates something real.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class SimulatedModel:
    key: str
    device: str
    payload: bytearray


@dataclass
class SimulatedAdapter:
    """A model of ``size`` bytes; ``movable`` like torch, not like CTranslate2/ONNX Runtime."""

    key: str
    size: int
    runtime: str = "torch"
    movable: bool = True
    staging_bytes: int = 0
    estimate_bytes: int = 0
    # Failure injection: the next N loads raise a CUDA-style OOM error.
    fail_loads: int = 0
    events: list = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if not self.estimate_bytes:
            self.estimate_bytes = self.size

    def estimate(self, tier: str) -> int:
        return self.estimate_bytes

    def load(self, device: str) -> SimulatedModel:
        with self._lock:
            if self.fail_loads > 0:
                self.fail_loads -= 1
                self.events.append(("oom", device))
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
            self.events.append(("load", device))
        return SimulatedModel(self.key, device, bytearray(16))

    def move(self, model: SimulatedModel, device: str) -> SimulatedModel:
        if not self.movable:
            raise RuntimeError(f"{self.runtime} models cannot move between devices")
        self.events.append(("move", device))
        model.device = device
        return model

    def unload(self, model: SimulatedModel) -> None:
        self.events.append(("unload", model.device))
        model.payload = bytearray()

    def measure(self, model: SimulatedModel, device: str) -> int:
        return self.size
