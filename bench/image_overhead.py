"""What the image service adds to a diffusers call: tiny profile, interleaved in one run.

    .venv/bin/python bench/image_overhead.py [--rounds 8] [--size 1024] [--steps 4]

The same image (prompt, seed, size, steps, guidance 0, the 4-step
Lightning-format UNet with trailing Euler) is made three ways per round, in a
rotating order so that no path always runs first:

- direct:  ``pipe(...)`` on the leased tiny pipeline, then the same PNG
  encoding the service uses: the least any server must do to hand back an image;
- service: ``ImageService.generate``: validation, plan, cache lookup and
  insert, lease, per-step progress, a preview frame per step (latent->RGB,
  WebP, saved as an asset), PNG encoding, asset save;
- job:     the same through ``JobQueue.submit_and_wait`` (job row, a progress
  row per step, events, result JSON).

Each figure is the median over rounds of (path time / direct time) of the
same round. The default is the frontend's speed mode at its default 1:1 size
(1024x1024, 4 steps); the service's cost per image is fixed (a few ms of
previews, saves and bookkeeping), so smaller sizes (``--size 512``), where the
tiny model takes a fraction of a second, show a larger ratio. The bare diffusers call without encoding is printed as well.
Uses a temporary data dir and models dir (the tiny kit is built there, ~2 s).
Last line: ``image_service_overhead=<ratio>`` (goal <= 1.02).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--size", type=int, default=1024, help="width = height (multiple of 8, 256-1536)")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--models-dir", type=Path, default=None, help="reuse a models dir holding the tiny kit")
    args = ap.parse_args()

    import torch

    from enfoads.assets import AssetStore
    from enfoads.jobs import JobQueue
    from enfoads.runtime import build_runtime
    from enfoads.services.images import ImageService, encode_image
    from enfoads.settings import Settings

    with tempfile.TemporaryDirectory(prefix="enfoads-bench-img-") as tmp:
        tmp = Path(tmp)
        models = args.models_dir or tmp / "models"
        settings = Settings(profile="tiny", models_dir=models, data_dir=tmp / "data", gpu_budget_gb=0.25,
                            ram_budget_gb=2.0)
        rt = build_runtime(settings)
        service = ImageService(rt)
        assets = AssetStore(settings.data_dir)
        queue = JobQueue(settings.data_dir, assets=assets)
        for kind in service.job_kinds():
            queue.register(kind.name, kind.handler, device=kind.device)
        queue.start()
        key = rt.model_key("image")
        base = {"prompt": "a red chair in an empty room", "steps": args.steps, "guidance": 0,
                "width": args.size, "height": args.size, "format": "png"}

        def direct(seed: int, encode: bool = True) -> float:
            t0 = time.perf_counter()
            with rt.residency.use(key) as pipe:
                img = pipe(base["prompt"], num_inference_steps=args.steps, guidance_scale=0.0, width=args.size,
                           height=args.size, generator=torch.Generator("cpu").manual_seed(seed)).images[0]
            if encode:
                encode_image(img, "png")
            return time.perf_counter() - t0

        def via_service(seed: int) -> float:
            t0 = time.perf_counter()
            r = service.generate(service.validate({**base, "seed": seed}), assets=assets)
            assert not r["cached"] and len(r["previews"]) == args.steps
            return time.perf_counter() - t0

        def via_job(seed: int) -> float:
            t0 = time.perf_counter()
            job = queue.submit_and_wait("image.generate", service.validate({**base, "seed": seed}), timeout=600)
            assert job.state == "succeeded", job.error
            return time.perf_counter() - t0

        paths = {"direct": direct, "service": via_service, "job": via_job, "bare": lambda s: direct(s, False)}
        times: dict[str, list[float]] = {k: [] for k in paths}
        order = list(paths)
        try:
            for r in range(args.warmup + args.rounds):
                seed = 1000 + r  # service and job use distinct seeds: a fresh render, never a cache hit
                for name in order[r % len(order):] + order[: r % len(order)]:
                    elapsed = paths[name](seed + (100_000 if name == "job" else 0))
                    if r >= args.warmup:
                        times[name].append(elapsed)
        finally:
            queue.close()
            service.close()
            rt.close()

    ratio = {k: statistics.median(t / d for t, d in zip(times[k], times["direct"])) for k in ("service", "job", "bare")}
    print(f"profile=tiny size={args.size}x{args.size} steps={args.steps} rounds={args.rounds} "
          f"torch_threads={torch.get_num_threads()} previews_per_image={args.steps}")
    for k in ("bare", "direct", "service", "job"):
        t = times[k]
        print(f"{k:8s} median_s={statistics.median(t):.4f} min_s={min(t):.4f} max_s={max(t):.4f}")
    best = {k: min(times[k]) / min(times["direct"]) for k in ("service", "job")}
    print(f"bare_diffusers_vs_direct={ratio['bare']:.4f}  (direct = diffusers call + PNG encode)")
    print(f"fastest_run_ratios service={best['service']:.4f} job={best['job']:.4f}  (least disturbed runs)")
    print(f"image_job_overhead={ratio['job']:.4f}")
    print(f"image_service_overhead={ratio['service']:.4f}")


if __name__ == "__main__":
    main()
