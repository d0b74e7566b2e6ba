"""Transcription through the real runtime, residency manager and job queue, on the tiny Whisper.

The tiny model's weights are random: its text is noise and its timestamp
tokens land anywhere in the 30 s window (past the end of a 5 s clip, or
backwards). That is exactly what the service's timestamp clean-up is for, so
these tests run with timestamps on and check the invariants, not the words.
"""
from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import shutil
import subprocess
import wave
from types import SimpleNamespace

import numpy as np
import pytest

from enfoads.work import events as ev
from enfoads.work.assets import AssetStore
from enfoads.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from enfoads.work.events import RecordingBus
from enfoads.work.jobs import JobQueue
from enfoads.models.profiles import detect_hardware
from enfoads.models.runtime import build_runtime
from enfoads.services import speech, speech_options, transcripts
from enfoads.settings import Settings

# Cheap decoding on random weights (library defaults take seconds); word
# timestamps on, which makes the tiny model cut many short segments.
FAST = dict(beam_size=1, temperature=0, max_new_tokens=8)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def env(models_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("speech")
    settings = Settings(profile="tiny", models_dir=models_dir, data_dir=tmp / "data",
                        gpu_budget_gb=64 / 1024, ram_budget_gb=0.5)
    rt = build_runtime(settings, detect_hardware())
    store = AssetStore(tmp)
    bus = RecordingBus()
    queue = JobQueue(tmp, assets=store, bus=bus)
    (kind,) = speech.job_kinds(rt, assets=store)
    queue.register(kind.name, kind.handler, device=kind.device)
    queue.start()
    yield SimpleNamespace(rt=rt, store=store, bus=bus, queue=queue, kind=kind)
    queue.close(grace_s=2)
    rt.close()
    store.close()


def _espeak(path, text):
    if shutil.which("espeak-ng") is None:
        msg = "espeak-ng is not installed (apt-get install -y espeak-ng)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


@pytest.fixture(scope="module")
def sentence(tmp_path_factory):
    """A spoken English sentence (~5 s, 22 kHz WAV)."""
    path = tmp_path_factory.mktemp("audio") / "sentence.wav"
    duration = _espeak(path, "Hello world, this is a test of the speech recognizer. The second sentence ends here.")
    return SimpleNamespace(path=path, data=path.read_bytes(), duration=duration,
                           b64=base64.b64encode(path.read_bytes()).decode())


def transcribe(env, audio, **params):
    job = env.queue.submit_and_wait(speech.JOB_KIND, env.kind.validate({"audio": audio, **params}), timeout=60)
    assert job.done, job
    return job


def loads(env) -> int:
    return {r["id"]: r for r in env.rt.residency.stats().models}[env.rt.model_key("speech")]["loads"]


# --------------------------------------------------------------------------- strict subtitle parsers

_T = r"(\d{{2,}}):([0-5]\d):([0-5]\d)[{sep}](\d{{3}})"


def _seconds(match, first):
    h, m, s, ms = (int(match.group(first + i)) for i in range(4))
    return h * 3600 + m * 60 + s + ms / 1000


def parse_srt(text: str) -> list[tuple[float, float, str]]:
    """SubRip, strictly: numbered from 1, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, text, blank line."""
    timing = re.compile(_T.format(sep=",") + " --> " + _T.format(sep=","))
    assert "\r" not in text and (text == "" or text.endswith("\n") and not text.endswith("\n\n"))
    cues = []
    for number, block in enumerate(filter(None, text[:-1].split("\n\n")) if text else [], start=1):
        lines = block.split("\n")
        assert lines[0] == str(number), block
        match = timing.fullmatch(lines[1])
        assert match, lines[1]
        start, end = _seconds(match, 1), _seconds(match, 5)
        assert len(lines) >= 3 and all(line.strip() for line in lines[2:]), block
        assert not any("-->" in line for line in lines[2:])
        assert start < end
        cues.append((start, end, "\n".join(lines[2:])))
    return cues


def parse_vtt(text: str) -> list[tuple[float, float, str]]:
    """WebVTT, strictly: ``WEBVTT`` header, cues ``HH:MM:SS.mmm --> HH:MM:SS.mmm``, escaped text."""
    timing = re.compile(_T.format(sep=".") + " --> " + _T.format(sep="."))
    assert text.startswith("WEBVTT\n\n") and "\r" not in text
    body = text[len("WEBVTT\n\n"):]
    assert body == "" or body.endswith("\n") and not body.endswith("\n\n")
    cues = []
    for block in filter(None, body[:-1].split("\n\n")) if body else []:
        lines = block.split("\n")
        if "-->" not in lines[0]:  # an optional cue id
            lines = lines[1:]
        match = timing.fullmatch(lines[0])
        assert match, lines[0]
        start, end = _seconds(match, 1), _seconds(match, 5)
        payload = lines[1:]
        assert payload and all(line.strip() for line in payload), block
        for line in payload:
            assert "-->" not in line and "<" not in line
            assert re.fullmatch(r"([^&]|&(amp|lt|gt);)*", line), line
        assert start < end
        cues.append((start, end, html.unescape("\n".join(payload))))
    return cues


VERBOSE_SCHEMA = {
    "type": "object",
    "required": ["task", "language", "duration", "text", "segments"],
    "properties": {
        "task": {"enum": ["transcribe", "translate"]},
        "language": {"type": ["string", "null"]},
        "language_probability": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "duration": {"type": "number", "minimum": 0},
        "text": {"type": "string"},
        "segments": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob",
                             "compression_ratio", "no_speech_prob"],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "integer", "minimum": 0},
                    "seek": {"type": "integer", "minimum": 0},
                    "start": {"type": "number", "minimum": 0},
                    "end": {"type": "number", "minimum": 0},
                    "text": {"type": "string"},
                    "tokens": {"type": "array", "items": {"type": "integer"}},
                    "temperature": {"type": "number"},
                    "avg_logprob": {"type": "number"},
                    "compression_ratio": {"type": "number"},
                    "no_speech_prob": {"type": "number"},
                },
            },
        },
        "words": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["word", "start", "end"],
                "additionalProperties": False,
                "properties": {"word": {"type": "string"}, "start": {"type": "number"}, "end": {"type": "number"}},
            },
        },
    },
}


