"""Lip-sync speed: frames per second of the MuseTalk engine on the tiny kit, from one run, on this CPU.

    .venv/bin/python bench/lipsync.py [--seconds 2] [--fps 25]

Figures (``name=value`` lines; the last line repeats the headline ones):

- ``load_s``: ``load_musetalk`` from the tiny kit's files, the ``unet.pth``
  to fp16 safetensors conversion included (first load);
- ``reload_s``: the same again, reading the converted file only;
- ``prepare_s``: ``LipSync.prepare`` for a 320x400 portrait (crop, mask, two
  VAE encodes: once per portrait);
- ``audio_windows_s``: whisper features and windows for the clip (once per
  clip; ``frames()`` computes them again itself);
- ``batch4_fps``, ``batch8_fps``: frames per second of ``frames()`` over a
  ``--seconds`` clip at batch 4 and 8, audio features and paste-back
  included;
- ``batch8_vs_batch4``: the batch-8 rate over the batch-4 one.

The tiny kit's weights are random and its models a few MB, so these figures
are the engine's own overhead around small models, not MuseTalk's speed;
the full-size UNet's speed needs a GPU.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _portrait() -> np.ndarray:
    import cv2

    img = np.full((400, 320, 3), (70, 90, 110), np.uint8)
    cv2.ellipse(img, (160, 200), (62, 82), 0, 0, 360, (224, 182, 150), -1)
    cv2.ellipse(img, (160, 245), (20, 6), 0, 0, 360, (170, 60, 70), -1)
    return img


def _speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise whose loudness comes and goes about 4 times a second, at 16 kHz."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * rng.standard_normal(t.size) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)


def figures(seconds: float, fps: int) -> dict:
    from enfoads.models.loaders.lipsync import load_musetalk, musetalk_paths
    from enfoads.models.tiny.musetalk import build_into
    from enfoads.services.lipsync import LipSync
    from enfoads.services.lipsync_mask import FaceGeometry

    face = FaceGeometry(box=(100, 120, 220, 280), kps=[(135, 175), (185, 175), (160, 210), (140, 245), (180, 245)])
    audio = _speech_like(seconds)
    out: dict = {}
    with tempfile.TemporaryDirectory() as work:
        kit = Path(work) / "kit"
        kit.mkdir()
        build_into(kit, 0)
        paths, converted = musetalk_paths(kit), Path(work) / "converted"
        started = time.perf_counter()
        models = load_musetalk(paths, device="cpu", dtype="float32", converted_dir=converted)
        out["load_s"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        models = load_musetalk(paths, device="cpu", dtype="float32", converted_dir=converted)
        out["reload_s"] = round(time.perf_counter() - started, 3)

        engine = LipSync(models, batch_size=8, fps=fps)
        engine.prepare(_portrait(), face)  # warm the kernels
        sum(1 for _ in engine.frames(engine.prepare(_portrait(), face), audio[:3200]))
        started = time.perf_counter()
        prepared = engine.prepare(_portrait(), face)
        out["prepare_s"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        engine.audio_windows(audio)
        out["audio_windows_s"] = round(time.perf_counter() - started, 3)
        for batch in (4, 8):
            engine = LipSync(models, batch_size=batch, fps=fps)
            started = time.perf_counter()
            count = sum(1 for _ in engine.frames(prepared, audio))
            out[f"batch{batch}_fps"] = round(count / (time.perf_counter() - started), 2)
        out["batch8_vs_batch4"] = round(out["batch8_fps"] / out["batch4_fps"], 3)
        out["frames"] = count
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="clip length")
    parser.add_argument("--fps", type=int, default=25)
    args = parser.parse_args(argv)
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.seconds} s clip at {args.fps} fps, "
          "tiny MuseTalk kit on CPU", flush=True)
    results = figures(args.seconds, args.fps)
    for name, value in results.items():
        print(f"{name}={value}", flush=True)
    print(" ".join(f"{k}={results[k]}" for k in ("prepare_s", "audio_windows_s", "batch4_fps", "batch8_fps")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
