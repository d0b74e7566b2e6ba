"""Runtime adapters: how the residency manager loads, moves, measures and frees each runtime.

- torch (diffusers pipelines): movable between GPU and CPU in place.
- CTranslate2 (faster-whisper): bound to the device it was built on; unloaded
  and rebuilt to change device.
- ONNX Runtime (insightface): sessions are bound to their providers; closed and
  rebuilt to change device.

What to load and how to measure it is the model family's (``enfoads.models.families``),
through ``enfoads.models.loaders``, the one code path for real and tiny weights; an
adapter adds what its runtime does with devices.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from enfoads.models.catalog import ModelEntry
from enfoads.models.families import Family, family_for
from enfoads.models.profiles import RoleChoice
from enfoads.models.registry import local_paths
from enfoads.models.residency_types import CPU, GPU

log = logging.getLogger(__name__)

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


def _is_cuda(device: str) -> bool:
    return device.startswith("cuda")


def staging_bytes_for(entry: ModelEntry) -> int:
    """Host RAM a load of ``entry`` onto the GPU holds: the catalogue's figure.

    Entries without one (user models, test entries) are assumed to pass their whole
    host-RAM footprint through the CPU.
    """
    return entry.ram_bytes if entry.staging_bytes is None else int(entry.staging_bytes)


def _device_index(device: str) -> int:
    _, _, index = device.partition(":")
    return int(index) if index.isdigit() else 0


# ONNX Runtime's CUDA execution provider, set for a shared card. kSameAsRequested: the
# BFC arena grows by what a run asks for instead of doubling (kNextPowerOfTwo, the
# default, can reserve GBs that no model of the budget owns). HEURISTIC: cuDNN picks
# convolution algorithms by heuristics instead of benchmarking all of them (EXHAUSTIVE,
# the default, allocates each candidate's workspace, which can be larger than the model).
# Names and values: onnxruntime/core/providers/cuda/cuda_execution_provider_info.cc.
ORT_CUDA_OPTIONS = {"arena_extend_strategy": "kSameAsRequested", "cudnn_conv_algo_search": "HEURISTIC"}


@dataclass
class _BaseAdapter:
    entry: ModelEntry
    choice: RoleChoice
    models_dir: Path

    @property
    def key(self) -> str:
        return self.entry.id

    @property
    def runtime(self) -> str:
        return self.entry.runtime

    @property
    def movable(self) -> bool:
        return self.entry.movable

    def estimate(self, tier: str) -> int:
        return self.entry.vram_bytes if tier == GPU else self.entry.ram_bytes

    @property
    def staging_bytes(self) -> int:
        # What passes through host RAM on the way to the GPU (see ModelEntry.staging_bytes).
        return staging_bytes_for(self.entry)

    @property
    def family(self) -> Family:
        return family_for(self.entry)

    def paths(self) -> dict[str, Path]:
        return local_paths(self.entry, self.models_dir)

    def move(self, model, device: str):
        raise RuntimeError(f"{self.runtime} models cannot move between devices")

    def unload(self, model) -> None:
        # Dropping the last reference frees CTranslate2 and ONNX Runtime memory;
        # the manager runs gc and empties the CUDA cache afterwards.
        del model


class TorchPipelineAdapter(_BaseAdapter):
    """A torch model (a diffusers pipeline): moved between GPU and CPU in place."""

    def dtype_for(self, device: str) -> str:
        # Half precision on the GPU; float32 on the CPU, where fp16 is slow or unsupported.
        return self.choice.dtype if _is_cuda(device) else "float32"

    def load(self, device: str):
        return self.family.load(self.entry, self.paths(), device=device, dtype=self.dtype_for(device),
                                options=dict(self.choice.options))

    def move(self, model, device: str):
        return model.to(device)

    def measure(self, model, device: str) -> int:
        return self.family.measure(model, self.paths())


class WhisperAdapter(_BaseAdapter):
    """A CTranslate2 model (faster-whisper): bound to its device, rebuilt to change it."""

    def load(self, device: str):
        return self.family.load(self.entry, self.paths(), device=device, dtype=self.choice.dtype,
                                options=dict(self.choice.options))

    def measure(self, model, device: str) -> int:
        return self.family.measure(model, self.paths())


class OnnxFacesAdapter(_BaseAdapter):
    """ONNX Runtime sessions (insightface), providers always explicit; rebuilt to change device."""

    def providers_for(self, device: str) -> list:
        """ORT providers; on CUDA with options (insightface hands them to every session it makes)."""
        if not _is_cuda(device):
            return [CPU_PROVIDER]
        options = {"device_id": str(_device_index(device)), **ORT_CUDA_OPTIONS}
        return [(CUDA_PROVIDER, options), CPU_PROVIDER]

    def load(self, device: str):
        from enfoads.models.loaders import faces

        options = {**self.choice.options, "providers": self.providers_for(device)}
        model = self.family.load(self.entry, self.paths(), device=device, dtype=self.choice.dtype, options=options)
        active = faces.active_providers(model)
        if _is_cuda(device) and CUDA_PROVIDER not in active:
            # onnxruntime-gpu without a matching CUDA falls back silently (~50x slower).
            log.warning("%s: CUDA execution provider did not load; running on %s", self.key, active)
        return model

    def measure(self, model, device: str) -> int:
        return self.family.measure(model, self.paths())


_ADAPTERS = {"torch": TorchPipelineAdapter, "ctranslate2": WhisperAdapter, "onnxruntime": OnnxFacesAdapter}


def adapter_for(entry: ModelEntry, choice: RoleChoice, models_dir: Path):
    """The residency adapter for a catalogue model, or None for runtimes the manager does not hold."""
    cls = _ADAPTERS.get(entry.runtime)
    return cls(entry, choice, Path(models_dir)) if cls else None


def preferred_tier(choice: RoleChoice) -> str:
    return GPU if choice.device == "gpu" else CPU
