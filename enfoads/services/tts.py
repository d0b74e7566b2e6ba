"""Text to speech behind one interface: Piper, espeak-ng and (optionally) edge-tts.

Voice ids are namespaced (``piper:es_MX-claude-high``, ``espeak:es-419``,
``edge:es-MX-DaliaNeural``; see ``enfoads.models.voices``). The four bare ids the
frontend knows (``es-MX-DaliaNeural``, ...) use edge when it is reachable and
otherwise the closest offline voice; every :class:`Speech` says which voice
really spoke and why (``fallback``, ``note``).

Backends:

- **Piper** (``piper-tts``): neural, offline. A voice is an ONNX file plus its
  JSON config, found in the models dir as ``piper/<name>.onnx`` (+ ``.onnx.json``),
  ``piper/<piper-voices path>.onnx``, or in the Hugging Face cache layout
  ``models--rhasspy--piper-voices/snapshots/*/<piper-voices path>.onnx``; the
  tiny test voice is in ``enfoads-tiny/tiny-piper/``. Loaded with
  ``piper.PiperVoice.load`` on the CPU; at most two voices stay loaded.
- **espeak-ng**: formant synthesis, always there once the Debian package is;
  run as a subprocess with an argument list, the text on stdin.
- **edge-tts**: Microsoft's online voices, only when the package is installed
  and a TCP connection to its host succeeds (checked at most every 5 minutes);
  a failure during a job falls back to the offline voice for the whole speech.

Synthesis splits the text into sentences (long ones at clauses, then words),
synthesises each piece on its own and joins them with short pauses, so every
piece's start and end in the result are exact (:attr:`Speech.segments`), which
is what subtitles are timed from. Audio is mono float32 in [-1, 1] at the
voice's sample rate, peak-normalised.
"""
from __future__ import annotations

import io
import logging
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
import wave
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from enfoads.models import voices as catalog
from enfoads.text import clean_text as unicode_rule
from enfoads.errors import EnfoadsError, InvalidInput
from enfoads.models.voices import EDGE, ESPEAK, PIPER, CatalogVoice

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

#: Longest piece synthesised (and shown as one subtitle cue), in characters.
DEFAULT_UNIT_CHARS = 84
#: Silence after a piece, by what ended it.
PAUSES = {"clause": 0.15, "sentence": 0.3, "paragraph": 0.5, "end": 0.0}
#: Silence before the first and after the last word.
LEAD_IN_S = 0.15
TAIL_S = 0.35
PEAK = 0.9
EDGE_HOST = ("speech.platform.bing.com", 443)
ESPEAK_WPM = 165
_MAX_LOADED_PIPER = 2
_SUBPROCESS_TIMEOUT_S = 120


class TTSError(EnfoadsError):
    """A backend failed while synthesising (not the client's fault)."""

    status = 500
    code = "tts_failed"


# --------------------------------------------------------------------------- text


_SPACES = re.compile(r"[ \t\u00a0]+")
_SENTENCE_END = re.compile(r"[.!?…]+[\"'»”’)\]]*\s+")
_CLAUSE_END = re.compile(r"(?<=[,;:—–])\s+")
_ABBREVIATIONS = frozenset(
    "sr sra srta srs sres dr dra dres lic ing arq prof etc ej ejs p pp pág págs núm no nro vs mr mrs ms st av avda "
    "ud uds vd vds cía dpto tel aprox máx mín e.g i.e approx".split()
)


def clean_text(text: str) -> str:
    """NFC, no control characters, single spaces, at most one blank line between paragraphs."""
    text = unicode_rule(text)[0]  # enfoads.text: the rule every user string gets
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    out, blank = [], False
    for line in lines:
        if not line:
            blank = bool(out)
            continue
        if blank:
            out.append("")
        out.append(line)
        blank = False
    return "\n".join(out)


@dataclass(frozen=True)
class Unit:
    """A piece of text synthesised on its own, and the pause after it ("clause", "sentence", "paragraph", "end")."""

    text: str
    boundary: str

    @property
    def pause_after(self) -> float:
        return PAUSES[self.boundary]


