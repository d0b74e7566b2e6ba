"""SIGTERM to exit of ``enfoads serve``: idle, and in the middle of the warm start's model load.

    .venv/bin/python bench/shutdown.py [--runs 3] [--models-dir DIR]

- ``idle_exit_s``: a server that is warm and idle gets SIGTERM; seconds until
  the process has exited (exit code 0 required).
- ``warming_exit_s``: a server gets SIGTERM as soon as ``GET /`` says
  ``warm_state`` ``warming`` (``ENFOADS_WARM=image,faces``: the tiny SDXL
  pipeline is loading). The load in progress has nothing to re-queue, so the
  shutdown does not wait for it; on a T4 an SDXL load takes tens of seconds.
- ``warming_over_idle``: the ratio of the two medians. The goal is that a
  stop during the load costs about a second more than an idle one, whatever
  the load's length. The tiny kit's load takes about 4 s here, which a
  shutdown that waited for it would add (5.6 s before the fix, 1.4 s after).

Medians of ``--runs`` servers of each kind (tiny profile, a new data dir each).
Last line: ``idle_exit_s=<s> warming_exit_s=<s> warming_over_idle=<x>``.
"""
from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from startup import spawn_server  # noqa: E402  (also puts tests/ on the path)

WARM = {"ENFOADS_WARM": "image,faces"}


def wait_warm_state(srv, wanted: set[str], timeout: float = 120.0) -> str:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = requests.get(srv.base + "/", timeout=5).json().get("warm_state")
        if state in wanted:
            return state
        time.sleep(0.01)
    raise TimeoutError(f"warm_state never became one of {sorted(wanted)}")


def exit_after_sigterm(srv) -> float:
    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    code = srv.proc.wait(120)
    elapsed = time.monotonic() - t0
    if code != 0:
        raise RuntimeError(f"enfoads serve exited {code}:\n{srv.log.read_text()[-3000:]}")
    return elapsed


def one_run(models: Path, data: Path, *, during_warm_up: bool) -> float:
    srv = spawn_server(models, data, extra_env=WARM)
    try:
        wait_warm_state(srv, {"warming"} if during_warm_up else {"warm", "skipped", "failed"})
        return exit_after_sigterm(srv)
    finally:
        srv.stop()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--models-dir", type=Path)
    args = parser.parse_args(argv)

    from enfoads.models.tiny import build_tiny_kit

    root = Path(tempfile.mkdtemp(prefix="enfoads-bench-shutdown-"))
    models = args.models_dir or root / "models"
    build_tiny_kit(models)
    idle, warming = [], []
    for i in range(args.runs):
        idle.append(one_run(models, root / f"idle-{i}" / "data", during_warm_up=False))
        warming.append(one_run(models, root / f"warming-{i}" / "data", during_warm_up=True))
        print(f"run {i + 1}: idle {idle[-1]:.2f} s, during the warm-up {warming[-1]:.2f} s", flush=True)
    idle_s, warming_s = statistics.median(idle), statistics.median(warming)
    print(f"idle_exit_s={idle_s:.2f} warming_exit_s={warming_s:.2f} warming_over_idle={warming_s / idle_s:.2f}")


if __name__ == "__main__":
    main()
