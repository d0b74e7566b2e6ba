"""Upscaling speed: seconds per output megapixel, from one run, on this machine.

    .venv/bin/python bench/enhance.py [--size 96] [--rounds 3] [--full-size 48]

Figures (``name=value`` lines; the last line repeats the headline ones):

- ``tiny_x4plus_s_per_output_mp``: the tiny kit's Real-ESRGAN x4plus
  (RRDBNet, random weights, the release file's layout) through the
  ``enhance.image`` job as ``/enhance-media`` runs it (queue, lease, tiles,
  PNG, asset), for a ``--size`` px square;
- ``tiny_compact_s_per_output_mp``: the same with the tiny general-x4v3
  (SRVGGNetCompact);
- ``job_vs_raw``: that job's wall time over the model's own tiled call on
  the same picture in the same run (what the server adds, as a ratio);
- ``tiled_vs_whole``: the x4plus tiled at 32 px (8 px of context) over the
  whole picture at once (what tiling costs in recomputed context);
- ``full_x4plus_cpu_s_per_output_mp``: the real x4plus architecture (23
  RRDB blocks, 64 features, 16.7 M parameters, random weights) on this CPU
  at ``--full-size`` px input, float32, one tile: what a CPU user waits per
  output megapixel (the ``cpu`` profile uses the compact model instead);
- ``full_compact_cpu_s_per_output_mp``: the real general-x4v3 architecture
  (32 convolutions, 64 features) the same way.

The GPU figures at full size are ``bench/gpu_proof.py --only enhance``.
"""
from __future__ import annotations

import argparse
import base64
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def full_size_state(kind: str, seed: int = 0) -> dict:
    """Random weights in the real release's architecture: ``x4plus`` (RRDBNet) or ``compact`` (general-x4v3)."""
    import torch
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(seed)
    if kind == "compact":
        return {"params": Compact(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=32, upscale=4).state_dict()}
    model = ESRGAN(in_nc=3, out_nc=3, num_filters=64, num_blocks=23, scale=4)
    return {"params_ema": model.state_dict()}


def _png_uri(pixels: np.ndarray) -> str:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def _per_mp(seconds: float, width: int, height: int) -> float:
    return seconds / (width * height / 1e6)


def tiny_figures(size: int, rounds: int) -> dict:
    from enfoads.engine import build_engine
    from enfoads.services.upscale_tiles import upscale_image
    from enfoads.settings import Settings

    pixels = (np.random.RandomState(0).rand(size, size, 3) * 255).astype(np.uint8)
    uri = _png_uri(pixels)
    out: dict = {}
    with tempfile.TemporaryDirectory() as work:
        settings = Settings(profile="tiny", models_dir=Path(work) / "models", data_dir=Path(work) / "data",
                            auto_download="off", warm="off")
        engine = build_engine(settings)
        try:
            for name, model in (("x4plus", "tiny-realesrgan-x4plus"), ("compact", "tiny-realesr-general-x4v3")):
                params = {"media": uri, "model": model}
                engine.submit_and_wait("enhance.image", params, timeout=600)  # load once
                jobs, raws = [], []
                for _ in range(rounds):
                    started = time.perf_counter()
                    job = engine.submit_and_wait("enhance.image", params, timeout=600)
                    jobs.append(time.perf_counter() - started)
                    assert job.state == "succeeded", job.error
                    tiles = engine.enhance.tiles(None)
                    with engine.runtime.residency.use(model) as upscaler:
                        started = time.perf_counter()
                        upscale_image(upscaler, pixels, scale=4, device=upscaler.device, dtype=upscaler.dtype,
                                      **tiles)
                        raws.append(time.perf_counter() - started)
                job_s = statistics.median(jobs)
                out[f"tiny_{name}_s_per_output_mp"] = round(_per_mp(job_s, 4 * size, 4 * size), 4)
                if name == "x4plus":
                    out["job_vs_raw"] = round(statistics.median(j / r for j, r in zip(jobs, raws)), 3)
                    with engine.runtime.residency.use(model) as upscaler:
                        pairs = []
                        for _ in range(rounds):
                            started = time.perf_counter()
                            upscale_image(upscaler, pixels, scale=4, tile=32, overlap=8, min_tile=16)
                            tiled = time.perf_counter() - started
                            started = time.perf_counter()
                            upscale_image(upscaler, pixels, scale=4, tile=max(size, 16), overlap=0, min_tile=16)
                            pairs.append(tiled / (time.perf_counter() - started))
                    out["tiled_vs_whole"] = round(statistics.median(pairs), 3)
        finally:
            engine.close()
    return out


def full_size_figures(size: int) -> dict:
    import torch

    from enfoads.models.loaders.upscale import load_spandrel
    from enfoads.services.upscale_tiles import upscale_image

    pixels = (np.random.RandomState(1).rand(size, size, 3) * 255).astype(np.uint8)
    out = {}
    with tempfile.TemporaryDirectory() as work:
        for kind in ("x4plus", "compact"):
            path = Path(work) / f"{kind}.pth"
            torch.save(full_size_state(kind), path)
            model = load_spandrel(path, device="cpu", dtype="float32")
            upscale_image(model, pixels[:16, :16], scale=4, tile=size, overlap=0, min_tile=8)  # warm the kernels
            started = time.perf_counter()
            upscale_image(model, pixels, scale=4, tile=size, overlap=0, min_tile=8)
            out[f"full_{kind}_cpu_s_per_output_mp"] = round(_per_mp(time.perf_counter() - started, 4 * size,
                                                                    4 * size), 2)
            del model
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96, help="input side (px) for the tiny kit")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--full-size", type=int, default=48, help="input side (px) for the full-size models")
    args = parser.parse_args(argv)
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, tiny input {args.size} px, "
          f"full-size input {args.full_size} px", flush=True)
    figures = {**tiny_figures(args.size, args.rounds), **full_size_figures(args.full_size)}
    for name, value in figures.items():
        print(f"{name}={value}", flush=True)
    print(" ".join(f"{k}={figures[k]}" for k in ("tiny_x4plus_s_per_output_mp", "job_vs_raw",
                                                  "full_x4plus_cpu_s_per_output_mp")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
