"""The residency manager: every loaded model of every runtime, under two budgets.

One object owns the models that PyTorch, CTranslate2 and ONNX Runtime hold in
memory. Callers lease a model with ``with residency.use(key) as model:``; the
manager loads it if absent, places it on the GPU when it can and pins it while
the lease lasts. Room is made by evicting unleased models, least recently used
first: torch models move GPU -> CPU when host RAM allows, and everything else
(CTranslate2 models, ONNX Runtime sessions, torch models with no RAM to spare)
is unloaded and rebuilt on the next use.

Two budgets are enforced at every moment, not only the GPU's: a Colab T4 has
~15 GB of VRAM but ~12 GB of host RAM, and a blind offload to the CPU kills
the runtime. A load that stages through host RAM reserves that RAM too.

Footprints are measured after each load (device-wide free memory on CUDA,
which also sees CTranslate2 and ONNX Runtime allocations; the adapter's own
count on the CPU); catalogue estimates are used only before the first load.
On CUDA a model is measured once more after its first run (ONNX Runtime arenas,
cuDNN workspaces and lazily loaded kernels grow then), keeping the larger
figure and trimming others if it now overshoots; torch's cached activation
blocks are handed back to the driver when a torch lease ends.

A lease that can never fit (its footprint, or the host RAM its load stages,
exceeds a whole budget) fails at once with a non-retryable error naming the
budget; one that would fit once other leases end waits for them.

Thread safety: bookkeeping is under one condition lock; slow transitions
(load, move, unload) are serialised by a second lock and run outside the
first, so leases of resident models never wait for a load.
"""
from __future__ import annotations

import gc
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

from enfoads.errors import EnfoadsError

log = logging.getLogger(__name__)

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


