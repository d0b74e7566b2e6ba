"""Where a catalogue model's files are on this machine.

Real models live in the Hugging Face cache (``ENFOADS_MODELS_DIR``) after
``enfoads preload``; insightface packs are unpacked under ``insightface/``
there; tiny models are built on first use under ``enfoads-tiny/``. Nothing
here downloads: a missing real model is a clear error that says what to run.

Which commit of a repository is loaded: the version the manifest
(``enfoads.models.manifest``) marks active for the model, so a rollback chosen with
``enfoads models --use`` takes effect at the next start; without a manifest
entry, the catalogue's pinned revision.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from enfoads.models.catalog import HubFiles, ModelEntry, UrlArchive
from enfoads.errors import ModelNotInstalled
from enfoads.models.tiny import ensure_tiny, is_built, tiny_path


class ModelNotInstalledError(ModelNotInstalled, FileNotFoundError):
    """A real model's files are not in the local cache (HTTP 503 ``model_not_installed``)."""

    def __init__(self, entry: ModelEntry, detail: str, *, command: str | None = None):
        self.command = command or f"enfoads preload --only {entry.role}"
        super().__init__(f"model {entry.id!r} is not installed ({detail}); run `{self.command}`")
        self.model_id = entry.id


@dataclass(frozen=True)
class Presence:
    present: bool
    detail: str


def _hub_snapshot(src: HubFiles, models_dir: Path, revision: str | None = None) -> Path:
    from huggingface_hub import snapshot_download

    return Path(
        snapshot_download(
            src.repo_id,
            revision=revision or src.revision,
            allow_patterns=list(src.allow_patterns) or None,
            cache_dir=str(models_dir),
            local_files_only=True,
        )
    )


def _component(entry: ModelEntry, name: str, models_dir: Path) -> Path:
    src = entry.sources[name]
    if isinstance(src, UrlArchive):
        path = models_dir / src.unpack_to
        if not path.is_dir() or not any(path.iterdir()):
            raise ModelNotInstalledError(entry, f"{path} is missing")
        return path
    revision = _active_commit(entry, name, models_dir) or src.revision
    try:
        return _hub_snapshot(src, models_dir, revision)
    except Exception as exc:  # huggingface_hub raises several types for "not cached"
        raise ModelNotInstalledError(entry, f"{src.repo_id}@{revision[:8]} is not in the models folder") from exc


def _active_commit(entry: ModelEntry, name: str, models_dir: Path) -> str | None:
    from enfoads.models.manifest import Manifest

    return Manifest.load(models_dir).active_commit(entry.id, name)


def local_paths(entry: ModelEntry, models_dir: Path) -> dict[str, Path]:
    """The files a loader needs, by name; tiny models are built here if missing.

    Raises ``ModelNotInstalledError`` (HTTP 503, with the command that installs
    it) unless the loader will find everything it reads: see :func:`loadable_problems`.
    """
    models_dir = Path(models_dir)
    if entry.tiny:
        folder = ensure_tiny(models_dir, entry.tiny)
        if entry.loader == "sdxl_lightning":
            return {"base": folder / "base", "unet": folder / entry.options["unet_file"]}
        if entry.loader == "face_analysis":
            return {"root": folder}
        if entry.loader == "swapper":
            return {"model": folder / "models" / "inswapper_128.onnx"}
        return {"model": folder}
    paths = _real_paths(entry, models_dir)
    problems = loadable_problems(entry, paths)
    if problems:
        raise ModelNotInstalledError(entry, "; ".join(problems))
    return paths


def _real_paths(entry: ModelEntry, models_dir: Path) -> dict[str, Path]:
    if entry.loader == "sdxl_lightning":
        return {
            "base": _component(entry, "base", models_dir),
            "unet": _component(entry, "unet", models_dir) / entry.options["unet_file"],
            "vae": _component(entry, "vae", models_dir),
        }
    if entry.loader == "face_analysis":
        # insightface wants <root>/models/<pack name>/.
        return {"root": _component(entry, "pack", models_dir).parent.parent}
    if entry.loader == "swapper":
        # Not resolved: in the HF cache the file is a symlink to a blob whose
        # name has no ".onnx", and insightface routes by that suffix.
        return {"model": _component(entry, "model", models_dir) / "inswapper_128.onnx"}
    if entry.loader == "espeak":
        binary = shutil.which("espeak-ng")
        if binary is None:
            raise ModelNotInstalledError(
                entry, "the espeak-ng program is not on PATH", command="apt-get install espeak-ng"
            )
        return {"binary": Path(binary)}
    first = next(iter(entry.sources))
    return {"model": _component(entry, first, models_dir)}


