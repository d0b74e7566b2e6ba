"""One role's services inside a Ray Serve replica: a job run as a stream of messages.

``RoleReplica`` builds the runtime (hardware, profile, a residency manager
under this replica's own GPU budget) and the services the way the head does
(``enfoads.services.service_set``), keeps the job kinds of its role, and runs
one job at a time in a thread whose ``ctx`` turns progress, saved outputs and
the result into ``enfoads.cluster.wire`` messages. It has no Ray import, so it
is tested in-process; ``enfoads.cluster.ray_cluster`` wraps it as a deployment.

Cancel: when the head stops reading (a cancel, a shutdown past its grace
period), the stream is closed and the job's next ``ctx.progress`` raises
``JobCancelled`` here, as it would in the local queue.
"""
from __future__ import annotations

import logging
import queue
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

from enfoads.cluster.wire import END_TYPES, ShippedAssets, error_message, output_asset
from enfoads.models.runtime import build_runtime
from enfoads.services.service_set import build_services, role_of
from enfoads.settings import Settings
from enfoads.work.assets import Asset
from enfoads.work.job_types import JobCancelled
from enfoads.work.job_workers import MAX_STAGE, handler_result

__all__ = ["ReplicaContext", "RoleReplica", "replica_settings"]

log = logging.getLogger(__name__)

def replica_settings(settings: Settings, **changes) -> dict:
    """The head's settings as a replica rebuilds them (JSON; no API key, no Ray of its own)."""
    data = settings.model_dump(mode="json", exclude={"api_key", "ray"})
    data.update(changes)
    return data


class ReplicaContext:
    """The ``JobContext`` a handler gets in a replica: the same attributes, messages instead of rows."""

    def __init__(self, job: dict, params: dict, assets: ShippedAssets, out: "queue.Queue[dict]"):
        self.job_id = job["id"]
        self.kind = job["kind"]
        self.attempt = job.get("attempt", 1)
        self.assets = assets
        self.asset_ids: list[str] = []
        self._params = params
        self._out = out
        self._cancel = threading.Event()
        self._last: tuple | None = None

    def progress(self, percent: float, stage: str | None = None, preview_asset_id: str | None = None) -> None:
        if self._cancel.is_set():
            raise JobCancelled("cancelled")
        key = (max(0, min(100, int(percent))), None if stage is None else str(stage)[:MAX_STAGE], preview_asset_id)
        if key != self._last:
            self._last = key
            self._out.put({"type": "progress", "percent": key[0], "stage": key[1], "preview_asset_id": key[2]})

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        self._cancel.set()

    def save_bytes(self, data: bytes, mime: str, **meta) -> Asset:
        meta.setdefault("job_id", self.job_id)
        meta.setdefault("params", self._params)
        asset, message = output_asset(bytes(data), mime, meta)
        self._out.put(message)
        self.asset_ids.append(asset.id)
        return asset

    def save_file(self, src: str | Path, mime: str, **meta) -> Asset:
        meta.pop("move", None)
        return self.save_bytes(Path(src).read_bytes(), mime, **meta)


class RoleReplica:
    """The job kinds of ``role``, over a runtime of this machine's own.

    Args:
        role: ``image``, ``faces``, ``speech``, ``enhance`` or ``video``.
        settings: ``replica_settings(...)`` of the head.
        heartbeat_s: how often a quiet job still says it is alive.
    """

    def __init__(self, role: str, settings: dict, *, heartbeat_s: float = 5.0, warm: bool = True):
        self.role = role
        self.settings = Settings(**settings)
        self.runtime = build_runtime(self.settings)
        self.services = build_services(self.settings, self.runtime)
        self.kinds = {name: kind for name, kind in self.services.kinds.items() if role_of(name) == role}
        if not self.kinds:
            raise ValueError(f"no job kinds for role {role!r}; roles: {', '.join(self.services.roles)}")
        self.heartbeat_s = heartbeat_s
        self.jobs_run = 0
        warm_up = self.services.warm_ups().get(role)
        if warm and warm_up is not None and role in self.settings.warm_roles:
            try:
                warm_up()
            except Exception:  # a cold first job, not a dead replica
                log.exception("warming the %s models failed", role)

    def start(self, kind: str, params: dict, job: dict, inputs: dict) -> "RunningJob":
        """Start one job in its own thread; read its messages with ``next_message``."""
        return RunningJob(self, kind, params, job, inputs)

    def run(self, kind: str, params: dict, job: dict, inputs: dict) -> Iterator[dict[str, Any]]:
        """Run one job; yields its messages, ending with ``result`` or ``error``."""
        running = self.start(kind, params, job, inputs)
        try:
            while True:
                message = running.next_message()
                yield message
                if message["type"] in END_TYPES:
                    return
        finally:  # also when the reader stopped early: the job stops at its next step
            running.stop()

    def _work(self, kind: str, params: dict, ctx: ReplicaContext, out: "queue.Queue[dict]") -> None:
        if kind not in self.kinds:
            out.put(error_message(ValueError(f"this replica runs {', '.join(sorted(self.kinds))}, not {kind!r}")))
            return
        try:
            result = handler_result(self.kinds[kind].handler(dict(params), ctx), ctx.asset_ids)
            self.jobs_run += 1
            out.put({"type": "result", "result": result})
        except JobCancelled as exc:
            out.put(error_message(exc))
        except Exception as exc:
            log.exception("job %s (%s) failed", ctx.job_id, kind)
            out.put(error_message(exc))

    def close(self) -> None:
        self.services.close()
        self.runtime.close()


class RunningJob:
    """One job running in a replica's thread: its messages, and a way to stop it."""

    def __init__(self, replica: RoleReplica, kind: str, params: dict, job: dict, inputs: dict):
        self._heartbeat_s = replica.heartbeat_s
        self._out: "queue.Queue[dict]" = queue.Queue()
        self._scratch = Path(tempfile.mkdtemp(prefix="enfoads-job-"))
        self.ctx = ReplicaContext({**job, "kind": kind}, params, ShippedAssets(inputs, self._scratch), self._out)
        self._thread = threading.Thread(target=replica._work, args=(kind, params, self.ctx, self._out), daemon=True,
                                        name=f"enfoads-{replica.role}-job")
        self._thread.start()

    def next_message(self) -> dict:
        """The next message, or a heartbeat after ``heartbeat_s`` of quiet."""
        try:
            return self._out.get(timeout=self._heartbeat_s)
        except queue.Empty:
            return {"type": "heartbeat"}

    def stop(self, timeout: float = 30.0) -> None:
        """Cancel (a no-op once it ended), wait for the handler's next step, remove its scratch files."""
        self.ctx.cancel()
        self._thread.join(timeout)
        shutil.rmtree(self._scratch, ignore_errors=True)
