"""Load faster-whisper (CTranslate2) speech-to-text models.

The same function loads a real ``Systran/faster-whisper-*`` snapshot folder
and the tiny kit's random-weight folder; only the folder differs. Importing
this module is cheap: faster-whisper and CTranslate2 load on first use.
"""
from __future__ import annotations

from pathlib import Path

# CTranslate2's CPU backend has no half-precision kernels.
_GPU_ONLY_COMPUTE_TYPES = frozenset({"float16", "int8_float16", "bfloat16", "int8_bfloat16"})


def _require_model_dir(model_dir) -> Path:
    folder = Path(model_dir)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"Whisper model folder {folder} does not exist; run `enfoads preload` to download it"
        )
    for name in ("model.bin", "tokenizer.json"):
        # Without tokenizer.json faster-whisper silently fetches one from the hub.
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"Whisper model folder {folder} has no {name}; it is not a complete "
                f"faster-whisper (CTranslate2) model; run `enfoads preload` to download it"
            )
    return folder


def load_whisper(model_dir, *, device: str = "cpu", compute_type: str = "int8", cpu_threads: int = 0, num_workers: int = 1):
    """Load a faster-whisper model folder; returns ``faster_whisper.WhisperModel``.

    ``device`` is ``"cpu"``, ``"cuda"`` or ``"auto"``; ``compute_type`` is a
    CTranslate2 type: ``"int8"`` on CPU, ``"float16"`` (or ``"int8_float16"``)
    on a GPU.
    """
    folder = _require_model_dir(model_dir)
    if device == "auto":
        import ctranslate2

        # Resolved here so the compute-type check below sees the real device.
        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    if device == "cpu" and compute_type in _GPU_ONLY_COMPUTE_TYPES:
        # CTranslate2 would raise "target device or backend do not support
        # efficient float16 computation", which hides the fix.
        raise ValueError(
            f"compute_type={compute_type!r} needs a CUDA GPU, but device is 'cpu'; "
            f"use compute_type='int8' (the CPU type) or 'float32'"
        )

    from faster_whisper import WhisperModel

    # A str path that is a folder: faster-whisper never resolves it on the hub.
    return WhisperModel(
        str(folder),
        device=device,
        compute_type=compute_type,
        cpu_threads=cpu_threads,
        num_workers=num_workers,
    )


def whisper_model_bytes(model_dir) -> int:
    """Bytes on disk of a Whisper model folder (symlinked hub blobs included)."""
    folder = Path(model_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"Whisper model folder {folder} does not exist")
    # stat() follows symlinks, so a hub snapshot counts its blobs' real sizes.
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
