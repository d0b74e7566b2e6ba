"""InsightFace on ONNX Runtime: the face analysis pack (detector, landmarks, recognition) and the inswapper model."""
from __future__ import annotations

from pathlib import Path

from enfoads.models.catalog import ModelEntry, UrlArchive
from enfoads.models.families.base import Component, Family


def _pack_folder(entry: ModelEntry, paths: dict[str, Path]) -> Path:
    src = entry.sources.get("pack")
    name = Path(src.unpack_to).name if isinstance(src, UrlArchive) else "buffalo_l"
    return Path(paths["root"]) / "models" / name


class FacePack(Family):
    """A ``buffalo_l``-style pack; insightface wants ``<root>/models/<pack name>/``."""

    loader, runtime = "face_analysis", "onnxruntime"

    def tiny_paths(self, entry: ModelEntry, folder: Path) -> dict[str, Path]:
        return {"root": folder}

    def real_paths(self, entry: ModelEntry, component: Component) -> dict[str, Path]:
        return {"root": component("pack").parent.parent}

    def problems(self, entry: ModelEntry, paths: dict[str, Path]) -> list[str]:
        pack = _pack_folder(entry, paths)
        names = {p.name for p in pack.glob("*.onnx")} if pack.is_dir() else set()
        problems = []
        if not any(n.startswith("det_") for n in names):
            problems.append(f"no face detector (det_*.onnx) in {pack}")
        if not any(n.startswith(("w600k", "glintr")) for n in names):
            problems.append(f"no face recognition model (w600k_*.onnx) in {pack}")
        return problems

    def load(self, entry: ModelEntry, paths: dict[str, Path], *, device: str, dtype: str, options: dict):
        from enfoads.models.loaders import faces

        return faces.load_face_analysis(paths["root"], providers=options["providers"],
                                        det_size=options.get("det_size", (640, 640)))

    def measure(self, model, paths: dict[str, Path]) -> int:
        from enfoads.models.loaders import faces

        return faces.face_pack_bytes(paths["root"])


class OnnxSwapper(Family):
    """``inswapper_128.onnx``, one file."""

    loader, runtime = "swapper", "onnxruntime"

    def tiny_paths(self, entry: ModelEntry, folder: Path) -> dict[str, Path]:
        return {"model": folder / "models" / "inswapper_128.onnx"}

    def real_paths(self, entry: ModelEntry, component: Component) -> dict[str, Path]:
        # Not resolved: in the HF cache the file is a symlink to a blob whose
        # name has no ".onnx", and insightface routes by that suffix.
        return {"model": component("model") / "inswapper_128.onnx"}

    def problems(self, entry: ModelEntry, paths: dict[str, Path]) -> list[str]:
        model = Path(paths["model"])
        if not model.is_file():
            return [f"{model.name} is missing"]
        if model.suffix != ".onnx":
            return [f"{model} does not end in .onnx (insightface routes models by that suffix)"]
        return []

    def load(self, entry: ModelEntry, paths: dict[str, Path], *, device: str, dtype: str, options: dict):
        from enfoads.models.loaders import faces

        return faces.load_swapper(paths["model"], providers=options["providers"])

    def measure(self, model, paths: dict[str, Path]) -> int:
        from enfoads.models.loaders import faces

        return faces.swapper_bytes(paths["model"])
