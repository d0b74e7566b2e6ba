"""What a job costs on top of the work: submit -> GPU worker -> result, vs a direct call.

    .venv/bin/python bench/queue_overhead.py [--jobs 1000] [--batch 50]

A tiny fixed piece of work (hashing 32 KiB) runs N times directly and N times
as jobs through the real queue (SQLite job rows, persisted events, one
progress report per job), one job at a time with ``submit_and_wait`` (the
path of the "synchronous" endpoints). Direct and queued batches alternate so
both see the same machine state; the figure is the median over batches of
(queued - direct) / batch. Uses a temporary data dir. Last line:
``queue_overhead_ms_per_job=<value>`` (goal < 5).
"""
from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time

from enfoads.work.assets import AssetStore
from enfoads.work.events import EventBus
from enfoads.work.jobs import JobQueue

PAYLOAD = b"x" * 1024


def work(params: dict) -> dict:
    h = hashlib.sha256()
    for _ in range(params["rounds"]):
        h.update(PAYLOAD)
    return {"digest": h.hexdigest()}


def handler(params: dict, ctx) -> dict:
    ctx.progress(50, "working")
    return work(params)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=50)
    args = ap.parse_args()
    params = {"rounds": 32}

    with tempfile.TemporaryDirectory(prefix="enfoads-bench-") as data_dir:
        bus = EventBus(data_dir)
        queue = JobQueue(data_dir, assets=AssetStore(data_dir), bus=bus)
        queue.register("bench.tiny", handler, device="gpu")
        queue.start()
        try:
            for _ in range(20):  # warm-up
                queue.submit_and_wait("bench.tiny", params, timeout=10)
                work(params)
            direct_ms, queued_ms, overhead_ms = [], [], []
            for _ in range(max(1, args.jobs // args.batch)):
                t0 = time.perf_counter()
                for _ in range(args.batch):
                    work(params)
                direct = (time.perf_counter() - t0) * 1000 / args.batch
                t0 = time.perf_counter()
                for _ in range(args.batch):
                    job = queue.submit_and_wait("bench.tiny", params, timeout=10)
                    assert job.state == "succeeded", job
                queued = (time.perf_counter() - t0) * 1000 / args.batch
                direct_ms.append(direct)
                queued_ms.append(queued)
                overhead_ms.append(queued - direct)
            mode = queue.journal_mode
        finally:
            queue.close()
            bus.close()

    n = len(overhead_ms) * args.batch
    print(f"jobs={n} batches={len(overhead_ms)}x{args.batch} journal={mode} events_persisted=yes")
    print(f"direct_ms_per_call median={statistics.median(direct_ms):.4f}")
    print(f"queued_ms_per_job  median={statistics.median(queued_ms):.4f} p90={_p90(queued_ms):.4f}")
    print(f"overhead_ms_per_job min={min(overhead_ms):.4f} max={max(overhead_ms):.4f}")
    print(f"queue_overhead_ms_per_job={statistics.median(overhead_ms):.3f}")


def _p90(values: list[float]) -> float:
    return sorted(values)[int(0.9 * (len(values) - 1))]


if __name__ == "__main__":
    main()