# --------------------------------------------------------------------------- transcription


def test_spoken_sentence_gives_sane_monotonic_segments(env, sentence):
    job = transcribe(env, sentence.b64, response_format="verbose_json", word_timestamps=True, **FAST)
    assert job.state == "succeeded", job.error
    r = job.result
    body = r["body"]
    assert "content" not in r
    assert r["duration"] == pytest.approx(sentence.duration, abs=0.01) == body["duration"]
    assert r["language_detected"] and 0 < r["language_probability"] <= 1
    with env.rt.residency.use(env.rt.model_key("speech")) as model:
        assert r["language"] in model.supported_languages
        # What faster-whisper says directly, for the same audio and options.
        options = speech_options.parse_options({**FAST, "word_timestamps": True})
        raw_segments, _ = model.transcribe(str(sentence.path), **options.whisper_kwargs())
        raw = list(raw_segments)

    segments = body["segments"]
    assert len(segments) >= 2 and [s["id"] for s in segments] == list(range(len(segments)))
    duration, last_end = body["duration"], 0.0
    for seg in segments:
        assert last_end <= seg["start"] <= seg["end"] <= duration  # no overlap, no going back, inside
        last_end = seg["end"]
    # Every word inside its own segment, in order, and none lost.
    word_counts = {(s.text, tuple(s.tokens)): len(s.words or ()) for s in raw}
    words = iter(body["words"])
    for seg in segments:
        previous = seg["start"]
        for _ in range(word_counts[seg["text"], tuple(seg["tokens"])]):
            word = next(words)
            assert previous <= word["start"] <= word["end"] <= seg["end"]
            previous = word["end"]
    assert next(words, None) is None and len(body["words"]) == sum(word_counts.values()) > 0
    # Nothing dropped: the same segments (texts, tokens) as faster-whisper gave,
    # though the random weights put some of them past the end of the audio.
    assert sorted((s.text, tuple(s.tokens)) for s in raw) == sorted((s["text"], tuple(s["tokens"])) for s in segments)
    assert any(s.end > duration for s in raw)
    assert body["text"] == r["text"] == "".join(s["text"] for s in segments).strip()


