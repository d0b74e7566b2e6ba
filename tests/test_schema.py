"""One versioned schema for the data dir's SQLite file; a data dir of the 0.1 release upgrades in place."""
from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest

from enfoads.work.db import DB_FILENAME, Database
from enfoads.engine import build_engine
from enfoads.work.schema import SCHEMA_VERSION, SchemaTooNewError, migrate, open_database
from enfoads.settings import Settings

OLD_DATA_DIR = Path(__file__).parent / "data" / "datadir-0.1"  # made by tests/data/make_datadir_0_1.py
# What that script printed when it made the data dir.
OLD = {"job": "ebdf990844b448dc847c017012693f4f", "asset": "38152df579184274a14ba4ca31abdf8a",
       "queued": "e9d454b61d214495b265526859fea511", "expires": 1796173111,
       "sig": "150b1d44fd3874dc08ba654aa1c664acc6a6e527926cb47f3eccae517a09071e"}


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA user_version").fetchone()[0]


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_a_new_data_dir_gets_every_table_at_the_current_version(tmp_path):
    db = open_database(tmp_path)
    db.close()
    assert user_version(tmp_path / DB_FILENAME) == SCHEMA_VERSION
    assert {"jobs", "events", "assets", "asset_links_kept", "image_cache", "library_items",
            "idempotency_keys"} <= tables(tmp_path / DB_FILENAME)


def test_a_file_from_a_newer_release_is_refused_not_misread(tmp_path):
    with sqlite3.connect(tmp_path / DB_FILENAME) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaTooNewError, match="newer than this enfoads knows.*upgrade enfoads"):
        open_database(tmp_path)
    with pytest.raises(SchemaTooNewError):
        build_engine(Settings(profile="tiny", data_dir=tmp_path, auto_download="off", warm="off"), start=False)


def test_a_failed_job_of_0_1_gets_the_status_its_error_name_meant(tmp_path):
    db = Database(tmp_path / DB_FILENAME)
    try:
        with db.write() as conn:
            from enfoads.work.schema import MIGRATIONS

            MIGRATIONS[0][2](conn)  # a 0.1 file: version 0, 0.1's tables
            for i, name in enumerate(("InvalidInput", "ModelMemoryError", "RuntimeError")):
                conn.execute("INSERT INTO jobs(id, kind, device, params, state, created_at, error_type, error_message)"
                             " VALUES (?, 'k', 'gpu', '{}', 'failed', 0, ?, 'm')", (f"j{i}", name))
        migrate(db)
        with db.read() as conn:
            rows = conn.execute("SELECT id, error_status, error_code FROM jobs ORDER BY id").fetchall()
        assert [tuple(r) for r in rows] == [("j0", 400, "invalid_input"), ("j1", 503, "out_of_memory"),
                                           ("j2", None, None)]
    finally:
        db.close()


def test_migrations_run_once(tmp_path):
    db = Database(tmp_path / DB_FILENAME)
    try:
        assert migrate(db) == 0
        assert migrate(db) == SCHEMA_VERSION  # nothing left to apply
    finally:
        db.close()


def test_the_engine_shares_one_database_and_closes_it(models_dir, tmp_path):
    engine = build_engine(Settings(profile="tiny", models_dir=models_dir, data_dir=tmp_path, auto_download="off",
                                   warm="off"), start=False)
    try:
        assert engine.assets.db is engine.db and engine.queue._db is engine.db and engine.library._db is engine.db
    finally:
        engine.close()
    with pytest.raises(sqlite3.ProgrammingError):
        with engine.db.read():
            pass


def test_a_data_dir_of_the_0_1_release_upgrades_in_place(models_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(OLD_DATA_DIR, data)
    assert user_version(data / DB_FILENAME) == 0
    settings = Settings(profile="tiny", models_dir=models_dir, data_dir=data, auto_download="off", warm="off",
                        api_key="fixture-key-0123456789")
    engine = build_engine(settings)
    try:
        assert user_version(data / DB_FILENAME) == SCHEMA_VERSION
        # The finished job, its image and its events are all still there.
        done = engine.jobs.get(OLD["job"])
        assert done.state == "succeeded" and done.result["image_asset_id"] == OLD["asset"]
        asset = engine.assets.get(OLD["asset"])
        assert hashlib.sha256(engine.assets.read_bytes(OLD["asset"])).hexdigest() == asset.sha256
        assert any(e.job_id == OLD["job"] for e in engine.bus.events_since(0))
        # The link the frontend's library kept still opens, past its expiry.
        engine.assets.verify(OLD["asset"], OLD["expires"], OLD["sig"])
        (item,) = engine.library.list("client-a")
        assert item["prompt"] == "a blue bottle"
        # The job that was still queued when 0.1 stopped runs now.
        queued = engine.jobs.wait(OLD["queued"], timeout=120)
        assert queued.state == "succeeded", queued.error
        # And the upgraded file takes new work.
        new = engine.submit_and_wait("image.generate", {"prompt": "a red bottle", "seed": 13}, timeout=120)
        assert new.state == "succeeded", new.error
        assert new.result["cached"] is False
    finally:
        engine.close()
    again = build_engine(settings, start=False)  # a second start applies nothing
    try:
        assert user_version(data / DB_FILENAME) == SCHEMA_VERSION
        assert len(again.jobs.list(limit=10)) == 3
    finally:
        again.close()
    assert user_version(OLD_DATA_DIR / DB_FILENAME) == 0  # the test copied the fixture; it stays 0.1's
