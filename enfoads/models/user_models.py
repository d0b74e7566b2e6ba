"""Image models the user drops into ``<models dir>/image/``: found, validated, registered.

Two kinds are recognised:

- a **diffusers folder** (``model_index.json`` plus component subfolders) of a
  Stable Diffusion XL or 1.x/2.x text-to-image pipeline;
- a **single-file checkpoint** (``.safetensors``) of SDXL (Juggernaut-class
  fine-tunes) or SD 1.x, in the original Stability layout, loaded with
  diffusers' ``from_single_file``. Its component configs and tokenizers come
  from a local diffusers folder of the same architecture (nothing is fetched
  from the hub): the profile's SDXL base folder, an HF-cache snapshot, or a
  diffusers folder dropped next to it, whichever matches the checkpoint's
  tensor shapes.

Validation reads only headers and JSON files (a few hundred KB even for a
7 GB checkpoint), never the weights. Anything broken or unknown (a truncated
file, a LoRA, a UNet-only file, a pickle ``.ckpt``, an inpainting or refiner
model, a folder missing its UNet) is listed as invalid with the reason, and
discovery never raises for it. Each valid model is registered with the
residency manager as ``user:<name>`` (folder name, or file name without
``.safetensors``), so a request's ``model`` can pick it and the manager
loads, caches and evicts it like any other.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from enfoads.models.adapters import TorchPipelineAdapter, preferred_tier
from enfoads.models.catalog import ModelEntry
from enfoads.models.families import family_for
from enfoads.models.checkpoint_files import (
    PICKLE_SUFFIXES,
    InvalidModelFile,
    _probe_file,
    _probe_folder,
    classify_checkpoint,
    read_safetensors_header,
)

__all__ = [
    "IMAGE_SUBDIR",
    "USER_PREFIX",
    "ImageModelInfo",
    "InvalidModelFile",
    "ImageModels",
    "UserImageAdapter",
    "image_models_dir",
    "discover_image_models",
    "read_safetensors_header",
    "classify_checkpoint",
]

log = logging.getLogger(__name__)

IMAGE_SUBDIR = "image"
USER_PREFIX = "user:"


@dataclass(frozen=True)
class ImageModelInfo:
    """One entry of ``<models dir>/image/``, valid or not."""

    id: str  # "user:<name>"
    name: str
    path: str
    kind: str  # "diffusers_folder", "single_file" or "unknown"
    valid: bool
    reason: str | None = None  # why it is invalid
    family: str | None = None  # "sdxl", "sd15", "sd2"
    bytes: int = 0  # on disk
    parameters: int = 0  # tensor elements (from the headers), 0 when unknown
    config_dir: str | None = None  # single files: where configs and tokenizers come from
    revision: str = ""  # changes when any of its files changes
    native_px: int = 1024
    notes: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["notes"] = list(self.notes)
        return d


def image_models_dir(models_dir) -> Path:
    return Path(models_dir) / IMAGE_SUBDIR


# ----------------------------------------------------------------------------- discovery


def _name_for(entry: Path) -> str:
    return entry.name[: -len(".safetensors")] if entry.name.lower().endswith(".safetensors") else entry.name


def discover_image_models(models_dir, *, config_folders=()) -> list[ImageModelInfo]:
    """Every model in ``<models_dir>/image/``, valid or not, sorted by id. Never raises for a bad model.

    Args:
        models_dir: the models dir.
        config_folders: extra local diffusers folders whose configs a single-file
            checkpoint may use (the profile's SDXL base folder, cached snapshots);
            valid diffusers folders found here are tried first.
    """
    root = image_models_dir(models_dir)
    if not root.is_dir():
        return []
    try:
        entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        log.warning("cannot list %s: %s", root, exc)
        return []
    found: dict[str, ImageModelInfo] = {}
    folders, files = [], []
    for p in entries:
        if p.is_dir():
            folders.append(p)
        elif p.is_file() and (p.suffix.lower() == ".safetensors" or p.suffix.lower() in PICKLE_SUFFIXES):
            files.append(p)
    good_folders: list[Path] = []
    for p in folders:
        name = _name_for(p)
        if not (p / "model_index.json").is_file():
            found[name] = ImageModelInfo(USER_PREFIX + name, name, str(p), "unknown", False,
                                         "a folder without model_index.json (not a diffusers pipeline folder)")
            continue
        try:
            facts = _probe_folder(p)
            found[name] = ImageModelInfo(USER_PREFIX + name, name, str(p), "diffusers_folder", True, **facts)
            if facts["family"] in ("sdxl", "sd15"):
                good_folders.append(p)
        except InvalidModelFile as exc:
            found[name] = ImageModelInfo(USER_PREFIX + name, name, str(p), "diffusers_folder", False, str(exc))
        except Exception as exc:  # never let one odd folder break discovery
            log.exception("probing %s failed", p)
            found[name] = ImageModelInfo(USER_PREFIX + name, name, str(p), "diffusers_folder", False,
                                         f"could not be read ({type(exc).__name__}: {exc})")
    candidates = good_folders + [Path(c) for c in config_folders if c]
    for p in files:
        name = _name_for(p)
        if name in found:
            name = p.name  # a folder of the same name exists: keep the extension in the id
        try:
            facts = _probe_file(p, candidates)
            found[name] = ImageModelInfo(USER_PREFIX + name, name, str(p), "single_file", True, **facts)
        except InvalidModelFile as exc:
            found[name] = ImageModelInfo(USER_PREFIX + name, name, str(p), "single_file", False, str(exc))
        except Exception as exc:
            log.exception("probing %s failed", p)
            found[name] = ImageModelInfo(USER_PREFIX + name, name, str(p), "single_file", False,
                                         f"could not be read ({type(exc).__name__}: {exc})")
    return sorted(found.values(), key=lambda i: i.id)


# ----------------------------------------------------------------------------- residency


class UserImageAdapter(TorchPipelineAdapter):
    """Residency adapter of a user model: same dtype and movement rules as the catalogue's pipelines."""

    info: ImageModelInfo

    @classmethod
    def create(cls, info: ImageModelInfo, choice, models_dir) -> "UserImageAdapter":
        # Footprints from the headers: half precision on the GPU, fp32 on the CPU, plus 5 %.
        gpu_bytes = int(info.parameters * 2 * 1.05) or info.bytes
        cpu_bytes = int(info.parameters * 4 * 1.05) or info.bytes * 2
        entry = ModelEntry(
            id=info.id,
            role="image",
            runtime="torch",
            loader="user_" + info.kind,
            description=f"user model {info.name} ({info.family}, {info.kind.replace('_', ' ')})",
            licence="user-supplied (check the model's own licence)",
            download_bytes=0,
            vram_bytes=gpu_bytes,
            ram_bytes=cpu_bytes,
            staging_bytes=_staging_bytes(info, choice),
            options={"path": info.path, "family": info.family, "config_dir": info.config_dir},
        )
        adapter = cls(entry, choice, Path(models_dir))
        adapter.info = info
        return adapter

    def paths(self) -> dict[str, Path]:
        # Its own file, not a catalogue source (the family is ``families.user_checkpoints``).
        return self.family.real_paths(self.entry, component=None)


# Keys of a single file's text encoders (SDXL's two, SD 1.x/2.x's one).
_TEXT_ENCODER_PREFIXES = ("conditioner.embedders.", "cond_stage_model.")
_STAGING_SLACK = 100 * 10**6  # per-tensor casts and copies on the way, tokenizers


def _staging_bytes(info: ImageModelInfo, choice) -> int:
    """Host RAM a load of a user model onto the GPU holds, in the GPU dtype (``choice.dtype``).

    - A single file: ``load_single_file`` has diffusers place the UNet and the VAE on
      the device tensor by tensor as they are converted (``from_single_file(device=...)``;
      the checkpoint itself is a mapped view of the file); only the text encoders are built
      on the CPU and wait there for ``pipe.to(device)``: their parameters x 2 bytes in fp16.
    - A diffusers folder: ``load_diffusers_folder`` builds every component on the CPU,
      then moves the pipeline: all parameters x 2 bytes in fp16.
    Plus 5 % and a slack for the per-tensor copies.
    """
    width = 4 if str(getattr(choice, "dtype", "float16")) == "float32" else 2
    parameters = info.parameters
    if info.kind == "single_file":
        try:
            table = read_safetensors_header(info.path)
            parameters = sum(t["numel"] for k, t in table.items() if k.startswith(_TEXT_ENCODER_PREFIXES))
        except InvalidModelFile:
            pass  # unreadable now: assume the whole pipeline
    if not parameters:
        return int(info.bytes * 2) + _STAGING_SLACK
    return int(parameters * width * 1.05) + _STAGING_SLACK


class ImageModels:
    """The user models of one runtime: discovery at start and on demand, registration with residency.

    Thread-safe; cheap to refresh (headers only).
    """

    def __init__(self, runtime, *, config_folders=()):
        self.runtime = runtime
        self.models_dir = Path(runtime.settings.models_dir)
        self._extra_configs = tuple(config_folders)
        self._lock = threading.Lock()
        self._infos: dict[str, ImageModelInfo] = {}
        self._registered: dict[str, str] = {}  # id -> revision registered

    @property
    def folder(self) -> Path:
        return image_models_dir(self.models_dir)

    def config_folders(self) -> list[Path]:
        """Local diffusers folders a single-file checkpoint may borrow configs from (SDXL base folders present)."""
        from enfoads.models.catalog import CATALOG
        from enfoads.models.registry import local_paths

        out = [Path(p) for p in self._extra_configs]
        profile_model = self.runtime.choice("image").model_id
        for entry in CATALOG.values():
            if entry.role != "image" or not family_for(entry).swaps_unets or "base" not in entry.sources and not entry.tiny:
                continue
            try:
                if entry.tiny:
                    if entry.id != profile_model or not _tiny_built(entry, self.models_dir):
                        continue
                    base = local_paths(entry, self.models_dir)["base"]
                else:
                    # Only the base repository is needed, not this entry's UNet.
                    base_only = replace(entry, loader="diffusers_folder", sources={"base": entry.sources["base"]})
                    base = local_paths(base_only, self.models_dir)["model"]
            except Exception:
                continue
            if Path(base).is_dir() and Path(base) not in out:
                out.append(Path(base))
        return out

    def refresh(self) -> list[ImageModelInfo]:
        """Scan the folder again; register new or changed valid models. Returns every model found."""
        infos = discover_image_models(self.models_dir, config_folders=self.config_folders())
        with self._lock:
            self._infos = {i.id: i for i in infos}
            for info in infos:
                if info.valid:
                    try:
                        self._register(info)
                    except Exception as exc:
                        log.warning("cannot register %s: %s", info.id, exc)
                        self._infos[info.id] = replace(info, valid=False, reason=f"cannot be registered: {exc}")
        return infos

    def _register(self, info: ImageModelInfo) -> None:
        residency = self.runtime.residency
        known = info.id in residency.registered()
        if known and self._registered.get(info.id, info.revision) == info.revision:
            self._registered[info.id] = info.revision  # ours and unchanged, or registered by another scan
            return
        if known:
            residency.unload(info.id)  # changed on disk since we registered it: the next lease loads the new files
        choice = self.runtime.choice("image")
        residency.register(UserImageAdapter.create(info, choice, self.models_dir), preferred=preferred_tier(choice))
        self._registered[info.id] = info.revision

    def list(self) -> list[ImageModelInfo]:
        with self._lock:
            return sorted(self._infos.values(), key=lambda i: i.id)

    def get(self, model_id: str, *, refresh: bool = True) -> ImageModelInfo | None:
        """The model with this id; rescans once when it is unknown (a file dropped in since)."""
        with self._lock:
            info = self._infos.get(model_id)
        if info is None and refresh:
            self.refresh()
            with self._lock:
                info = self._infos.get(model_id)
        return info


def _tiny_built(entry, models_dir) -> bool:
    from enfoads.models.tiny import is_built, tiny_path

    return is_built(tiny_path(models_dir, entry.tiny), entry.tiny)
