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

Layout: tiers, errors, the adapter protocol and the entries are in
``enfoads.models.residency_types``; placement planning is in
``enfoads.models.residency_planning`` and the transitions (load, move, evict,
trim) in ``enfoads.models.residency_transitions``, mixed into the manager.
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from enfoads.models.residency_planning import PlanningMixin
from enfoads.models.residency_transitions import TransitionMixin
from enfoads.models.residency_types import (
    CPU,
    GPU,
    TIERS,
    MemoryProbe,
    ModelAdapter,
    ModelMemoryError,
    NoProbe,
    ResidencyError,
    ResidencyStats,
    UnknownModelError,
    _Entry,
    _gb,
    _release_gpu_cache,
    _what,
    is_out_of_memory,
)

log = logging.getLogger(__name__)


class ResidencyManager(PlanningMixin, TransitionMixin):
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
                unloaded = self._evict_unless_in_use(entry)
            if unloaded is not None:
                return unloaded

    def _evict_unless_in_use(self, entry, wanted: Callable[[Any], bool] | None = None) -> bool | None:
        """With the transition lock held: unload ``entry`` unless it is in use (None) or not
        loaded, or ``wanted(entry)`` says no any more (False). True once unloaded."""
        with self._cond:
            if entry.leases or entry.busy:
                return None
            if entry.tier is None or (wanted is not None and not wanted(entry)):
                return False
            entry.busy = True
        try:
            self._evict(entry, None)
        finally:
            with self._cond:
                entry.busy = False
                self._changed()
        return True

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
            with self._transition:
                if self._evict_unless_in_use(self._entries[key], lambda e: now - e.last_used >= self.idle_ttl_s):
                    done.append(key)
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
        """Stop the janitor and unload every model that is not in use.

        A model still leased or loading at close belongs to a thread the job queue left
        behind at shutdown (a warm-start load, a job that stopped reporting progress):
        waiting for it could take as long as the load, or forever, so it is left to the
        process's exit, and so is everything while a load holds the transition lock.
        """
        self._stop.set()
        if self._janitor is not None:
            self._janitor.join(timeout=5)
            self._janitor = None
        if not self._transition.acquire(timeout=0.2):
            log.info("a model load is still in progress at close: the models are left to the process's exit")
            return
        try:
            for key, entry in list(self._entries.items()):
                if self._evict_unless_in_use(entry) is None:
                    log.info("%s is still in use at close: left to the process's exit", key)
        finally:
            self._transition.release()

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
