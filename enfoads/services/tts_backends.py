"""The text-to-speech backends: Piper, espeak-ng and edge-tts synthesis, and finding Piper voices.

Each backend turns one piece of text into mono float32 samples and their rate
(``synthesize(voice, text, speed)``); the engine that picks a backend per
voice, joins the pieces and falls back between voices is
``enfoads.services.tts``.

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
"""
from __future__ import annotations

import io
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enfoads.models import voices as catalog
from enfoads.errors import EnfoadsError
from enfoads.models.voices import PIPER, CatalogVoice

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = ["TTSError", "EdgeProbe", "espeak_executable", "find_piper_voice"]

EDGE_HOST = ("speech.platform.bing.com", 443)
ESPEAK_WPM = 165
_MAX_LOADED_PIPER = 2
_SUBPROCESS_TIMEOUT_S = 120


class TTSError(EnfoadsError):
    """A backend failed while synthesising (not the client's fault)."""

    status = 500
    code = "tts_failed"


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
