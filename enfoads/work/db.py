"""The SQLite file that jobs, assets and events share.

WAL with a fallback to a DELETE journal (Google Drive mounts may refuse WAL's
shared memory), pooled connections usable from any thread, one writer at a time.
"""
from __future__ import annotations

import logging
import queue as _queue
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

DB_FILENAME = "enfoads.sqlite3"

class Database:
    """One SQLite file used from many threads.

    Connections are pooled (a thread borrows one per operation) instead of
    kept per thread, so Flask's short-lived request threads leak none. Writes
    are serialised by a process-wide lock and run in ``BEGIN IMMEDIATE``
    transactions, so they never deadlock on a lock upgrade; reads take no lock
    and, in WAL mode, never wait for a writer. ``busy_timeout`` covers another
    process (or a slow Google Drive mount) holding the file.

    WAL needs shared memory next to the file; where the filesystem refuses it
    (some network/FUSE mounts) the journal falls back to DELETE, where reads
    may wait up to ``busy_timeout`` for a writer. ``journal_mode`` says which.
    """

    def __init__(self, path: Path, *, wal: bool = True, busy_timeout_ms: int = 10_000, keep_idle: int = 8):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.busy_timeout_ms = busy_timeout_ms
        self._idle: _queue.LifoQueue[sqlite3.Connection] = _queue.LifoQueue()
        self._keep_idle = keep_idle
        self._write_lock = threading.RLock()
        self._closed = False
        self._sync: str | None = None
        conn = self._connect()
        self.journal_mode = self._set_journal_mode(conn, wal)
        self._sync = "NORMAL" if self.journal_mode == "wal" else "FULL"
        # NORMAL in WAL survives a killed process (SIGKILL, Colab restart);
        # only an OS crash may lose the last commits.
        conn.execute(f"PRAGMA synchronous={self._sync}")
        self._idle.put(conn)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
        if self._sync is not None:
            conn.execute(f"PRAGMA synchronous={self._sync}")
        return conn

    @staticmethod
    def _set_journal_mode(conn: sqlite3.Connection, wal: bool) -> str:
        if wal:
            try:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() == "wal":
                    return "wal"
                log.warning("SQLite WAL unavailable for this file (got %r); using DELETE journal", mode)
            except sqlite3.OperationalError as exc:
                log.warning("SQLite WAL unavailable (%s); using DELETE journal", exc)
        return str(conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0]).lower()

    @contextmanager
    def _borrow(self) -> Iterator[sqlite3.Connection]:
        if self._closed:
            raise sqlite3.ProgrammingError(f"database {self.path} is closed")
        try:
            conn = self._idle.get_nowait()
        except _queue.Empty:
            conn = self._connect()
        try:
            yield conn
        finally:
            if self._closed or self._idle.qsize() >= self._keep_idle:
                conn.close()
            else:
                self._idle.put(conn)

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A connection for reads (autocommit: each statement sees the latest commit)."""
        with self._borrow() as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A connection inside one write transaction; committed on exit, rolled back on error."""
        with self._write_lock, self._borrow() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close idle connections; borrowed ones close when given back."""
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except _queue.Empty:
                break


def resolve_db_path(path: str | Path) -> Path:
    """A database file (``*.sqlite3``, ``*.sqlite``, ``*.db``) or a data dir, meaning its shared file."""
    p = Path(path).expanduser()
    return p if p.suffix in {".sqlite3", ".sqlite", ".db"} else p / DB_FILENAME
