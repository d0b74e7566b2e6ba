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
     "text": "...", "task": "transcribe", "language": "en", "language_probability": 0.97,
     "language_detected": true, "duration": 4.2, "duration_after_vad": 4.2, "segment_count": 2}
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from enfoads.services import media
from enfoads.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from enfoads.services import JobKind
from pydantic import Field

from enfoads.services.options import Options, checked, choice, fail, flag, text, to_number, whole_number

__all__ = [
    "JOB_KIND",
    "RESPONSE_FORMATS",
    "CONTENT_TYPES",
    "TranscribeOptions",
    "Transcript",
    "parse_options",
    "transcribe",
    "render",
    "to_srt",
    "to_vtt",
    "format_timestamp",
    "SpeechTranscriber",
    "job_kinds",
]

JOB_KIND = "speech.transcribe"
RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
TASKS = ("transcribe", "translate")
#: What the web layer answers with, per format (OpenAI's types).
CONTENT_TYPES = {
    "json": "application/json",
    "verbose_json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}
#: The asset's MIME type, per format (the asset store picks the extension from it).
ASSET_MIMES = {
    "json": "application/json",
    "verbose_json": "application/json",
    "text": "text/plain",
    "srt": "application/x-subrip",
    "vtt": "text/vtt",
}
DEFAULT_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
MAX_BEAM_SIZE = 10
MAX_PROMPT_CHARS = 2000
MAX_NEW_TOKENS = 448  # Whisper's decoder context
#: Least time between two new progress figures while transcribing.
PROGRESS_INTERVAL_S = 0.5
_AUDIO_ASSET_TYPES = ("audio/", "video/", "application/ogg", "application/octet-stream")


# --------------------------------------------------------------------------- options


def _language_codes() -> frozenset[str] | None:
    try:
        from faster_whisper.tokenizer import _LANGUAGE_CODES
    except Exception:  # a faster-whisper without that table: the model checks later
        return None
    return frozenset(_LANGUAGE_CODES)


def _language(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        fail(f"must be a language code such as 'en', not {value!r}")
    code = value.strip().lower().replace("_", "-").split("-")[0]  # "en-US" -> "en"
    if code in ("", "auto"):
        return None
    codes = _language_codes()
    if not re.fullmatch(r"[a-z]{2,3}", code) or (codes is not None and code not in codes):
        fail(f"{value!r} is not a language Whisper knows; use a code such as 'en' or 'fr'")
    return code


def _temperatures(value: Any) -> tuple[float, ...]:
    if value is None:
        return DEFAULT_TEMPERATURES
    items = value if isinstance(value, (list, tuple)) else [value]
    if not items or len(items) > 10:
        fail("must be a number or a list of 1 to 10 numbers")
    return tuple(to_number(v, lo=0.0, hi=1.0) for v in items)


Language = checked(_language, {"anyOf": [{"type": "string", "maxLength": 16}, {"type": "null"}],
                               "description": "an ISO 639-1 code; absent, empty or auto: detected"}, str | None)
Temperatures = checked(_temperatures, {"anyOf": [
    {"type": "number", "minimum": 0, "maximum": 1},
    {"type": "string"}, {"type": "null"},
    {"type": "array", "minItems": 1, "maxItems": 10, "items": {"anyOf": [
        {"type": "number", "minimum": 0, "maximum": 1}, {"type": "string"}]}}]})


Task = choice(TASKS, default="transcribe")
ResponseFormat = choice(RESPONSE_FORMATS, default="json")
Flag = flag(False)
InitialPrompt = text(MAX_PROMPT_CHARS)
BeamSize = whole_number(1, MAX_BEAM_SIZE)
MaxNewTokens = whole_number(1, MAX_NEW_TOKENS)


class TranscribeOptions(Options):
    """Validated transcription options; ``whisper_kwargs()`` is what faster-whisper gets."""

    what = "transcription options"

    language: Language = None
    task: Task = "transcribe"
    vad_filter: Flag = False
    word_timestamps: Flag = False
    initial_prompt: InitialPrompt = None
    temperature: Temperatures = DEFAULT_TEMPERATURES
    beam_size: BeamSize = Field(None, description="absent: the profile's")
    max_new_tokens: MaxNewTokens = None
    response_format: ResponseFormat = "json"

    def whisper_kwargs(self) -> dict:
        kwargs = dict(
            language=self.language,
            task=self.task,
            beam_size=self.beam_size or 5,
            temperature=list(self.temperature),
            vad_filter=self.vad_filter,
            word_timestamps=self.word_timestamps,
            initial_prompt=self.initial_prompt,
            without_timestamps=False,  # segment times come from Whisper's timestamp tokens
        )
        if self.max_new_tokens is not None:
            kwargs["max_new_tokens"] = self.max_new_tokens
        return kwargs


def _audio(value: Any) -> str:
    # Only its kind here: the media layer reads the header (a big upload is not copied or scanned twice).
    if value is None:
        fail("is required (base64, a data URI or an asset id)")
    if not isinstance(value, str):
        fail(f"must be base64, a data URI or an asset id, not {type(value).__name__}")
    return value


AudioInput = checked(_audio, {"type": "string", "minLength": 1, "description": "base64, a data URI or an asset id"}, str)


class TranscribeRequest(TranscribeOptions):
    """``speech.transcribe``'s params: the audio and the options."""

    audio: AudioInput


def parse_options(params: dict, *, default_beam_size: int = 5) -> TranscribeOptions:
    """Options from request params, each checked; errors name the field."""
    options = TranscribeOptions.parse(params)
    if options.beam_size is None:
        options.beam_size = default_beam_size
    return options


# --------------------------------------------------------------------------- the work


@dataclass
class Transcript:
    """A transcription with sane timestamps (see the module docstring)."""

    task: str
    language: str | None
    language_probability: float | None
    language_detected: bool
    duration: float
    duration_after_vad: float
    segments: list[dict] = field(default_factory=list)  # OpenAI verbose_json segments
    words: list[dict] | None = None  # {"word", "start", "end"} when word timestamps were asked

    @property
    def text(self) -> str:
        return "".join(s["text"] for s in self.segments).strip()

    def verbose_json(self) -> dict:
        body = {
            "task": self.task,
            "language": self.language,
            "language_probability": self.language_probability,
            "duration": self.duration,
            "text": self.text,
            "segments": self.segments,
        }
        if self.words is not None:
            body["words"] = self.words
        return body


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


# --------------------------------------------------------------------------- output formats


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def format_timestamp(seconds: float, *, decimal: str = ",") -> str:
    """``HH:MM:SS,mmm`` (SRT) or with ``decimal="."`` ``HH:MM:SS.mmm`` (WebVTT).

    Rounded once, to the millisecond, before splitting (so 59.9996 s is
    ``00:01:00,000``, never ``00:00:60,000``); hours grow past two digits.
    """
    total = max(0, int(round(float(seconds) * 1000)))
    hours, rest = divmod(total, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


def _cue_text(text: str) -> str:
    """One line of cue text: no line breaks or control characters (a blank line ends a cue), no ``-->``."""
    text = _CONTROL.sub(" ", text)
    text = " ".join(text.split())
    while "-->" in text:
        text = text.replace("-->", "->")
    return text


def _cues(segments: list[dict]):
    for seg in segments:
        text = _cue_text(seg["text"])
        if text and seg["end"] > seg["start"]:
            yield seg["start"], seg["end"], text


def to_srt(segments: list[dict]) -> str:
    """SubRip: numbered cues ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, separated by blank lines."""
    blocks = [
        f"{n}\n{format_timestamp(start)} --> {format_timestamp(end)}\n{text}\n"
        for n, (start, end, text) in enumerate(_cues(segments), start=1)
    ]
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(segments: list[dict]) -> str:
    """WebVTT: the ``WEBVTT`` header, then cues ``HH:MM:SS.mmm --> HH:MM:SS.mmm`` with escaped text."""
    blocks = [
        f"{format_timestamp(start, decimal='.')} --> {format_timestamp(end, decimal='.')}\n{_vtt_escape(text)}\n"
        for start, end, text in _cues(segments)
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def render(transcript: Transcript, response_format: str) -> dict | str:
    """The OpenAI response body for ``response_format``: a dict for the JSON formats, else text."""
    if response_format == "json":
        return {"text": transcript.text}
    if response_format == "verbose_json":
        return transcript.verbose_json()
    if response_format == "text":
        return transcript.text + "\n" if transcript.text else ""
    if response_format == "srt":
        return to_srt(transcript.segments)
    if response_format == "vtt":
        return to_vtt(transcript.segments)
    raise ValueError(f"unknown response_format {response_format!r}")


def encode_body(body: dict | str) -> bytes:
    if isinstance(body, dict):
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")
    return body.encode("utf-8", "replace")


# --------------------------------------------------------------------------- service and job kind


@dataclass(frozen=True)
class Limits:
    max_bytes: int = media.DEFAULT_MAX_AUDIO_BYTES
    max_duration_s: float = media.DEFAULT_MAX_AUDIO_SECONDS

    @classmethod
    def from_settings(cls, settings) -> "Limits":
        # Settings may grow these knobs (ENFOADS_MAX_AUDIO_MB, ENFOADS_MAX_AUDIO_SECONDS); until then, defaults.
        max_mb = getattr(settings, "max_audio_mb", None) or getattr(settings, "max_upload_mb", None)
        max_s = getattr(settings, "max_audio_seconds", None)
        return cls(
            max_bytes=int(max_mb * media.MB) if max_mb else media.DEFAULT_MAX_AUDIO_BYTES,
            max_duration_s=float(max_s) if max_s else media.DEFAULT_MAX_AUDIO_SECONDS,
        )


def _check_audio_asset(assets, asset_id: str, limits: Limits, read: bool):
    from enfoads.work.assets import AssetNotFound

    try:
        asset = assets.get(asset_id)
    except AssetNotFound:
        raise InvalidInput.field("audio", f"there is no asset {asset_id!r}") from None
    if not asset.mime.startswith(_AUDIO_ASSET_TYPES):
        raise UnsupportedMediaType.field("audio", f"asset {asset_id!r} is {asset.mime}, not audio")
    if asset.bytes == 0:
        raise InvalidInput.field("audio", f"asset {asset_id!r} is empty (0 bytes)")
    if asset.bytes > limits.max_bytes:
        raise PayloadTooLarge.field("audio", f"asset {asset_id!r} is {asset.bytes / media.MB:.1f} MB; "
                                             f"the limit is {limits.max_bytes / media.MB:.1f} MB")
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
                media.probe_audio(audio, field="audio", max_bytes=self.limits.max_bytes,
                                  max_duration_s=self.limits.max_duration_s)
        return {"audio": audio, **options.to_params()}

    def decode(self, audio, *, assets=None) -> "media.DecodedAudio":
        if media.is_asset_id(audio):
            if assets is None:
                raise InvalidInput.field("audio", "asset ids need an asset store")
            audio = _check_audio_asset(assets, audio, self.limits, read=True)
        return media.decode_audio(audio, field="audio", max_bytes=self.limits.max_bytes,
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
            return {
                "response_format": options.response_format,
                "content_type": CONTENT_TYPES[options.response_format],
                # The OpenAI response: a JSON body, or the text of a text/srt/vtt answer.
                ("body" if isinstance(body, dict) else "content"): body,
                "asset_id": asset.id,
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
