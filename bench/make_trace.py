"""Write bench/traces/t4_mixed.json: a day of a small marketing team's requests.

The trace is recorded once (seeded) and committed, so every run of
``residency_trace.py`` replays the same requests. Each request lists the
models it leases at the same time (a face swap needs the detector and the
swapper together; a subtitled video needs TTS, then Whisper).

Shape, from how the frontend is used: bursts of ad images in speed mode
(4 steps) with occasional quality passes (8 steps), face swaps on the images
just made, transcriptions in small batches, and avatar videos (TTS + subtitles).
"""
from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).parent / "traces" / "t4_mixed.json"

IMAGE_FAST = ["sdxl-lightning-4step"]
IMAGE_QUALITY = ["sdxl-lightning-8step"]
FACE_SWAP = ["buffalo_l", "inswapper_128"]
TRANSCRIBE = ["faster-whisper-large-v3-turbo"]
TTS = ["piper-es_MX"]


def make(seed: int = 2026, sessions: int = 40) -> list[list[str]]:
    rng = random.Random(seed)
    requests: list[list[str]] = []
    for _ in range(sessions):
        kind = rng.choices(["images", "swap", "speech", "video", "mixed"], weights=[4, 2, 2, 2, 2])[0]
        if kind == "images":
            for _ in range(rng.randint(3, 9)):
                requests.append(IMAGE_QUALITY if rng.random() < 0.2 else IMAGE_FAST)
        elif kind == "swap":
            for _ in range(rng.randint(1, 3)):
                requests.append(IMAGE_FAST)
                for _ in range(rng.randint(1, 3)):
                    requests.append(FACE_SWAP)
        elif kind == "speech":
            for _ in range(rng.randint(2, 5)):
                requests.append(TRANSCRIBE)
        elif kind == "video":
            for _ in range(rng.randint(1, 3)):
                requests.append(TTS)
                requests.append(TRANSCRIBE)  # subtitles from the synthesised speech
        else:
            for _ in range(rng.randint(4, 10)):
                requests.append(rng.choice([IMAGE_FAST, IMAGE_FAST, IMAGE_QUALITY, FACE_SWAP, TRANSCRIBE, TTS]))
    return requests


if __name__ == "__main__":
    trace = make()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"seed": 2026, "requests": trace}, indent=0))
    print(f"wrote {len(trace)} requests to {OUT}")
