"""What is installed in the models dir: every version of every model, and which one is active.

``enfoads preload`` writes ``<models_dir>/enfoads-manifest.json`` after it has
downloaded and verified a model; ``enfoads models`` reads it; the registry
asks it which commit of a repository to load. One file, JSON, written
atomically::

    {
      "format_version": 1,
      "models": {
        "faster-whisper-small": {
          "active": "536b0662",          # the version the server loads
          "pinned": false,               # true: chosen by hand, preload keeps it
          "versions": {
            "536b0662": {
              "installed_at": "2026-05-10T12:00:00Z",
              "components": {
                "model": {"kind": "hub", "source": "Systran/faster-whisper-small",
                          "revision": "536b...", "commit": "536b...",
                          "files": {"model.bin": {"size": 483546902, "sha256": "3e30..."}}}
              }
            }
          }
        }
      }
    }

A version id is the short commit of each component joined by ``+`` (the
archive's sha256 for a URL archive), e.g. ``46216598+c9a24f48+207b116d`` for
SDXL base + Lightning UNet + VAE: the ids people see on the hub.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST_FILE = "enfoads-manifest.json"
FORMAT_VERSION = 1
SHORT = 8  # characters of a commit or digest in a version id


def sha256_file(path: Path, chunk: int = 8 * 1024 * 1024) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def git_blob_sha1(path: Path, chunk: int = 8 * 1024 * 1024) -> str:
    """The git object id of a file (what the hub reports for files not stored in LFS)."""
    digest = hashlib.sha1(f"blob {os.path.getsize(path)}\0".encode())
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class FileRecord:
    size: int
    sha256: str

    def to_json(self) -> dict:
        return {"size": self.size, "sha256": self.sha256}


@dataclass
class ComponentRecord:
    """One source of a model as installed.

    ``kind`` is ``hub`` (``source`` a repo id, ``commit`` the resolved commit)
    or ``url`` (``source`` the archive URL, ``commit`` the archive's sha256,
    ``path`` the folder it was unpacked into, relative to the models dir).
    """

    kind: str
    source: str
    revision: str
    commit: str
    files: dict[str, FileRecord] = field(default_factory=dict)
    path: str | None = None

    @property
    def short(self) -> str:
        return self.commit[:SHORT] if self.commit else "unknown"

    def to_json(self) -> dict:
        data = {
            "kind": self.kind,
            "source": self.source,
            "revision": self.revision,
            "commit": self.commit,
            "files": {name: rec.to_json() for name, rec in sorted(self.files.items())},
        }
        if self.path is not None:
            data["path"] = self.path
        return data

    @classmethod
    def from_json(cls, data: dict) -> "ComponentRecord":
        return cls(
            kind=data["kind"],
            source=data["source"],
            revision=data.get("revision", ""),
            commit=data.get("commit", ""),
            files={name: FileRecord(int(rec["size"]), rec["sha256"]) for name, rec in data.get("files", {}).items()},
            path=data.get("path"),
        )


@dataclass
class VersionRecord:
    components: dict[str, ComponentRecord]
    installed_at: str = ""

    @property
    def id(self) -> str:
        return version_id(self.components)

    @property
    def size(self) -> int:
        return sum(f.size for c in self.components.values() for f in c.files.values())

    @property
    def file_count(self) -> int:
        return sum(len(c.files) for c in self.components.values())

    def to_json(self) -> dict:
        return {
            "installed_at": self.installed_at,
            "components": {name: c.to_json() for name, c in self.components.items()},
        }

    @classmethod
    def from_json(cls, data: dict) -> "VersionRecord":
        return cls(
            components={n: ComponentRecord.from_json(c) for n, c in data.get("components", {}).items()},
            installed_at=data.get("installed_at", ""),
        )


def version_id(components: dict[str, ComponentRecord]) -> str:
    return "+".join(c.short for c in components.values())


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class ManifestError(ValueError):
    pass


class Manifest:
    """The manifest of one models dir. Load, change, ``save()``."""

    def __init__(self, models_dir: Path, data: dict | None = None):
        self.models_dir = Path(models_dir)
        self.data = data or {"format_version": FORMAT_VERSION, "models": {}}

    @property
    def path(self) -> Path:
        return self.models_dir / MANIFEST_FILE

    @classmethod
    def load(cls, models_dir: Path) -> "Manifest":
        """The manifest, or an empty one when there is none (or it is unreadable)."""
        path = Path(models_dir) / MANIFEST_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls(models_dir)
        except (OSError, ValueError):
            # A damaged manifest must not stop a start: preload rewrites it.
            return cls(models_dir)
        if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
            return cls(models_dir)
        data.setdefault("models", {})
        return cls(models_dir, data)

    def save(self) -> None:
        self.models_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".enfoads-manifest-", suffix=".tmp", dir=self.models_dir)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(self.data, fh, indent=1, sort_keys=True)
                fh.write("\n")
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    # -- reading -----------------------------------------------------------
    def model_ids(self) -> list[str]:
        return sorted(self.data["models"])

    def _model(self, model_id: str) -> dict | None:
        return self.data["models"].get(model_id)

    def versions(self, model_id: str) -> list[VersionRecord]:
        """Installed versions of a model, oldest first."""
        model = self._model(model_id) or {}
        records = [VersionRecord.from_json(v) for v in model.get("versions", {}).values()]
        return sorted(records, key=lambda v: v.installed_at)

    def version(self, model_id: str, version: str) -> VersionRecord:
        """A version by its id or an unambiguous prefix of it."""
        model = self._model(model_id) or {}
        known = model.get("versions", {})
        if version in known:
            return VersionRecord.from_json(known[version])
        matches = [v for v in known if v.startswith(version)]
        if len(matches) == 1:
            return VersionRecord.from_json(known[matches[0]])
        if not known:
            raise ManifestError(f"model {model_id!r} has no installed version")
        raise ManifestError(
            f"model {model_id!r} has no {'single ' if matches else ''}installed version {version!r}; "
            f"installed: {', '.join(sorted(known))}"
        )

    def active(self, model_id: str) -> VersionRecord | None:
        model = self._model(model_id)
        if not model or model.get("active") not in model.get("versions", {}):
            return None
        return VersionRecord.from_json(model["versions"][model["active"]])

    def active_id(self, model_id: str) -> str | None:
        record = self.active(model_id)
        return record.id if record else None

    def is_pinned(self, model_id: str) -> bool:
        return bool((self._model(model_id) or {}).get("pinned"))

    def active_commit(self, model_id: str, component: str) -> str | None:
        record = self.active(model_id)
        if record is None or component not in record.components:
            return None
        return record.components[component].commit or None

    # -- writing -----------------------------------------------------------
    def record(self, model_id: str, version: VersionRecord, *, activate: bool = True, pinned: bool | None = None) -> str:
        """Add (or refresh) an installed version; returns its id."""
        if not version.installed_at:
            version.installed_at = utc_now()
        model = self.data["models"].setdefault(model_id, {"active": None, "pinned": False, "versions": {}})
        model["versions"][version.id] = version.to_json()
        if activate:
            model["active"] = version.id
        if pinned is not None:
            model["pinned"] = pinned
        return version.id

    def set_active(self, model_id: str, version: str, *, pinned: bool = True) -> VersionRecord:
        record = self.version(model_id, version)
        model = self.data["models"][model_id]
        model["active"] = record.id
        model["pinned"] = pinned
        return record

    def unpin(self, model_id: str) -> None:
        model = self._model(model_id)
        if model is not None:
            model["pinned"] = False
