"""The job queue: a SQLite job store, one GPU worker, a small CPU pool.

Every model call runs as a job, also the endpoints that look synchronous
(they use ``submit_and_wait``). A job is a row in ``<data_dir>/enfoads.sqlite3``;
the row is the truth, so the latest state of every job is always readable and
survives a restart of the process.

Order: one GPU worker runs ``device="gpu"`` jobs one at a time; a pool of
``cpu_workers`` threads runs ``device="cpu"`` jobs. Within a device class jobs
start in creation order (FIFO by the row's ``seq``). A job re-queued after a
restart keeps its ``seq``, so it runs before jobs created after it. There are
no priorities.

States: ``queued -> running -> succeeded | failed | cancelled``, and
``queued -> cancelled``. ``attempts`` counts starts. A handler's exception
fails the job at once (no retry); only an interruption (restart, shutdown)
puts a job back in the queue, and only while ``attempts < max_attempts``.

Cancel: a queued job is cancelled at once. A running job is flagged; its next
``ctx.progress`` call raises ``JobCancelled`` and the job ends ``cancelled``.
A handler that returns before calling ``ctx.progress`` again ends
``succeeded`` (the cancel came too late to save any work).

Restart recovery (``start``): a job found ``running`` was interrupted. With
``attempts < max_attempts`` it is re-queued (stage "re-queued after a
restart"); otherwise it fails with "interrupted by a restart"; if a cancel had
been asked for, it ends ``cancelled``. Queued jobs simply resume. Every change
is published as an event.

Shutdown (``close``): workers take no new job, ``wait`` and
``submit_and_wait`` return at once with the job unfinished; a running job may finish
within ``shutdown_grace_s``; after that it is stopped at its next
``ctx.progress`` and put back in the queue exactly like a restart would
(so the next start runs it again). A handler that never reports progress is
abandoned in its daemon thread; its row stays ``running`` and the next start
recovers it. A ``call_on_worker`` call in progress (a warm-start model load)
is not waited for: it has no row to put back.

One process per data dir: ``start`` takes every ``running`` row for an
interrupted one.

Events (``enfoads.work.events``) are published after each change is committed:
JobCreated, JobProgress (also at start and on re-queue), then one of
JobSucceeded, JobFailed, JobCancelled. A job's JobCreated always comes first
and its final event last. Progress rows and their events are written by a
background lane (``enfoads.work.serial``), so a handler's ``ctx.progress`` costs
a cancel check and an append, not a SQLite write; a job's final state waits
for its progress to be written. Subscribers run in a worker thread or in that
lane and must not ``submit`` jobs.

Layout: devices, states, errors and ``Job`` are in ``enfoads.work.job_types``;
``JobContext`` and the worker loop (claim, run, finish, progress, recovery) in
``enfoads.work.job_workers``, mixed into ``JobQueue``.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from collections import deque
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, Iterable

from enfoads.work import events as ev
from enfoads.work.assets import AssetStore
from enfoads.work.db import Database
from enfoads.work.events import EventBus
from enfoads.work.job_types import (
    CPU,
    DEVICES,
    GPU,
    QUEUED,
    RUNNING,
    STATES,
    Job,
    JobError,
    JobNotFound,
    QueueFullError,
    UnknownJobKind,
    _dumps,
    _job,
)
from enfoads.work.job_workers import Handler, WorkerMixin
from enfoads.work.schema import database
from enfoads.work.serial import SerialLane

__all__ = ["JobQueue"]

log = logging.getLogger(__name__)


class JobQueue(WorkerMixin):
    """Persistent jobs, run by one GPU worker and a small CPU pool.

    Args:
        db_path: the data dir (meaning its ``enfoads.sqlite3``), a ``*.sqlite3`` file, or an
            open ``Database`` shared with the other stores (``enfoads.work.schema``).
        assets: where handlers save outputs (``ctx.assets``); its quota is
            enforced after every finished job.
        bus: where events go; default an ``EventBus`` with no subscribers.
        max_queued: past this many queued jobs, ``submit`` raises ``QueueFullError``.
        cpu_workers: threads for ``device="cpu"`` jobs.
        gpu_workers: threads for ``device="gpu"`` jobs: 1 where the jobs run here (one GPU, one
            job at a time); a remote backend's handlers only wait on remote replicas, so it runs
            as many as those replicas can take at once.
        max_attempts: how many starts an interrupted job may get in all.
        shutdown_grace_s: how long ``close`` lets a running job finish.
        wal: try SQLite's WAL journal (falls back to DELETE where unsupported).
        clock: the time source for timestamps.

    Register handlers, then ``start()``; jobs may be submitted before that.
    """

    def __init__(
        self,
        db_path: "str | Path | Database",
        *,
        assets: AssetStore | None = None,
        bus: EventBus | None = None,
        max_queued: int = 1000,
        cpu_workers: int = 2,
        gpu_workers: int = 1,
        max_attempts: int = 2,
        shutdown_grace_s: float = 30.0,
        wal: bool = True,
        clock: Callable[[], float] = time.time,
    ):
        if min(cpu_workers, gpu_workers, max_attempts, max_queued) < 1:
            raise ValueError("cpu_workers, gpu_workers, max_attempts and max_queued must be at least 1")
        self.assets = assets
        # A remote backend sets these: kinds whose replicas are all taken wait, and it counts each claim
        # and each release.
        self.busy_kinds = None
        self.on_claim = None
        self.on_release = None
        self.bus = bus if bus is not None else EventBus()
        self.max_queued = int(max_queued)
        self.cpu_workers = int(cpu_workers)
        self.gpu_workers = int(gpu_workers)
        self.max_attempts = int(max_attempts)
        self.shutdown_grace_s = float(shutdown_grace_s)
        self._clock = clock
        self._db, self._owns_db = database(db_path, wal=wal)
        self._handlers: dict[str, tuple[Handler, str]] = {}
        # Claims happen under the device's condition and submits insert and
        # publish JobCreated under it, so no worker can start a job (and
        # publish its progress) before its JobCreated event.
        self._wake = {d: threading.Condition() for d in DEVICES}
        # Calls that run on a device's worker before its next job (``call_on_worker``).
        self._calls: dict[str, deque[tuple[Callable[[], Any], Future]]] = {d: deque() for d in DEVICES}
        self._done = threading.Condition()  # notified whenever a job finishes
        self._flags: dict[str, str] = {}  # running job id -> "cancel" | "shutdown"
        self._flags_lock = threading.Lock()
        self._running: set[str] = set()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        # Progress rows and their events are written here, off the worker's path: a
        # denoising step never waits for SQLite (or a Drive mount) or Socket.IO.
        self._progress_lane = SerialLane("enfoads-job-progress")
        self._mean_run_s: dict[str, float] = {}  # device -> moving mean of job run times (Retry-After)
        self._started = False
        self.poll_s = 1.0  # workers also look at the table this often (safety net)

    # ------------------------------------------------------------------ public API

    @property
    def journal_mode(self) -> str:
        """"wal", or "delete" where the filesystem does not support WAL."""
        return self._db.journal_mode

    def register(self, kind: str, handler: Handler, *, device: str = GPU) -> None:
        """Run ``handler(params, ctx) -> dict`` for jobs of ``kind`` on ``device`` ("gpu" or "cpu").

        Register every kind before ``start()``: a queued job whose kind has no
        handler when a worker takes it fails with ``UnknownJobKind``.
        """
        if device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, not {device!r}")
        self._handlers[kind] = (handler, device)

    def start(self) -> "JobQueue":
        """Recover jobs interrupted by a previous process, then start the workers."""
        if self._started:
            return self
        self._started = True
        self._recover()
        for i in range(self.gpu_workers):
            self._spawn(GPU, "enfoads-gpu-worker" if i == 0 else f"enfoads-gpu-worker-{i + 1}")
        for i in range(self.cpu_workers):
            self._spawn(CPU, f"enfoads-cpu-worker-{i + 1}")
        self.cleanup_assets()
        return self

    def submit(self, kind: str, params: dict | None = None) -> Job:
        """Queue a job.

        Args:
            kind: a registered kind, e.g. ``"image.generate"``.
            params: JSON-serialisable parameters given to the handler. Keep
                them small: put uploads in the asset store and pass their ids.

        Returns:
            The queued ``Job``.

        Raises:
            UnknownJobKind: no handler is registered for ``kind``.
            JobError: the queue is shutting down (``close`` was called).
            QueueFullError: ``max_queued`` jobs are already waiting.
            TypeError, ValueError: ``params`` is not JSON-serialisable.
        """
        if self._stopping.is_set():
            raise JobError("the job queue is shutting down")
        entry = self._handlers.get(kind)
        if entry is None:
            raise UnknownJobKind(f"no handler registered for job kind {kind!r}")
        device = entry[1]
        params_json = _dumps(params or {})
        job_id = uuid.uuid4().hex
        cond = self._wake[device]
        with cond:
            with self._db.write() as conn:
                (queued,) = conn.execute("SELECT COUNT(*) FROM jobs WHERE state = 'queued'").fetchone()
                if queued >= self.max_queued:
                    wait_s = max(1, min(60, round(self._mean_run_s.get(device, 30.0))))
                    raise QueueFullError(f"the queue is full ({queued} jobs waiting); try again in about {wait_s} s",
                                         retry_after_s=wait_s)
                row = conn.execute(
                    "INSERT INTO jobs(id, kind, device, params, state, stage, created_at)"
                    " VALUES (?, ?, ?, ?, 'queued', 'queued', ?) RETURNING *",
                    (job_id, kind, device, params_json, self._clock()),
                ).fetchone()
            job = _job(row)
            self._publish(ev.JobCreated(job_id=job.id, kind=kind, device=device))
            cond.notify()
        return job

    def get(self, job_id: str) -> Job:
        """The job's current state; ``JobNotFound`` if there is no such job."""
        with self._db.read() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"no job {job_id!r}")
        return _job(row)

    def list(self, *, states: Iterable[str] | None = None, kind: str | None = None, limit: int = 100) -> list[Job]:
        """Jobs, newest first, optionally only in ``states`` or of one ``kind``."""
        sql, args = "SELECT * FROM jobs WHERE 1=1", []
        if states is not None:
            states = [*states]
            sql += f" AND state IN ({','.join('?' * len(states))})"
            args += states
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        sql += " ORDER BY seq DESC LIMIT ?"
        args.append(int(limit))
        with self._db.read() as conn:
            return [_job(r) for r in conn.execute(sql, args).fetchall()]

    def counts(self) -> dict[str, int]:
        """How many jobs are in each state."""
        with self._db.read() as conn:
            rows = conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()
        return {s: 0 for s in STATES} | {r[0]: r[1] for r in rows}

    def unfinished_job_ids(self) -> set[str]:
        """Ids of queued and running jobs (their assets are never cleaned up)."""
        with self._db.read() as conn:
            return {r[0] for r in conn.execute("SELECT id FROM jobs WHERE state IN ('queued', 'running')")}

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job finished or ``timeout`` seconds passed; returns it either way.

        Also returns (the job unfinished) once ``close`` began: this process
        will not finish it, the next start will.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        job = None
        with self._done:
            while True:
                try:
                    job = self.get(job_id)
                except sqlite3.ProgrammingError:  # closed under us by ``close``: the last state read
                    if job is None or not self._stopping.is_set():
                        raise
                    return job
                if job.done or self._stopping.is_set():
                    return job
                left = self.poll_s if deadline is None else min(self.poll_s, deadline - time.monotonic())
                if left <= 0:
                    return job
                self._done.wait(left)

    def submit_and_wait(self, kind: str, params: dict | None = None, timeout: float | None = None) -> Job:
        """Submit, then wait up to ``timeout`` seconds.

        Returns:
            The finished job, or, on timeout, the job still queued or running:
            it goes on, and the caller hands out ``job.id`` to poll.
        """
        job = self.submit(kind, params)
        return self.wait(job.id, timeout)

    def cancel(self, job_id: str) -> Job:
        """Cancel a job.

        A queued job is ``cancelled`` at once; a running one is flagged and
        stops at its next ``ctx.progress`` (the returned job is still
        ``running``, with ``cancel_requested``); a finished one is unchanged.
        """
        with self._db.write() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(f"no job {job_id!r}")
            state = row["state"]
            if state == QUEUED:
                row = conn.execute(
                    "UPDATE jobs SET state = 'cancelled', stage = 'cancelled', cancel_requested = 1,"
                    " finished_at = ? WHERE id = ? RETURNING *",
                    (self._clock(), job_id),
                ).fetchone()
            elif state == RUNNING:
                row = conn.execute(
                    "UPDATE jobs SET cancel_requested = 1 WHERE id = ? RETURNING *", (job_id,)
                ).fetchone()
                # Inside the transaction: the worker's finish cannot slip in between.
                with self._flags_lock:
                    self._flags.setdefault(job_id, "cancel")
        job = _job(row)
        if state == QUEUED:
            self._publish(ev.JobCancelled(job_id=job.id, kind=job.kind))
            self._notify_done()
        return job

    def call_on_worker(self, fn: Callable[[], Any], *, device: str = GPU) -> Future:
        """Run ``fn()`` on the ``device`` worker before the next job it takes; no row, no events.

        For work that must not overlap that worker's jobs and that a job
        arriving meanwhile should wait for, such as loading and warming up a
        model at start (``enfoads.warmup``). Returns a ``Future``; a call still
        waiting when the queue closes is cancelled.
        """
        if device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, not {device!r}")
        future: Future = Future()
        cond = self._wake[device]
        with cond:
            if self._stopping.is_set():
                future.cancel()
                return future
            self._calls[device].append((fn, future))
            cond.notify()
        return future

    def describe(self) -> dict[str, Any]:
        """What runs the jobs (``/gpu-status``'s ``backend``): this process's own workers."""
        return {"name": "local", "gpu_workers": self.gpu_workers, "cpu_workers": self.cpu_workers}

    def cleanup_assets(self) -> list[str]:
        """Enforce the asset store's quota, sparing assets of unfinished jobs; returns removed ids."""
        if self.assets is None or self.assets.quota_bytes is None:
            return []
        try:
            return self.assets.cleanup(unfinished_jobs=self.unfinished_job_ids)
        except Exception:
            log.exception("asset clean-up failed")
            return []

    def close(self, grace_s: float | None = None) -> None:
        """Stop the workers (see the module docstring for what happens to a running job).

        Args:
            grace_s: how long a running job may still take; default ``shutdown_grace_s``.
        """
        grace = self.shutdown_grace_s if grace_s is None else grace_s
        self._stopping.set()
        for device in DEVICES:
            with self._wake[device]:
                while self._calls[device]:
                    self._calls[device].popleft()[1].cancel()
        self._notify_done()  # submit_and_wait callers return now, with the job unfinished
        for cond in self._wake.values():
            with cond:
                cond.notify_all()
        self._join(grace)
        if any(t.is_alive() for t in self._threads):
            with self._flags_lock:
                running = list(self._running)
                for job_id in running:
                    self._flags[job_id] = "shutdown"
            # A job gets a few seconds to reach its next progress step and be re-queued. A worker
            # busy with a call (a model load at the warm start) has nothing to put back: no wait.
            self._join(5.0 if running else 0.2)  # idle workers were woken and exit at once
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            if self._running:
                log.warning("abandoning workers %s: their jobs stay 'running' and are recovered at the next start",
                            alive)
            else:
                log.info("leaving workers %s in a call (a model load at the warm start): no job is lost", alive)
            return  # their threads still use the database
        self._progress_lane.close()
        if self._owns_db:
            self._db.close()

    def __enter__(self) -> "JobQueue":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _publish(self, event: ev.Event) -> None:
        try:
            self.bus.publish(event)
        except Exception:
            # The row is the truth; a lost event must not lose the job.
            log.exception("could not publish %s for job %s", event.type, event.job_id)

    def _notify_done(self) -> None:
        with self._done:
            self._done.notify_all()
