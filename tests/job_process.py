"""A real JobQueue in its own process, for the restart-recovery test.

    python tests/job_process.py DATA_DIR serve  --delay 0.05   # submit jobs, run until killed
    python tests/job_process.py DATA_DIR resume --delay 0      # recover, run everything, exit

``serve`` prints one JSON line with the ids of the jobs it submitted, then
runs them until the test kills it (SIGKILL). ``resume`` starts a queue on the
same data dir, waits until no job is queued or running and prints the counts.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from enfoads.work.assets import AssetStore
from enfoads.work.events import EventBus
from enfoads.work.job_types import CPU, GPU
from enfoads.work.jobs import JobQueue


def partial_bytes(job_id: str) -> bytes:
    return f"partial output of {job_id}\n".encode() * 50


def final_bytes(job_id: str) -> bytes:
    return f"final output of {job_id}\n".encode() * 200


def make_handler(delay: float):
    def steps(params: dict, ctx) -> dict:
        n = int(params["steps"])
        ctx.save_bytes(partial_bytes(ctx.job_id), "text/plain", kind="partial")
        for i in range(n):
            ctx.progress(i * 100 // n, f"step {i + 1}/{n}")
            time.sleep(delay)
        ctx.save_bytes(final_bytes(ctx.job_id), "text/plain", kind="final")
        return {"steps": n, "attempt": ctx.attempt}

    return steps


def build(data_dir: str, delay: float, max_attempts: int) -> JobQueue:
    queue = JobQueue(
        data_dir,
        assets=AssetStore(data_dir),
        bus=EventBus(data_dir),
        max_attempts=max_attempts,
        cpu_workers=1,
    )
    handler = make_handler(delay)
    queue.register("test.steps", handler, device=GPU)
    queue.register("test.cpu_steps", handler, device=CPU)
    return queue


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("data_dir")
    ap.add_argument("mode", choices=["serve", "resume"])
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--max-attempts", type=int, default=2)
    args = ap.parse_args(argv)

    queue = build(args.data_dir, args.delay, args.max_attempts).start()
    if args.mode == "serve":
        ids = {
            "fast": queue.submit("test.steps", {"steps": 2}).id,
            "slow": queue.submit("test.steps", {"steps": 400}).id,  # killed in the middle of this one
            "waiting": queue.submit("test.steps", {"steps": 3}).id,  # still queued at the kill
            "cpu": queue.submit("test.cpu_steps", {"steps": 2}).id,
        }
        print(json.dumps(ids), flush=True)
        while True:
            time.sleep(1)
    deadline = time.monotonic() + 30
    while queue.unfinished_job_ids() and time.monotonic() < deadline:
        time.sleep(0.02)
    print(json.dumps(queue.counts()), flush=True)
    queue.close(grace_s=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
