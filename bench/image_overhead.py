"""What the server adds to a diffusers call, per image: tiny profile, one run.

    .venv/bin/python bench/image_overhead.py [--rounds 20] [--size PX] [--steps 4]

Each round makes the same kind of image (a new seed, guidance 0, the 4-step
Lightning-format UNet with trailing Euler) two ways, in alternating order:

- raw: ``pipe(...)`` on the leased tiny pipeline: the model's own work;
- job: ``JobQueue.submit_and_wait("image.generate")`` as ``/generate-image``
  runs it: validation, plan, cache lookup and insert, lease, a progress row
  and event per step, a preview frame per step (latent->RGB, WebP, saved as
  an asset), the PNG, the asset, the result row, the events.

Inside every job run the raw pipeline call is timed too (the leased
pipeline's ``__call__``, less the server's own per-step callback), and so is
the PNG encoding, so the figures come from the same run, not from two noisy
runs side by side:

- ``server_ms_per_image``: job wall time minus the raw call in it: all the
  server adds, the PNG included;
- ``png_ms_per_image``: encoding the PNG the client receives (the tiny kit's
  random weights draw noise, which encodes about 2x slower than a photo);
- ``fixed_ms_per_image``: the rest, the server's fixed cost (goal <= 10 ms);
- ``job_vs_raw_call`` / ``job_vs_direct``: paired ratios of job time over
  the raw call, and over the raw call plus the PNG, median of rounds.

The size is the profile's default (64 px on the tiny kit, as a request
without one gets) unless ``--size`` asks for another (256 is the smallest
explicit size the API accepts). Uses a temporary data dir and models dir (the
tiny kit is built there, ~2 s). Last line: ``fixed_ms_per_image=<ms> ...``.
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


class CallTimer:
    """Times a pipeline's ``__call__`` (less the per-step callback it is given) and the PNG encoder."""

    def __init__(self):
        self.raw_s = 0.0
        self.png_s = 0.0

    def wrap_pipeline(self, pipe) -> None:
        timer, cls = self, type(pipe)
        if getattr(cls, "_bench_timed", False):
            return

        def timed_call(self, *args, **kwargs):
            callback = kwargs.get("callback_on_step_end")
            spent = [0.0]
            if callback is not None:
                def timed_callback(*a, **k):
                    t = time.perf_counter()
                    try:
                        return callback(*a, **k)
                    finally:
                        spent[0] += time.perf_counter() - t
                kwargs["callback_on_step_end"] = timed_callback
            t0 = time.perf_counter()
            try:
                return cls.__call__(self, *args, **kwargs)
            finally:
                timer.raw_s = time.perf_counter() - t0 - spent[0]

        pipe.__class__ = type(cls.__name__, (cls,), {"__call__": timed_call, "_bench_timed": True})

    def wrap_encoder(self, module) -> None:
        encode, timer = module.encode_image, self

        def timed_encode(*args, **kwargs):
            t = time.perf_counter()
            try:
                return encode(*args, **kwargs)
            finally:
                timer.png_s += time.perf_counter() - t

        module.encode_image = timed_encode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--size", type=int, default=None,
                    help="width = height (multiple of 8, 256-1536); default the profile's default size")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--models-dir", type=Path, default=None, help="reuse a models dir holding the tiny kit")
    args = ap.parse_args()

    import torch

    import enfoads.services.images as images
    from enfoads.work.assets import AssetStore
    from enfoads.work.events import EventBus
    from enfoads.work.jobs import JobQueue
    from enfoads.models.runtime import build_runtime
    from enfoads.settings import Settings
    from enfoads.models.tiny import build_tiny_kit

    timer = CallTimer()
    timer.wrap_encoder(images)
    with tempfile.TemporaryDirectory(prefix="enfoads-bench-img-") as tmp:
        tmp = Path(tmp)
        models = args.models_dir or tmp / "models"
        build_tiny_kit(models)
        settings = Settings(profile="tiny", models_dir=models, data_dir=tmp / "data", gpu_budget_gb=0.25,
                            ram_budget_gb=2.0)
        rt = build_runtime(settings)
        service = images.ImageService(rt)
        assets = AssetStore(settings.data_dir, quota_bytes=10 * 1024**3)  # the server's default quota
        bus = EventBus(settings.data_dir)
        listened = []
        bus.subscribe(listened.append)  # a listener, as Socket.IO is one
        queue = JobQueue(settings.data_dir, assets=assets, bus=bus)
        for kind in service.job_kinds():
            queue.register(kind.name, kind.handler, device=kind.device)
        queue.start()
        key = rt.model_key("image")
        base = {"prompt": "a red chair in an empty room", "steps": args.steps, "guidance": 0, "format": "png",
                **({"width": args.size, "height": args.size} if args.size else {})}
        plan = service.plan(service.validate(base))
        width, height = plan.width, plan.height
        with rt.residency.use(key) as pipe:
            timer.wrap_pipeline(pipe)

        def raw(seed: int) -> float:
            t0 = time.perf_counter()
            with rt.residency.use(key) as pipe:
                pipe(base["prompt"], num_inference_steps=args.steps, guidance_scale=0.0, width=width,
                     height=height, generator=torch.Generator("cpu").manual_seed(seed))
            return time.perf_counter() - t0

        def job(seed: int) -> tuple[float, float, float]:
            timer.png_s = 0.0
            t0 = time.perf_counter()
            done = queue.submit_and_wait("image.generate", service.validate({**base, "seed": seed}), timeout=600)
            wall = time.perf_counter() - t0
            assert done.state == "succeeded", done.error
            assert not done.result["cached"] and len(done.result["previews"]) == args.steps, done.result
            return wall, timer.raw_s, timer.png_s

        rows = []
        try:
            for r in range(args.warmup + args.rounds):
                seed = 1000 + r
                if r % 2:
                    j, b = job(seed), raw(seed + 50_000)
                else:
                    b, j = raw(seed + 50_000), job(seed)
                if r >= args.warmup:
                    rows.append((b, *j))
        finally:
            queue.close()
            service.close()
            rt.close()
            bus.close()

    ms = lambda xs: statistics.median(xs) * 1000  # noqa: E731
    server = [wall - raw_in for _b, wall, raw_in, _p in rows]
    png = [p for *_x, p in rows]
    fixed = [wall - raw_in - p for _b, wall, raw_in, p in rows]
    vs_raw = statistics.median(wall / b for b, wall, _r, _p in rows)
    vs_direct = statistics.median(wall / (b + p) for b, wall, _r, p in rows)
    print(f"profile=tiny size={width}x{height} steps={args.steps} rounds={args.rounds} "
          f"torch_threads={torch.get_num_threads()} previews_per_image={args.steps} events_heard={len(listened)}")
    print(f"raw_call median_s={statistics.median(b for b, *_ in rows):.4f}  "
          f"job median_s={statistics.median(w for _b, w, *_ in rows):.4f}")
    print(f"server_ms_per_image={ms(server):.2f} (min {min(server) * 1000:.2f}, max {max(server) * 1000:.2f})")
    print(f"png_ms_per_image={ms(png):.2f}")
    print(f"job_vs_raw_call={vs_raw:.4f} job_vs_direct={vs_direct:.4f}  (paired rounds; direct = raw call + PNG)")
    print(f"fixed_ms_per_image={ms(fixed):.2f} server_ms_per_image={ms(server):.2f} png_ms_per_image={ms(png):.2f} "
          f"image_job_overhead={vs_direct:.4f}")


if __name__ == "__main__":
    main()