def _sentences(paragraph: str) -> list[str]:
    out, start = [], 0
    for m in _SENTENCE_END.finditer(paragraph):
        before = paragraph[start:m.start()].rsplit(" ", 1)[-1].lower().lstrip("¿¡(\"'«")
        following = paragraph[m.end():m.end() + 1]
        if following.islower():
            continue  # "Espera... y luego", "etc. y más": the sentence goes on
        if m.group().startswith(".") and not m.group().startswith("..."):
            # "Sr. García", "p. ej.", "J. Pérez": no sentence ends there.
            if before in _ABBREVIATIONS or (len(before) == 1 and before.isalpha()):
                continue
        out.append(paragraph[start:m.end()].strip())
        start = m.end()
    if paragraph[start:].strip():
        out.append(paragraph[start:].strip())
    return out


def _pack(pieces: list[str], max_chars: int) -> list[str]:
    out: list[str] = []
    for piece in pieces:
        if out and len(out[-1]) + 1 + len(piece) <= max_chars:
            out[-1] = f"{out[-1]} {piece}"
        else:
            out.append(piece)
    return out


def _split_long(sentence: str, max_chars: int) -> list[str]:
    if len(sentence) <= max_chars:
        return [sentence]
    parts: list[str] = []
    for clause in _pack(_CLAUSE_END.split(sentence), max_chars):
        if len(clause) <= max_chars:
            parts.append(clause)
        else:
            parts.extend(_pack(clause.split(" "), max_chars))  # a single huge "word" stays whole
    return parts


def split_text(text: str, max_chars: int = DEFAULT_UNIT_CHARS) -> list[Unit]:
    """Split a script into pieces to synthesise one by one (and show as one subtitle each).

    Paragraphs (line breaks) and sentences always end a piece; a sentence longer
    than ``max_chars`` is cut at commas, semicolons, colons and dashes, and a
    clause still too long between words. Pieces without a letter or digit
    (stray punctuation) are dropped.
    """
    units: list[Unit] = []
    paragraphs = [p for p in clean_text(text).split("\n") if p]
    for pi, paragraph in enumerate(paragraphs):
        sentences = _sentences(paragraph)
        for si, sentence in enumerate(sentences):
            pieces = [p for p in _split_long(sentence, max_chars) if any(c.isalnum() for c in p)]
            for ci, piece in enumerate(pieces):
                if ci < len(pieces) - 1:
                    boundary = "clause"
                elif si < len(sentences) - 1:
                    boundary = "sentence"
                elif pi < len(paragraphs) - 1:
                    boundary = "paragraph"
                else:
                    boundary = "end"
                units.append(Unit(piece, boundary))
    if units and units[-1].boundary != "end":
        units[-1] = replace(units[-1], boundary="end")
    return units


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


# --------------------------------------------------------------------------- backends


def espeak_executable() -> str | None:
    """The espeak-ng (or espeak) program, or None."""
    return shutil.which("espeak-ng") or shutil.which("espeak")


