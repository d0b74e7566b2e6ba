"""Upscalers and face restorers the user drops into ``<models dir>/upscale/``: found, detected, registered.

Any ``.pth`` or ``.safetensors`` file spandrel recognises works (4x-UltraSharp,
a Real-ESRGAN x2, SwinIR, a GFPGAN or RestoreFormer face model...). Discovery
reads each new or changed file once, on the CPU, to learn its architecture,
scale and purpose from spandrel (a ``.pth`` goes through spandrel's
restricted unpickler: tensors only, no code runs), then drops the weights;
the result is kept per file revision (size and modification time), so a
rescan costs a ``stat`` per file. A file that is not a model, a truncated
one, an inpainting or colourisation network, or a restricted architecture
(non-commercial or copyleft, unless ``ENFOADS_ALLOW_RESTRICTED_UPSCALERS``) is
listed with the reason and never breaks discovery.

Each valid file is registered with the residency manager as
``upscale:<file name without suffix>`` (role ``upscale`` for super-resolution
and x1 restoration, ``restore`` for face models), loaded, leased and evicted
like the catalogue's models. Its licence is unknown to us: the listing says so.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from enfoads.models.adapters import adapter_for, preferred_tier
from enfoads.models.catalog import ModelEntry
from enfoads.models.catalog_enhance import RESTORE, UPSCALE
from enfoads.models.loaders.upscale import SUFFIXES, NotAnEnhanceModel, read_model_file

__all__ = ["UPSCALE_SUBDIR", "USER_UPSCALER_PREFIX", "UNKNOWN_LICENCE", "UpscalerFile", "UserUpscalers",
           "discover_upscalers", "upscale_dir"]

log = logging.getLogger(__name__)

UPSCALE_SUBDIR = "upscale"
USER_UPSCALER_PREFIX = "upscale:"
UNKNOWN_LICENCE = "unknown licence (a file you added: check its licence before commercial use)"


@dataclass(frozen=True)
class UpscalerFile:
    """One file of ``<models dir>/upscale/``, valid or not."""

    id: str  # "upscale:<name>"
    name: str
    path: str
    valid: bool
    reason: str | None = None
    role: str = UPSCALE  # "upscale" or "restore" (a face model)
    architecture: str | None = None
    purpose: str | None = None
    scale: int = 1
    supports_half: bool = False
    parameters: int = 0
    bytes: int = 0
    restricted: bool = False  # a non-commercial or copyleft architecture
    revision: str = ""  # size and mtime: changes when the file does

    def as_dict(self) -> dict:
        out = asdict(self)
        out["licence"] = UNKNOWN_LICENCE
        return out


def upscale_dir(models_dir) -> Path:
    return Path(models_dir) / UPSCALE_SUBDIR


def _revision(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}-{st.st_mtime_ns}"


def describe_file(path: Path, *, allow_restricted: bool) -> UpscalerFile:
    """What one file is; never raises for a bad file."""
    name = path.stem
    base = UpscalerFile(USER_UPSCALER_PREFIX + name, name, str(path), False, bytes=path.stat().st_size,
                        revision=_revision(path))
    try:
        facts = read_model_file(path, allow_restricted=allow_restricted)
    except NotAnEnhanceModel as exc:
        return replace(base, reason=str(exc), architecture=exc.architecture, restricted=exc.restricted)
    except Exception as exc:  # noqa: BLE001 - one odd file must not break the listing
        log.exception("reading %s failed", path)
        return replace(base, reason=f"{path.name}: could not be read ({type(exc).__name__}: {exc})")
    role = RESTORE if facts.purpose == "FaceSR" else UPSCALE
    return replace(base, valid=True, role=role, architecture=facts.architecture, purpose=facts.purpose,
                   scale=facts.scale, supports_half=facts.supports_half, parameters=facts.parameters)


def _model_files(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir()
                      if p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith("."))
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning("cannot list %s: %s", folder, exc)
        return []


def discover_upscalers(models_dir, *, allow_restricted: bool = False,
                       known: dict[str, UpscalerFile] | None = None) -> list[UpscalerFile]:
    """Every model file of ``<models_dir>/upscale/``, valid or not, sorted by id; ``known`` (path -> file) is
    reused where the file has not changed. Never raises for a bad file."""
    known = known or {}
    found = []
    for path in _model_files(upscale_dir(models_dir)):
        old = known.get(str(path))
        found.append(old if old is not None and old.revision == _revision(path)
                     else describe_file(path, allow_restricted=allow_restricted))
    return sorted(found, key=lambda f: f.id)


def _entry_for(info: UpscalerFile, allow_restricted: bool) -> ModelEntry:
    weights = info.parameters * (2 if info.supports_half else 4)
    return ModelEntry(
        id=info.id, role=info.role, runtime="torch", loader="spandrel",
        description=f"{info.architecture} x{info.scale} from {Path(info.path).name} (added by you)",
        licence=UNKNOWN_LICENCE, download_bytes=0,
        vram_bytes=int(weights * 1.05 + 60 * 10**6), ram_bytes=int(info.parameters * 4 * 1.05 + 20 * 10**6),
        staging_bytes=int(2 * info.bytes + 20 * 10**6),
        options={"path": info.path, "scale": info.scale, "allow_restricted": allow_restricted},
    )


class UserUpscalers:
    """The drop-in folder of one runtime: scanned on demand, valid files registered for leasing."""

    def __init__(self, runtime):
        self.runtime = runtime
        self.folder = upscale_dir(runtime.settings.models_dir)
        self.allow_restricted = bool(getattr(runtime.settings, "allow_restricted_upscalers", False))
        self._lock = threading.Lock()
        self._files: dict[str, UpscalerFile] = {}
        self._registered: dict[str, str] = {}  # id -> revision registered

    def refresh(self) -> list[UpscalerFile]:
        """Scan the folder; read new or changed files; register the valid ones. Returns every file found."""
        with self._lock:
            known = {f.path: f for f in self._files.values()}
            found = {f.id: f for f in discover_upscalers(self.runtime.settings.models_dir,
                                                         allow_restricted=self.allow_restricted, known=known)}
            self._files = found
            for info in found.values():
                if info.valid:
                    self._register(info)
            return sorted(found.values(), key=lambda f: f.id)

    def _register(self, info: UpscalerFile) -> None:
        residency = self.runtime.residency
        known = info.id in residency.registered()
        if known and self._registered.get(info.id) == info.revision:
            return
        if known:
            residency.unload(info.id)  # changed on disk: the next lease loads the new file
        choice = replace(self.runtime.choice(info.role), model_id=info.id)
        adapter = adapter_for(_entry_for(info, self.allow_restricted), choice, self.runtime.settings.models_dir)
        residency.register(adapter, preferred=preferred_tier(choice))
        self._registered[info.id] = info.revision

    def get(self, model_id: str) -> UpscalerFile | None:
        """The file with this id, rescanning once when it is unknown (dropped in since)."""
        with self._lock:
            info = self._files.get(model_id)
        if info is None:
            info = next((f for f in self.refresh() if f.id == model_id), None)
        return info

    def list(self) -> list[UpscalerFile]:
        return self.refresh()
