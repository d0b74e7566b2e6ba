"""The one schema of the SQLite file a data dir holds, as ordered migrations.

Jobs, events, assets (and their kept links), the image cache and the
frontend's library share ``<data_dir>/enfoads.sqlite3``. Its version is
SQLite's ``PRAGMA user_version``: 0 is the 0.1 release, which had no version
(its tables are exactly migration 1's, created with ``IF NOT EXISTS``).
``open_database`` brings a file up to ``SCHEMA_VERSION`` in one write
transaction, so a data dir on Google Drive written by an older release is
upgraded in place the first time a newer one opens it; a file from a newer
release is refused with a clear error instead of being misread.

To change the schema, append a migration; never edit a released one.
"""
from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Callable

from enfoads.work.db import Database, resolve_db_path

log = logging.getLogger(__name__)

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SchemaTooNewError", "migrate", "open_database", "database"]

JOBS = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    device TEXT NOT NULL,
    params TEXT NOT NULL,
    state TEXT NOT NULL,
    progress INTEGER NOT NULL DEFAULT 0,
    stage TEXT NOT NULL DEFAULT '',
    preview_asset_id TEXT,
    result TEXT,
    error_type TEXT,
    error_message TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, device, seq);
"""

EVENTS = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    job_id TEXT NOT NULL,
    ts REAL NOT NULL,
    data TEXT NOT NULL
);
"""

ASSETS = """
CREATE TABLE IF NOT EXISTS assets (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    mime TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    width INTEGER,
    height INTEGER,
    duration REAL,
    params TEXT NOT NULL,
    job_id TEXT,
    created REAL NOT NULL,
    file TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS assets_created ON assets(created);
CREATE INDEX IF NOT EXISTS assets_job ON assets(job_id);
CREATE TABLE IF NOT EXISTS asset_links_kept (
    asset_id TEXT NOT NULL,
    expires INTEGER NOT NULL,
    since REAL NOT NULL,
    PRIMARY KEY (asset_id, expires)
);
"""

IMAGE_CACHE = """
CREATE TABLE IF NOT EXISTS image_cache (
    key TEXT PRIMARY KEY,
    result TEXT NOT NULL,
    asset_ids TEXT NOT NULL,
    created REAL NOT NULL,
    hits INTEGER NOT NULL DEFAULT 0
);
"""

LIBRARY = """
CREATE TABLE IF NOT EXISTS library_items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    client TEXT NOT NULL,
    item_key TEXT NOT NULL,
    data TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    media_asset_id TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    UNIQUE (client, item_key)
);
CREATE INDEX IF NOT EXISTS library_items_client ON library_items(client, seq);
CREATE INDEX IF NOT EXISTS library_items_media ON library_items(media_asset_id)
"""

#: The client that items saved before the library was kept per client belong to.
LEGACY_CLIENT = "legacy"


def _script(conn: sqlite3.Connection, sql: str) -> None:
    for stmt in filter(str.strip, sql.split(";")):
        conn.execute(stmt)


def _v1_tables(conn: sqlite3.Connection) -> None:
    """0.1's tables; a pre-release library table (one library for everyone) moves to the legacy client."""
    for sql in (JOBS, EVENTS, ASSETS, IMAGE_CACHE, LIBRARY):
        _script(conn, sql)
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'library'").fetchone() is None:
        return
    import json

    for row in conn.execute("SELECT id, data, bytes, created FROM library ORDER BY seq").fetchall():
        conn.execute(
            "INSERT OR IGNORE INTO library_items (client, item_key, data, bytes, created, updated) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (LEGACY_CLIENT, json.dumps(row["id"]), row["data"], row["bytes"], row["created"], row["created"]),
        )
    conn.execute("DROP TABLE library")


#: The status and code 0.1 answered a failed job with, by its error's class name (it stored only the name).
_V01_ERRORS = {
    "CapacityError": (503, "no_capacity"), "FFmpegError": (500, "ffmpeg_failed"),
    "InvalidInput": (400, "invalid_input"), "ModelDownloadingError": (503, "model_downloading"),
    "ModelMemoryError": (503, "out_of_memory"), "ModelNotInstalled": (503, "model_not_installed"),
    "ModelNotInstalledError": (503, "model_not_installed"), "NotFound": (404, "not_found"),
    "NotImplementedInVersion": (501, "not_implemented"), "PayloadTooLarge": (413, "payload_too_large"),
    "QueueFullError": (429, "queue_full"), "TTSError": (500, "tts_failed"),
    "UnprocessableInput": (422, "unprocessable"), "UnsupportedMediaType": (415, "unsupported_media_type"),
    "VideoUnavailable": (503, "video_unavailable"),
}


def _v2_job_error_status(conn: sqlite3.Connection) -> None:
    """A failed job keeps the HTTP status and code of its error; 0.1's rows get them from the name."""
    conn.execute("ALTER TABLE jobs ADD COLUMN error_status INTEGER")
    conn.execute("ALTER TABLE jobs ADD COLUMN error_code TEXT")
    for name, (status, code) in _V01_ERRORS.items():
        conn.execute("UPDATE jobs SET error_status = ?, error_code = ? WHERE error_type = ?", (status, code, name))


IDEMPOTENCY_KEYS = """
CREATE TABLE idempotency_keys (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    job_id TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX idempotency_keys_created ON idempotency_keys(created)
"""


def _v3_idempotency_keys(conn: sqlite3.Connection) -> None:
    """The job each ``Idempotency-Key`` a client sent made (enfoads.work.idempotency)."""
    _script(conn, IDEMPOTENCY_KEYS)


#: (version, what it does, the change). Applied in order, each at most once per file.
MIGRATIONS: tuple[tuple[int, str, Callable[[sqlite3.Connection], None]], ...] = (
    (1, "jobs, events, assets, kept links, image cache, library (the 0.1 schema)", _v1_tables),
    (2, "a failed job's HTTP status and error code", _v2_job_error_status),
    (3, "the job each idempotency key made", _v3_idempotency_keys),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


class SchemaTooNewError(RuntimeError):
    """The file was written by a newer release; this one would misread it."""


def migrate(db: Database) -> int:
    """Bring ``db`` up to ``SCHEMA_VERSION``; returns the version it was at."""
    with db.write() as conn:
        found = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if found > SCHEMA_VERSION:
            raise SchemaTooNewError(
                f"{db.path.name} has schema version {found}, newer than this enfoads knows ({SCHEMA_VERSION}): "
                f"upgrade enfoads, or use another ENFOADS_DATA_DIR")
        for version, what, change in MIGRATIONS:
            if version > found:
                change(conn)
                conn.execute(f"PRAGMA user_version = {int(version)}")
                log.info("database %s: applied migration %d (%s)", db.path, version, what)
    return found


def open_database(path: str | Path, *, wal: bool = True) -> Database:
    """The data dir's (or a ``*.sqlite3`` file's) database, migrated to the current schema."""
    db = Database(resolve_db_path(path), wal=wal)
    try:
        migrate(db)
    except BaseException:
        db.close()
        raise
    return db


def database(where: "str | Path | Database", *, wal: bool = True) -> tuple[Database, bool]:
    """``(db, owned)``: a shared ``Database`` as given (not owned), or one opened for a path (owned: close it)."""
    if isinstance(where, Database):
        return where, False
    return open_database(where, wal=wal), True
