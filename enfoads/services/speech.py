"""Transcription with faster-whisper (CTranslate2), in OpenAI's response shapes.

Job kind ``speech.transcribe``. Params (see :func:`parse_options`):

- ``audio``: base64, a ``data:`` URI, or the id of an existing asset (the web
  layer stores a multipart upload as an asset and passes its id; keep big
  uploads out of the job row). Decoded with PyAV like faster-whisper does.
  Limits: 100 MB and 2 h by default. An empty file gives an empty transcript.
- ``language``: an ISO 639-1 code (``"en"``); omitted, ``""`` or ``"auto"``:
  detected, and reported with its probability.
- ``task``: ``"transcribe"`` (default) or ``"translate"`` (into English).
- ``vad_filter`` (false), ``word_timestamps`` (false), ``initial_prompt``,
  ``temperature`` (a number or a list tried in turn; default faster-whisper's
  fallback 0.0, 0.2, ... 1.0, which is what OpenAI does for 0), ``beam_size``
  (default: the profile's), ``max_new_tokens`` (per 30 s window; default none).
- ``response_format``: ``json`` (default), ``text``, ``srt``, ``vtt``, ``verbose_json``.

Timestamps: Whisper predicts them as tokens, and a model may predict times
past the end of the audio or going backwards (random weights always do; real
models do at the end of a file or on music). Every segment is therefore made
sane before anyone sees it: start and end are clamped to [0, duration];
segments are sorted by start (decode order breaks ties); then each start is
raised to the previous segment's end and each end to its start, which trims
overlaps. Words are clamped the same way inside their segment, in order. So
segments never overlap, never go back and never leave the audio; a segment
predicted wholly past the end keeps its text, with zero length at the end.
Real models rarely need more than the clamp of the last segment to the
duration. SRT and VTT leave out zero-length cues (a player could not show
them) and cues without text; JSON keeps every segment.

Progress: the end of the furthest segment so far over the duration (never 100
before the end), a new figure at most every 0.5 s. Cancel lands between segments: ``ctx.progress`` raises ``JobCancelled``
and the lazy segment generator is dropped, so no more audio is decoded.

Result JSON::

    {"response_format": "srt", "content_type": "application/x-subrip; charset=utf-8",
     "content": "1\n00:00:00,000 --> ...",   # text, srt, vtt: the OpenAI response text
     # or "body": {...}                      # json, verbose_json: the OpenAI response object
     "asset_id": "...",                       # the same response as a file (.json, .txt, .srt, .vtt)
     "srt_asset_id": "...", "vtt_asset_id": "...",  # subtitle files, whatever the format asked
     "segments": [{"start": 0.0, "end": 2.1, "text": "..."}, ...],
     "text": "...", "task": "transcribe", "language": "en", "language_probability": 0.97,
     "language_detected": true, "duration": 4.2, "duration_after_vad": 4.2, "segment_count": 2}

Options live in ``speech_options``; a transcript and its SRT, VTT, text and
JSON renderings in ``transcripts``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from enfoads.services import audio_input, media
from enfoads.errors import InvalidInput, UnsupportedMediaType
from enfoads.services import JobKind
from enfoads.services.speech_options import TranscribeOptions, TranscribeRequest, parse_options
from enfoads.services.transcripts import ASSET_MIMES, CONTENT_TYPES, Transcript, encode_body, render

__all__ = [
    "JOB_KIND",
    "transcribe",
    "SpeechTranscriber",
    "job_kinds",
]

JOB_KIND = "speech.transcribe"
#: Least time between two new progress figures while transcribing.
PROGRESS_INTERVAL_S = 0.5
_AUDIO_ASSET_TYPES = ("audio/", "video/", "application/ogg", "application/octet-stream")


# --------------------------------------------------------------------------- the work


def _ms(x: float) -> float:
    return round(float(x), 3)


def transcribe(model, audio, options: TranscribeOptions, *,
               progress: Callable[[float, str], Any] | None = None) -> Transcript:
    """Run faster-whisper on mono float32 16 kHz samples and collect sane segments.

    Args:
        model: a ``faster_whisper.WhisperModel`` (leased by the caller for the whole call).
        audio: float32 samples at 16 kHz.
        options: validated options.
        progress: called as ``progress(percent, "transcribing")`` after each
            segment; an exception from it (``JobCancelled``) stops the
            transcription there.
    """
    if options.language is not None and options.language not in model.supported_languages:
        raise InvalidInput.field("language", f"{options.language!r} is not a language this Whisper model knows")
    report = progress or (lambda pct, stage: None)
    # Language detection (and VAD) run here; segments come lazily below.
    segments, info = model.transcribe(audio, **options.whisper_kwargs())
    duration = _ms(info.duration)

    def clamp(t: float) -> float:
        return min(max(_ms(t), 0.0), duration)

    raw = []
    furthest = 0.0
    shown, shown_at = 0.0, float("-inf")
    for segment in segments:  # lazy: each step decodes the next window
        start, end = clamp(segment.start), clamp(segment.end)
        furthest = max(furthest, end)
        raw.append((start, end, segment))
        now = time.monotonic()
        if now - shown_at >= PROGRESS_INTERVAL_S:
            # A new figure at most this often (each is a database write, maybe
            # on Google Drive); the call itself, where a cancel lands, every segment.
            shown, shown_at = min(99.0, 100.0 * furthest / duration) if duration > 0 else 99.0, now
        report(shown, "transcribing")

    # Sorted by start (stable: decode order breaks ties), then overlaps trimmed.
    raw.sort(key=lambda r: (r[0], r[1]))
    out: list[dict] = []
    words: list[dict] | None = [] if options.word_timestamps else None
    last_end = 0.0
    for start, end, segment in raw:
        start = max(start, last_end)
        end = max(end, start)
        last_end = end
        out.append({
            "id": len(out),
            "seek": int(segment.seek),
            "start": start,
            "end": end,
            "text": segment.text,
            "tokens": [int(t) for t in segment.tokens],
            "temperature": float(segment.temperature) if segment.temperature is not None else None,
            "avg_logprob": float(segment.avg_logprob),
            "compression_ratio": float(segment.compression_ratio),
            "no_speech_prob": float(segment.no_speech_prob),
        })
        if words is not None:
            word_end = start
            for word in segment.words or ():
                w_start = min(max(_ms(word.start), word_end), end)
                w_end = min(max(_ms(word.end), w_start), end)
                word_end = w_end
                words.append({"word": word.word.strip(), "start": w_start, "end": w_end})
    return Transcript(
        task=options.task,
        language=info.language,
        language_probability=round(float(info.language_probability), 4),
        language_detected=options.language is None,
        duration=duration,
        duration_after_vad=_ms(info.duration_after_vad),
        segments=out,
        words=words,
    )


def translation_warnings(entry, task: str) -> list[str]:
    """Why a translation from this model may be poor (large-v3-turbo was not trained to translate)."""
    if task != "translate" or entry.options.get("translates", True):
        return []
    return [f"{entry.id} was trained for transcription only, not translation: its English translation may be "
            "poor or stay in the spoken language; the cpu profile's faster-whisper-small translates"]


def empty_transcript(options: TranscribeOptions) -> Transcript:
    """What empty audio gives: no segment, no text (the model is not even loaded)."""
    return Transcript(
        task=options.task,
        language=options.language,
        language_probability=None,
        language_detected=False,
        duration=0.0,
        duration_after_vad=0.0,
        segments=[],
        words=[] if options.word_timestamps else None,
    )


# --------------------------------------------------------------------------- service and job kind


@dataclass(frozen=True)
class Limits:
    max_bytes: int = audio_input.DEFAULT_MAX_AUDIO_BYTES
    max_duration_s: float = audio_input.DEFAULT_MAX_AUDIO_SECONDS

    @classmethod
    def from_settings(cls, settings) -> "Limits":
        # Settings may grow these knobs (ENFOADS_MAX_AUDIO_MB, ENFOADS_MAX_AUDIO_SECONDS); until then, defaults.
        max_mb = getattr(settings, "max_audio_mb", None) or getattr(settings, "max_upload_mb", None)
        max_s = getattr(settings, "max_audio_seconds", None)
        return cls(
            max_bytes=int(max_mb * media.MB) if max_mb else audio_input.DEFAULT_MAX_AUDIO_BYTES,
            max_duration_s=float(max_s) if max_s else audio_input.DEFAULT_MAX_AUDIO_SECONDS,
        )


def _check_audio_asset(assets, asset_id: str, limits: Limits, read: bool):
    asset = media.stored_asset(assets, asset_id, field="audio", types=_AUDIO_ASSET_TYPES, what="audio",
                               max_bytes=limits.max_bytes, wrong_type=UnsupportedMediaType)
    if asset.bytes == 0:
        raise InvalidInput.field("audio", f"asset {asset_id!r} is empty (0 bytes)")
    return assets.path(asset_id) if read else None


class SpeechTranscriber:
    """The transcription service over a runtime's residency manager (no Flask, no globals)."""

    def __init__(self, runtime, *, limits: Limits | None = None):
        self.runtime = runtime
        self.limits = limits or Limits.from_settings(runtime.settings)
        try:
            beam = runtime.choice("speech").options.get("beam_size", 5)
        except KeyError:
            beam = 5
        self.default_beam_size = int(beam)

    def validate(self, params: dict, *, assets=None, probe: bool = True) -> dict:
        """Check and normalise params (audio: header only); errors name the field."""
        if isinstance(params, dict) and isinstance(params.get("audio"), str) and not params["audio"].strip():
            raise InvalidInput.field("audio", "is empty: send the audio to transcribe")
        request = TranscribeRequest.parse(params)
        audio, options = request.audio, parse_options(params, default_beam_size=self.default_beam_size)
        if probe:
            if media.is_asset_id(audio):
                if assets is not None:
                    _check_audio_asset(assets, audio, self.limits, read=False)
            else:
                audio_input.probe_audio(audio, field="audio", max_bytes=self.limits.max_bytes,
                                        max_duration_s=self.limits.max_duration_s)
        return {"audio": audio, **options.to_params()}

    def decode(self, audio, *, assets=None) -> "audio_input.DecodedAudio":
        if media.is_asset_id(audio):
            if assets is None:
                raise InvalidInput.field("audio", "asset ids need an asset store")
            audio = _check_audio_asset(assets, audio, self.limits, read=True)
        return audio_input.decode_audio(audio, field="audio", max_bytes=self.limits.max_bytes,
                                        max_duration_s=self.limits.max_duration_s)

    def warm_up(self) -> dict:
        """Load the speech model and transcribe one second of silence."""
        import numpy as np

        started = time.perf_counter()
        self.run(np.zeros(16_000, dtype=np.float32), parse_options({}, default_beam_size=1))
        return {"model": self.runtime.model_key("speech"), "seconds": round(time.perf_counter() - started, 3)}

    def job_kinds(self, *, assets=None) -> list[JobKind]:
        """The ``speech.transcribe`` job kind (GPU worker).

        Args:
            assets: the ``AssetStore``; when given, ``validate`` also checks that
                an asset id names an existing audio file (the handler uses ``ctx.assets``).
        """
        def validate(params: dict) -> dict:
            return self.validate(params, assets=assets)

        def handler(params: dict, ctx) -> dict:
            params = self.validate(params, probe=False)
            options = parse_options(params, default_beam_size=self.default_beam_size)
            ctx.progress(0, "decoding audio")
            audio = self.decode(params["audio"], assets=ctx.assets)
            transcript = self.run(audio.samples, options, progress=ctx.progress)
            warnings = translation_warnings(self.runtime.entry("speech"), options.task)
            body = render(transcript, options.response_format)
            asset = ctx.save_bytes(encode_body(body), ASSET_MIMES[options.response_format],
                                   duration=transcript.duration)
            # The subtitle files too, whatever the format asked (a few KB): a transcript view offers both.
            subtitles = {f"{fmt}_asset_id": ctx.save_bytes(encode_body(render(transcript, fmt)), ASSET_MIMES[fmt],
                                                           duration=transcript.duration).id for fmt in ("srt", "vtt")}
            return {
                "response_format": options.response_format,
                "content_type": CONTENT_TYPES[options.response_format],
                # The OpenAI response: a JSON body, or the text of a text/srt/vtt answer.
                ("body" if isinstance(body, dict) else "content"): body,
                "asset_id": asset.id,
                **subtitles,
                "segments": [{"start": seg["start"], "end": seg["end"], "text": seg["text"]}
                             for seg in transcript.segments],
                "text": transcript.text,
                "task": transcript.task,
                "language": transcript.language,
                "language_probability": transcript.language_probability,
                "language_detected": transcript.language_detected,
                "duration": transcript.duration,
                "duration_after_vad": transcript.duration_after_vad,
                "segment_count": len(transcript.segments),
                "warnings": warnings,
            }

        return [JobKind(name=JOB_KIND, handler=handler, validate=validate, device="gpu", options=TranscribeRequest)]

    def _resident(self, key: str) -> bool:
        return any(row["id"] == key and row["tier"] for row in self.runtime.residency.stats().models)

    def run(self, samples, options: TranscribeOptions, *, progress=None) -> Transcript:
        """Transcribe decoded samples under a lease of the profile's speech model."""
        if samples.shape[0] == 0:
            return empty_transcript(options)
        key = self.runtime.model_key("speech")
        if progress is not None and not self._resident(key):
            progress(0, "loading model")
        # The lease covers the whole generator: segments are decoded lazily.
        with self.runtime.residency.use(key) as model:
            return transcribe(model, samples, options, progress=progress)


def job_kinds(runtime, *, assets=None) -> list[JobKind]:
    """The ``speech.transcribe`` job kind of a new ``SpeechTranscriber`` (see ``SpeechTranscriber.job_kinds``)."""
    return SpeechTranscriber(runtime).job_kinds(assets=assets)
