"""Replay a recorded mixed trace through the real residency manager on T4 budgets.

Models have their real fp16 sizes and the host RAM their loads stage (from the
catalogue) and run with simulated weights (``enfoads.testing.simulation``); the budgets
are those ``build_runtime`` derives on a Colab T4 (``Settings`` with the ``t4``
profile on ``enfoads.testing.simulation.T4_HARDWARE``); the manager, its planner and its
accounting are the product's own. Prints loads, bytes moved, over-budget moments (must be
0) and, last, ``residency_vs_belady=<ratio>``: the manager's GPU loads over
those of the clairvoyant furthest-next-use (Belady) policy on the same trace
and GPU budget. Goal <= 1.10.

Run: python bench/residency_trace.py [--trace bench/traces/t4_mixed.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from contextlib import ExitStack
from pathlib import Path

from enfoads.models.adapters import staging_bytes_for
from enfoads.models.catalog import CATALOG, GB
from enfoads.models.residency import ResidencyManager
from enfoads.models.residency_types import CPU, GPU
from enfoads.testing.simulation import EXTRA_CPU_MODELS, SIMULATED_GPU_DEVICE, T4_HARDWARE, SimulatedAdapter, t4_budgets

HERE = Path(__file__).parent
# A Colab T4 (15.8 GB of VRAM; 12.7 GB of RAM, ~9.7 GB available at start) and the budgets
# the t4 profile leaves of it: VRAM minus 2.5 GiB, available RAM minus 3 GiB.
T4_VRAM, T4_RAM = T4_HARDWARE.vram_total_bytes, T4_HARDWARE.ram_available_bytes
_GPU_BUDGET, _RAM_BUDGET = t4_budgets()
GPU_RESERVE, RAM_RESERVE = T4_VRAM - _GPU_BUDGET, T4_RAM - _RAM_BUDGET


def model_table(trace: list[list[str]]) -> dict[str, tuple[int, int, str, str, int]]:
    """id -> (vram bytes, ram bytes, runtime, preferred tier, staging bytes of a GPU load)."""
    table = {}
    for key in {k for request in trace for k in request}:
        if key in CATALOG:
            e = CATALOG[key]
            table[key] = (e.vram_bytes, e.ram_bytes, e.runtime, GPU, staging_bytes_for(e))
        else:
            ram, runtime = EXTRA_CPU_MODELS[key]
            table[key] = (0, ram, runtime, CPU, 0)
    return table


class TickClock:
    """Deterministic time: each reading is one tick later."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def replay_manager(trace, table, gpu_budget, ram_budget) -> dict:
    manager = ResidencyManager(
        gpu_budget=gpu_budget, ram_budget=ram_budget, gpu_device=SIMULATED_GPU_DEVICE, clock=TickClock()
    )
    for key, (vram, ram, runtime, tier, staging) in table.items():
        adapter = SimulatedAdapter(
            key, vram if tier == GPU else ram, ram_size=ram, runtime=runtime, movable=runtime == "torch",
            staging_bytes=staging if tier == GPU else 0,
        )
        manager.register(adapter, preferred=tier)
    over_budget = 0
    for request in trace:
        with ExitStack() as stack:
            for key in request:
                stack.enter_context(manager.use(key))
                s = manager.stats()
                over_budget += (s.gpu_used > s.gpu_budget) + (s.ram_used > s.ram_budget)
    s = manager.stats()
    return {
        "requests": len(trace),
        "loads": s.loads,
        "gpu_loads": s.gpu_loads,
        "evictions": s.evictions,
        "bytes_moved": s.bytes_moved,
        "over_budget": over_budget + s.over_budget_events,
    }


def belady_gpu_loads(trace, table, gpu_budget) -> int:
    """Furthest-next-use eviction on the GPU tier alone, with no RAM limit.

    With models of different sizes plain furthest-next-use over-evicts (it may
    drop three small models before the big one that had to go), so victims
    that turn out not to be needed are kept, soonest next use first.
    """
    flat = [(i, key) for i, request in enumerate(trace) for key in request if table[key][3] == GPU]
    next_use: list[int] = [0] * len(flat)
    last_seen: dict[str, int] = {}
    for pos in range(len(flat) - 1, -1, -1):
        key = flat[pos][1]
        next_use[pos] = last_seen.get(key, 10**9)
        last_seen[key] = pos
    resident: dict[str, int] = {}  # key -> position of its next use
    loads = 0
    for pos, (request_index, key) in enumerate(flat):
        if key not in resident:
            loads += 1
            pinned = set(trace[request_index])
            size = lambda keys: sum(table[k][0] for k in keys)  # noqa: E731
            victims: list[str] = []
            for k in sorted((k for k in resident if k not in pinned), key=lambda k: -resident[k]):
                if size(resident) - size(victims) + table[key][0] <= gpu_budget:
                    break
                victims.append(k)
            for k in sorted(victims, key=lambda k: resident[k]):
                if size(resident) - size(victims) + table[k][0] + table[key][0] <= gpu_budget:
                    victims.remove(k)
            for k in victims:
                del resident[k]
        resident[key] = next_use[pos]
    return loads


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", type=Path, default=HERE / "traces" / "t4_mixed.json")
    args = parser.parse_args(argv)
    trace = json.loads(args.trace.read_text())["requests"]
    table = model_table(trace)
    gpu_budget, ram_budget = T4_VRAM - GPU_RESERVE, T4_RAM - RAM_RESERVE

    ours = replay_manager(trace, table, gpu_budget, ram_budget)
    belady = belady_gpu_loads(trace, table, gpu_budget)
    print(f"trace: {args.trace.name}, {ours['requests']} requests over {len(table)} models")
    print(
        f"budgets: GPU {gpu_budget / GB:.2f} GB, host RAM {ram_budget / GB:.2f} GB "
        f"(T4: {T4_VRAM / GB:.1f} GB VRAM, {T4_HARDWARE.ram_total_bytes / GB:.1f} GB RAM, "
        f"{T4_RAM / GB:.1f} GB available; t4 profile reserves)"
    )
    print(f"loads={ours['loads']} gpu_loads={ours['gpu_loads']} evictions={ours['evictions']}")
    print(f"bytes_moved={ours['bytes_moved'] / GB:.1f} GB")
    print(f"over_budget_moments={ours['over_budget']}")
    print(f"belady_gpu_loads={belady}")
    print(f"residency_vs_belady={ours['gpu_loads'] / belady:.3f}")
    return 0 if ours["over_budget"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