@pytest.mark.parametrize("fmt", transcripts.RESPONSE_FORMATS)
def test_each_output_format_parses_back(env, sentence, fmt):
    import jsonschema

    word_timestamps = fmt == "verbose_json"
    job = transcribe(env, "data:audio/wav;base64," + sentence.b64, response_format=fmt,
                     word_timestamps=word_timestamps, **FAST)
    assert job.state == "succeeded", job.error
    r = job.result
    body = r["body"] if fmt in ("json", "verbose_json") else r["content"]
    assert ("body" in r) != ("content" in r)
    assert r["content_type"] == transcripts.CONTENT_TYPES[fmt]
    asset = env.store.get(r["asset_id"])
    assert asset.mime == transcripts.ASSET_MIMES[fmt] and asset.job_id == job.id
    assert asset.duration == pytest.approx(sentence.duration, abs=0.01)
    stored = env.store.read_bytes(asset.id).decode("utf-8")

    if fmt == "json":
        assert json.loads(stored) == body == {"text": r["text"]}
    elif fmt == "verbose_json":
        assert json.loads(stored) == body
        jsonschema.validate(body, VERBOSE_SCHEMA)
        assert "words" in body and body["language"] == r["language"]
    elif fmt == "text":
        assert stored == body == r["text"] + "\n"
    else:
        assert stored == body
        cues = parse_srt(body) if fmt == "srt" else parse_vtt(body)
        assert cues, body
        assert all(0 <= start < end <= r["duration"] + 0.0005 for start, end, _ in cues)
        assert all(a[1] <= b[0] for a, b in zip(cues, cues[1:]))  # in order, no overlap
        assert len(cues) <= r["segment_count"]


def test_subtitle_writers_keep_formats_valid_whatever_the_text():
    segments = [
        {"start": 0.0, "end": 1.5, "text": " first line\n\nstill the first cue"},
        {"start": 1.5, "end": 1.5, "text": "zero length: left out"},
        {"start": 1.5, "end": 2.0, "text": "   "},  # no text: left out
        {"start": 2.0, "end": 3599.9996, "text": " a --> b <i>tag</i> & \x1f\x00 bell\x07 \u2028x"},
        {"start": 3599.9996, "end": 360000.25, "text": "long"},
    ]
    srt = transcripts.to_srt(segments)
    cues = parse_srt(srt)
    assert [c[2] for c in cues] == ["first line still the first cue", "a -> b <i>tag</i> & bell x", "long"]
    assert [(c[0], c[1]) for c in cues] == [(0.0, 1.5), (2.0, 3600.0), (3600.0, 360000.25)]
    assert "00:59:59,999" not in srt and "01:00:00,000" in srt and "100:00:00,250" in srt
    vtt = transcripts.to_vtt(segments)
    assert [c[2] for c in parse_vtt(vtt)] == [c[2] for c in cues]
    assert "&lt;i&gt;tag&lt;/i&gt; &amp;" in vtt and "01:00:00.000 --> 100:00:00.250" in vtt
    assert transcripts.to_srt([]) == "" and transcripts.to_vtt([]) == "WEBVTT\n\n"
    assert transcripts.format_timestamp(0) == "00:00:00,000"
    assert transcripts.format_timestamp(59.9996, decimal=".") == "00:01:00.000"
    assert transcripts.format_timestamp(7325.123) == "02:02:05,123"


def test_given_language_and_translate(env, sentence):
    job = transcribe(env, sentence.b64, language="en-US", task="translate", response_format="verbose_json", **FAST)
    assert job.state == "succeeded", job.error
    r = job.result
    assert (r["language"], r["language_probability"], r["language_detected"], r["task"]) == ("en", 1.0, False, "translate")
    assert r["body"]["task"] == "translate"


def test_empty_audio_gives_an_empty_transcript_without_a_model(env):
    """A real audio file holding no samples: an empty transcript. Zero bytes is no file at all: a 400."""
    with pytest.raises(InvalidInput) as info:
        env.kind.validate({"audio": ""})
    assert "audio" in info.value.fields and "empty" in info.value.fields["audio"]
    before = loads(env)
    empty = base64.b64encode(_silent_wav(0)).decode()
    for audio, fmt, expected in ((empty, "verbose_json", None), (empty, "srt", ""),
                                 (empty, "vtt", "WEBVTT\n\n"), (empty, "json", {"text": ""})):
        job = transcribe(env, audio, response_format=fmt)
        assert job.state == "succeeded", job.error
        r = job.result
        assert r["text"] == "" and r["duration"] == 0 and r["segment_count"] == 0
        response = r["body"] if fmt in ("json", "verbose_json") else r["content"]
        if expected is None:
            assert response["segments"] == [] and response["text"] == ""
        else:
            assert response == expected
    assert loads(env) == before


def _silent_wav(seconds: float) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\0\0" * int(16000 * seconds))
    return buf.getvalue()


