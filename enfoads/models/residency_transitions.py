"""The slow transitions of the residency manager: load, move, evict, trim, measure again.

``TransitionMixin`` is mixed into ``ResidencyManager``. Its methods run with
the manager's transition lock held (or take it), and its condition lock only
around the bookkeeping, so leases of resident models never wait for a load.
"""
from __future__ import annotations

import gc

from enfoads.models.residency_types import (
    CPU,
    GPU,
    TIERS,
    ModelMemoryError,
    _Entry,
    _gb,
    _release_gpu_cache,
    is_out_of_memory,
)


class TransitionMixin:
    """The execution half of ``ResidencyManager`` (see ``enfoads.models.residency``)."""

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
