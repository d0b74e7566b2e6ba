"""Speech models: faster-whisper's CTranslate2 folders, Piper voices and the espeak-ng program."""
from __future__ import annotations

import shutil
from pathlib import Path

from enfoads.models.catalog import ModelEntry
from enfoads.models.families.base import Component, Family
from enfoads.models.not_installed import ModelNotInstalledError


class CTranslate2Whisper(Family):
    """A CTranslate2 conversion of Whisper (``model.bin``, ``config.json``, ``tokenizer.json``)."""

    loader, runtime = "whisper", "ctranslate2"

    def problems(self, entry: ModelEntry, paths: dict[str, Path]) -> list[str]:
        folder = Path(paths["model"])
        return [f"{needed} is missing" for needed in ("model.bin", "config.json", "tokenizer.json")
                if not (folder / needed).is_file()]

    def load(self, entry: ModelEntry, paths: dict[str, Path], *, device: str, dtype: str, options: dict):
        from enfoads.models.loaders.speech import load_whisper

        # CTranslate2 is built for one device: float16 (or the profile's type) on CUDA, int8 on the CPU.
        if device.startswith("cuda"):
            return load_whisper(paths["model"], device="cuda", compute_type=dtype)
        return load_whisper(paths["model"], device="cpu", compute_type="int8")

    def measure(self, model, paths: dict[str, Path]) -> int:
        from enfoads.models.loaders.speech import whisper_model_bytes

        return whisper_model_bytes(paths["model"])


class EspeakProgram(Family):
    """eSpeak NG: a Debian package, not files in the models dir."""

    loader, runtime = "espeak", "process"

    def real_paths(self, entry: ModelEntry, component: Component) -> dict[str, Path]:
        binary = shutil.which("espeak-ng")
        if binary is None:
            raise ModelNotInstalledError(entry, "the espeak-ng program is not on PATH", command="apt-get install espeak-ng")
        return {"binary": Path(binary)}


class PiperVoice(Family):
    """A Piper voice: ``<name>.onnx`` and ``<name>.onnx.json`` from rhasspy/piper-voices (the TTS engine runs it)."""

    loader, runtime = "piper", "onnxruntime"

    def problems(self, entry: ModelEntry, paths: dict[str, Path]) -> list[str]:
        folder = Path(paths["model"])
        voices = list(folder.rglob("*.onnx")) if folder.is_dir() else []
        return [] if any(v.with_name(v.name + ".json").is_file() for v in voices) else [
            f"no Piper voice (<name>.onnx with its .onnx.json) in {folder.name}"]
