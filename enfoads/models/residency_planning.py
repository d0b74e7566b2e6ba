"""Placement planning for the residency manager: what a lease needs, what fits, which models make room.

``PlanningMixin`` is mixed into ``ResidencyManager`` and reads its bookkeeping
(``_entries``, ``_reserved``, the budgets); every method runs under the
manager's condition lock and changes nothing but the plan it returns (or
raises the error that says no plan can exist).
"""
from __future__ import annotations

from enfoads.models.residency_types import (
    CPU,
    GPU,
    TIERS,
    _TIER_NAMES,
    _TIER_SETTING,
    ModelMemoryError,
    _Entry,
    _gb,
    _what,
)


class PlanningMixin:
    """The planning half of ``ResidencyManager`` (see ``enfoads.models.residency``)."""

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
