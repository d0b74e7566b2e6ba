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

import hashlib
import json
import logging
import struct
import threading
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from enfoads.models.adapters import TorchPipelineAdapter, preferred_tier
from enfoads.models.catalog import ModelEntry

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
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
_MAX_HEADER = 100 * 1024 * 1024
_DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
    "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8,
}
# Pipelines we run, and their family (selects preview colours, sizes and defaults).
SUPPORTED_PIPELINES = {"StableDiffusionXLPipeline": "sdxl", "StableDiffusionPipeline": "sd15"}
_REQUIRED = {"sdxl": ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler"),
             "sd15": ("unet", "vae", "text_encoder", "tokenizer", "scheduler")}
_WEIGHTED = ("unet", "vae", "text_encoder", "text_encoder_2")

# Keys of original (Stability "LDM") checkpoints.
_UNET = "model.diffusion_model."
_UNET_IN = _UNET + "input_blocks.0.0.weight"
_SDXL_TE1 = "conditioner.embedders.0.transformer."
_SDXL_TE2 = "conditioner.embedders.1.model."
_SDXL_REFINER_TE = "conditioner.embedders.0.model."
_SD1_TE = "cond_stage_model.transformer."
_SD2_TE = "cond_stage_model.model."
_VAE = ("first_stage_model.", "vae.")


class InvalidModelFile(ValueError):
    """A model file that cannot be used; the message is the reason shown to the user."""


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


# ----------------------------------------------------------------------------- safetensors headers


def read_safetensors_header(path) -> dict:
    """The tensor table of a ``.safetensors`` file ({name: {dtype, shape, data_offsets}}), checked.

    Reads only the header. Raises ``InvalidModelFile`` for a file that is not
    safetensors, is truncated, or whose table is inconsistent.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise InvalidModelFile("not a safetensors file (shorter than its 8-byte header)")
            (n,) = struct.unpack("<Q", head)
            if n < 2 or n > _MAX_HEADER or n > size - 8:
                raise InvalidModelFile("not a safetensors file (bad header length); corrupt or another format")
            raw = f.read(n)
    except OSError as exc:
        raise InvalidModelFile(f"cannot be read: {exc.strerror or exc}") from None
    try:
        table = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidModelFile("not a safetensors file (its header is not JSON); corrupt or another format") from None
    if not isinstance(table, dict):
        raise InvalidModelFile("not a safetensors file (its header is not a table)")
    data_len = size - 8 - n
    tensors = {}
    for name, spec in table.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (start, end) = spec["dtype"], list(spec["shape"]), spec["data_offsets"]
            numel = 1
            for d in shape:
                numel *= int(d)
            ok = dtype in _DTYPE_BYTES and 0 <= start <= end and end - start == numel * _DTYPE_BYTES[dtype]
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise InvalidModelFile(f"corrupt safetensors header (entry {name!r})")
        if end > data_len:
            raise InvalidModelFile(f"the file is truncated: tensor {name!r} ends past the end of the file")
        tensors[name] = {"dtype": dtype, "shape": shape, "numel": numel}
    if not tensors:
        raise InvalidModelFile("the file holds no tensors")
    return tensors


def _numel(table: dict) -> int:
    return sum(t["numel"] for t in table.values())


def classify_checkpoint(table: dict) -> str:
    """The family of a single-file checkpoint's tensor table ("sdxl" or "sd15"), or ``InvalidModelFile``."""
    keys = table.keys()

    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    if any("lora_" in k or ".lora_down." in k or ".lora_A." in k or "lora_unet" in k for k in keys):
        raise InvalidModelFile("a LoRA, not a complete model (LoRAs are not supported yet)")
    if not has(_UNET):
        if any(k.startswith(("down_blocks.", "up_blocks.", "conv_in.", "time_embedding.")) for k in keys):
            raise InvalidModelFile(
                "a UNet-only file in diffusers format (like an SDXL-Lightning UNet), not a complete model")
        if has("encoder.down") or has("decoder.up"):
            raise InvalidModelFile("a VAE on its own, not a complete model")
        raise InvalidModelFile("not a Stable Diffusion checkpoint (unknown architecture)")
    if not any(has(p) for p in _VAE):
        raise InvalidModelFile("no VAE in the checkpoint (a UNet-only export); use a complete checkpoint")
    unet_in = table.get(_UNET_IN)
    if unet_in and len(unet_in["shape"]) == 4 and unet_in["shape"][1] != 4:
        raise InvalidModelFile(
            f"an inpainting or other special-purpose model ({unet_in['shape'][1]} input channels); "
            "only text-to-image checkpoints are supported")
    if has(_SDXL_TE1) and has(_SDXL_TE2):
        return "sdxl"
    if has(_SDXL_REFINER_TE):
        raise InvalidModelFile("an SDXL refiner (image-to-image only), not a text-to-image model")
    if has(_SD1_TE):
        return "sd15"
    if has(_SD2_TE):
        raise InvalidModelFile("an SD 2.x single file is not supported; use its diffusers folder")
    raise InvalidModelFile("the checkpoint has no text encoder it can be run with")


