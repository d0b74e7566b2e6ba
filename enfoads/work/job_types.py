"""The job queue's vocabulary: devices, states, errors, the ``Job`` snapshot and its row mapping.

Kept apart from ``enfoads.work.jobs`` so callers that only name a state,
catch a queue error or read a ``Job`` (the web layer, the services, the job
backend) do not import the queue, and so the workers can share the row
mapping with it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from enfoads.errors import EnfoadsError

__all__ = [
    "GPU",
    "CPU",
    "STATES",
    "Job",
    "JobError",
    "JobCancelled",
    "JobInterrupted",
    "JobNotFound",
    "QueueFullError",
    "UnknownJobKind",
]

GPU = "gpu"
CPU = "cpu"
DEVICES = (GPU, CPU)

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
FINISHED = frozenset({SUCCEEDED, FAILED, CANCELLED})

REQUEUED_AFTER_RESTART = "re-queued after a restart"
INTERRUPTED_BY_RESTART = "interrupted by a restart"


class JobError(EnfoadsError):
    """Base class for job queue errors."""


class QueueFullError(JobError):
    """``max_queued`` jobs are already waiting. The web layer maps this to 429.

    ``retry_after_s``: about when a place frees up (the mean time a job of that
    device has been taking), for the ``Retry-After`` header.
    """

    status, code = 429, "queue_full"

    def __init__(self, message: str = "the job queue is full; retry later", *, retry_after_s: int = 30):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class JobNotFound(JobError, KeyError):
    status, code = 404, "job_not_found"


class UnknownJobKind(JobError, KeyError):
    status, code = 400, "unknown_job_kind"


class JobCancelled(Exception):
    """Raised by ``ctx.progress`` inside a handler whose job was cancelled.

    Handlers may catch it to clean up but should re-raise it.
    """


class JobInterrupted(JobCancelled):
    """The work stopped for a reason outside the job; it goes back in the queue while it has attempts left.

    ``cause`` completes "re-queued after a ..." and "interrupted by a ...":
    "shutdown" (``close`` past its grace period), or what a backend lost (a
    remote replica that died or went silent).

    ``charged=False`` gives the attempt back: the stop was nobody's fault but the
    infrastructure's (a whole cluster away), so it must not use up the attempts that
    stop a job which keeps killing its replica.
    """

    def __init__(self, message: str = "interrupted", *, cause: str = "shutdown", charged: bool = True):
        super().__init__(message)
        self.cause = cause
        self.charged = charged


class _Interrupted(JobInterrupted):
    """Raised by ``ctx.progress`` when ``close`` stops a job after its grace period."""


@dataclass(frozen=True)
class Job:
    """A snapshot of one job's row."""

    id: str
    kind: str
    device: str
    state: str
    params: dict
    progress: int
    stage: str
    preview_asset_id: str | None
    result: dict | None
    error: dict | None  # {"type": ..., "message": ...}
    created_at: float
    started_at: float | None
    finished_at: float | None
    attempts: int
    cancel_requested: bool
    seq: int

    @property
    def done(self) -> bool:
        """True once the job is succeeded, failed or cancelled."""
        return self.state in FINISHED

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d.pop("seq")
        return d


def _job(row) -> Job:
    error = None
    if row["error_type"] is not None or row["error_message"] is not None:
        error = {"type": row["error_type"], "message": row["error_message"]}
        if row["error_status"] is not None:  # how the web answers it (none for an interruption)
            error.update(status=row["error_status"], code=row["error_code"])
    return Job(
        id=row["id"],
        kind=row["kind"],
        device=row["device"],
        state=row["state"],
        params=json.loads(row["params"]),
        progress=row["progress"],
        stage=row["stage"],
        preview_asset_id=row["preview_asset_id"],
        result=json.loads(row["result"]) if row["result"] is not None else None,
        error=error,
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        attempts=row["attempts"],
        cancel_requested=bool(row["cancel_requested"]),
        seq=row["seq"],
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)
