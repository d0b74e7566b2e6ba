"""The frontend's saved-assets library (``/api/assets``): its items as it sends them.

Each item is the frontend's JSON (``id``, ``type``, ``content``, ``prompt``,
``createdAt``) kept verbatim in the shared SQLite file, so a Colab restart
loses none. Items are bounded in size and number.
"""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from enfoads.db import DB_FILENAME, Database
from enfoads.errors import InvalidInput, PayloadTooLarge

_SCHEMA = """
CREATE TABLE IF NOT EXISTS library (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    data TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    created REAL NOT NULL
)
"""
ALLOWED_FIELDS = {"id", "type", "content", "prompt", "createdAt", "name", "metadata"}


class Library:
    def __init__(self, data_dir: Path, *, max_items: int = 5000, max_item_bytes: int = 30_000_000):
        self._db = Database(Path(data_dir) / DB_FILENAME)
        self.max_items = max_items
        self.max_item_bytes = max_item_bytes
        with self._db.write() as conn:
            conn.execute(_SCHEMA)

    def add(self, item: dict) -> dict:
        if not isinstance(item, dict):
            raise InvalidInput("an asset must be a JSON object")
        unknown = set(item) - ALLOWED_FIELDS
        if unknown:
            raise InvalidInput(f"unknown asset fields: {', '.join(sorted(unknown))}", fields={k: "unknown field" for k in unknown})
        for name in ("type", "content"):
            if not isinstance(item.get(name), str) or not item[name]:
                raise InvalidInput.field(name, "required: a non-empty string")
        if "id" in item and (not isinstance(item["id"], (str, int)) or len(str(item["id"])) > 128):
            raise InvalidInput.field("id", "a string of at most 128 characters")
        for name in ("prompt", "createdAt", "name"):
            if name in item and not isinstance(item[name], str):
                raise InvalidInput.field(name, "must be a string")
        stored = {**item, "id": str(item.get("id") or uuid.uuid4().hex)}
        stored.setdefault("createdAt", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        try:
            # Strict JSON: a NaN or Infinity stored here would make every later
            # GET /api/assets unreadable to a browser's JSON.parse.
            data = json.dumps(stored, allow_nan=False)
        except ValueError:
            raise InvalidInput("an asset must not hold NaN or Infinity (not JSON numbers)") from None
        if len(data) > self.max_item_bytes:
            raise PayloadTooLarge(f"an asset may hold at most {self.max_item_bytes // 1_000_000} MB")
        with self._db.write() as conn:
            (count,) = conn.execute("SELECT COUNT(*) FROM library").fetchone()
            if count >= self.max_items:
                raise PayloadTooLarge(f"the library is full ({self.max_items} items)")
            conn.execute(
                "INSERT INTO library (id, data, bytes, created) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET data = excluded.data, bytes = excluded.bytes",
                (stored["id"], data, len(data), time.time()),
            )
        return stored

    def list(self, *, limit: int = 200, offset: int = 0) -> list[dict]:
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT data FROM library ORDER BY seq DESC LIMIT ? OFFSET ?", (limit, offset)
            ).fetchall()
        return [json.loads(r["data"]) for r in rows]

    def count(self) -> int:
        with self._db.read() as conn:
            return conn.execute("SELECT COUNT(*) FROM library").fetchone()[0]

    def close(self) -> None:
        self._db.close()
