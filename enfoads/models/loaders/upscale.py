"""Load image-to-image models (upscalers, face restorers) through spandrel, real or tiny, catalogued or dropped in.

spandrel reads a ``.pth`` with a restricted unpickler (tensors and plain
containers only, no code), or a ``.safetensors`` file, and detects the
architecture and its hyperparameters from the state dict's keys and shapes,
as A1111, ComfyUI and InvokeAI rely on. Its main registry holds permissively
licensed architectures only; ``spandrel_extra_arches`` adds non-commercial
and copyleft ones (CodeFormer, ...), which load only when
``ENFOADS_ALLOW_RESTRICTED_UPSCALERS`` says so; otherwise a file of one of
them is refused with that reason.

The file is read onto the CPU, the model built there, cast to the dtype the
architecture supports (fp16 only where spandrel's descriptor says so) and
moved: host RAM holds about twice the file at the peak (the catalogue's
``staging_bytes``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SUFFIXES = (".pth", ".safetensors")
# What an enhance model is for (spandrel's ``purpose``): super-resolution, faces, restoration at x1.
ENHANCE_PURPOSES = ("SR", "FaceSR", "Restoration")
RESTRICTED_REASON = ("its licence restricts commercial use or requires sharing changes (an architecture of "
                     "spandrel_extra_arches); set ENFOADS_ALLOW_RESTRICTED_UPSCALERS=1 to load it anyway")


class NotAnEnhanceModel(ValueError):
    """A file spandrel cannot load as an upscaler or face restorer; the message says why."""

    def __init__(self, message: str, *, architecture: str | None = None, restricted: bool = False):
        super().__init__(message)
        self.architecture = architecture
        self.restricted = restricted


@dataclass(frozen=True)
class ModelFacts:
    """What spandrel detected in a model file (no weights kept)."""

    architecture: str  # spandrel's architecture id: "ESRGAN", "Compact", "GFPGAN", ...
    purpose: str  # "SR", "FaceSR" or "Restoration"
    scale: int
    supports_half: bool
    supports_bfloat16: bool
    parameters: int
    tags: tuple[str, ...] = ()


def _extra_registry():
    try:
        from spandrel_extra_arches import EXTRA_REGISTRY
    except ImportError:
        return None
    return EXTRA_REGISTRY


def registry(*, allow_restricted: bool = False):
    """spandrel's main registry, or a copy with the extra architectures when they are allowed and installed."""
    from spandrel import MAIN_REGISTRY

    extra = _extra_registry() if allow_restricted else None
    if extra is None:
        return MAIN_REGISTRY
    combined = MAIN_REGISTRY.copy()  # never the global registry: other code in the process keeps its own view
    combined.add(*extra, ignore_duplicates=True)
    return combined


def read_state_dict(path) -> dict:
    """The file's tensors on the CPU (restricted unpickling for ``.pth``); NotAnEnhanceModel when unreadable."""
    from spandrel import ModelLoader

    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise NotAnEnhanceModel(f"{path.name}: not a {' or '.join(SUFFIXES)} file")
    try:
        return ModelLoader("cpu").load_state_dict_from_file(path)
    except Exception as exc:  # noqa: BLE001 - torch, pickle and safetensors each raise their own types
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise NotAnEnhanceModel(f"{path.name}: not a readable model file ({type(exc).__name__}: {first})") from None


def _restricted_architecture(state_dict) -> str | None:
    extra = _extra_registry()
    for support in extra or ():
        try:
            if support.detect(state_dict):
                return str(support.architecture.id)
        except Exception:  # noqa: BLE001 - a detector that trips on foreign keys means "not this one"
            continue
    return None


def describe(state_dict, *, name: str, allow_restricted: bool = False):
    """The spandrel descriptor for a state dict (built on the CPU), or NotAnEnhanceModel saying why not."""
    from spandrel import ImageModelDescriptor, UnsupportedModelError

    try:
        descriptor = registry(allow_restricted=allow_restricted).load(state_dict)
    except UnsupportedModelError:
        restricted = None if allow_restricted else _restricted_architecture(state_dict)
        if restricted:
            raise NotAnEnhanceModel(f"{name}: {restricted}: {RESTRICTED_REASON}", architecture=restricted,
                                    restricted=True) from None
        raise NotAnEnhanceModel(f"{name}: not an architecture spandrel recognises (a LoRA, a diffusion model "
                                "or another kind of network?)") from None
    except Exception as exc:  # noqa: BLE001 - a detected architecture whose shapes do not fit
        raise NotAnEnhanceModel(f"{name}: looks like a known architecture but does not load "
                                f"({type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]})") from None
    architecture = str(descriptor.architecture.id)
    if not isinstance(descriptor, ImageModelDescriptor) or descriptor.purpose not in ENHANCE_PURPOSES:
        raise NotAnEnhanceModel(f"{name}: a {architecture} model for {descriptor.purpose}, not an upscaler or a "
                                "face restorer", architecture=architecture)
    if descriptor.input_channels != 3 or descriptor.output_channels != 3:
        raise NotAnEnhanceModel(f"{name}: {architecture} with {descriptor.input_channels} input channels; only "
                                "colour (3-channel) models are supported", architecture=architecture)
    return descriptor


def facts(descriptor) -> ModelFacts:
    return ModelFacts(
        architecture=str(descriptor.architecture.id), purpose=str(descriptor.purpose), scale=int(descriptor.scale),
        supports_half=bool(descriptor.supports_half), supports_bfloat16=bool(descriptor.supports_bfloat16),
        parameters=sum(p.numel() for p in descriptor.model.parameters()), tags=tuple(descriptor.tags),
    )


def read_model_file(path, *, allow_restricted: bool = False) -> ModelFacts:
    """What a file is, for listing a drop-in model: read, detected, built once on the CPU, then dropped."""
    state_dict = read_state_dict(path)
    return facts(describe(state_dict, name=Path(path).name, allow_restricted=allow_restricted))


def dtype_for(descriptor, wanted: str) -> str:
    """``wanted`` where the architecture runs in it, else float32 (spandrel marks fp16-unsafe architectures)."""
    if wanted == "float16" and not descriptor.supports_half:
        return "float32"
    if wanted == "bfloat16" and not descriptor.supports_bfloat16:
        return "float32"
    return wanted


def load_spandrel(path, *, device: str, dtype: str, allow_restricted: bool = False):
    """A spandrel ``ImageModelDescriptor`` in eval mode on ``device``, in ``dtype`` where supported."""
    import torch

    state_dict = read_state_dict(path)
    descriptor = describe(state_dict, name=Path(path).name, allow_restricted=allow_restricted)
    del state_dict  # the model holds its own copy now
    descriptor.eval()
    descriptor.to(getattr(torch, dtype_for(descriptor, dtype)))
    return descriptor.to(torch.device(device))


def descriptor_bytes(descriptor) -> int:
    """Bytes of the model's parameters and buffers."""
    module = descriptor.model
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])
