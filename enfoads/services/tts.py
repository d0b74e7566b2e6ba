"""Text to speech behind one interface: Piper, espeak-ng and (optionally) edge-tts.

Voice ids are namespaced (``piper:es_MX-claude-high``, ``espeak:es-419``,
``edge:es-MX-DaliaNeural``; see ``enfoads.models.voices``). The four bare ids the
frontend knows (``es-MX-DaliaNeural``, ...) use edge when it is reachable and
otherwise the closest offline voice; every :class:`Speech` says which voice
really spoke and why (``fallback``, ``note``).

The backends (Piper, espeak-ng, edge-tts) are ``enfoads.services.tts_backends``;
splitting the text is ``enfoads.services.tts_text``. This module is the engine
that resolves voice ids and joins the pieces, and what the rest of the package
imports.

Synthesis splits the text into sentences (long ones at clauses, then words),
synthesises each piece on its own and joins them with short pauses, so every
piece's start and end in the result are exact (:attr:`Speech.segments`), which
is what subtitles are timed from. Audio is mono float32 in [-1, 1] at the
voice's sample rate, peak-normalised.
"""
from __future__ import annotations

import io
import logging
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from enfoads.models import voices as catalog
from enfoads.errors import InvalidInput
from enfoads.models.voices import EDGE, ESPEAK, PIPER, CatalogVoice
# TTSError, EdgeProbe, find_piper_voice, espeak_executable and the text helpers stay importable from
# here: this module is the TTS interface the rest of the package (and its tests) import.
from enfoads.services.tts_backends import (
    EdgeProbe,
    TTSError,
    _Edge,
    _Espeak,
    _extra_piper_voices,
    _Piper,
    espeak_executable,
    find_piper_voice,
)
from enfoads.services.tts_text import DEFAULT_UNIT_CHARS, Unit, clean_text, split_text

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = [
    "TTSError",
    "Unit",
    "Segment",
    "Speech",
    "VoiceChoice",
    "TTS",
    "EdgeProbe",
    "split_text",
    "clean_text",
    "available_voices",
    "find_piper_voice",
    "espeak_executable",
]

log = logging.getLogger(__name__)

#: Silence before the first and after the last word.
LEAD_IN_S = 0.15
TAIL_S = 0.35
PEAK = 0.9


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Segment:
    """Where one synthesised piece is in the speech, in seconds."""

    text: str
    start: float
    end: float


@dataclass(frozen=True)
class VoiceChoice:
    """The voice that will speak for a requested id, and whether it stands in for another."""

    requested: str | None  # what the client sent (None: the default)
    voice: CatalogVoice
    fallback: bool = False
    note: str | None = None

    def to_dict(self) -> dict:
        return {
            "requested": self.requested,
            "used": self.voice.id,
            "name": self.voice.name,
            "backend": self.voice.backend,
            "offline": self.voice.offline,
            "fallback": self.fallback,
            "note": self.note,
        }


