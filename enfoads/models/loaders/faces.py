"""Load InsightFace: the ``buffalo_l`` analysis pack and ``inswapper_128.onnx``.

The same functions load the real models (placed by ``enfoads preload``) and
the tiny kit's random-weight pack (``enfoads.models.tiny.faces``); only the folder
differs. insightface, onnxruntime and cv2 are imported inside the functions,
so importing this module stays cheap.

Rules every caller gets for free:

- Files are checked first. insightface downloads a pack it cannot find (from
  GitHub); here a missing pack is a ``FileNotFoundError`` instead, at once.
- ONNX Runtime providers are always passed explicitly (insightface otherwise
  picks CUDA or CoreML by itself).
- :func:`active_providers` reads back what ONNX Runtime really uses, so a
  silent fall-back from CUDA to CPU can be seen.

Layout of an insightface ``root``::

    root/models/buffalo_l/*.onnx
    root/models/inswapper_128.onnx
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

DEFAULT_PACK = "buffalo_l"
SWAPPER_FILE = "inswapper_128.onnx"
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def _provider_name(provider) -> str:
    """``"CUDAExecutionProvider"`` or ``("CUDAExecutionProvider", {...})`` -> name."""
    if isinstance(provider, (list, tuple)) and provider:
        return str(provider[0])
    return str(provider)


def _check_providers(providers) -> list:
    if providers is None or isinstance(providers, str) or not list(providers):
        raise ValueError(
            "providers must be a non-empty list such as ['CPUExecutionProvider'] or "
            "['CUDAExecutionProvider', 'CPUExecutionProvider']"
        )
    return list(providers)


def ctx_id_for(providers: Iterable) -> int:
    """insightface's ``ctx_id``: 0 when CUDA is requested, else -1 (CPU).

    With ``ctx_id < 0`` insightface's ``prepare`` forces every session to CPU.
    """
    return 0 if any(_provider_name(p) == CUDA for p in providers) else -1


def pack_dir(root, name: str = DEFAULT_PACK) -> Path:
    return Path(root).expanduser() / "models" / name


def swapper_path(root) -> Path:
    return Path(root).expanduser() / "models" / SWAPPER_FILE


def pack_files(root, name: str = DEFAULT_PACK) -> list[Path]:
    """The pack's ``.onnx`` files (sorted), or ``FileNotFoundError``."""
    folder = pack_dir(root, name)
    files = sorted(folder.glob("*.onnx")) if folder.is_dir() else []
    if not files:
        raise FileNotFoundError(
            f"InsightFace pack {name!r} not found: no .onnx files in {folder}; "
            "run `enfoads preload` to download it"
        )
    return files


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found at {path}; run `enfoads preload` to download it")
    return path


def load_face_analysis(
    root,
    *,
    name: str = DEFAULT_PACK,
    providers: list,
    det_size=(640, 640),
    allowed_modules=None,
):
    """``insightface.app.FaceAnalysis`` for ``root/models/name``, prepared.

    The pack is passed to insightface as an absolute folder, so it never looks
    anything up by name (no download, no folder of that name in the working
    directory picked up by mistake).
    """
    providers = _check_providers(providers)
    folder = pack_files(root, name)[0].parent.resolve()
    from insightface.app import FaceAnalysis

    app = FaceAnalysis(
        name=str(folder),
        root=str(Path(root).expanduser()),
        allowed_modules=list(allowed_modules) if allowed_modules is not None else None,
        providers=providers,
    )
    if "detection" not in app.models:
        raise ValueError(f"no face detector found in {folder}")
    app.prepare(ctx_id=ctx_id_for(providers), det_size=tuple(det_size))
    return app


def load_swapper(model_file, *, providers: list):
    """insightface ``INSwapper`` for ``inswapper_128.onnx`` (or a file like it)."""
    providers = _check_providers(providers)
    # absolute(), never resolve(): in the Hugging Face cache the file is a
    # symlink to blobs/<sha256>, a name without ".onnx", and insightface's
    # model_zoo treats such a path as a pack folder (returns None).
    path = _require_file(Path(model_file).expanduser(), "Face swapper model").absolute()
    if path.suffix != ".onnx":
        raise ValueError(f"{path} is not an .onnx file; insightface loads swappers by that suffix")
    from insightface import model_zoo

    swapper = model_zoo.get_model(str(path), providers=providers)
    if swapper is None or not hasattr(swapper, "emap"):
        raise ValueError(f"{path} is not an InsightFace swapper model (got {type(swapper).__name__})")
    return swapper


def _sessions(obj) -> dict[str, object]:
    """Label -> ONNX Runtime session, for a FaceAnalysis, a model or a session."""
    sessions: dict[str, object] = {}
    models = getattr(obj, "models", None)
    if isinstance(models, dict):
        items = list(models.items())
    elif hasattr(obj, "session"):
        items = [(getattr(obj, "taskname", type(obj).__name__), obj)]
    elif hasattr(obj, "get_providers"):
        return {"session": obj}
    else:
        raise TypeError(f"no ONNX Runtime session found on {type(obj).__name__}")
    for task, model in items:
        sessions[task] = model.session
        # insightface 2.x runs the detector through fixed-shape copies, one
        # per input size, made lazily: they count too once they exist.
        try:
            extra = dict(getattr(model, "resolution_sessions", {}) or {})
        except Exception:  # an older or different detector
            extra = {}
        for size, session in sorted(extra.items()):
            if session is not model.session:
                sessions[f"{task}@{size[0]}x{size[1]}"] = session
    return sessions


def session_providers(obj) -> dict[str, list[str]]:
    """Label -> providers ONNX Runtime really uses, for each session of ``obj``."""
    return {label: list(s.get_providers()) for label, s in _sessions(obj).items()}


def active_providers(obj) -> list[str]:
    """Providers that *every* session of ``obj`` really uses, in priority order.

    ``obj`` is a FaceAnalysis (all its models' sessions), a swapper or any
    model with a ``session``. A provider appears only if all sessions have it,
    so ``"CUDAExecutionProvider" in active_providers(app)`` is False as soon as
    any session fell back to CPU.
    """
    per_session = list(session_providers(obj).values())
    if not per_session:
        return []
    common = set.intersection(*(set(p) for p in per_session))
    return [p for p in per_session[0] if p in common]


def file_bytes(path) -> int:
    """Size of one file, or of all files under a folder."""
    path = Path(path).expanduser()
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def face_pack_bytes(root, name: str = DEFAULT_PACK) -> int:
    """Bytes of the pack's ``.onnx`` files (what FaceAnalysis loads)."""
    return sum(p.stat().st_size for p in pack_files(root, name))


def swapper_bytes(model_file) -> int:
    return _require_file(Path(model_file).expanduser(), "Face swapper model").stat().st_size