class ResidencyManager:
    """Owns loaded models under a GPU budget and a host-RAM budget.

    Args:
        gpu_budget: bytes of GPU memory models may use; 0 when there is no GPU.
        ram_budget: bytes of host RAM models may use (CPU-resident models and
            the staging of loads).
        gpu_device: the device string GPU-tier models are loaded onto, e.g.
            ``"cuda:0"``; ``"cpu"`` simulates a GPU budget on a CPU machine.
        probe: reads device-wide free GPU memory to measure footprints.
        lease_wait_s: how long a lease waits for memory held by other leases.
        idle_ttl_s: unload models unused for this long (see ``evict_idle``).
        clock: injectable time source.
    """

    def __init__(
        self,
        *,
        gpu_budget: int,
        ram_budget: int,
        gpu_device: str = "cuda:0",
        probe: MemoryProbe | None = None,
        lease_wait_s: float = 60.0,
        idle_ttl_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.gpu_budget = int(gpu_budget)
        self.ram_budget = int(ram_budget)
        self.gpu_device = gpu_device
        self.probe = probe or NoProbe()
        self.lease_wait_s = lease_wait_s
        self.idle_ttl_s = idle_ttl_s
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._cond = threading.Condition(threading.Lock())
        self._transition = threading.RLock()
        self._reserved = {GPU: 0, CPU: 0}
        self._generation = 0
        self._faults: dict[str, int] = {}  # key -> injected out-of-memory errors to raise
        self._bytes_moved = 0
        self._oom_recoveries = 0
        self._over_budget_events = 0
        self._load_seq = 0
        self._leases_granted = 0  # every lease ever granted: tells a quiet moment from a busy one
        self._janitor: threading.Thread | None = None
        self._stop = threading.Event()

    # ----------------------------------------------------------------- registry
    def register(self, adapter: ModelAdapter, *, preferred: str = GPU) -> None:
        """Make a model known to the manager (nothing is loaded yet)."""
        if preferred not in TIERS:
            raise ValueError(f"preferred tier must be one of {TIERS}")
        with self._cond:
            existing = self._entries.get(adapter.key)
            if existing is not None and existing.tier is not None:
                raise ResidencyError(f"model {adapter.key!r} is loaded; unload it before re-registering")
            self._entries[adapter.key] = _Entry(adapter=adapter, preferred=preferred)

    def registered(self) -> list[str]:
        with self._cond:
            return list(self._entries)

    def device_for(self, tier: str) -> str:
        return self.gpu_device if tier == GPU else "cpu"

    # ------------------------------------------------------------------ leasing
    @contextmanager
    def use(self, key: str, *, tier: str | None = None) -> Iterator[Any]:
        """Lease a model: loaded and placed on entry, pinned until the block ends.

        An out-of-memory error raised inside the block evicts every unleased
        model from the GPU and is re-raised as a retryable ``ModelMemoryError``.
        """
        entry = self._entry(key)
        model = self._acquire(entry, tier)
        try:
            self._maybe_inject_oom(key)
            yield model
        except Exception as exc:
            if is_out_of_memory(exc) and not isinstance(exc, ModelMemoryError):
                self._evict_all_unleased(GPU, keep=entry)
                with self._cond:
                    self._oom_recoveries += 1
                raise ModelMemoryError(
                    f"out of GPU memory while running {key!r}; other models were evicted, retry",
                    key=key,
                    tier=entry.tier or GPU,
                    needed=entry.footprint(entry.tier or GPU),
                    retryable=True,
                ) from exc
            raise
        finally:
            with self._cond:
                entry.leases -= 1
                entry.last_used = self._clock()
                last = entry.leases == 0
                torch_on_cuda = (last and entry.tier == GPU and entry.adapter.runtime == "torch"
                                 and self.gpu_device.startswith("cuda"))
                if last and entry.probe_base is not None:
                    entry.ran = True
                remeasure = self._remeasure_due()
                self._changed()
            # Never let housekeeping mask what the block raised.
            try:
                if torch_on_cuda:
                    # Activation blocks torch keeps cached are invisible to the budget and unusable
                    # by CTranslate2 and ONNX Runtime: give them back once the lease ends (not per step).
                    _release_gpu_cache(self.gpu_device)
                if remeasure:
                    self._remeasure_after_runs()
            except Exception:
                log.exception("after the lease of %r: releasing cached GPU memory or measuring failed", key)

    def inject_oom(self, key: str, times: int = 1) -> None:
        """Test switch: the next ``times`` leases of ``key`` raise a CUDA-style out-of-memory error.

        The error is raised inside the lease, as the runtime would raise it
        mid-use, so the whole recovery path (evict, retryable error, 503) runs.
        """
        self._entry(key)
        with self._cond:
            self._faults[key] = self._faults.get(key, 0) + int(times)

    def _maybe_inject_oom(self, key: str) -> None:
        with self._cond:
            if self._faults.get(key, 0) <= 0:
                return
            self._faults[key] -= 1
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (injected by ENFOADS_INJECT_OOM)")

    def run(self, key: str, fn: Callable[[Any], Any], *, tier: str | None = None) -> Any:
        """Call ``fn(model)`` under a lease; on out-of-memory, evict and retry once."""
        try:
            with self.use(key, tier=tier) as model:
                return fn(model)
        except ModelMemoryError as exc:
            if not exc.retryable:
                raise
        with self.use(key, tier=tier) as model:
            return fn(model)

    def _entry(self, key: str) -> _Entry:
        with self._cond:
            try:
                return self._entries[key]
            except KeyError:
                raise UnknownModelError(f"unknown model {key!r}; registered: {sorted(self._entries)}") from None

    def _target_tier(self, entry: _Entry, tier: str | None) -> str:
        wanted = tier or entry.preferred
        if wanted == GPU and self.gpu_budget <= 0:
            return CPU
        return wanted

    def _acquire(self, entry: _Entry, tier: str | None) -> Any:
        target = self._target_tier(entry, tier)
        deadline = self._clock() + self.lease_wait_s
        while True:
            with self._cond:
                while entry.busy:
                    self._cond.wait()
                # A model leased elsewhere stays pinned where it is.
                if entry.tier == target or (entry.tier is not None and entry.leases):
                    entry.leases += 1
                    entry.last_used = self._clock()
                    self._leases_granted += 1
                    return entry.model
            # Not resident where wanted: one transition at a time, manager-wide.
            with self._transition:
                with self._cond:
                    if entry.busy or entry.tier == target:
                        continue
                    victims = self._plan_placement(entry, target)
                    if victims is None:
                        # Leased models hold the memory: wait below for a lease to end.
                        self._raise_if_hopeless(entry, target, deadline)
                        generation = self._generation
                    else:
                        entry.busy = True
                        for victim, _ in victims:
                            victim.busy = True
                if victims is not None:
                    try:
                        self._carry_out(entry, target, victims)
                    finally:
                        with self._cond:
                            entry.busy = False
                            for victim, _ in victims:
                                victim.busy = False
                            self._changed()
                    continue
            with self._cond:
                while self._generation == generation and self._clock() < deadline:
                    self._cond.wait(timeout=max(0.01, min(1.0, deadline - self._clock())))

    def _changed(self) -> None:
        """Under the lock: something was released or moved; wake the waiters."""
        self._generation += 1
        self._cond.notify_all()

    def _raise_if_hopeless(self, entry: _Entry, target: str, deadline: float) -> None:
        """Under the lock, when no eviction plan exists: fail now or let the caller wait.

        A lease that cannot fit even with every other model gone (its footprint, or the
        host RAM its load stages, beyond a whole budget) fails at once and is not
        retryable. Otherwise leased models hold the memory: wait, and give up at the
        deadline with a retryable error naming the budget that is short.
        """
        key = entry.adapter.key
        need = self._needs(entry, target)
        staged = target == GPU and entry.tier is None
        for tier in (target, *(t for t in TIERS if t != target)):
            budget = self._budget(tier)
            if need[tier] > budget:
                raise ModelMemoryError(
                    f"{key!r} needs {_gb(need[tier])} of {_what(tier, staged)}, but the whole budget for "
                    f"{_TIER_NAMES[tier]} is {_gb(budget)} (ENFOADS_{_TIER_SETTING[tier]}_BUDGET_GB); "
                    f"raise ENFOADS_{_TIER_SETTING[tier]}_BUDGET_GB if the machine has it, or choose a smaller "
                    f"model or profile",
                    key=key,
                    tier=tier,
                    needed=need[tier],
                    budget=budget,
                )
        if self._clock() >= deadline:
            short = [t for t in TIERS if need[t] and self._budget(t) - self._held_by_leases(t) < need[t]]
            tier = (short or [target])[0]
            leased = sorted(e.adapter.key for e in self._entries.values() if e.leases and e.tier == tier)
            raise ModelMemoryError(
                f"{key!r} needs {_gb(need[tier])} of {_what(tier, staged)}, held by leased models {leased}; "
                f"gave up after {self.lease_wait_s:.0f} s",
                key=key,
                tier=tier,
                needed=need[tier],
                retryable=True,
            )

    def _held_by_leases(self, tier: str) -> int:
        """Under the lock: bytes on ``tier`` no eviction can free now (leased or mid-transition)."""
        held = sum(e.footprint(tier) for e in self._entries.values() if e.tier == tier and (e.leases or e.busy))
        return held + self._reserved[tier]

    # ----------------------------------------------------------------- planning
    def _budget(self, tier: str) -> int:
        return self.gpu_budget if tier == GPU else self.ram_budget

    def _used(self, tier: str) -> int:
        """Bytes held on ``tier`` by resident models plus reservations (under the lock)."""
        held = sum(e.footprint(tier) for e in self._entries.values() if e.tier == tier)
        return held + self._reserved[tier]

    def _needs(self, entry: _Entry, target: str) -> dict[str, int]:
        """Bytes ``entry`` needs per tier to be placed on ``target``: its footprint, plus staging for a GPU load."""
        need = {GPU: 0, CPU: 0}
        need[target] += entry.footprint(target)
        if target == GPU and entry.tier is None:
            need[CPU] += int(entry.adapter.staging_bytes)
        return need

    def _plan_placement(self, entry: _Entry, target: str) -> list[tuple[_Entry, str | None]] | None:
        """Victims (entry, destination tier or None for unload) that make room, or None.

        Called under the lock. Room is needed on ``target`` for the model, and
        in host RAM for staging a load onto the GPU. Victims come in least
        recently used order; victims that turn out not to be needed are kept.
        """
        need = self._needs(entry, target)
        free = {t: self._budget(t) - self._used(t) for t in TIERS}
        if all(free[t] >= need[t] for t in TIERS):
            return []

        candidates = sorted(
            (e for e in self._entries.values() if e is not entry and e.tier is not None and not e.leases and not e.busy),
            key=lambda e: e.last_used,
        )
        victims: list[tuple[_Entry, str | None]] = []
        freed = {GPU: 0, CPU: 0}
        added_ram = 0

        def short() -> bool:
            # Victims moved to the CPU (added_ram) use the RAM that unloads free.
            return (free[GPU] + freed[GPU] < need[GPU]) or (free[CPU] + freed[CPU] - added_ram < need[CPU])

        # GPU first: moving to CPU is preferred to unloading when RAM allows.
        for victim in candidates:
            if not short():
                break
            if victim.tier == GPU and free[GPU] + freed[GPU] < need[GPU]:
                size = victim.footprint(GPU)
                ram_after = free[CPU] + freed[CPU] - added_ram - need[CPU]
                if victim.adapter.movable and victim.footprint(CPU) <= ram_after:
                    victims.append((victim, CPU))
                    added_ram += victim.footprint(CPU)
                else:
                    victims.append((victim, None))
                freed[GPU] += size
        for victim in candidates:
            if not short():
                break
            if victim.tier == CPU and not any(v is victim for v, _ in victims):
                victims.append((victim, None))
                freed[CPU] += victim.footprint(CPU)
        if short():
            # Moved-to-CPU victims may be the RAM problem: unload them instead.
            for i, (victim, dest) in enumerate(victims):
                if dest == CPU and short():
                    victims[i] = (victim, None)
                    added_ram -= victim.footprint(CPU)
        if short():
            return None

        # Keep the most recently used victims that turn out not to be needed.
        for victim, dest in sorted(victims, key=lambda v: -v[0].last_used):
            tier = victim.tier
            saving = victim.footprint(tier)
            freed[tier] -= saving
            ram_back = victim.footprint(CPU) if dest == CPU else 0
            added_ram -= ram_back
            if short():
                freed[tier] += saving
                added_ram += ram_back
            else:
                victims.remove((victim, dest))
        return victims

    # ---------------------------------------------------------------- execution
    def _carry_out(self, entry: _Entry, target: str, victims: list[tuple[_Entry, str | None]]) -> None:
        """Evict the victims, then load or move ``entry`` onto ``target``. Holds the transition lock."""
        for victim, dest in victims:
            self._evict(victim, dest)
        if entry.tier is None:
            self._load(entry, target)
        else:
            self._move(entry, target)

    def _load(self, entry: _Entry, target: str) -> None:
        adapter = entry.adapter
        device = self.device_for(target)
        staging = int(adapter.staging_bytes) if target == GPU else 0
        with self._cond:
            self._reserved[target] += entry.footprint(target)
            self._reserved[CPU] += staging
            self._check_budgets()
        try:
            for attempt in (1, 2):
                free_before = self.probe.gpu_free_bytes() if target == GPU else None
                with self._cond:
                    others_before = self._others_on_gpu(entry)
                try:
                    model = adapter.load(device)
                    break
                except Exception as exc:
                    if not is_out_of_memory(exc):
                        raise
                    if attempt == 2:
                        raise ModelMemoryError(
                            f"out of memory loading {adapter.key!r} onto {device} even after evicting "
                            f"every unleased model ({_gb(entry.footprint(target))} expected)",
                            key=adapter.key,
                            tier=target,
                            needed=entry.footprint(target),
                        ) from exc
                    # Evict everything not leased and try once more.
                    with self._cond:
                        self._oom_recoveries += 1
                    self._evict_all_unleased(target, keep=entry, holding_transition=True)
            measured = None
            probe_base = None
            if free_before is not None:
                free_after = self.probe.gpu_free_bytes()
                if free_after is not None and free_before - free_after > 0:
                    measured = free_before - free_after
                    probe_base = (free_before, others_before)
            if measured is None:
                measured = adapter.measure(model, device)
        finally:
            with self._cond:
                self._reserved[target] -= entry.footprint(target)
                self._reserved[CPU] -= staging
        with self._cond:
            if measured:
                entry.measured[target] = int(measured)
            entry.probe_base, entry.ran = probe_base, False
            self._load_seq += 1
            entry.load_seq = self._load_seq
            entry.model = model
            entry.tier = target
            entry.loads += 1
            entry.gpu_loads += target == GPU
            entry.last_used = self._clock()
            self._bytes_moved += entry.footprint(target)
            self._check_budgets()
        # A measurement larger than the estimate may overshoot: correct at once.
        self._trim_to_budget(keep=entry)

    def _move(self, entry: _Entry, target: str) -> None:
        device = self.device_for(target)
        with self._cond:
            self._reserved[target] += entry.footprint(target)
            self._check_budgets()
        source = entry.tier
        with self._cond:
            entry.probe_base, entry.ran = None, False
        try:
            if entry.adapter.movable:
                model = entry.adapter.move(entry.model, device)
            else:
                # Cannot move between devices: unload and rebuild on the target.
                entry.adapter.unload(entry.model)
                entry.model, entry.tier = None, None
                gc.collect()
                with self._cond:
                    self._reserved[target] -= entry.footprint(target)
                self._load(entry, target)
                return
        except BaseException:
            with self._cond:
                self._reserved[target] -= entry.footprint(target)
            raise
        with self._cond:
            self._reserved[target] -= entry.footprint(target)
            if target == CPU or not entry.measured.get(target):
                measured = entry.adapter.measure(model, device)
                if measured:
                    entry.measured[target] = int(measured)
            entry.model = model
            entry.tier = target
            entry.moves += 1
            entry.gpu_loads += target == GPU and source != GPU
            entry.last_used = self._clock()
            self._bytes_moved += entry.footprint(target)
            self._check_budgets()
        self._trim_to_budget(keep=entry)

    def _evict(self, victim: _Entry, dest: str | None) -> None:
        """Move a victim to the CPU (``dest == CPU``) or unload it (``dest is None``)."""
        with self._cond:
            victim.probe_base, victim.ran = None, False
        if dest == CPU and victim.adapter.movable and victim.tier == GPU:
            with self._cond:
                self._reserved[CPU] += victim.footprint(CPU)
                self._check_budgets()
            try:
                model = victim.adapter.move(victim.model, "cpu")
            finally:
                with self._cond:
                    self._reserved[CPU] -= victim.footprint(CPU)
            with self._cond:
                victim.model, victim.tier = model, CPU
                victim.evictions += 1
                victim.moves += 1
                self._bytes_moved += victim.footprint(CPU)
            _release_gpu_cache(self.gpu_device)
            return
        model = victim.model
        with self._cond:
            victim.model, victim.tier = None, None
            victim.evictions += 1
        victim.adapter.unload(model)
        del model
        gc.collect()
        _release_gpu_cache(self.gpu_device)

    def _others_on_gpu(self, entry: _Entry) -> int:
        """Under the lock: GPU bytes counted for every model but ``entry``."""
        return sum(e.footprint(GPU) for e in self._entries.values() if e is not entry and e.tier == GPU)

    def _remeasure_due(self) -> bool:
        """Under the lock: a model has run since its load and nothing on the GPU is leased now."""
        on_gpu = [e for e in self._entries.values() if e.tier == GPU]
        return any(e.ran for e in on_gpu) and not any(e.leases for e in on_gpu)

    def _remeasure_after_runs(self) -> None:
        """Measure models again after their first run, keep the larger figure, trim if over budget.

        The device-wide free memory is read when nothing on the GPU is leased (so no run is
        in flight); what the other models gained or lost since the load (loads, evictions,
        their own corrected figures) is taken out of the difference. Skipped while another
        thread holds the transition lock: the next lease to end reads it instead.
        """
        if not self._transition.acquire(blocking=False):
            return
        try:
            with self._cond:
                if not self._remeasure_due():
                    return
                due = sorted((e for e in self._entries.values() if e.tier == GPU and e.ran and not e.busy),
                             key=lambda e: e.load_seq)
                granted = self._leases_granted
            free_now = self.probe.gpu_free_bytes()
            with self._cond:
                if self._leases_granted != granted:
                    return  # a lease began meanwhile and may be running: read at a later quiet moment
                for e in due:
                    base, e.probe_base, e.ran = e.probe_base, None, False
                    if free_now is None or base is None or e.tier != GPU:
                        continue
                    free_before, others_before = base
                    after_run = (free_before - free_now) - (self._others_on_gpu(e) - others_before)
                    if after_run > e.footprint(GPU):
                        e.measured[GPU] = int(after_run)
                self._check_budgets()
            self._trim_to_budget(keep=None)
        finally:
            self._transition.release()

    def _trim_to_budget(self, keep: _Entry | None) -> None:
        """Evict LRU unleased models while a tier is over budget (after a larger-than-expected load)."""
        for tier in TIERS:
            while True:
                with self._cond:
                    if self._used(tier) <= self._budget(tier):
                        break
                    candidates = sorted(
                        (e for e in self._entries.values()
                         if e is not keep and e.tier == tier and not e.leases and not e.busy),
                        key=lambda e: e.last_used,
                    )
                    if not candidates:
                        break  # only leased models remain; counted by _check_budgets
                    victim = candidates[0]
                    victim.busy = True
                try:
                    with self._transition:
                        self._evict(victim, None)
                finally:
                    with self._cond:
                        victim.busy = False
                        self._changed()

    def _evict_all_unleased(self, tier: str, keep: _Entry, holding_transition: bool = False) -> None:
        with self._cond:
            victims = [e for e in self._entries.values()
                       if e is not keep and e.tier == tier and not e.leases and not e.busy]
            for v in victims:
                v.busy = True
        try:
            if holding_transition:
                for v in victims:
                    self._evict(v, None)
            else:
                with self._transition:
                    for v in victims:
                        self._evict(v, None)
        finally:
            with self._cond:
                for v in victims:
                    v.busy = False
                self._changed()

    def _check_budgets(self) -> None:
        for tier in TIERS:
            if self._used(tier) > self._budget(tier):
                self._over_budget_events += 1

    # ------------------------------------------------------------ housekeeping
    def unload(self, key: str) -> bool:
        """Unload one model now (waits for its leases to end). True if it was loaded."""
        entry = self._entry(key)
        while True:
            # Wait for the leases without holding the transition lock: a lease
            # holder may need a transition before it can let go.
            with self._cond:
                while entry.leases or entry.busy:
                    self._cond.wait()
            with self._transition:
                with self._cond:
                    if entry.leases or entry.busy:
                        continue
                    if entry.tier is None:
                        return False
                    entry.busy = True
                try:
                    self._evict(entry, None)
                finally:
                    with self._cond:
                        entry.busy = False
                        self._changed()
                return True

    def unload_all(self) -> None:
        for key in self.registered():
            self.unload(key)

    def evict_idle(self) -> list[str]:
        """Unload models unused for ``idle_ttl_s``; returns their keys."""
        if not self.idle_ttl_s:
            return []
        now = self._clock()
        with self._cond:
            idle = [k for k, e in self._entries.items()
                    if e.tier is not None and not e.leases and not e.busy and now - e.last_used >= self.idle_ttl_s]
        done = []
        for key in idle:
            entry = self._entries[key]
            with self._transition:
                with self._cond:
                    if entry.leases or entry.busy or entry.tier is None or now - entry.last_used < self.idle_ttl_s:
                        continue
                    entry.busy = True
                try:
                    self._evict(entry, None)
                    done.append(key)
                finally:
                    with self._cond:
                        entry.busy = False
                        self._changed()
        return done

    def start_janitor(self, interval_s: float = 30.0) -> None:
        """Run ``evict_idle`` in a daemon thread (no-op without an idle TTL)."""
        if not self.idle_ttl_s or self._janitor is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval_s):
                self.evict_idle()

        self._janitor = threading.Thread(target=loop, name="enfoads-residency-janitor", daemon=True)
        self._janitor.start()

    def close(self) -> None:
        self._stop.set()
        if self._janitor is not None:
            self._janitor.join(timeout=5)
            self._janitor = None
        self.unload_all()

    # -------------------------------------------------------------------- stats
    def room_for(self, key: str) -> tuple[bool, str]:
        """Whether ``key`` can be placed now, where it prefers, without evicting any model: ``(yes, why not)``.

        For optional loads (warming a model up at start) that must never push
        out a model someone is using or may use.
        """
        entry = self._entry(key)
        with self._cond:
            target = self._target_tier(entry, None)
            if entry.tier == target:
                return True, "already loaded"
            need = self._needs(entry, target)
            staged = target == GPU and entry.tier is None
            for tier in TIERS:
                if need[tier] > self._budget(tier):
                    return False, (f"needs {_gb(need[tier])} of {_what(tier, staged)}, more than the whole budget "
                                   f"({_gb(self._budget(tier))})")
            short = [t for t in TIERS if self._budget(t) - self._used(t) < need[t]]
            if short:
                resident = sorted(e.adapter.key for e in self._entries.values() if e is not entry and e.tier)
                return False, (f"needs {_gb(need[short[0]])} of {_what(short[0], staged)}; loading it now would "
                               f"push out {', '.join(resident) or 'reserved memory'}")
            return True, ""

    def stats(self) -> ResidencyStats:
        with self._cond:
            models = []
            for key, e in self._entries.items():
                models.append(
                    {
                        "id": key,
                        "runtime": e.adapter.runtime,
                        "tier": e.tier,
                        "device": self.device_for(e.tier) if e.tier else None,
                        "bytes": e.footprint(e.tier) if e.tier else 0,
                        "measured": bool(e.measured),
                        "leases": e.leases,
                        "loads": e.loads,
                        "gpu_loads": e.gpu_loads,
                        "evictions": e.evictions,
                        "moves": e.moves,
                        "last_used": e.last_used or None,
                    }
                )
            return ResidencyStats(
                gpu_budget=self.gpu_budget,
                ram_budget=self.ram_budget,
                gpu_used=self._used(GPU),
                ram_used=self._used(CPU),
                loads=sum(e.loads for e in self._entries.values()),
                gpu_loads=sum(e.gpu_loads for e in self._entries.values()),
                evictions=sum(e.evictions for e in self._entries.values()),
                bytes_moved=self._bytes_moved,
                oom_recoveries=self._oom_recoveries,
                over_budget_events=self._over_budget_events,
                models=models,
            )


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
