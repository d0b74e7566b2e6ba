"""The job queue's workers: the GPU worker and CPU pool loop, running a handler, finishing its row.

``JobContext`` is what a handler gets; ``WorkerMixin`` is mixed into
``enfoads.work.jobs.JobQueue`` and uses its database, conditions, flags and
progress lane. Also restart recovery (``_recover``): the same path a shutdown
past its grace period takes to put a running job back in the queue.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from enfoads.work import events as ev
from enfoads.work.assets import Asset, AssetStore
from enfoads.errors import redact_paths, status_and_code
from enfoads.work.job_types import (
    CANCELLED,
    FAILED,
    INTERRUPTED_BY_RESTART,
    QUEUED,
    REQUEUED_AFTER_RESTART,
    SUCCEEDED,
    Job,
    JobCancelled,
    JobError,
    JobInterrupted,
    _dumps,
    _Interrupted,
    _job,
)

# The queue's own logger, as before the worker loop had a module of its own.
log = logging.getLogger("enfoads.work.jobs")

MAX_STAGE = 200  # characters of a progress stage message
_MAX_ERROR = 2000


class JobContext:
    """What a handler gets besides its params: progress, cancellation, the asset store.

    Attributes:
        job_id: the job's id.
        kind: the job's kind.
        attempt: 1 on the first run, 2 after a restart re-queued it, ...
        assets: the queue's ``AssetStore`` (``None`` if the queue has none).
    """

    # ``queue`` is the JobQueue, typed by its worker half: importing enfoads.work.jobs here would be a circle.
    def __init__(self, queue: "WorkerMixin", job: Job):
        self._queue = queue
        self.job_id = job.id
        self.kind = job.kind
        self.attempt = job.attempts
        self.assets: AssetStore | None = queue.assets
        self.asset_ids: list[str] = []  # saved through save_bytes/save_file, in order
        self._params = job.params
        self._last: tuple | None = None

    def progress(self, percent: float, stage: str | None = None, preview_asset_id: str | None = None) -> None:
        """Report progress (0-100) and a stage message; the step boundary where cancellation lands.

        Raises:
            JobCancelled: the job was cancelled (or the queue is shutting down
                past its grace period); let it propagate.
        """
        self._queue._progress(self, percent, stage, preview_asset_id)

    @property
    def cancelled(self) -> bool:
        """True once a cancel (or a shutdown past its grace period) was asked for."""
        return self._queue._flag(self.job_id) is not None

    def save_bytes(self, data: bytes, mime: str, **meta) -> Asset:
        """``assets.save_bytes`` with this job's id and params filled in; the id goes into the result."""
        asset = self._require_assets().save_bytes(data, mime, **self._meta(meta))
        self.asset_ids.append(asset.id)
        return asset

    def save_file(self, src: str | Path, mime: str, **meta) -> Asset:
        """``assets.save_file`` with this job's id and params filled in."""
        asset = self._require_assets().save_file(src, mime, **self._meta(meta))
        self.asset_ids.append(asset.id)
        return asset

    def _meta(self, meta: dict) -> dict:
        meta.setdefault("job_id", self.job_id)
        meta.setdefault("params", self._params)
        return meta

    def _require_assets(self) -> AssetStore:
        if self.assets is None:
            raise JobError("this job queue has no asset store")
        return self.assets


Handler = Callable[[dict, JobContext], "dict | None"]


def handler_result(result, asset_ids: list[str]) -> dict:
    """A handler's return value as the job's result: a dict, naming the assets it saved if it did not."""
    if result is None:
        result = {}
    if not isinstance(result, dict):
        raise TypeError(f"a job handler must return a dict, not {type(result).__name__}")
    if asset_ids and "asset_ids" not in result:
        result = {**result, "asset_ids": asset_ids}
    return result


