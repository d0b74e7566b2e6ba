"""Typed job events with sequence numbers, and the bus that carries them.

Workers publish events; the bus stamps each with the next sequence number
(``seq``, strictly increasing, never reused, also across restarts when the bus
has a database) and hands it to its subscribers. With no subscribers and no
database the bus does nothing but count: that is the default a ``JobQueue``
gets. Socket.IO is one subscriber, ``RecordingBus`` is the test double.

Catching up: a client that reconnects asks for ``events_since(last_seq_it_saw)``.
To miss nothing, subscribe first, then read ``events_since`` and drop any
event whose ``seq`` is not above the last one handled. Events are kept bounded
(the last ``keep`` of them); the current state of every job is always in the
job store, so a client that fell further behind reads job states instead.

Delivery: subscribers run synchronously in the publishing thread (a worker),
in ``seq`` order, after the event is persisted. They must be quick (Socket.IO's
``emit`` queues, which is fine). An exception in a subscriber is logged and
never reaches the worker.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, ClassVar

from enfoads.work.db import Database
from enfoads.work.schema import database

__all__ = [
    "Event",
    "JobCreated",
    "JobProgress",
    "JobSucceeded",
    "JobFailed",
    "JobCancelled",
    "ModelDownload",
    "EventBus",
    "RecordingBus",
    "event_from_dict",
]

log = logging.getLogger(__name__)



# --------------------------------------------------------------------------- events


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of all events. ``seq`` and ``ts`` are set by the bus on publish."""

    type: ClassVar[str] = "event"
    job_id: str
    kind: str = ""  # the job's kind, e.g. "image.generate"
    seq: int = 0
    ts: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with a ``type`` key (what Socket.IO and the database carry)."""
        return {"type": self.type, **asdict(self)}


@dataclass(frozen=True, kw_only=True)
class JobCreated(Event):
    type: ClassVar[str] = "job.created"
    device: str = "gpu"


@dataclass(frozen=True, kw_only=True)
class JobProgress(Event):
    """Progress of a running job; also sent when it starts and when it is re-queued."""

    type: ClassVar[str] = "job.progress"
    progress: int = 0
    stage: str = ""
    preview_asset_id: str | None = None
    state: str = "running"  # "queued" when a restart put the job back in the queue


@dataclass(frozen=True, kw_only=True)
class JobSucceeded(Event):
    type: ClassVar[str] = "job.succeeded"
    result: dict = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class JobFailed(Event):
    type: ClassVar[str] = "job.failed"
    error_type: str = ""
    error_message: str = ""


@dataclass(frozen=True, kw_only=True)
class JobCancelled(Event):
    type: ClassVar[str] = "job.cancelled"


@dataclass(frozen=True, kw_only=True)
class ModelDownload(Event):
    """A model the server downloads by itself at start (``enfoads.models.installer``); not a job.

    Sent when its state changes and while it downloads (at most about once a
    second, and at each whole percent). ``job_id`` is empty: no job owns it.
    States: ``queued``, ``downloading``, ``installed``, ``failed``, and
    ``offline`` / ``off`` where nothing is downloaded (``HF_HUB_OFFLINE=1``,
    ``ENFOADS_AUTO_DOWNLOAD=off``); ``message`` then names the command to run.
    """

    type: ClassVar[str] = "model.download"
    job_id: str = ""
    model_id: str = ""
    state: str = "queued"
    bytes_done: int = 0
    bytes_total: int = 0
    percent: float = 0.0
    message: str = ""


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls for cls in (JobCreated, JobProgress, JobSucceeded, JobFailed, JobCancelled, ModelDownload)
}


def event_from_dict(data: dict[str, Any]) -> Event:
    """Rebuild an event from ``Event.to_dict()`` output; unknown keys are ignored."""
    cls = EVENT_TYPES[data["type"]]
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


# --------------------------------------------------------------------------- buses



class EventBus:
    """Stamps events with ``seq``, keeps the last ``keep`` of them and calls subscribers.

    Args:
        db_path: a SQLite file (or a data directory, meaning its shared
            ``enfoads.sqlite3``) where events are kept so ``events_since``
            works after a restart and ``seq`` continues where it stopped.
            ``None`` keeps them in memory only.
        keep: how many recent events to keep (older ones are pruned).
        clock: the time source for ``Event.ts``.
    """

    def __init__(
        self,
        db_path: "str | Path | Database | None" = None,
        *,
        keep: int = 5000,
        wal: bool = True,
        clock: Callable[[], float] = time.time,
    ):
        self.keep = max(1, int(keep))
        self._clock = clock
        self._lock = threading.RLock()  # seq, persist and delivery in one order
        self._subscribers: list[Callable[[Event], Any]] = []
        self._memory: list[Event] = []  # only without a database
        self._db: Database | None = None
        self._owns_db = False
        self._last_seq = 0
        if db_path is not None:
            self._db, self._owns_db = database(db_path, wal=wal)
            with self._db.read() as conn:
                row = conn.execute("SELECT MAX(seq) FROM events").fetchone()
            self._last_seq = int(row[0] or 0)

    @property
    def last_seq(self) -> int:
        """The ``seq`` of the latest event published (0 before the first)."""
        return self._last_seq

    def subscribe(self, callback: Callable[[Event], Any]) -> Callable[[], None]:
        """Call ``callback(event)`` for every event from now on.

        Returns:
            A function that unsubscribes (calling it twice is harmless).
        """
        with self._lock:
            self._subscribers = [*self._subscribers, callback]

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = [s for s in self._subscribers if s is not callback]

        return unsubscribe

    def publish(self, event: Event) -> Event:
        """Stamp ``event`` with the next ``seq``, keep it, deliver it; returns the stamped event."""
        with self._lock:
            seq = self._last_seq + 1
            event = replace(event, seq=seq, ts=self._clock())
            self._store(event)
            self._last_seq = seq
            for callback in self._subscribers:
                try:
                    callback(event)
                except Exception:
                    # A broken listener (a dropped socket) must never stop a job.
                    log.exception("event subscriber %r failed on %s seq=%d", callback, event.type, seq)
            return event

    def _store(self, event: Event) -> None:
        if self._db is None:
            self._memory.append(event)
            if len(self._memory) > self.keep + 256:
                del self._memory[: len(self._memory) - self.keep]
            return
        data = json.dumps(event.to_dict(), separators=(",", ":"), default=str)
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO events(seq, type, job_id, ts, data) VALUES (?, ?, ?, ?, ?)",
                (event.seq, event.type, event.job_id, event.ts, data),
            )
            # Prune in batches, not on every write: fewer writes on a Drive mount.
            if event.seq % 256 == 0:
                conn.execute("DELETE FROM events WHERE seq <= ?", (event.seq - self.keep,))

    def events_since(self, seq: int, *, job_id: str | None = None, limit: int | None = None) -> list[Event]:
        """Kept events with ``seq`` greater than ``seq``, oldest first.

        Args:
            seq: the last sequence number the caller has seen (0: everything kept).
            job_id: only this job's events.
            limit: at most this many.
        """
        if self._db is None:
            with self._lock:
                out = [e for e in self._memory if e.seq > seq and (job_id is None or e.job_id == job_id)]
            return out[:limit] if limit is not None else out
        sql = "SELECT data FROM events WHERE seq > ?"
        args: list[Any] = [int(seq)]
        if job_id is not None:
            sql += " AND job_id = ?"
            args.append(job_id)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        with self._db.read() as conn:
            rows = conn.execute(sql, args).fetchall()
        return [event_from_dict(json.loads(r[0])) for r in rows]

    def close(self) -> None:
        if self._db is not None and self._owns_db:
            self._db.close()


class RecordingBus(EventBus):
    """An ``EventBus`` that also records every event it publishes, for tests."""

    def __init__(self, db_path: str | Path | None = None, **kwargs):
        super().__init__(db_path, **kwargs)
        self.events: list[Event] = []
        self._changed = threading.Condition(self._lock)

    def publish(self, event: Event) -> Event:
        with self._lock:
            event = super().publish(event)
            self.events.append(event)
            self._changed.notify_all()
            return event

    def of_type(self, cls: type[Event], job_id: str | None = None) -> list[Event]:
        with self._lock:
            return [e for e in self.events if isinstance(e, cls) and (job_id is None or e.job_id == job_id)]

    def for_job(self, job_id: str) -> list[Event]:
        with self._lock:
            return [e for e in self.events if e.job_id == job_id]

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float = 5.0) -> Event:
        """Block until an event matching ``predicate`` was published; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for e in self.events:
                    if predicate(e):
                        return e
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no matching event was published")
                self._changed.wait(left)