def _parse_wav(data: bytes) -> tuple["np.ndarray", int]:
    """16-bit PCM WAV bytes -> float32 samples (first channel). Tolerates espeak's streaming sizes (0x7fffffff)."""
    import numpy as np

    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise TTSError("the speech engine did not produce a WAV file")
    pos, rate, channels, bits = 12, None, 1, 16
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body = pos + 8
        if cid == b"fmt ":
            _fmt, channels, rate, _br, _align, bits = struct.unpack("<HHIIHH", data[body:body + 16])
        elif cid == b"data":
            end = len(data) if size >= len(data) - body else body + size
            pcm = data[body:end]
            if bits != 16 or rate is None:
                raise TTSError(f"unexpected WAV format ({bits}-bit)")
            samples = np.frombuffer(pcm[: len(pcm) // (2 * channels) * 2 * channels], dtype="<i2")
            samples = samples.reshape(-1, channels)[:, 0].astype(np.float32) / 32768.0
            return samples, int(rate)
        pos = body + size + (size & 1)
    raise TTSError("the speech engine's WAV has no data")


class _Espeak:
    def __init__(self, executable: str | None = None):
        self.executable = executable or espeak_executable()

    @property
    def available(self) -> bool:
        return self.executable is not None

    def synthesize(self, voice: CatalogVoice, text: str, speed: float) -> tuple["np.ndarray", int]:
        if not self.executable:
            raise TTSError("espeak-ng is not installed")
        args = [self.executable, "-v", voice.engine_voice, "-s", str(int(round(ESPEAK_WPM * speed))),
                "-b", "1", "--stdin", "--stdout"]
        try:
            proc = subprocess.run(args, input=text.encode("utf-8"), capture_output=True,
                                  timeout=_SUBPROCESS_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise TTSError("espeak-ng took too long") from None
        if proc.returncode != 0:
            raise TTSError(f"espeak-ng failed: {proc.stderr.decode('utf-8', 'replace').strip()[:300]}")
        return _parse_wav(proc.stdout)


def find_piper_voice(models_dir: Path, voice: CatalogVoice) -> tuple[Path, Path] | None:
    """The (model, config) files of a Piper voice in the models dir, or None if not there."""
    models_dir = Path(models_dir)
    name = voice.engine_voice
    candidates: list[Path] = []
    if voice.tiny:
        from enfoads.models.tiny.piper import tiny_piper_dir

        candidates.append(tiny_piper_dir(models_dir) / f"{name}.onnx")
    candidates.append(models_dir / "piper" / f"{name}.onnx")
    if voice.repo_path:
        candidates.append(models_dir / "piper" / f"{voice.repo_path}.onnx")
        snapshots = models_dir / ("models--" + catalog.PIPER_REPO.replace("/", "--")) / "snapshots"
        if snapshots.is_dir():
            candidates.extend(sorted(snapshots.glob(f"*/{voice.repo_path}.onnx")))
    for onnx_path in candidates:
        config = onnx_path.with_name(onnx_path.name + ".json")
        try:
            if onnx_path.stat().st_size > 0 and config.stat().st_size > 0:
                return onnx_path, config
        except OSError:
            continue
    return None


def _extra_piper_voices(models_dir: Path, known: set[str], limit: int = 200) -> list[CatalogVoice]:
    """Piper voices dropped into ``<models_dir>/piper/`` that the catalogue does not list."""
    import json

    root = Path(models_dir) / "piper"
    if not root.is_dir():
        return []
    found: list[CatalogVoice] = []
    for onnx_path in sorted(root.rglob("*.onnx"))[:limit]:
        name = onnx_path.stem
        vid = f"{PIPER}:{name}"
        if vid in known or not catalog._PIPER_NAME.match(name):
            continue
        config = onnx_path.with_name(onnx_path.name + ".json")
        try:
            info = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        lang = info.get("language") or {}
        locale = name.split("-", 1)[0]
        found.append(CatalogVoice(
            id=vid, backend=PIPER, name=f"{name.split('-')[1].replace('_', ' ').title()} ({locale})",
            language=locale.replace("_", "-"), gender="unknown",
            country=str(lang.get("country_english") or locale.split("_")[-1]), engine_voice=name,
        ))
        known.add(vid)
    return found


class _Piper:
    def __init__(self, models_dir: Path, use_cuda: bool = False):
        self.models_dir = Path(models_dir)
        self.use_cuda = use_cuda
        self._loaded: OrderedDict[Path, Any] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def installed() -> bool:
        try:
            import piper  # noqa: F401
        except ImportError:
            return False
        return True

    def _voice(self, model: Path, config: Path):
        with self._lock:
            if model in self._loaded:
                self._loaded.move_to_end(model)
                return self._loaded[model]
            from piper import PiperVoice

            try:
                loaded = PiperVoice.load(model, config_path=config, use_cuda=self.use_cuda)
            except Exception as exc:
                raise TTSError(f"could not load the Piper voice {model.name}: {exc}") from exc
            self._loaded[model] = loaded
            while len(self._loaded) > _MAX_LOADED_PIPER:
                self._loaded.popitem(last=False)
            return loaded

    def synthesize(self, voice: CatalogVoice, text: str, speed: float) -> tuple["np.ndarray", int]:
        import numpy as np
        from piper import SynthesisConfig

        files = find_piper_voice(self.models_dir, voice)
        if files is None:
            raise TTSError(f"the Piper voice {voice.engine_voice} is not in the models dir; run `enfoads preload`")
        pv = self._voice(*files)
        rate = int(pv.config.sample_rate)
        gap = np.zeros(int(0.12 * rate), dtype=np.float32)
        parts: list[np.ndarray] = []
        # Piper itself may cut a piece into several sentences: join them with a short gap.
        for chunk in pv.synthesize(text, syn_config=SynthesisConfig(length_scale=1.0 / speed)):
            if parts:
                parts.append(gap)
            parts.append(np.asarray(chunk.audio_float_array, dtype=np.float32).reshape(-1))
        return (np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)), rate

    def unload(self) -> None:
        with self._lock:
            self._loaded.clear()


class EdgeProbe:
    """Is edge-tts usable now? The package is importable and its host accepts a TCP connection.

    The answer is kept for ``ttl_s`` seconds; ``mark_down`` (after a failed
    synthesis) makes it False until then.
    """

    def __init__(self, host: tuple[str, int] = EDGE_HOST, *, timeout_s: float = 1.5, ttl_s: float = 300.0,
                 enabled: bool = True):
        self.host = host
        self.timeout_s = timeout_s
        self.ttl_s = ttl_s
        self.enabled = enabled
        self._state: tuple[float, bool] | None = None
        self._lock = threading.Lock()

    @staticmethod
    def package_installed() -> bool:
        try:
            import edge_tts  # noqa: F401
        except ImportError:
            return False
        return True

    def reachable(self) -> bool:
        if not self.enabled:
            return False
        with self._lock:
            now = time.monotonic()
            if self._state is not None and now - self._state[0] < self.ttl_s:
                return self._state[1]
            ok = self.package_installed() and self._connect()
            self._state = (now, ok)
            return ok

    def _connect(self) -> bool:
        try:
            with socket.create_connection(self.host, timeout=self.timeout_s):
                return True
        except OSError:
            return False

    def mark_down(self) -> None:
        with self._lock:
            self._state = (time.monotonic(), False)


class _Edge:
    def __init__(self, probe: EdgeProbe):
        self.probe = probe

    def synthesize(self, voice: CatalogVoice, text: str, speed: float) -> tuple["np.ndarray", int]:
        import av
        import numpy as np

        try:
            import edge_tts

            percent = int(round((speed - 1.0) * 100))
            comm = edge_tts.Communicate(text, voice.engine_voice, rate=f"{percent:+d}%",
                                        connect_timeout=10, receive_timeout=60)
            mp3 = b"".join(c["data"] for c in comm.stream_sync() if c.get("type") == "audio")
        except Exception as exc:  # network, service or package errors alike
            self.probe.mark_down()
            raise TTSError(f"edge-tts failed: {exc}") from exc
        if not mp3:
            self.probe.mark_down()
            raise TTSError("edge-tts returned no audio")
        rate = 24000
        frames: list[np.ndarray] = []
        with av.open(io.BytesIO(mp3)) as container:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    frames.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                frames.append(out.to_ndarray().reshape(-1))
        return (np.concatenate(frames).astype(np.float32) if frames else np.zeros(0, np.float32)), rate


# --------------------------------------------------------------------------- the interface


class TTS:
    """Voices usable now, voice-id resolution, and synthesis.

    Args:
        models_dir: where Piper voices are (see the module docstring).
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