def test_corrupt_or_non_audio_is_rejected(env):
    rng = np.random.default_rng(1)
    garbage = base64.b64encode(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()).decode()
    with pytest.raises(UnsupportedMediaType) as err:
        env.kind.validate({"audio": garbage})
    assert err.value.status == 415 and list(err.value.fields) == ["audio"]
    assert err.value.message.startswith("audio: is not audio")
    from enfoads.services.image_input import encode_png

    picture = base64.b64encode(encode_png(np.zeros((8, 8, 3), dtype=np.uint8))).decode()
    with pytest.raises(UnsupportedMediaType, match="no audio stream"):
        env.kind.validate({"audio": picture})
    with pytest.raises(UnsupportedMediaType, match="not as audio"):
        env.kind.validate({"audio": "data:text/plain;base64," + garbage})

    # Stored as an "audio" asset (say, an upload), it fails in the job, with the same message.
    asset = env.store.save_bytes(base64.b64decode(garbage), "audio/wav")
    job = transcribe(env, asset.id)
    assert job.state == "failed" and job.error["type"] == "UnsupportedMediaType"
    assert job.error["message"].startswith("audio: is not audio")


def test_bad_options_are_refused_before_queueing(env, sentence):
    def refused(field, exc_type=InvalidInput, **params):
        before = env.queue.counts()
        with pytest.raises(exc_type) as err:
            env.kind.validate({"audio": sentence.b64, **params})
        assert err.type is exc_type and list(err.value.fields) == [field], err.value
        assert env.queue.counts() == before

    refused("audio", audio=None)
    refused("audio", audio="0" * 32)  # no such asset
    refused("task", task="summarise")
    refused("response_format", response_format="docx")
    refused("language", language="klingon")
    refused("language", language=7)
    for beam in (0, 11, 1.5, "x", True):
        refused("beam_size", beam_size=beam)
    for temperature in (2, -0.1, "hot", [], [0.0, float("nan")]):
        refused("temperature", temperature=temperature)
    refused("vad_filter", vad_filter="maybe")
    refused("word_timestamps", word_timestamps=3)
    refused("initial_prompt", initial_prompt="x" * 5000)
    refused("initial_prompt", initial_prompt=["a"])
    refused("max_new_tokens", max_new_tokens=0)
    with pytest.raises(PayloadTooLarge):
        speech.SpeechTranscriber(env.rt, limits=speech.Limits(max_duration_s=2)).validate({"audio": sentence.b64})
    params = env.kind.validate({"audio": sentence.b64, "language": "AUTO", "temperature": [0, 0.5], "vad_filter": "true"})
    assert params["language"] is None and params["temperature"] == [0.0, 0.5] and params["vad_filter"] is True
    assert params["beam_size"] == env.rt.choice("speech").options["beam_size"]  # the profile's default
    assert params["response_format"] == "json" and params["task"] == "transcribe"


def test_cancel_mid_transcription(env, sentence, tmp_path):
    # Three times the sentence: one 30 s window cut into many segments.
    samples = b"".join(_frames(sentence.path) for _ in range(3))
    audio = base64.b64encode(_wav_like(sentence.path, samples)).decode()
    params = dict(word_timestamps=True, response_format="srt", **FAST)
    full = transcribe(env, audio, **params)
    assert full.state == "succeeded" and full.result["segment_count"] >= 3

    cancels = []

    def cancel_after_first_segment(event):
        if (isinstance(event, ev.JobProgress) and event.stage == "transcribing" and event.progress > 0
                and not cancels):
            cancels.append(event.progress)
            env.queue.cancel(event.job_id)

    unsubscribe = env.bus.subscribe(cancel_after_first_segment)
    try:
        job = transcribe(env, audio, **params)
    finally:
        unsubscribe()
    # The cancel asked after the first segment landed at the next one: no
    # result, no file, progress stopped where it was.
    assert cancels and job.state == "cancelled" and job.result is None
    assert env.store.list(job_id=job.id) == []
    progress = [e.progress for e in env.bus.of_type(ev.JobProgress, job.id)]
    assert max(progress) == cancels[0] < 100


def _frames(path) -> bytes:
    with wave.open(str(path)) as w:
        return w.readframes(w.getnframes())


def _wav_like(path, frames: bytes) -> bytes:
    with wave.open(str(path)) as w:
        params = w.getparams()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setparams(params)
        out.writeframes(frames)
    return buf.getvalue()


def test_importing_the_service_stays_light():
    import sys

    code = (
        "import sys, enfoads.services.speech; "
        "heavy = {'faster_whisper', 'ctranslate2', 'av', 'numpy'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
