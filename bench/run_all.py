"""Run every benchmark in ``bench/``, compare each figure with its goal, write results.json and results.md.

    .venv/bin/python bench/run_all.py [--only NAME,...] [--timeout-scale 1.0] [--out-dir bench]

Each bench runs in its own subprocess with a timeout; its figures are the
``name=value`` pairs of its last line (plus a few named ones from earlier
lines). The ratios come from each bench's own interleaved runs in one process
(the same work done directly and through the service or queue, alternating),
so they hold on a noisy machine where absolute times do not. ``bench/gpu_*.py``
needs CUDA and is skipped (and listed as skipped) without it. Any new
``bench/*.py`` is run too, with no arguments, and its last line reported.

The tiny kit is built once into a temporary models dir shared by the benches.
Writes ``bench/results.json`` (figures, goals, commands, exit codes, the
machine) and ``bench/results.md`` (a table). Exit status 1 when a bench
failed or a figure missed its goal.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PAIR = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)(?![\w.])")

# figure -> (comparison, goal, what it is)
GOALS = {
    "residency_vs_belady": ("<=", 1.10, "GPU loads of the residency manager / the clairvoyant optimum, T4 trace"),
    "queue_overhead_ms_per_job": ("<", 5.0, "ms a job spends in the queue on top of its work"),
    "fixed_ms_per_image": ("<=", 10.0, "ms an image job adds to the raw diffusers call, the PNG aside (tiny kit)"),
    "after_idle_ratio": ("<=", 1.3, "first image after 10 s idle / a warm image, fresh server (tiny kit)"),
    "speech_service_overhead": ("<=", 1.02, "speech service time / faster-whisper call"),
    "import_s": ("<", 0.3, "`import enfoads`, fresh interpreter (s)"),
    "first_answer_s": ("<", 2.0, "`enfoads serve` spawn to first 200 on `/` (s)"),
    "load_light_p99_ms": ("<", 100.0, "p99 of light routes, 50 clients x 20 requests, GPU worker busy (ms)"),
}
# Figures reported without a goal.
INFO = {
    "image_job_overhead": "image job / raw diffusers call + PNG encode, paired rounds",
    "server_ms_per_image": "ms an image job adds to the raw diffusers call, PNG included",
    "png_ms_per_image": "ms encoding the PNG the client receives",
    "job_path_overhead": "transcription through upload + job queue / direct",
    "render_20s_script_seconds": "render of a ~20 s talking-avatar script, 720p (s)",
    "first_image_s": "`enfoads serve` spawn to the first tiny image over HTTP, 1024 px 4 steps (s)",
    "rss_growth_mb": "server RSS growth over the measured load run, idle to idle (MB)",
    "warmup_rss_growth_mb": "the same over the first (warm-up) run on a fresh server (MB)",
    "throughput_rps": "requests/s the 50 clients sent in the measured load run",
    "light_p50_ms": "p50 of light routes under load (ms)",
    "light_p95_ms": "p95 of light routes under load (ms)",
    "unexpected": "unexpected answers under load",
}


@dataclass
class Bench:
    name: str
    script: str
    args: list[str] = field(default_factory=list)
    timeout_s: float = 600.0
    wanted: tuple[str, ...] = ()  # figures taken from any line, besides the last line's
    needs_cuda: bool = False


def known_benches(models: str) -> list[Bench]:
    m = ["--models-dir", models]
    return [
        Bench("residency", "residency_trace.py", timeout_s=300),
        Bench("queue", "queue_overhead.py", timeout_s=300),
        Bench("image", "image_overhead.py", m, timeout_s=900, wanted=("image_job_overhead",)),
        Bench("speech", "speech_overhead.py", m, timeout_s=900, wanted=("job_path_overhead",)),
        Bench("tts_video", "tts_rtf.py", m, timeout_s=600),
        Bench("startup", "startup.py", m, timeout_s=600),
        Bench("load", "load.py", m, timeout_s=600,
              wanted=("light_p50_ms", "light_p95_ms", "rss_growth_mb", "warmup_rss_growth_mb", "unexpected",
                      "throughput_rps")),
    ]


NOT_BENCHES = {"run_all.py", "make_trace.py", "__init__.py"}


def all_benches(models: str) -> list[Bench]:
    benches = known_benches(models)
    known = {b.script for b in benches}
    for path in sorted(HERE.glob("*.py")):
        if path.name in known or path.name in NOT_BENCHES:
            continue
        benches.append(Bench(path.stem, path.name, timeout_s=600, needs_cuda=path.name.startswith("gpu_")))
    return benches


def cuda_available() -> bool:
    probe = "import torch, sys; sys.stdout.write(str(torch.cuda.is_available()))"
    try:
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        return False
    return done.stdout.strip() == "True"


def parse_figures(text: str, wanted: tuple[str, ...]) -> tuple[str, dict[str, float]]:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    figures: dict[str, float] = {}
    for line in lines:  # a wanted figure printed more than once: the latest counts
        for k, v in PAIR.findall(line):
            if k in wanted:
                figures[k] = float(v)
    figures.update({k: float(v) for k, v in PAIR.findall(last)})
    return last, figures


def run_bench(bench: Bench, scale: float, env: dict) -> dict:
    cmd = [sys.executable, str(HERE / bench.script), *bench.args]
    started = time.monotonic()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=bench.timeout_s * scale, env=env,
                              cwd=str(ROOT), check=False)
        rc, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        rc = None
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
    seconds = time.monotonic() - started
    last, figures = parse_figures(out, bench.wanted)
    status = "ok" if rc == 0 and figures else ("timeout" if rc is None else "failed")
    return {
        "script": f"bench/{bench.script}",
        "command": " ".join(["python", f"bench/{bench.script}", *bench.args]),
        "status": status,
        "returncode": rc,
        "seconds": round(seconds, 1),
        "last_line": last,
        "figures": figures,
        "output": out[-4000:],
        "stderr_tail": err[-2000:] if status != "ok" else "",
    }


def judge(value: float, goal: tuple[str, float, str]) -> bool:
    op, target, _ = goal
    return value <= target if op == "<=" else value < target


def fmt(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"


def machine() -> dict:
    now = dt.datetime.now(dt.timezone.utc)  # noqa: UP017 - datetime.UTC is 3.11+, the package supports 3.10
    info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "date": now.isoformat(timespec="seconds")}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - informative only
        pass
    return info


def write_markdown(path: Path, results: dict) -> None:
    rows = ["| figure | value | goal | met | bench |", "|---|---|---|---|---|"]
    for name, f in results["figures"].items():
        goal = f"{f['goal_op']} {fmt(f['goal'])}" if f.get("goal") is not None else "-"
        met = {True: "yes", False: "**no**", None: "-"}[f.get("met")]
        rows.append(f"| `{name}` | {fmt(f['value'])} | {goal} | {met} | `{f['bench']}` |")
    skipped = [f"- `{b['script']}`: {b['reason']}" for b in results["skipped"]]
    failed = [f"- `{name}`: {b['status']} (exit {b['returncode']})" for name, b in results["benches"].items()
              if b["status"] != "ok"]
    m = results["machine"]
    text = [
        "# Benchmark results",
        "",
        f"`python bench/run_all.py`, {m['date']}: Python {m['python']}, {m['cpus']} CPUs, "
        f"torch {m.get('torch', '?')}, CUDA: {m.get('cuda') or 'none'}.",
        "Ratios come from interleaved runs in one process; absolute times depend on the machine.",
        "",
        *rows,
        "",
        "Descriptions: " + "; ".join(f"`{k}`: {v[2]}" for k, v in GOALS.items()) + ".",
    ]
    if skipped:
        text += ["", "Skipped:", *skipped]
    if failed:
        text += ["", "Failed:", *failed]
    text += ["", "Seconds per bench: " + ", ".join(f"{k} {b['seconds']}" for k, b in results["benches"].items()), ""]
    path.write_text("\n".join(text))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated bench names (residency, queue, image, speech, "
                                               "tts_video, startup, load, gpu_sdxl, ...)")
    ap.add_argument("--timeout-scale", type=float, default=1.0, help="multiply every bench's timeout")
    ap.add_argument("--out-dir", type=Path, default=HERE)
    ap.add_argument("--models-dir", type=Path, default=None, help="reuse a models dir holding the tiny kit")
    args = ap.parse_args()
    only = {s.strip() for s in args.only.split(",") if s.strip()}

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory(prefix="enfoads-bench-all-") as tmp:
        models = args.models_dir or Path(tmp) / "models"
        subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; from enfoads.models.tiny import "
                        "build_tiny_kit; build_tiny_kit(Path(sys.argv[1]))", str(models)],
                       check=True, env=env, capture_output=True, cwd=str(ROOT))
        benches = [b for b in all_benches(str(models)) if not only or b.name in only]
        cuda = cuda_available() if any(b.needs_cuda for b in benches) else False
        results: dict = {"machine": machine(), "benches": {}, "skipped": [], "figures": {}}
        for bench in benches:
            if bench.needs_cuda and not cuda:
                results["skipped"].append({"script": f"bench/{bench.script}", "reason": "needs CUDA; none here"})
                print(f"[skip] bench/{bench.script}: needs CUDA; none here", flush=True)
                continue
            print(f"[run ] bench/{bench.script} {' '.join(bench.args)}", flush=True)
            res = run_bench(bench, args.timeout_scale, env)
            results["benches"][bench.name] = res
            print(f"[{res['status']:4s}] {bench.name} {res['seconds']} s: {res['last_line']}", flush=True)
            if res["status"] != "ok":
                print(res["stderr_tail"][-1500:], flush=True)
            for key, value in res["figures"].items():
                goal = GOALS.get(key)
                results["figures"][key] = {
                    "value": value, "bench": bench.name,
                    "goal_op": goal[0] if goal else None, "goal": goal[1] if goal else None,
                    "met": judge(value, goal) if goal else None,
                    "what": goal[2] if goal else INFO.get(key, ""),
                }

    missing = [k for k in GOALS if k not in results["figures"]]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "results.json").write_text(json.dumps(results, indent=2))
    write_markdown(args.out_dir / "results.md", results)

    print()
    print(f"{'figure':30s} {'value':>10s}  goal")
    for name, f in results["figures"].items():
        goal = f"{f['goal_op']} {fmt(f['goal'])}" if f["goal"] is not None else ""
        mark = {True: "ok", False: "MISSED", None: ""}[f["met"]]
        print(f"{name:30s} {fmt(f['value']):>10s}  {goal:8s} {mark}")
    if missing and not only:
        print("no figure for: " + ", ".join(missing))
    print(f"wrote {args.out_dir / 'results.json'} and {args.out_dir / 'results.md'}")
    failed = [n for n, b in results["benches"].items() if b["status"] != "ok"]
    missed = [n for n, f in results["figures"].items() if f["met"] is False]
    return 1 if failed or missed or (missing and not only) else 0


if __name__ == "__main__":
    sys.exit(main())