# ----------------------------------------------------------------------------- folders


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidModelFile(f"{path.name} cannot be read: {exc.strerror or exc}") from None
    except ValueError:
        raise InvalidModelFile(f"{path.name} is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidModelFile(f"{path.name} is not a JSON object")
    return data


def _fingerprint(paths) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        try:
            st = p.stat()
        except OSError:
            continue
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _folder_family(index: dict, folder: Path) -> str:
    cls = index.get("_class_name")
    if cls not in SUPPORTED_PIPELINES:
        raise InvalidModelFile(
            f"pipeline {cls!r} is not supported (Stable Diffusion XL and 1.x/2.x text-to-image folders are)")
    family = SUPPORTED_PIPELINES[cls]
    if family == "sd15":
        try:
            unet_cfg = _read_json(folder / "unet" / "config.json")
            if int(unet_cfg.get("cross_attention_dim", 768)) == 1024:
                family = "sd2"
        except InvalidModelFile:
            pass
    return family


def _probe_folder(folder: Path) -> dict:
    index = _read_json(folder / "model_index.json")
    family = _folder_family(index, folder)
    required = _REQUIRED["sdxl" if family == "sdxl" else "sd15"]
    missing = [c for c in required if not (folder / c).is_dir()]
    if missing:
        raise InvalidModelFile(f"missing component folders: {', '.join(missing)}")
    parameters, files = 0, [folder / "model_index.json"]
    for comp in _WEIGHTED:
        if comp not in required:
            continue
        weights = sorted((folder / comp).glob("*.safetensors"))
        pickles = [p for p in (folder / comp).iterdir() if p.suffix in PICKLE_SUFFIXES]
        if not weights:
            if pickles:
                raise InvalidModelFile(f"{comp}/ has only pickle weights ({pickles[0].name}); convert to .safetensors")
            raise InvalidModelFile(f"{comp}/ has no weights")
        if not (folder / comp / "config.json").is_file():
            raise InvalidModelFile(f"{comp}/config.json is missing")
        # Count one variant only: fp16 files when present, else the full-precision ones.
        fp16 = [w for w in weights if ".fp16." in w.name]
        counted = fp16 or weights
        for w in weights:
            try:
                table = read_safetensors_header(w)
            except InvalidModelFile as exc:
                raise InvalidModelFile(f"{comp}/{w.name}: {exc}") from None
            if w in counted:
                parameters += _numel(table)
        files += weights + [folder / comp / "config.json"]
    return {
        "family": family,
        "parameters": parameters,
        "bytes": sum(p.stat().st_size for p in files if p.is_file()),
        "revision": _fingerprint(files),
        "native_px": _native_px(folder, family),
    }


def _native_px(folder: Path, family: str) -> int:
    if family == "sdxl":
        return 1024
    try:
        sample = int(_read_json(folder / "unet" / "config.json").get("sample_size", 64))
        return max(256, sample * 8)
    except (InvalidModelFile, TypeError, ValueError):
        return 512


# ----------------------------------------------------------------------------- single files


def _config_matches(folder: Path, family: str, table: dict) -> bool:
    """Whether a diffusers folder's configs describe the checkpoint's tensors."""
    try:
        index = _read_json(folder / "model_index.json")
        if SUPPORTED_PIPELINES.get(index.get("_class_name")) != family:
            return False
        unet = _read_json(folder / "unet" / "config.json")
        te = _read_json(folder / "text_encoder" / "config.json")
        for sub in ("tokenizer", "scheduler", "vae"):
            if not (folder / sub).is_dir():
                return False
    except InvalidModelFile:
        return False
    conv_in = table.get(_UNET_IN, {}).get("shape")
    if not conv_in or int(conv_in[0]) != int(list(unet.get("block_out_channels", [0]))[0]):
        return False
    ctx = next((t["shape"] for k, t in table.items() if k.startswith(_UNET) and k.endswith("attn2.to_k.weight")), None)
    if ctx is None or int(ctx[1]) != int(unet.get("cross_attention_dim") or -1):
        return False
    te_prefix = _SDXL_TE1 if family == "sdxl" else _SD1_TE
    pos = table.get(te_prefix + "text_model.embeddings.position_embedding.weight", {}).get("shape")
    if not pos or int(pos[-1]) != int(te.get("hidden_size", -1)):
        return False
    if family == "sdxl":
        label = table.get(_UNET + "label_emb.0.0.weight", {}).get("shape")
        if not label or int(label[1]) != int(unet.get("projection_class_embeddings_input_dim") or -1):
            return False
        try:
            te2 = _read_json(folder / "text_encoder_2" / "config.json")
        except InvalidModelFile:
            return False
        pos2 = table.get(_SDXL_TE2 + "positional_embedding", {}).get("shape")
        if not pos2 or int(pos2[-1]) != int(te2.get("hidden_size", -1)) or not (folder / "tokenizer_2").is_dir():
            return False
    return True


def _probe_file(path: Path, config_candidates) -> dict:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise InvalidModelFile(
            f"{path.suffix} checkpoints are pickles and can run code when loaded; they are not loaded. "
            "Convert it to .safetensors")
    table = read_safetensors_header(path)
    family = classify_checkpoint(table)
    config_dir = next((Path(c) for c in config_candidates if _config_matches(Path(c), family, table)), None)
    if config_dir is None:
        what = "SDXL base" if family == "sdxl" else "SD 1.5"
        raise InvalidModelFile(
            f"an {what} checkpoint, but no local {what} configuration matches its shapes (component configs "
            f"and tokenizers are needed to load it offline): preload the {what} repository's configs, or put "
            f"a diffusers folder of the same architecture in the image models folder")
    return {
        "family": family,
        "parameters": _numel(table),
        "bytes": path.stat().st_size,
        "revision": _fingerprint([path]),
        "config_dir": str(config_dir),
        "native_px": 1024 if family == "sdxl" else 512,
    }


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
        return {"model": Path(self.info.path)}

    def load(self, device: str):
        from enfoads.models.loaders import image

        dtype = self.dtype_for(device)
        if self.info.kind == "single_file":
            return image.load_single_file(self.info.path, family=self.info.family, config_dir=self.info.config_dir,
                                          device=device, dtype=dtype)
        return image.load_diffusers_folder(self.info.path, device=device, dtype=dtype)


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
            if entry.role != "image" or entry.loader != "sdxl_lightning" or "base" not in entry.sources and not entry.tiny:
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
