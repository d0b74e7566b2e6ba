"""The files of user image models, read without loading weights: safetensors headers, the family of a
single-file checkpoint, and the probes that validate a diffusers folder or a single file (family,
parameters, size, fingerprint, the local configs a single file borrows). A bad file raises
``InvalidModelFile`` with the reason shown to the user."""
from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

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
