"""What travels between the head and a replica: inputs, the job's message stream, its error.

Inputs go as bytes: the head ships every stored asset a job's params name
(``ship_inputs``) and the replica reads them through ``ShippedAssets``, the
part of the asset store's interface handlers use. Nothing crosses through the
SQLite file, which only the head opens. A replica's outputs come back as
``asset`` messages carrying their bytes and the id the result names, so the
head stores them under that id before it records the result.

The stream, in order: ``progress`` and ``asset`` messages (a preview's asset
before the progress that names it), ``heartbeat`` while the handler is quiet,
then one of ``result`` or ``error``.
"""
from __future__ import annotations

import hashlib
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, BinaryIO

from enfoads.errors import EnfoadsError, redact_paths, status_and_code
from enfoads.services.media import is_asset_id
from enfoads.work.assets import Asset, AssetNotFound

__all__ = ["ClusterUnavailable", "RemoteJobError", "ShippedAssets", "error_message", "ship_inputs"]

_MAX_ERROR = 2000
END_TYPES = ("result", "error")  # a job's stream ends with one of these


class ClusterUnavailable(EnfoadsError):
    """The Ray cluster cannot be reached: nothing is queued; the head recovers when it is back."""

    status, code = 503, "cluster_unavailable"
    retry_after_s = 15


class RemoteJobError(EnfoadsError):
    """A job's error raised in a replica, with the type name, status and code it had there."""

    def __init__(self, error_type: str, message: str, *, status: int = 500, code: str = "internal_error",
                 retry_after_s: int | None = None):
        super().__init__(message)
        self.error_type = error_type
        self.status, self.code, self.retry_after_s = status, code, retry_after_s

    @classmethod
    def from_message(cls, message: dict) -> "RemoteJobError":
        return cls(message["error_type"], message["message"], status=message["status"], code=message["code"],
                   retry_after_s=message.get("retry_after_s"))


def error_message(exc: BaseException) -> dict:
    """The stream's ``error`` message for ``exc`` (no server paths, like the queue's own)."""
    status, code = status_and_code(exc)
    return {"type": "error", "error_type": type(exc).__name__, "message": redact_paths(str(exc))[:_MAX_ERROR],
            "status": status, "code": code, "retry_after_s": getattr(exc, "retry_after_s", None)}


def _ids_in(node: Any) -> set[str]:
    if isinstance(node, str):
        return {node} if is_asset_id(node) else set()
    if isinstance(node, dict):
        return set().union(*map(_ids_in, node.values())) if node else set()
    if isinstance(node, (list, tuple)):
        return set().union(*map(_ids_in, node)) if node else set()
    return set()


def ship_inputs(params: dict, assets) -> dict[str, dict]:
    """Every stored asset ``params`` names (at any depth), as ``{id: {"asset": row, "data": bytes}}``."""
    shipped = {}
    for asset_id in sorted(_ids_in(params)):
        try:
            asset = assets.get(asset_id)
        except AssetNotFound:
            continue  # not an asset after all: the handler's own check answers for it
        shipped[asset_id] = {"asset": dict(asset.__dict__), "data": assets.read_bytes(asset_id)}
    return shipped


class ShippedAssets:
    """A replica's read-only view of the assets the head shipped with one job.

    ``db`` is ``None``: there is no SQLite file here (the image cache stays on
    the head's side of the line and is skipped in a replica).
    """

    db = None

    def __init__(self, shipped: dict[str, dict], scratch: Path | None = None):
        self._shipped = shipped
        self._scratch = scratch
        self._paths: dict[str, Path] = {}
        self._lock = threading.Lock()

    def get(self, asset_id: str) -> Asset:
        try:
            return Asset(**self._shipped[asset_id]["asset"])
        except KeyError:
            raise AssetNotFound(f"no asset {asset_id!r}") from None

    def read_bytes(self, asset_id: str) -> bytes:
        self.get(asset_id)
        return self._shipped[asset_id]["data"]

    def path(self, asset_id: str) -> Path:
        """A local file with the asset's bytes (written once, removed with the job's scratch folder)."""
        asset = self.get(asset_id)
        with self._lock:
            if asset_id not in self._paths:
                if self._scratch is None:
                    self._scratch = Path(tempfile.mkdtemp(prefix="enfoads-inputs-"))
                path = self._scratch / Path(asset.file).name
                path.write_bytes(self._shipped[asset_id]["data"])
                self._paths[asset_id] = path
            return self._paths[asset_id]

    def open(self, asset_id: str) -> BinaryIO:
        return open(self.path(asset_id), "rb")


def output_asset(data: bytes, mime: str, meta: dict) -> tuple[Asset, dict]:
    """A replica's new output: the ``Asset`` its handler sees and the ``asset`` message the head stores."""
    asset_id = uuid.uuid4().hex
    kind = meta.pop("kind", None)
    keep = {k: meta.get(k) for k in ("width", "height", "duration")}
    asset = Asset(id=asset_id, kind=kind or mime.split("/", 1)[0], mime=mime, bytes=len(data),
                  sha256=hashlib.sha256(data).hexdigest(), params=meta.get("params") or {},
                  job_id=meta.get("job_id"), created=time.time(), file="", **keep)
    message = {"type": "asset", "id": asset_id, "mime": mime, "data": data, "kind": kind, **keep}
    return asset, message
