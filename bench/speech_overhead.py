"""What the transcription service costs on top of faster-whisper, interleaved in one run.

    .venv/bin/python bench/speech_overhead.py [--rounds 9] [--seconds 60] [--profile tiny]

Same audio (espeak-ng speech, about ``--seconds`` long), same options (the
profile's beam size; temperature 0 alone, so every path does the same work),
same loaded model (leased from the same residency manager). Each round runs,
in a rotating order after one warm-up of each:

- direct: ``model.transcribe(wav_path, **options)`` with faster-whisper's own
  decoder, consuming every segment;
- service: the speech service as the job handler runs it, minus the queue,
  on the same WAV stored as an asset (what a multipart upload becomes):
  ``validate``, PyAV decode with limits, the residency lease, transcription
  with timestamp clean-up and progress calls, rendering the response;
- job: the whole request path from the web layer's side: the upload stored as
  an asset (jobs carry ids, not megabytes), ``validate``, ``submit_and_wait``
  through the real ``JobQueue`` (SQLite rows, progress writes, persisted
  events, the result asset). Its extra cost over "service" is the queue's,
  benched on its own by ``bench/queue_overhead.py``; on a busy machine fsync
  latency makes it noisy.

Figures: medians over rounds of path / direct. Uses temporary data and model
dirs (the tiny kit is built there) unless ``--models-dir`` is given. Last
line: ``speech_service_overhead=<ratio>`` for the service (goal <= 1.02).
"""
from __future__ import annotations

import argparse
import base64
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import wave
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SENTENCE = (
    "The quarterly campaign brings three new product lines to the market. "
    "Each advert will run for two weeks on social media and in print, "
    "and the team will review the results every Friday afternoon. "
)


def make_speech(path: Path, seconds: float) -> float:
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is needed for this bench (apt-get install -y espeak-ng)")
    words_per_second = 175 / 60  # espeak-ng's default rate
    repeats = max(1, int(seconds * words_per_second / len(SENTENCE.split())) + 1)
    subprocess.run(["espeak-ng", "-w", str(path), SENTENCE * repeats], check=True, capture_output=True)
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the speech to transcribe")
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--models-dir", type=Path, default=None)
    ap.add_argument("--response-format", default="verbose_json")
    ap.add_argument("--word-timestamps", action="store_true")
    args = ap.parse_args()

    from enfoads.work.assets import AssetStore
    from enfoads.work.events import EventBus
    from enfoads.work.jobs import JobQueue
    from enfoads.models.runtime import build_runtime
    from enfoads.services import speech, speech_options, transcripts
    from enfoads.settings import Settings

    with tempfile.TemporaryDirectory(prefix="enfoads-bench-") as tmp:
        tmp = Path(tmp)
        wav = tmp / "speech.wav"
        duration = make_speech(wav, args.seconds)
        audio_b64 = base64.b64encode(wav.read_bytes()).decode()

        settings = Settings(profile=args.profile, models_dir=args.models_dir or tmp / "models",
                            data_dir=tmp / "data")
        rt = build_runtime(settings)
        bus = EventBus(tmp)
        store = AssetStore(tmp)
        queue = JobQueue(tmp, assets=store, bus=bus)
        (kind,) = speech.job_kinds(rt, assets=store)
        queue.register(kind.name, kind.handler, device=kind.device)
        queue.start()
        # temperature 0 alone: the default fallback samples at higher
        # temperatures (random weights always fall back), and random work
        # cannot be compared.
        request = {"audio": audio_b64, "response_format": args.response_format,
                   "word_timestamps": args.word_timestamps, "temperature": 0}
        # The very options the service passes to faster-whisper, for the direct call.
        whisper_kwargs = speech_options.parse_options(kind.validate(request)).whisper_kwargs()
        key = rt.model_key("speech")

        def direct() -> tuple[float, int]:
            with rt.residency.use(key) as model:
                t0 = time.perf_counter()
                segments, _ = model.transcribe(str(wav), **whisper_kwargs)
                n = sum(1 for _ in segments)
                return time.perf_counter() - t0, n

        service_kind = speech.SpeechTranscriber(rt)

        # The service reads the upload from the asset store, as the handler does
        # for a multipart upload: the same WAV file the direct call decodes.
        stored = store.save_bytes(wav.read_bytes(), "audio/wav")

        def service() -> tuple[float, int]:
            t0 = time.perf_counter()
            params = service_kind.validate({**request, "audio": stored.id}, assets=store)
            options = speech_options.parse_options(params, default_beam_size=service_kind.default_beam_size)
            audio = service_kind.decode(params["audio"], assets=store)
            transcript = service_kind.run(audio.samples, options, progress=lambda pct, stage: None)
            transcripts.encode_body(transcripts.render(transcript, options.response_format))
            return time.perf_counter() - t0, len(transcript.segments)

        def job() -> tuple[float, int]:
            t0 = time.perf_counter()
            # As the web layer does with an upload: store it, queue its id.
            upload = store.save_bytes(base64.b64decode(audio_b64), "audio/wav")
            done = queue.submit_and_wait(kind.name, kind.validate({**request, "audio": upload.id}), timeout=3600)
            elapsed = time.perf_counter() - t0
            assert done.state == "succeeded", done.error
            return elapsed, done.result["segment_count"]

        paths = {"direct": direct, "service": service, "job": job}
        times: dict[str, list[float]] = {name: [] for name in paths}
        try:
            for fn in paths.values():  # warm-up: model load, first-call allocations
                fn()
            names = list(paths)
            for i in range(max(1, args.rounds)):
                order = names[i % 3:] + names[: i % 3]
                counts = {}
                for name in order:
                    elapsed, counts[name] = paths[name]()
                    times[name].append(elapsed)
                assert len(set(counts.values())) == 1, f"different work: {counts} segments"
            nd = counts["direct"]
        finally:
            queue.close()
            bus.close()
            rt.close()

        def ratio(name: str) -> float:
            return statistics.median(t / d for t, d in zip(times[name], times["direct"]))

        print(f"profile={args.profile} audio={duration:.1f}s segments={nd} rounds={len(times['direct'])} "
              f"options={ {k: v for k, v in whisper_kwargs.items() if v is not None} }")
        for name, values in times.items():
            extra = "" if name == "direct" else (
                f" overhead_ms={1000 * statistics.median(t - d for t, d in zip(values, times['direct'])):.1f}"
                f" ratio={ratio(name):.4f}"
            )
            print(f"{name:8s} s median={statistics.median(values):.4f} min={min(values):.4f}{extra}")
        print(f"job_path_overhead={ratio('job'):.4f}")
        print(f"speech_service_overhead={ratio('service'):.4f}")

if __name__ == "__main__":
    main()
