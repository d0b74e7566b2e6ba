"""Ray Serve scale-out on the tiny kit: throughput with 2 image replicas over 1, and what the Ray hop costs.

    .venv/bin/python bench/ray_scale.py [--jobs 32] [--hops 20]

Three engines in turn, as ``enfoads serve`` builds them (the real queue, the
real SQLite rows and events): the local backend, Ray with one image replica,
Ray with two. Figures (``name=value`` lines; the last line repeats the
headline ones):

- ``ray_start_s``: ``build_engine`` to every role deployed (``ray.init`` of a
  local Ray with 2 CPUs, Serve, the replicas' imports), for 1 and 2 replicas;
- ``ray_rss_mb``: resident memory of the Ray processes (raylet, GCS, Serve
  controller, replicas) with 2 image replicas, head excluded;
- ``local_ms``, ``ray_ms``: mean wall time of one small job (1 step, 256 px)
  submitted and waited for, one at a time, ``--hops`` times, after a warm-up;
- ``local_outside_ms``, ``ray_outside_ms``: the same less the handler's own
  time (its result's ``timings.total_s``): the queue, and for Ray the hop;
- ``hop_overhead_ms``: ``ray_outside_ms - local_outside_ms``, what shipping a
  job to a replica and streaming its messages and bytes back adds (the
  render itself differs too: a replica's torch gets one thread, see below);
- ``throughput_1``, ``throughput_2``: jobs per second for ``--jobs`` renders
  (8 steps at 256 px) queued at once, with 1 and 2 replicas;
- ``two_over_one``: ``throughput_2 / throughput_1``.

Why ``two_over_one`` is about 1.4-1.5 on this 2-core machine: Ray sets
``OMP_NUM_THREADS=1`` in an actor that asks for less than one CPU, so each
replica's torch runs one thread; a second replica brings the second core, less
what the head (the queue's SQLite writes, the PNG bytes stored as assets,
events) and the Serve controller take from the same two cores. (The local
backend's torch uses both cores for one job, so one replica is slower per job
than the local queue.) On a box with one GPU per replica the work is
GPU-bound and each replica has its own device.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SMALL = {"prompt": "a red bicycle", "steps": 1, "width": 256, "height": 256, "cache": False}
RENDER = {"prompt": "a blue kite over the sea", "steps": 8, "width": 256, "height": 256, "cache": False}


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total / 2**20


def _ray_pids() -> list[int]:
    """Every Ray process of this machine's local Ray (raylet, GCS, workers), not this head."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "ray" in cmd and any(word in cmd for word in ("raylet", "gcs_server", "default_worker", "ray::",
                                                          "dashboard", "log_monitor", "monitor.py")):
            pids.append(int(entry.name))
    return pids


def _engine(models_dir: Path, data_dir: Path, **ray):
    from enfoads.engine import build_engine
    from enfoads.settings import Settings

    settings = Settings(profile="tiny", models_dir=models_dir, data_dir=data_dir, auto_download="off", warm="off",
                        **ray)
    started = time.perf_counter()
    engine = build_engine(settings)
    if ray:
        assert engine.jobs.available, engine.jobs.last_error
    return engine, time.perf_counter() - started


def _one_at_a_time(engine, n: int) -> tuple[float, float]:
    """Mean wall ms per job, and mean ms outside the handler's own work (its ``timings.total_s``)."""
    engine.submit_and_wait("image.generate", {**SMALL, "seed": 0}, timeout=300)  # warm: model loaded
    took, outside = [], []
    for i in range(n):
        started = time.perf_counter()
        job = engine.submit_and_wait("image.generate", {**SMALL, "seed": i + 1}, timeout=300)
        took.append(time.perf_counter() - started)
        assert job.state == "succeeded", job.error
        outside.append(took[-1] - job.result["timings"]["total_s"])
    return statistics.mean(took) * 1000, statistics.mean(outside) * 1000


def _warm_every_replica(engine, replicas: int) -> None:
    """Jobs in pairs until each replica ran one (its model loaded) before the clock starts."""
    warmed: set[str] = set()
    for round_ in range(20):
        pair = [engine.submit("image.generate", {**RENDER, "seed": 1000 + 2 * round_ + i}) for i in range(2)]
        for job in pair:
            assert engine.jobs.wait(job.id, timeout=300).state == "succeeded"
            warmed.add(engine.jobs.ran_on[job.id])
        if len(warmed) >= replicas:
            return
    raise RuntimeError(f"only {len(warmed)} of {replicas} replicas took a job")


def _throughput(engine, n: int, replicas: int) -> float:
    _warm_every_replica(engine, replicas)
    started = time.perf_counter()
    jobs = [engine.submit("image.generate", {**RENDER, "seed": i}) for i in range(n)]
    done = [engine.jobs.wait(job.id, timeout=600) for job in jobs]
    took = time.perf_counter() - started
    assert all(job.state == "succeeded" for job in done), [job.error for job in done]
    return n / took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=32)
    parser.add_argument("--hops", type=int, default=20)
    args = parser.parse_args()

    from enfoads.models.tiny import build_tiny_kit

    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as work:
        models = Path(work) / "models"
        build_tiny_kit(models)

        local, _ = _engine(models, Path(work) / "local")
        try:
            figures["local_ms"], figures["local_outside_ms"] = _one_at_a_time(local, args.hops)
        finally:
            local.close()

        one, figures["ray_start_1_s"] = _engine(models, Path(work) / "ray1", ray="local", ray_roles="image")
        try:
            figures["ray_ms"], figures["ray_outside_ms"] = _one_at_a_time(one, args.hops)
            figures["throughput_1"] = _throughput(one, args.jobs, 1)
        finally:
            one.close()

        two, figures["ray_start_2_s"] = _engine(models, Path(work) / "ray2", ray="local", ray_roles="image",
                                                ray_replicas="image=2")
        try:
            figures["ray_rss_mb"] = _rss_mb(_ray_pids())
            figures["throughput_2"] = _throughput(two, args.jobs, 2)
            replicas = {two.jobs.ran_on[j.id] for j in two.jobs.list(kind="image.generate", limit=args.jobs)}
            figures["replicas_used_2"] = len(replicas)
        finally:
            two.close()

    figures["hop_overhead_ms"] = figures["ray_outside_ms"] - figures["local_outside_ms"]
    figures["two_over_one"] = figures["throughput_2"] / figures["throughput_1"]
    for name, value in figures.items():
        print(f"{name}={value:.3f}" if isinstance(value, float) else f"{name}={value}")
    print(" ".join(f"{k}={figures[k]:.3f}" for k in ("two_over_one", "hop_overhead_ms", "ray_start_2_s",
                                                      "ray_rss_mb")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