def _pattern_problems(folder: Path, src: HubFiles) -> list[str]:
    """Each allow-pattern of a hub source must match a file in its snapshot folder."""
    problems = []
    for pattern in src.allow_patterns:
        if any(ch in pattern for ch in "*?["):
            if not any(p.is_file() for p in folder.glob(pattern)):
                problems.append(f"no file matching {pattern} in {folder.name}")
        elif not (folder / pattern).is_file():
            problems.append(f"{pattern} is missing")
    return problems


def _diffusers_weights_problems(folder: Path, components: tuple[str, ...]) -> list[str]:
    """The weights ``enfoads.models.loaders.image`` will pick (the fp16 variant where that is all there is)."""
    from enfoads.models.loaders.image import component_weights

    return [f"{name}: no weights in {folder.name}/{name}" for name in components if component_weights(folder, name) is None]


def loadable_problems(entry: ModelEntry, paths: dict[str, Path]) -> list[str]:
    """What the loader would miss in ``paths``, read from files only (no weights loaded); empty when loadable."""
    problems: list[str] = []
    for name, src in entry.sources.items():
        if isinstance(src, HubFiles) and name in paths and Path(paths[name]).is_dir():
            problems += _pattern_problems(Path(paths[name]), src)
    if entry.loader == "sdxl_lightning":
        base, unet, vae = Path(paths["base"]), Path(paths["unet"]), paths.get("vae")
        for needed in ("model_index.json", "unet/config.json", "vae/config.json", "scheduler/scheduler_config.json"):
            if not (base / needed).is_file():
                problems.append(f"SDXL base {needed} is missing")
        problems += _diffusers_weights_problems(base, ("text_encoder", "text_encoder_2"))
        if vae is None:
            problems += _diffusers_weights_problems(base, ("vae",))
        elif not any((Path(vae) / f).is_file() for f in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors")):
            problems.append("the fp16-fix VAE has no weights")
        if not unet.is_file():
            problems.append(f"the UNet checkpoint {unet.name} is missing")
    elif entry.loader == "diffusers_folder":
        folder = Path(paths.get("model") or paths["base"])
        try:
            index = json.loads((folder / "model_index.json").read_text())
        except (OSError, ValueError):
            return problems + ["model_index.json is missing or unreadable"]
        weighted = tuple(n for n in ("unet", "vae", "text_encoder", "text_encoder_2") if n in index)
        problems += _diffusers_weights_problems(folder, weighted)
    elif entry.loader == "face_analysis":
        pack = _component_folder(entry, paths)
        names = {p.name for p in pack.glob("*.onnx")} if pack.is_dir() else set()
        if not any(n.startswith("det_") for n in names):
            problems.append(f"no face detector (det_*.onnx) in {pack}")
        if not any(n.startswith(("w600k", "glintr")) for n in names):
            problems.append(f"no face recognition model (w600k_*.onnx) in {pack}")
    elif entry.loader == "swapper":
        model = Path(paths["model"])
        if not model.is_file():
            problems.append(f"{model.name} is missing")
        elif model.suffix != ".onnx":
            problems.append(f"{model} does not end in .onnx (insightface routes models by that suffix)")
    elif entry.loader == "whisper":
        folder = Path(paths["model"])
        for needed in ("model.bin", "config.json", "tokenizer.json"):
            if not (folder / needed).is_file():
                problems.append(f"{needed} is missing")
    return list(dict.fromkeys(problems))


def _component_folder(entry: ModelEntry, paths: dict[str, Path]) -> Path:
    src = entry.sources.get("pack")
    name = Path(src.unpack_to).name if isinstance(src, UrlArchive) else "buffalo_l"
    return Path(paths["root"]) / "models" / name


def presence(entry: ModelEntry, models_dir: Path) -> Presence:
    """Whether the loader will find what it needs, without building, downloading or loading anything."""
    models_dir = Path(models_dir)
    if entry.tiny:
        folder = tiny_path(models_dir, entry.tiny)
        if is_built(folder, entry.tiny):
            return Presence(True, str(folder))
        return Presence(False, "built automatically on first use (or `enfoads build-tiny`)")
    try:
        paths = local_paths(entry, models_dir)
    except ModelNotInstalledError as exc:
        return Presence(False, str(exc))
    return Presence(True, str(next(iter(paths.values()))))
