"""Decoding untrusted audio: probing a container, decoding to Whisper's samples.

Audio (:func:`probe_audio`, :func:`decode_audio`): PyAV, the decoder
faster-whisper itself uses, with the same resampling (mono, signed 16 bit,
then float32 at 16 kHz). Limits: bytes, and duration both from the header (at
once) and while decoding (a header can lie). No bytes at all, or a container
with no samples, gives *empty* audio, not an error; bytes that FFmpeg cannot
read, or a file without an audio stream, are refused.

Errors are those of ``enfoads.services.media``, naming the request field;
payloads are read there. numpy and PyAV load on use.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enfoads.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from enfoads.services.media import MB, Payload, _too_many_bytes, read_payload

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = [
    "DEFAULT_MAX_AUDIO_BYTES",
    "DEFAULT_MAX_AUDIO_SECONDS",
    "SAMPLING_RATE",
    "AudioInfo",
    "DecodedAudio",
    "probe_audio",
    "decode_audio",
]

#: Encoded bytes an input audio file may have (OpenAI's own limit is 25 MB).
DEFAULT_MAX_AUDIO_BYTES = 100 * MB
#: Seconds of audio a transcription may take in.
DEFAULT_MAX_AUDIO_SECONDS = 2 * 3600
#: What Whisper wants.
SAMPLING_RATE = 16000

# What a data URI may declare for audio: containers FFmpeg reads are named
# many ways by browsers (MediaRecorder gives video/webm for audio-only).
_AUDIO_MIME_PREFIXES = ("audio/", "video/")
_AUDIO_MIMES = frozenset({"application/ogg", "application/octet-stream"})


def _hms(seconds: float) -> str:
    """``H:MM:SS`` (with tenths when not a whole second)."""
    tenths = int(round(float(seconds) * 10))
    whole, frac = divmod(tenths, 10)
    text = f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
    return f"{text}.{frac}" if frac else text


# --------------------------------------------------------------------------- audio


@dataclass(frozen=True)
class AudioInfo:
    """What an audio file's header says. ``duration`` is None when the container does not tell."""

    format: str | None  # FFmpeg's demuxer name, e.g. "wav", "ogg", "mp3", "mov,mp4,m4a,3gp,3g2,mj2"
    codec: str | None
    duration: float | None
    sample_rate: int | None
    channels: int | None
    bytes: int

    @property
    def empty(self) -> bool:
        return self.bytes == 0


@dataclass(frozen=True)
class DecodedAudio:
    """Mono float32 samples in [-1, 1) at ``sampling_rate``, and the header facts."""

    samples: "np.ndarray"
    sampling_rate: int
    info: AudioInfo

    @property
    def duration(self) -> float:
        return float(self.samples.shape[0]) / self.sampling_rate

    @property
    def empty(self) -> bool:
        return self.samples.shape[0] == 0


def _audio_payload(value: Any, field: str, max_bytes: int) -> Payload:
    if isinstance(value, Payload):
        payload = value
    elif isinstance(value, Path):
        size = value.stat().st_size
        if size > max_bytes:
            raise _too_many_bytes(field, size, max_bytes)
        payload = Payload(value.read_bytes())
    else:
        payload = read_payload(value, field=field, max_bytes=max_bytes, allow_empty=True)
    declared = payload.declared_mime
    if declared is not None and not (declared.startswith(_AUDIO_MIME_PREFIXES) or declared in _AUDIO_MIMES):
        raise UnsupportedMediaType.field(field, f"is declared as {declared!r} in its data URI, not as audio")
    if len(payload.data) > max_bytes:
        raise _too_many_bytes(field, len(payload.data), max_bytes)
    return payload