@dataclass
class Speech:
    """Synthesised speech: mono float32 samples, their rate, and each piece's timing."""

    samples: "np.ndarray"
    sample_rate: int
    segments: list[Segment]
    choice: VoiceChoice
    synthesis_seconds: float = 0.0

    @property
    def duration(self) -> float:
        return len(self.samples) / float(self.sample_rate)

    @property
    def voice(self) -> CatalogVoice:
        return self.choice.voice

    def pcm16(self) -> bytes:
        import numpy as np

        return (np.clip(self.samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()

    def wav_bytes(self) -> bytes:
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(self.sample_rate)
            w.writeframes(self.pcm16())
        return buf.getvalue()

    def write_wav(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_bytes(self.wav_bytes())
        return path


# --------------------------------------------------------------------------- the interface


class TTS:
    """Voices usable now, voice-id resolution, and synthesis.

    Args:
        models_dir: where Piper voices are (see ``enfoads.services.tts_backends``).
        edge: ``None`` (default): use edge-tts when installed and reachable;
            ``False``: never; ``True``: same as None (it still must be reachable).
        edge_probe: the reachability check (tests point it at a closed port).
        espeak: the espeak-ng executable; default found on PATH.
        default_voice: the id used when a request names none; default the
            first usable of ``enfoads.models.voices.DEFAULT_PREFERENCE``.
    """

    def __init__(self, models_dir: str | Path, *, edge: bool | None = None, edge_probe: EdgeProbe | None = None,
                 espeak: str | None = None, default_voice: str | None = None, piper_cuda: bool = False):
        self.models_dir = Path(models_dir)
        self.probe = edge_probe or EdgeProbe(enabled=edge is not False)
        if edge is False:
            self.probe.enabled = False
        self.default_voice = default_voice
        self._espeak = _Espeak(espeak)
        self._piper = _Piper(self.models_dir, use_cuda=piper_cuda)
        self._edge = _Edge(self.probe)

    @classmethod
    def from_settings(cls, settings, **kw) -> "TTS":
        """A TTS for ``settings`` (``models_dir``; ``tts_edge`` "off" disables edge, ``tts_default_voice``)."""
        edge_setting = str(getattr(settings, "tts_edge", "auto") or "auto").lower()
        kw.setdefault("edge", False if edge_setting in ("off", "false", "0", "no") else None)
        kw.setdefault("default_voice", getattr(settings, "tts_default_voice", None))
        return cls(settings.models_dir, **kw)

    # ---------------------------------------------------------------- catalogue

    def is_usable(self, voice: CatalogVoice) -> bool:
        """Whether ``voice`` can speak now."""
        if voice.backend == ESPEAK:
            return self._espeak.available
        if voice.backend == PIPER:
            return self._piper.installed() and find_piper_voice(self.models_dir, voice) is not None
        if voice.backend == EDGE:
            return self.probe.reachable()
        return False

    def _lookup(self, voice_id: str) -> CatalogVoice | None:
        voice = catalog.get(voice_id)
        if voice is None and voice_id.startswith(f"{PIPER}:"):
            for extra in _extra_piper_voices(self.models_dir, set(catalog.CATALOG)):
                if extra.id == voice_id:
                    return extra
        return voice

    def voices(self) -> list[CatalogVoice]:
        """Every voice usable now: installed Piper voices, espeak-ng voices, edge voices when reachable."""
        out = [v for v in catalog.CATALOG.values() if self.is_usable(v)]
        if self._piper.installed():
            out.extend(_extra_piper_voices(self.models_dir, set(catalog.CATALOG)))
        order = {PIPER: 0, EDGE: 1, ESPEAK: 2}
        return sorted(out, key=lambda v: (order[v.backend], v.tiny))

    def default(self) -> CatalogVoice:
        for vid in ((self.default_voice,) if self.default_voice else ()) + catalog.DEFAULT_PREFERENCE:
            voice = self._lookup(catalog.canonical_id(vid))
            if voice is not None and self.is_usable(voice):
                return voice
        raise TTSError("no text-to-speech voice is usable: install espeak-ng or preload a Piper voice")

    def resolve(self, voice_id: str | None, *, field: str = "voice_id") -> VoiceChoice:
        """The voice that will speak for ``voice_id`` (None or "": the default).

        Raises:
            InvalidInput: naming ``field``: not a string, an unknown id, or a
                voice that is not installed and has no stand-in.
        """
        if voice_id is None or (isinstance(voice_id, str) and not voice_id.strip()):
            return VoiceChoice(None, self.default())
        if not isinstance(voice_id, str) or len(voice_id) > 100:
            raise InvalidInput.field(field, "must be a voice id from GET /voices")
        requested = voice_id.strip()
        vid = catalog.canonical_id(requested)
        voice = self._lookup(vid)
        if voice is None:
            raise InvalidInput.field(field, f"unknown voice {requested!r}; GET /voices lists the voices")
        if self.is_usable(voice):
            return VoiceChoice(requested, voice)
        if voice.backend == EDGE:
            for fid in catalog.fallbacks_for(vid):
                stand_in = self._lookup(fid)
                if stand_in is not None and self.is_usable(stand_in):
                    why = ("edge-tts is not installed" if not self.probe.package_installed()
                           else "edge-tts is turned off" if not self.probe.enabled
                           else "the edge-tts service is unreachable")
                    return VoiceChoice(requested, stand_in, fallback=True,
                                       note=f"{why}; {requested} was replaced by the offline voice "
                                            f"{stand_in.id} ({stand_in.name})")
        if voice.backend == PIPER:
            raise InvalidInput.field(field, f"the Piper voice {requested!r} is not installed on this server "
                                            "(run `enfoads preload`); GET /voices lists the voices usable now")
        if voice.backend == ESPEAK:
            raise InvalidInput.field(field, "espeak-ng is not installed on this server")
        raise InvalidInput.field(field, f"the voice {requested!r} is not usable now and has no offline stand-in")

    # ---------------------------------------------------------------- synthesis

    def _engine(self, voice: CatalogVoice):
        return {PIPER: self._piper, ESPEAK: self._espeak, EDGE: self._edge}[voice.backend]

    def synthesize(
        self,
        text: str | Iterable[Unit],
        voice: str | VoiceChoice | None = None,
        *,
        speed: float = 1.0,
        max_chars: int = DEFAULT_UNIT_CHARS,
        progress: Callable[[float, str], None] | None = None,
        lead_in: float = LEAD_IN_S,
        tail: float = TAIL_S,
    ) -> Speech:
        """Speak ``text`` piece by piece; see the module docstring.

        Args:
            text: the script, or pieces from :func:`split_text`.
            voice: a voice id, a resolved :class:`VoiceChoice`, or None for the default.
            speed: 0.5-2.0; above 1 is faster.
            progress: called with (fraction 0..1, message) after each piece; it
                may raise (e.g. ``JobCancelled``) to stop.
            lead_in, tail: seconds of silence before the first and after the last piece.
        """
        import numpy as np

        if not 0.5 <= speed <= 2.0:
            raise InvalidInput.field("speed", "must be between 0.5 and 2.0")
        units = split_text(text, max_chars) if isinstance(text, str) else list(text)
        if not units:
            raise InvalidInput.field("script", "has nothing to say (no letters or digits)")
        choice = voice if isinstance(voice, VoiceChoice) else self.resolve(voice)
        started = time.perf_counter()
        try:
            clips, rate = self._clips(choice.voice, units, speed, progress)
        except TTSError as exc:
            if choice.voice.backend != EDGE:
                raise
            stand_in = self._offline_stand_in(choice)
            log.warning("edge-tts failed (%s); speaking with %s instead", exc, stand_in.id)
            choice = VoiceChoice(choice.requested, stand_in, fallback=True,
                                 note=f"edge-tts failed during synthesis ({exc}); used the offline voice "
                                      f"{stand_in.id} ({stand_in.name})")
            clips, rate = self._clips(stand_in, units, speed, progress)
        parts = [np.zeros(int(round(lead_in * rate)), np.float32)]
        segments: list[Segment] = []
        pos = len(parts[0])
        for i, (unit, clip) in enumerate(zip(units, clips)):
            segments.append(Segment(unit.text, pos / rate, (pos + len(clip)) / rate))
            parts.append(clip)
            pos += len(clip)
            gap = int(round((unit.pause_after if i < len(units) - 1 else tail) * rate))
            parts.append(np.zeros(gap, np.float32))
            pos += gap
        samples = np.concatenate(parts)
        peak = float(np.max(np.abs(samples))) if samples.size else 0.0
        if peak > 1e-6:
            samples = samples * (PEAK / peak)
        return Speech(samples.astype(np.float32), rate, segments, choice,
                      synthesis_seconds=time.perf_counter() - started)

    def _clips(self, voice: CatalogVoice, units: list[Unit], speed: float, progress) -> tuple[list, int]:
        import numpy as np

        engine = self._engine(voice)
        clips, rate = [], None
        for i, unit in enumerate(units):
            samples, unit_rate = engine.synthesize(voice, unit.text, speed)
            if rate is not None and unit_rate != rate:
                raise TTSError(f"the voice changed sample rate mid-speech ({rate} -> {unit_rate})")
            rate = unit_rate
            clips.append(np.asarray(samples, np.float32))
            if progress is not None:
                progress((i + 1) / len(units), f"speech {i + 1}/{len(units)}")
        return clips, int(rate)

    def _offline_stand_in(self, choice: VoiceChoice) -> CatalogVoice:
        for fid in catalog.fallbacks_for(choice.voice.id) + catalog.DEFAULT_PREFERENCE:
            v = self._lookup(fid)
            if v is not None and v.backend != EDGE and self.is_usable(v):
                return v
        raise TTSError("edge-tts failed and no offline voice is usable")

    def unload(self) -> None:
        """Drop loaded Piper voices (their memory goes back)."""
        self._piper.unload()


# --------------------------------------------------------------------------- helpers for the web layer


def voice_entry(voice: CatalogVoice) -> dict:
    """A voice in the frontend's fields (``id, name, language, gender, country``) plus ``backend`` and ``offline``."""
    return {
        "id": voice.id,
        "name": voice.name,
        "language": voice.language,
        "gender": voice.gender,
        "country": voice.country,
        "backend": voice.backend,
        "offline": voice.offline,
    }


def available_voices(tts: TTS) -> list[dict]:
    """``GET /voices``: the voices usable now, in the frontend's fields plus ``backend`` and ``offline``.

    Piper voices first (installed ones only), then edge voices (only when
    reachable), then espeak-ng. The tiny test voice is listed only once built.
    """
    return [voice_entry(v) for v in tts.voices()]
