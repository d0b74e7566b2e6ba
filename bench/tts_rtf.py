"""Real-time factor of each text-to-speech backend here, and the render time of a 20-second script.

    .venv/bin/python bench/tts_rtf.py [--rounds 3] [--models-dir DIR] [--resolution 720] [--fps 25]

RTF = synthesis seconds / audio seconds (below 1 is faster than real time),
median over ``--rounds`` after one warm-up, on the same Spanish script, for
every backend usable here: espeak-ng, the tiny Piper voice (built in the
models dir; it measures Piper's phonemizer + ONNX Runtime path, not a real
VITS), any real Piper voice found in ``--models-dir``, and edge-tts when
reachable (network time included).

Then one talking-avatar render of a script of about 20 seconds with the
default settings (720p vertical, 25 fps, zoom, burned-in subtitles) through
``VideoRenderer`` (speech, canvas, subtitle strips, ffmpeg encode; no job
queue). Last line: ``render_20s_script_seconds=<value>``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SCRIPT = (
    "Hola, te presentamos la nueva colección de verano de nuestra tienda. "
    "Encontrarás camisetas, vestidos y sandalias con descuentos de hasta el cuarenta por ciento. "
    "Los precios son válidos hasta el domingo, o hasta agotar existencias. "
    "Visítanos en el centro comercial o compra en línea con envío gratis. ¡Te esperamos!"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--resolution", type=int, default=720)
    parser.add_argument("--fps", type=int, default=25)
    args = parser.parse_args()

    from enfoads.services.avatars import AvatarStore
    from enfoads.services.video import VideoRenderer
    from enfoads.services.video_canvas import VideoFormat
    from enfoads.services.video_ffmpeg import find_ffmpeg
    from enfoads.models.tiny.piper import ensure_tiny_piper
    from enfoads.services.tts import TTS

    with tempfile.TemporaryDirectory(prefix="enfoads-bench-tts-") as tmp:
        tmp = Path(tmp)
        models_dir = args.models_dir or tmp / "models"
        ensure_tiny_piper(models_dir)
        tts = TTS(models_dir)
        usable = tts.voices()
        chosen: dict[str, str] = {}
        for v in usable:  # the first usable voice of each kind
            key = "piper-tiny" if v.tiny else v.backend
            chosen.setdefault(key, v.id)
        rtfs: dict[str, float] = {}
        for key, vid in chosen.items():
            tts.synthesize(SCRIPT, vid)  # warm-up (loads a Piper voice)
            ratios, dur = [], 0.0
            for _ in range(args.rounds):
                t = time.perf_counter()
                speech = tts.synthesize(SCRIPT, vid)
                ratios.append((time.perf_counter() - t) / speech.duration)
                dur = speech.duration
            rtfs[key] = statistics.median(ratios)
            print(f"tts backend={key} voice={vid} audio_s={dur:.2f} rtf={rtfs[key]:.4f}")

        avatars = AvatarStore(tmp / "data")
        renderer = VideoRenderer(tts, avatars, find_ffmpeg())
        fmt = VideoFormat.from_params({"resolution": args.resolution, "fps": args.fps, "orientation": "vertical"})
        voice = chosen.get("piper") or chosen.get("espeak") or next(iter(chosen.values()))
        work = tmp / "work"
        work.mkdir()
        t = time.perf_counter()
        out = renderer.render_scene(script=SCRIPT, avatar_id="default", voice_id=voice, subtitles=True, fmt=fmt,
                                    speed=1.0, work=work, name="bench", progress=lambda f, m: None, fade_out=True)
        total = time.perf_counter() - t
        print(f"render voice={voice} size={fmt.width}x{fmt.height}@{fmt.fps} video_s={out.duration:.2f} "
              f"timings={out.timings} cpus={os.cpu_count()}")
        print(" ".join(f"rtf_{k.replace('-', '_')}={v:.4f}" for k, v in rtfs.items()))
        print(f"render_20s_script_seconds={total:.2f}")


if __name__ == "__main__":
    main()