def _open_container(payload: Payload, field: str):
    import av

    try:
        container = av.open(io.BytesIO(payload.data), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, ValueError, EOFError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise UnsupportedMediaType.field(
            field, f"is not audio FFmpeg can read (WAV, MP3, OGG/Opus, FLAC, M4A, WebM, ...): {why}"
        ) from None
    if not container.streams.audio:
        kinds = sorted({s.type for s in container.streams}) or ["nothing"]
        container.close()
        raise UnsupportedMediaType.field(field, f"has no audio stream (it holds {', '.join(kinds)})")
    if container.streams.audio[0].codec_context is None:
        # A container FFmpeg reads around an audio codec it has no decoder for
        # (e.g. a WAV with an unknown format tag): refused now, not at decode.
        container.close()
        raise UnsupportedMediaType.field(
            field, "uses an audio codec this server cannot decode; send WAV (PCM), MP3, OGG/Opus, FLAC, M4A or WebM"
        )
    return container


def _header_info(container, size: int) -> AudioInfo:
    stream = container.streams.audio[0]
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000  # AV_TIME_BASE
    ctx = stream.codec_context
    return AudioInfo(
        format=container.format.name if container.format else None,
        codec=getattr(ctx, "name", None),
        duration=duration,
        sample_rate=getattr(ctx, "sample_rate", None) or None,
        channels=getattr(ctx, "channels", None) or None,
        bytes=size,
    )


def _check_header_duration(info: AudioInfo, field: str, max_seconds: float) -> None:
    if info.duration is not None and info.duration > max_seconds:
        raise PayloadTooLarge.field(
            field, f"is {_hms(info.duration)} long; the limit is {_hms(max_seconds)}"
        )


def probe_audio(value: Any, *, field: str = "audio", max_bytes: int = DEFAULT_MAX_AUDIO_BYTES,
                max_duration_s: float = DEFAULT_MAX_AUDIO_SECONDS) -> AudioInfo:
    """Check audio from its container header only: readable, has an audio stream, within the limits.

    Empty input (no bytes) is valid and gives ``AudioInfo(bytes=0, ...)``.
    """
    payload = _audio_payload(value, field, max_bytes)
    if not payload.data:
        return AudioInfo(None, None, 0.0, None, None, 0)
    container = _open_container(payload, field)
    try:
        info = _header_info(container, len(payload.data))
    finally:
        container.close()
    _check_header_duration(info, field, max_duration_s)
    return info


def decode_audio(value: Any, *, field: str = "audio", max_bytes: int = DEFAULT_MAX_AUDIO_BYTES,
                 max_duration_s: float = DEFAULT_MAX_AUDIO_SECONDS,
                 sampling_rate: int = SAMPLING_RATE) -> DecodedAudio:
    """Decode untrusted audio to mono float32 at ``sampling_rate``, as faster-whisper's ``decode_audio`` does.

    Args:
        value: raw bytes, a base64 string, a ``data:`` URI, a ``Payload`` or a ``pathlib.Path``.
        field: the request field, named in every error.
        max_bytes: encoded size allowed.
        max_duration_s: seconds allowed; checked from the header first, then
            while decoding (decoding stops as soon as it is passed).
        sampling_rate: output rate (Whisper: 16000).

    Returns:
        ``DecodedAudio``; its ``samples`` are empty for empty input.
    """
    import gc

    import av
    import numpy as np

    payload = _audio_payload(value, field, max_bytes)
    if not payload.data:
        return DecodedAudio(np.zeros(0, dtype=np.float32), sampling_rate, AudioInfo(None, None, 0.0, None, None, 0))
    container = _open_container(payload, field)
    limit = int(max_duration_s * sampling_rate) + sampling_rate  # one second of slack for resampler edges
    chunks: list = []
    total = 0
    invalid = 0
    resampler = av.audio.resampler.AudioResampler(format="s16", layout="mono", rate=sampling_rate)
    fifo = av.audio.fifo.AudioFifo()
    try:
        info = _header_info(container, len(payload.data))
        _check_header_duration(info, field, max_duration_s)

        def resampled(frame):
            nonlocal total
            for out in resampler.resample(frame):
                array = out.to_ndarray().reshape(-1)
                total += array.shape[0]
                if total > limit:
                    raise PayloadTooLarge.field(
                        field, f"is longer than the limit of {_hms(max_duration_s)} (decoding stopped there)"
                    )
                chunks.append(array)

        frames = container.decode(audio=0)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except av.error.InvalidDataError:
                invalid += 1  # like faster-whisper: skip a damaged frame
                continue
            except (av.error.FFmpegError, OSError, ValueError, EOFError) as exc:
                raise InvalidInput.field(field, f"is corrupt audio ({exc})") from None
            frame.pts = None  # as faster-whisper: no timestamp checks
            fifo.write(frame)
            if fifo.samples >= 500_000:
                resampled(fifo.read())
        if fifo.samples > 0:
            resampled(fifo.read())
        resampled(None)  # flush
    except (av.error.FFmpegError, ValueError) as exc:
        raise InvalidInput.field(field, f"is corrupt audio ({exc})") from None
    finally:
        container.close()
        # As faster-whisper: resampler objects are only freed by a collection.
        resampler = fifo = None
        gc.collect()
    if total == 0 and invalid:
        raise InvalidInput.field(field, f"is corrupt audio: none of its {invalid} audio frames could be decoded")
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    samples = pcm.astype(np.float32) / 32768.0
    return DecodedAudio(samples, sampling_rate, info)