class WorkerMixin:
    """The worker half of ``JobQueue`` (see ``enfoads.work.jobs``)."""

    # Set by ``JobQueue.__init__``; named here for ``JobContext``, which sees the queue through this half.
    assets: AssetStore | None
    busy_kinds: Callable[[], set[str]] | None  # kinds not to claim for now (None: claim any)
    on_claim: Callable[[Job], None] | None  # told of every job a worker takes, before it runs
    on_release: Callable[[Job], None] | None  # told when the worker is done with it, however that went

    def _flag(self, job_id: str) -> str | None:
        return self._flags.get(job_id)

    def _join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def wake(self, device: str) -> None:
        """Let an idle worker of ``device`` look at the queue now (a job went back in it, a runner freed up)."""
        cond = self._wake[device]
        with cond:
            cond.notify()

    def _spawn(self, device: str, name: str) -> None:
        t = threading.Thread(target=self._worker, args=(device,), name=name, daemon=True)
        self._threads.append(t)
        t.start()

    def _recover(self) -> None:
        now = self._clock()
        out: list[ev.Event] = []
        with self._db.write() as conn:
            rows = conn.execute("SELECT * FROM jobs WHERE state = 'running' ORDER BY seq").fetchall()
            for row in rows:
                out.append(self._interrupt(conn, _job(row), now, "restart"))
        for event in out:
            log.warning("job %s (%s) was interrupted by a restart: %s", event.job_id, event.kind, event.type)
            self._publish(event)

    def _interrupt(self, conn, job: Job, now: float, cause: str) -> ev.Event:
        """Put an interrupted running job back in the queue, or end it; returns its event."""
        if job.cancel_requested:
            conn.execute(
                "UPDATE jobs SET state = 'cancelled', stage = 'cancelled', finished_at = ? WHERE id = ?",
                (now, job.id),
            )
            return ev.JobCancelled(job_id=job.id, kind=job.kind)
        if job.attempts >= self.max_attempts:
            message = INTERRUPTED_BY_RESTART if cause == "restart" else f"interrupted by a {cause}"
            conn.execute(
                "UPDATE jobs SET state = 'failed', stage = 'failed', error_type = 'Interrupted',"
                " error_message = ?, finished_at = ? WHERE id = ?",
                (message, now, job.id),
            )
            return ev.JobFailed(job_id=job.id, kind=job.kind, error_type="Interrupted", error_message=message)
        stage = REQUEUED_AFTER_RESTART if cause == "restart" else f"re-queued after a {cause}"
        conn.execute(
            "UPDATE jobs SET state = 'queued', progress = 0, stage = ?, preview_asset_id = NULL,"
            " started_at = NULL WHERE id = ?",
            (stage, job.id),
        )
        return ev.JobProgress(job_id=job.id, kind=job.kind, progress=0, stage=stage, state=QUEUED)

    def _claim(self, device: str) -> Job | None:
        # Kinds whose runners are all busy (a remote backend's saturated roles) wait; later jobs of
        # other kinds go first instead of taking a thread only to wait for a free replica.
        busy = sorted(self.busy_kinds()) if self.busy_kinds is not None else []
        skip = f" AND kind NOT IN ({','.join('?' * len(busy))})" if busy else ""
        with self._db.write() as conn:
            row = conn.execute(
                "UPDATE jobs SET state = 'running', started_at = ?, attempts = attempts + 1, progress = 0,"
                " stage = CASE WHEN attempts = 0 THEN 'started'"
                "              ELSE 'started again (attempt ' || (attempts + 1) || ')' END"
                " WHERE seq = (SELECT seq FROM jobs WHERE state = 'queued' AND device = ?" + skip +
                " ORDER BY seq LIMIT 1) RETURNING *",
                (self._clock(), device, *busy),
            ).fetchone()
            if row is None:
                return None
            with self._flags_lock:
                self._running.add(row["id"])
        job = _job(row)
        if self.on_claim is not None:  # still under the device's condition: the next claim sees it counted
            self.on_claim(job)
        return job

    def _worker(self, device: str) -> None:
        cond = self._wake[device]
        while True:
            job = call = None
            with cond:
                while not self._stopping.is_set():
                    if self._calls[device]:
                        call = self._calls[device].popleft()
                        break
                    try:
                        job = self._claim(device)
                    except Exception:
                        # e.g. a Drive mount that stalled past busy_timeout: retry later.
                        log.exception("%s worker could not read the queue", device)
                    if job is not None:
                        break
                    cond.wait(self.poll_s)
            if call is not None:
                self._call(*call)
                continue
            if job is None:
                return
            try:
                self._run(job)
            except Exception:
                log.exception("%s worker failed around job %s", device, job.id)
            finally:
                with self._flags_lock:
                    self._running.discard(job.id)
                    self._flags.pop(job.id, None)
                if self.on_release is not None:
                    self.on_release(job)
                self._notify_done()

    @staticmethod
    def _call(fn: Callable[[], Any], future: Future) -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn())
        except BaseException as exc:  # the caller reads it from the future
            future.set_exception(exc)

    def _run(self, job: Job) -> None:
        self._progress_lane.submit(self._publish, ev.JobProgress(job_id=job.id, kind=job.kind, progress=0,
                                                                 stage=job.stage))
        entry = self._handlers.get(job.kind)
        if entry is None:
            self._finish(job, FAILED, error=("UnknownJobKind", f"no handler registered for job kind {job.kind!r}",
                                             500, "unknown_job_kind"))
            return
        ctx = JobContext(self, job)
        started = time.monotonic()
        try:
            result = handler_result(entry[0](dict(job.params), ctx), ctx.asset_ids)
            result_json = _dumps(result)
        except JobInterrupted as exc:
            if not isinstance(exc, _Interrupted):
                log.warning("job %s (%s) was interrupted: %s", job.id, job.kind, exc)
            self._progress_lane.flush()
            with self._db.write() as conn:
                current = _job(conn.execute("SELECT * FROM jobs WHERE id = ?", (job.id,)).fetchone())
                if not exc.charged:  # this run does not count against the job
                    conn.execute("UPDATE jobs SET attempts = MAX(attempts - 1, 0) WHERE id = ?", (job.id,))
                    current = replace(current, attempts=max(current.attempts - 1, 0))
                event = self._interrupt(conn, current, self._clock(), exc.cause)
            self._publish(event)
            self.wake(job.device)
        except JobCancelled:
            self._finish(job, CANCELLED)
        except Exception as exc:
            status, code = status_and_code(exc)
            if status == 500:  # a bug, or a failure no error type describes: the traceback is the lead
                log.exception("job %s (%s) failed", job.id, job.kind)
            else:  # a caller-visible answer (bad input, model not installed, out of memory): one line
                log.warning("job %s (%s) failed: %s %s: %s", job.id, job.kind, status, code, exc)
            # Shown to clients (job views, events): no server paths; the log above has them. A remote
            # backend's error keeps the name of the type raised where the job ran (``error_type``).
            name = getattr(exc, "error_type", None) or type(exc).__name__
            self._finish(job, FAILED, error=(name, redact_paths(str(exc))[:_MAX_ERROR], status, code))
        else:
            # Before the job counts as finished: whoever sees it succeeded sees the quota kept.
            self.cleanup_assets()
            self._finish(job, SUCCEEDED, result=result, result_json=result_json)
        finally:
            took = time.monotonic() - started
            mean = self._mean_run_s.get(job.device)
            self._mean_run_s[job.device] = took if mean is None else 0.8 * mean + 0.2 * took

    def _finish(self, job: Job, state: str, *, result: dict | None = None, result_json: str | None = None,
                error: tuple[str, str, int, str] | None = None) -> None:
        """``error``: (type name, message, HTTP status, code), kept so the web layer answers by the stored
        status instead of by the name."""
        self._progress_lane.flush()  # every progress event of the job comes before its last one
        status, code = (error[2], error[3]) if error else (None, None)
        with self._db.write() as conn:
            conn.execute(
                "UPDATE jobs SET state = ?, stage = ?, progress = CASE WHEN ? THEN 100 ELSE progress END,"
                " result = ?, error_type = ?, error_message = ?, error_status = ?, error_code = ?, finished_at = ?"
                " WHERE id = ?",
                (state, state, state == SUCCEEDED, result_json, error[0] if error else None,
                 error[1] if error else None, status, code, self._clock(), job.id),
            )
        if state == SUCCEEDED:
            event: ev.Event = ev.JobSucceeded(job_id=job.id, kind=job.kind, result=result or {})
        elif state == FAILED:
            event = ev.JobFailed(job_id=job.id, kind=job.kind, error_type=error[0], error_message=error[1])
        else:
            event = ev.JobCancelled(job_id=job.id, kind=job.kind)
        self._publish(event)

    def _progress(self, ctx: JobContext, percent: float, stage: str | None, preview_asset_id: str | None) -> None:
        flag = self._flags.get(ctx.job_id)
        if flag is not None:
            raise _Interrupted("the queue is shutting down") if flag == "shutdown" else JobCancelled("cancelled")
        percent = max(0, min(100, int(percent)))
        stage = None if stage is None else str(stage)[:MAX_STAGE]
        key = (percent, stage, preview_asset_id)
        if key == ctx._last:
            return  # nothing new: spare the database (Drive) a write
        ctx._last = key
        self._progress_lane.submit(self._write_progress, ctx.job_id, ctx.kind, percent, stage, preview_asset_id)

    def _write_progress(self, job_id: str, kind: str, percent: int, stage: str | None,
                        preview_asset_id: str | None) -> None:
        with self._db.write() as conn:
            row = conn.execute(
                "UPDATE jobs SET progress = ?, stage = COALESCE(?, stage),"
                " preview_asset_id = COALESCE(?, preview_asset_id) WHERE id = ? AND state = 'running'"
                " RETURNING stage",
                (percent, stage, preview_asset_id, job_id),
            ).fetchone()
        if row is None:
            return  # finished meanwhile (a cancel, a shutdown): its last event was already published
        self._publish(ev.JobProgress(job_id=job_id, kind=kind, progress=percent, stage=row[0],
                                     preview_asset_id=preview_asset_id))
