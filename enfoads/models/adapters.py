"""Runtime adapters: how the residency manager loads, moves, measures and frees each runtime.

- torch (diffusers pipelines): movable between GPU and CPU in place.
- CTranslate2 (faster-whisper): bound to the device it was built on; unloaded
  and rebuilt to change device.
- ONNX Runtime (insightface): sessions are bound to their providers; closed and
  rebuilt to change device.

Every adapter goes through ``enfoads.models.loaders``, the one code path for real and
tiny weights.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from enfoads.models.catalog import ModelEntry
from enfoads.models.profiles import RoleChoice
from enfoads.models.registry import local_paths
from enfoads.models.residency import CPU, GPU

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

    def paths(self) -> dict[str, Path]:
        return local_paths(self.entry, self.models_dir)

    def move(self, model, device: str):
        raise RuntimeError(f"{self.runtime} models cannot move between devices")

    def unload(self, model) -> None:
        # Dropping the last reference frees CTranslate2 and ONNX Runtime memory;
        # the manager runs gc and empties the CUDA cache afterwards.
        del model


class TorchPipelineAdapter(_BaseAdapter):
    """A diffusers pipeline: SDXL-Lightning or a plain diffusers folder."""

    def dtype_for(self, device: str) -> str:
        # Half precision on the GPU; float32 on the CPU, where fp16 is slow or unsupported.
        return self.choice.dtype if _is_cuda(device) else "float32"

    def load(self, device: str):
        from enfoads.models.loaders import image

        paths = self.paths()
        dtype = self.dtype_for(device)
        if self.entry.loader == "sdxl_lightning":
            return image.load_sdxl_lightning(
                paths["base"],
                paths["unet"],
                device=device,
                dtype=dtype,
                vae_dir=paths.get("vae"),
                x0_prediction=bool(self.entry.options.get("x0_prediction")),
            )
        return image.load_diffusers_folder(paths["model"] if "model" in paths else paths["base"], device=device, dtype=dtype)

    def move(self, model, device: str):
        return model.to(device)

    def measure(self, model, device: str) -> int:
        from enfoads.models.loaders.image import module_bytes

        return module_bytes(model)


class WhisperAdapter(_BaseAdapter):
    """faster-whisper on CTranslate2."""

    def load(self, device: str):
        from enfoads.models.loaders.speech import load_whisper

        if _is_cuda(device):
            return load_whisper(self.paths()["model"], device="cuda", compute_type=self.choice.dtype)
        return load_whisper(self.paths()["model"], device="cpu", compute_type="int8")

    def measure(self, model, device: str) -> int:
        from enfoads.models.loaders.speech import whisper_model_bytes

        return whisper_model_bytes(self.paths()["model"])


class OnnxFacesAdapter(_BaseAdapter):
    """insightface FaceAnalysis or INSwapper on ONNX Runtime, providers always explicit."""

    def providers_for(self, device: str) -> list:
        """ORT providers; on CUDA with options (insightface hands them to every session it makes)."""
        if not _is_cuda(device):
            return [CPU_PROVIDER]
        options = {"device_id": str(_device_index(device)), **ORT_CUDA_OPTIONS}
        return [(CUDA_PROVIDER, options), CPU_PROVIDER]

    def load(self, device: str):
        from enfoads.models.loaders import faces

        providers = self.providers_for(device)
        if self.entry.loader == "face_analysis":
            model = faces.load_face_analysis(
                self.paths()["root"], providers=providers, det_size=self.choice.options.get("det_size", (640, 640))
            )
        else:
            model = faces.load_swapper(self.paths()["model"], providers=providers)
        active = faces.active_providers(model)
        if _is_cuda(device) and CUDA_PROVIDER not in active:
            # onnxruntime-gpu without a matching CUDA falls back silently (~50x slower).
            log.warning("%s: CUDA execution provider did not load; running on %s", self.key, active)
        return model

    def measure(self, model, device: str) -> int:
        from enfoads.models.loaders import faces

        paths = self.paths()
        if self.entry.loader == "face_analysis":
            return faces.face_pack_bytes(paths["root"])
        return faces.swapper_bytes(paths["model"])


_ADAPTERS = {"torch": TorchPipelineAdapter, "ctranslate2": WhisperAdapter, "onnxruntime": OnnxFacesAdapter}


def adapter_for(entry: ModelEntry, choice: RoleChoice, models_dir: Path):
    """The residency adapter for a catalogue model, or None for runtimes the manager does not hold."""
    cls = _ADAPTERS.get(entry.runtime)
    return cls(entry, choice, Path(models_dir)) if cls else None


def preferred_tier(choice: RoleChoice) -> str:
    return GPU if choice.device == "gpu" else CPU
