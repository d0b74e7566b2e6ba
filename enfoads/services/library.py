"""The frontend's saved-assets library (``/api/assets``): its items as it sends them, kept per client.

The frontend saves every result in its browser's IndexedDB and posts it at
once: ``{id, type, content, prompt, createdAt}``, where ``id`` is the
IndexedDB key (an integer: 1, 2, 3... in every browser) and ``createdAt`` is
``Date.now()`` (a number, milliseconds). Two browsers therefore send the same
ids, so items are kept per *client* (see :func:`client_identity`) and keyed by
``(client, id)``: posting an id again replaces that client's item (the
frontend's re-sync is idempotent) and never touches another client's.

Items are stored verbatim as JSON in the shared SQLite file (table
``library_items``), so ``GET /api/assets`` answers them in exactly the shape
they were sent (integer ids stay integers, numeric ``createdAt`` stays a
number) and a Colab restart loses none. Items are bounded in size, number and
total bytes per client.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from enfoads.work.db import DB_FILENAME, Database
from enfoads.work.schema import LEGACY_CLIENT, database
from enfoads.errors import InvalidInput, PayloadTooLarge

__all__ = ["LEGACY_CLIENT", "Library", "client_identity", "validate_item", "media_link", "ALLOWED_FIELDS", "ASSET_TYPES"]


ALLOWED_FIELDS = ("id", "type", "content", "prompt", "createdAt", "name", "metadata")
#: What the product makes; the frontend itself saves ``image`` and ``video``.
ASSET_TYPES = ("image", "video", "audio")
MAX_ID_CHARS = 128
#: JavaScript's largest exact integer: an IndexedDB key or a Date.now() above it is not one a browser made.
MAX_SAFE_INTEGER = 2**53 - 1
MAX_PROMPT_CHARS = 10_000
MAX_NAME_CHARS = 500
MAX_CREATED_AT_CHARS = 64

# What `content` may be, by type: a data URI of that type (images reach the
# frontend as data URIs) or an http(s) URL (a job's media URL).
_DATA_URI = re.compile(r"^data:(?P<mime>[a-z]+/[a-z0-9.+-]+)(;[a-z0-9=.+-]+)*;base64,[A-Za-z0-9+/=\s]*$", re.I)
_MEDIA_PATH = re.compile(r"/media/(?P<id>[A-Za-z0-9_-]{1,64})$")


def client_identity(bearer: str | None, *, is_api_key: bool, remote_addr: str | None, user_agent: str | None) -> str:
    """Who a library request comes from: the partition its items live in.

    What the unchanged frontend sends on every call (read from its
    ``src/lib/api-utils.ts``): ``Content-Type``, ``ngrok-skip-browser-warning``
    and ``Authorization: Bearer <token>``, the token it got from
    ``POST /auth/login`` and keeps in its own ``localStorage``. No client-id
    header, no cookie. So:

    - **The bearer token** identifies a browser: each browser logs in by
      itself and keeps its token; under the secret URL prefix (the URL the
      frontend is given) a request is never refused, so the frontend never
      logs in again and keeps sending the same token, even past its expiry:
      the identity is stable for as long as that browser keeps its storage.
      Only a hash of it is stored.
    - **The API key itself** (``Bearer <key>`` or ``X-API-Key``: scripts, the
      operator) is one client, ``key``.
    - **Neither** (the secret URL alone, e.g. curl): the remote address and
      User-Agent. This is only a fallback: behind ngrok or cloudflared every
      request comes from the tunnel's agent on 127.0.0.1 (the server does not
      trust ``X-Forwarded-For``, which anyone can set and which colleagues
      behind one NAT share), and the User-Agent is the same for every copy of
      one browser version, so neither can tell two browsers apart on its own.

    The identity only partitions the library among callers that already
    proved the key or hold the secret URL; it is not a credential.
    """
    if is_api_key:
        return "key"
    if bearer:
        return "token:" + hashlib.sha256(bearer.encode("utf-8", "replace")).hexdigest()[:32]
    seen = f"{remote_addr or ''}\0{user_agent or ''}"
    return "addr:" + hashlib.sha256(seen.encode("utf-8", "replace")).hexdigest()[:32]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (_is_int(value) or isinstance(value, float)) and not isinstance(value, bool)


def validate_item(item) -> dict:
    """The item to store, or ``InvalidInput`` naming the offending field.

    Fields (only these): ``id`` (an integer 0..2**53-1, as IndexedDB makes
    them, or a string of 1..128 characters; a string id is made when absent),
    ``type`` (``image``, ``video`` or ``audio``), ``content`` (a data URI of
    that type or an http(s) URL), ``prompt`` (string), ``createdAt`` (a
    number, ``Date.now()`` milliseconds, or a string; now in milliseconds when
    absent), ``name`` (string), ``metadata`` (object).
    """
    if not isinstance(item, dict):
        raise InvalidInput("an asset must be a JSON object")
    unknown = sorted(set(item) - set(ALLOWED_FIELDS))
    if unknown:
        raise InvalidInput(
            f"unknown asset fields: {', '.join(unknown)} (known: {', '.join(ALLOWED_FIELDS)})",
            fields={k: "unknown field" for k in unknown},
        )
    if "id" in item:
        ident = item["id"]
        if _is_int(ident):
            if not 0 <= ident <= MAX_SAFE_INTEGER:
                raise InvalidInput.field("id", f"an integer id must be between 0 and {MAX_SAFE_INTEGER}")
        elif isinstance(ident, str):
            if not 1 <= len(ident) <= MAX_ID_CHARS:
                raise InvalidInput.field("id", f"a string id must have 1 to {MAX_ID_CHARS} characters")
        else:
            raise InvalidInput.field("id", f"must be an integer (the browser's IndexedDB key) or a string of at "
                                           f"most {MAX_ID_CHARS} characters")
    kind = item.get("type")
    if kind not in ASSET_TYPES:
        raise InvalidInput.field("type", f"required: one of {', '.join(ASSET_TYPES)}")
    content = item.get("content")
    if not isinstance(content, str) or not content:
        raise InvalidInput.field("content", "required: a non-empty string (a data URI or an http(s) URL)")
    _check_content(kind, content)
    for name, limit in (("prompt", MAX_PROMPT_CHARS), ("name", MAX_NAME_CHARS)):
        if name in item:
            if not isinstance(item[name], str):
                raise InvalidInput.field(name, "must be a string")
            if len(item[name]) > limit:
                raise InvalidInput.field(name, f"at most {limit} characters")
    if "createdAt" in item:
        created = item["createdAt"]
        if _is_number(created):
            if not (math.isfinite(created) and 0 <= created <= MAX_SAFE_INTEGER):
                raise InvalidInput.field("createdAt", "a time in milliseconds since 1970 (Date.now()), "
                                                      f"between 0 and {MAX_SAFE_INTEGER}")
        elif isinstance(created, str):
            if not 1 <= len(created) <= MAX_CREATED_AT_CHARS:
                raise InvalidInput.field("createdAt", f"a string time must have 1 to {MAX_CREATED_AT_CHARS} "
                                                      "characters")
        else:
            raise InvalidInput.field("createdAt", "must be a number (Date.now(), milliseconds) or a string")
    if "metadata" in item and not isinstance(item["metadata"], dict):
        raise InvalidInput.field("metadata", "must be a JSON object")
    stored = dict(item)
    if "id" not in stored:
        stored["id"] = uuid.uuid4().hex
    if "createdAt" not in stored:
        stored["createdAt"] = int(time.time() * 1000)
    return stored


def _check_content(kind: str, content: str) -> None:
    if content.startswith("data:"):
        # Only the header is checked (a regex over megabytes of base64 is slow); the header names the type.
        header = content[: content.find(",") + 1] if "," in content else content
        match = _DATA_URI.match(header)
        if match is None:
            raise InvalidInput.field("content", "a data URI must look like data:<type>/<subtype>;base64,<data>")
        if match.group("mime").split("/", 1)[0].lower() != kind:
            article = "an" if kind[0] in "aeiou" else "a"
            raise InvalidInput.field("content", f"a data URI of {match.group('mime')} is not {article} {kind}")
        return
    parts = urlsplit(content) if len(content) <= 8192 else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput.field("content", "must be a data URI or an http(s) URL of at most 8192 characters")


def media_link(content) -> tuple[str, str, str] | None:
    """``(asset id, exp, sig)`` when ``content`` is one of this server's signed media URLs, else None.

    Only the shape is read here; whether the signature is this server's is
    the asset store's to say.
    """
    if not isinstance(content, str) or not content.startswith(("http://", "https://")) or len(content) > 8192:
        return None
    parts = urlsplit(content)
    match = _MEDIA_PATH.search(parts.path)
    if match is None:
        return None
    query = parse_qs(parts.query)
    exp, sig = query.get("exp", [""])[0], query.get("sig", [""])[0]
    if not exp or not sig:
        return None
    return match.group("id"), exp, sig


class Library:
    """The saved items of each client, newest first.

    Args:
        data_dir: the data directory (its shared ``enfoads.sqlite3``), or that file's open ``Database``.
        max_items: items one client may keep.
        max_item_bytes: the largest item, as JSON.
        max_client_bytes: what all the items of one client may take, as JSON.
    """

    def __init__(self, data_dir: "Path | Database", *, max_items: int = 5000, max_item_bytes: int = 30_000_000,
                 max_client_bytes: int = 2_000_000_000):
        where = data_dir if isinstance(data_dir, Database) else Path(data_dir) / DB_FILENAME
        self._db, self._owns_db = database(where)
        self.max_items = max_items
        self.max_item_bytes = max_item_bytes
        self.max_client_bytes = max_client_bytes

    def add(self, client: str, item, *, media_asset_id: str | None = None) -> dict:
        """Save (or replace) one item of ``client``; the stored item, as it will be listed.

        Args:
            client: from :func:`client_identity`.
            item: the frontend's JSON object (checked by :func:`validate_item`).
            media_asset_id: the asset of this server the item's ``content`` links to, if any.
        """
        stored = validate_item(item)
        try:
            # Strict JSON: a NaN or Infinity stored here would make every later
            # GET /api/assets unreadable to a browser's JSON.parse.
            data = json.dumps(stored, allow_nan=False)
        except ValueError:
            raise InvalidInput("an asset must not hold NaN or Infinity (not JSON numbers)") from None
        size = len(data)
        if size > self.max_item_bytes:
            raise PayloadTooLarge(f"an asset may hold at most {self.max_item_bytes / 1_000_000:g} MB")
        # json.dumps of the id keeps 1 and "1" apart.
        key = json.dumps(stored["id"])
        now = time.time()
        with self._db.write() as conn:
            existing = conn.execute("SELECT bytes FROM library_items WHERE client = ? AND item_key = ?",
                                    (client, key)).fetchone()
            count, total = conn.execute("SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM library_items "
                                        "WHERE client = ?", (client,)).fetchone()
            if existing is None and count >= self.max_items:
                raise PayloadTooLarge(f"this library is full ({self.max_items} items)")
            if total - (existing["bytes"] if existing else 0) + size > self.max_client_bytes:
                raise PayloadTooLarge(f"this library is full ({self.max_client_bytes / 1e9:g} GB)")
            conn.execute(
                "INSERT INTO library_items (client, item_key, data, bytes, media_asset_id, created, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(client, item_key) DO UPDATE SET data = excluded.data, "
                "bytes = excluded.bytes, media_asset_id = excluded.media_asset_id, updated = excluded.updated",
                (client, key, data, size, media_asset_id, now, now),
            )
        return stored

    def list(self, client: str, *, limit: int = 200, offset: int = 0) -> list[dict]:
        """``client``'s items, the most recently first saved first."""
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT data FROM library_items WHERE client = ? ORDER BY seq DESC LIMIT ? OFFSET ?",
                (client, int(limit), int(offset)),
            ).fetchall()
        return [json.loads(r["data"]) for r in rows]

    def count(self, client: str) -> int:
        with self._db.read() as conn:
            return conn.execute("SELECT COUNT(*) FROM library_items WHERE client = ?", (client,)).fetchone()[0]

    def close(self) -> None:
        if self._owns_db:
            self._db.close()
