"""The asset store: output files under the data dir, their rows in SQLite, signed URLs.

Files live in ``<data_dir>/assets/<2 hex>/<asset id><ext>``. Names are made
here from a fresh uuid4 and the extension of a known MIME type; nothing a user
sends ever becomes part of a path. A file is written to a temporary name,
flushed and renamed before its row is inserted, and a row is deleted before
its file: a crash at any point leaves at worst a file without a row, which
a later start removes. One writing process per data dir.

Media URLs for ``<img>``/``<video>`` tags cannot carry headers, so they are
signed instead: HMAC-SHA256 over ``"<asset id>.<expires>"`` with a 32-byte
secret made once in ``<data_dir>/url-secret`` (mode 0600). ``verify`` compares
in constant time and raises ``SignatureError`` (``SignatureExpired`` for a
valid but expired link).

Kept links: the frontend stores a result's URL in its library for good (it
puts the URL it got in a ``<video>`` tag whenever its library page opens).
``keep_link`` marks one such signed URL, checked to be this server's, as
kept: it stays valid past its expiry for as long as its asset exists (the
row goes with the asset). Links nobody kept still expire.

Quota: ``cleanup`` deletes the oldest assets until the total is under
``quota_bytes``, skipping every asset whose job is unfinished (the job queue
passes those ids; see ``JobQueue.cleanup_assets``).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import mimetypes
import os
import re
import secrets
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable

from enfoads.work.db import DB_FILENAME, Database
from enfoads.errors import EnfoadsError
from enfoads.work.schema import database

__all__ = [
    "Asset",
    "AssetStore",
    "AssetError",
    "AssetNotFound",
    "SignatureError",
    "SignatureExpired",
]

log = logging.getLogger(__name__)

SECRET_FILENAME = "url-secret"

_MIME_RE = re.compile(r"^[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*$")
_ASSET_ID_RE = re.compile(r"[0-9a-f]{32}")
# Stable extensions for what the services write; mimetypes' answers vary by OS.
_EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/mpeg": ".mp3",
    "audio/ogg": ".ogg",
    "text/plain": ".txt",
    "text/vtt": ".vtt",
    "application/x-subrip": ".srt",
    "application/json": ".json",
}



class AssetError(EnfoadsError):
    """Base class for asset store errors."""


class AssetNotFound(AssetError, KeyError):
    status, code = 404, "asset_not_found"

    @property
    def public_message(self) -> str:  # ids of other people's assets are not confirmed or named
        return "no such asset"


class SignatureError(AssetError):
    """A media URL whose signature does not match (tampered, or for another asset). Maps to 403."""

    status, code = 403, "bad_signature"

    def __init__(self, message: str = "", **kwargs):
        super().__init__(message or "invalid or expired media link", **kwargs)


class SignatureExpired(SignatureError):
    """A media URL that was valid but whose expiry has passed. Maps to 403."""


@dataclass(frozen=True)
class Asset:
    id: str
    kind: str  # "image", "video", "audio", ... (the MIME type's top level unless given)
    mime: str
    bytes: int
    sha256: str
    width: int | None
    height: int | None
    duration: float | None
    params: dict
    job_id: str | None
    created: float
    file: str  # path relative to the assets dir

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d.pop("file")
        return d


def _extension(mime: str) -> str:
    return _EXTENSIONS.get(mime) or mimetypes.guess_extension(mime, strict=False) or ".bin"


class AssetStore:
    """Output files plus their rows; signed URLs; a size quota.

    Args:
        data_dir: the data directory; files go to ``data_dir/assets``, rows to
            ``data_dir/enfoads.sqlite3`` (shared with jobs and events), the URL
            secret to ``data_dir/url-secret``.
        quota_bytes: total size the assets may take; ``None`` for no limit.
        wal: try SQLite's WAL journal (falls back to DELETE where unsupported).
        clock: the time source for ``created`` and URL expiry.
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        quota_bytes: int | None = None,
        wal: bool = True,
        clock: Callable[[], float] = time.time,
        db: Database | None = None,
    ):
        self.data_dir = Path(data_dir).expanduser()
        self.root = self.data_dir / "assets"
        self.root.mkdir(parents=True, exist_ok=True)
        self._folders: set[str] = set()  # asset sub-folders known to exist
        self.quota_bytes = quota_bytes
        self._clock = clock
        self._db, self._owns_db = database(db if db is not None else self.data_dir / DB_FILENAME, wal=wal)
        self._secret = self._load_secret()
        self._remove_orphans()

    # ------------------------------------------------------------------ files and rows

    def save_bytes(
        self,
        data: bytes,
        mime: str,
        *,
        kind: str | None = None,
        job_id: str | None = None,
        params: dict | None = None,
        width: int | None = None,
        height: int | None = None,
        duration: float | None = None,
        asset_id: str | None = None,
    ) -> Asset:
        """Store ``data`` as a new asset.

        Args:
            data: the file's content.
            mime: its MIME type, e.g. ``"image/png"`` (chooses the extension).
            kind: a coarse kind; default the MIME type's top level ("image").
            job_id: the job that made it (assets of unfinished jobs survive clean-up).
            params: the parameters that made it (JSON-serialisable).
            width, height, duration: media facts, when known.
            asset_id: the id to give it (32 hex digits), when it was chosen where the job ran
                (a remote replica names its outputs in its result); default a new one.

        Returns:
            The new ``Asset``.
        """
        asset_id, rel, final = self._new_name(mime, asset_id)
        tmp = final.with_name(f".{final.name}.tmp")
        with self._create(tmp) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return self._commit(tmp, final, asset_id, rel, mime, kind, job_id, params, width, height, duration,
                            size=len(data), sha256=hashlib.sha256(data).hexdigest())

    def save_file(self, src: str | Path, mime: str, *, move: bool = False, **meta) -> Asset:
        """Store an existing file (e.g. ffmpeg's output) as a new asset; same keywords as ``save_bytes``.

        With ``move=True`` the source is moved instead of copied when on the same filesystem.
        """
        asset_id, rel, final = self._new_name(mime)
        tmp = final.with_name(f".{final.name}.tmp")
        tmp.parent.mkdir(exist_ok=True)  # rare and large: the stat costs nothing here
        if move:
            shutil.move(os.fspath(src), tmp)
        else:
            shutil.copyfile(src, tmp)
        digest, size = hashlib.sha256(), 0
        with open(tmp, "rb+") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
                size += len(chunk)
            os.fsync(f.fileno())
        return self._commit(tmp, final, asset_id, rel, mime, meta.pop("kind", None), size=size,
                            sha256=digest.hexdigest(), **meta)

    def _new_name(self, mime: str, asset_id: str | None = None) -> tuple[str, str, Path]:
        mime = mime.strip().lower()
        if not _MIME_RE.match(mime):
            raise ValueError(f"not a MIME type: {mime!r}")
        if asset_id is None:
            asset_id = uuid.uuid4().hex
        elif not _ASSET_ID_RE.fullmatch(asset_id):
            raise ValueError(f"not an asset id: {asset_id!r}")
        # Two-hex sub-folders keep directories small on a Drive mount.
        rel = f"{asset_id[:2]}/{asset_id}{_extension(mime)}"
        final = self.root / rel
        if final.parent.name not in self._folders:  # 256 folders at most: a stat per save spared
            final.parent.mkdir(exist_ok=True)
            self._folders.add(final.parent.name)
        return asset_id, rel, final

    def _create(self, tmp: Path):
        try:
            return open(tmp, "wb")
        except FileNotFoundError:  # its folder was removed behind our back
            tmp.parent.mkdir(parents=True, exist_ok=True)
            return open(tmp, "wb")

    def _commit(self, tmp, final, asset_id, rel, mime, kind, job_id=None, params=None, width=None, height=None,
                duration=None, *, size: int, sha256: str) -> Asset:
        mime = mime.strip().lower()
        try:
            params_json = json.dumps(params or {}, separators=(",", ":"), sort_keys=True)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        asset = Asset(
            id=asset_id, kind=kind or mime.split("/", 1)[0], mime=mime, bytes=size, sha256=sha256,
            width=width, height=height, duration=duration, params=params or {}, job_id=job_id,
            created=self._clock(), file=rel,
        )
        try:
            with self._db.write() as conn:
                conn.execute(
                    "INSERT INTO assets(id, kind, mime, bytes, sha256, width, height, duration, params, job_id,"
                    " created, file) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (asset.id, asset.kind, asset.mime, asset.bytes, asset.sha256, asset.width, asset.height,
                     asset.duration, params_json, asset.job_id, asset.created, asset.file),
                )
        except BaseException:
            final.unlink(missing_ok=True)
            raise
        return asset

    @staticmethod
    def _row(row) -> Asset:
        d = dict(row)
        d["params"] = json.loads(d["params"])
        return Asset(**d)

    def get(self, asset_id: str) -> Asset:
        """The asset's row; ``AssetNotFound`` if there is none."""
        with self._db.read() as conn:
            row = conn.execute("SELECT * FROM assets WHERE id = ?", (asset_id,)).fetchone()
        if row is None:
            raise AssetNotFound(f"no asset {asset_id!r}")
        return self._row(row)

    def path(self, asset_id: str) -> Path:
        """The asset's file on disk (for ``send_file``)."""
        return self.root / self.get(asset_id).file

    def open(self, asset_id: str) -> BinaryIO:
        """The asset's file, opened for binary reading."""
        return open(self.path(asset_id), "rb")

    def read_bytes(self, asset_id: str) -> bytes:
        with self.open(asset_id) as f:
            return f.read()

    def list(
        self, *, job_id: str | None = None, kind: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[Asset]:
        """Assets, newest first, optionally of one job or one kind."""
        sql, args = "SELECT * FROM assets WHERE 1=1", []
        if job_id is not None:
            sql, args = sql + " AND job_id = ?", [*args, job_id]
        if kind is not None:
            sql, args = sql + " AND kind = ?", [*args, kind]
        sql += " ORDER BY created DESC, rowid DESC LIMIT ? OFFSET ?"
        with self._db.read() as conn:
            rows = conn.execute(sql, (*args, int(limit), int(offset))).fetchall()
        return [self._row(r) for r in rows]

    def total_bytes(self) -> int:
        with self._db.read() as conn:
            return int(conn.execute("SELECT COALESCE(SUM(bytes), 0) FROM assets").fetchone()[0])

    def delete(self, asset_id: str) -> bool:
        """Remove an asset (row first, then file) and its kept links; False if it did not exist."""
        with self._db.write() as conn:
            row = conn.execute("DELETE FROM assets WHERE id = ? RETURNING file", (asset_id,)).fetchone()
            conn.execute("DELETE FROM asset_links_kept WHERE asset_id = ?", (asset_id,))
        if row is None:
            return False
        (self.root / row[0]).unlink(missing_ok=True)
        return True

    def cleanup(
        self,
        *,
        quota_bytes: int | None = None,
        unfinished_jobs: Callable[[], Iterable[str]] | Iterable[str] = (),
    ) -> list[str]:
        """Delete the oldest assets until the total fits the quota.

        Assets whose ``job_id`` is in ``unfinished_jobs`` are never deleted, nor
        assets with a kept link (:meth:`keep_link`: saved in a client's library).
        Pass a callable (``JobQueue.unfinished_job_ids``): it is read *after*
        the candidates are chosen, and since a finished job never becomes
        unfinished again, a job that starts meanwhile cannot lose its assets.

        Args:
            quota_bytes: the limit; default the store's ``quota_bytes``.
            unfinished_jobs: ids of queued/running jobs, or a callable returning them.

        Returns:
            The ids of the deleted assets, oldest first. The total may stay
            over the quota when only protected assets remain.
        """
        quota = self.quota_bytes if quota_bytes is None else quota_bytes
        if quota is None:
            return []
        with self._db.read() as conn:
            total = int(conn.execute("SELECT COALESCE(SUM(bytes), 0) FROM assets").fetchone()[0])
            if total <= quota:
                return []
            # An asset a client saved a link to (the frontend's library) is the user's: never a victim.
            rows = conn.execute(
                "SELECT id, bytes, job_id, EXISTS (SELECT 1 FROM asset_links_kept k WHERE k.asset_id = assets.id) "
                "FROM assets ORDER BY created, rowid"
            ).fetchall()
        protected = set(unfinished_jobs() if callable(unfinished_jobs) else unfinished_jobs)
        removed: list[str] = []
        for asset_id, size, job_id, kept in rows:
            if total <= quota:
                break
            if kept or (job_id is not None and job_id in protected):
                continue
            if self.delete(asset_id):
                total -= size
                removed.append(asset_id)
        if removed:
            log.info("asset quota: removed %d oldest assets; %d bytes remain", len(removed), total)
        return removed

    def _remove_orphans(self, min_age_s: float = 60.0) -> None:
        """Files without a row (a crash between rename and insert) and temporary files.

        Only files older than ``min_age_s`` go, so a store opened for reading
        while another process writes cannot take a file about to get its row.
        """
        with self._db.read() as conn:
            known = {r[0] for r in conn.execute("SELECT file FROM assets")}
        cutoff = time.time() - min_age_s
        for sub in self.root.iterdir():
            if not sub.is_dir():
                continue
            for f in sub.iterdir():
                rel = f"{sub.name}/{f.name}"
                if f.is_file() and rel not in known and f.stat().st_mtime < cutoff:
                    log.warning("removing orphan asset file %s", f)
                    f.unlink(missing_ok=True)

    # ------------------------------------------------------------------ signed URLs

    def _load_secret(self) -> bytes:
        path = self.data_dir / SECRET_FILENAME
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            secret = bytes.fromhex(path.read_text().strip())
            if len(secret) < 32:
                raise AssetError(f"{path} holds a secret shorter than 32 bytes")
            return secret
        secret = secrets.token_bytes(32)
        with os.fdopen(fd, "w") as f:
            f.write(secret.hex())
            f.flush()
            os.fsync(f.fileno())
        return secret

    def _mac(self, asset_id: str, expires: int) -> str:
        msg = f"{asset_id}.{expires}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()

    def sign(self, asset_id: str, ttl_s: float = 3600) -> tuple[int, str]:
        """A signature for a media URL of ``asset_id`` valid for ``ttl_s`` seconds.

        Returns:
            ``(expires, signature)``: a Unix time and a hex HMAC, to put in the URL's query.
        """
        expires = int(self._clock() + ttl_s)
        return expires, self._mac(asset_id, expires)

    def _authentic(self, asset_id: str, expires: int | str, signature: str) -> int:
        """The expiry of a link whose signature is this store's (expired or not); ``SignatureError`` otherwise."""
        try:
            exp = int(expires)
        except (TypeError, ValueError):
            raise SignatureError("malformed expiry") from None
        if not isinstance(signature, str) or not signature:
            raise SignatureError("missing signature")
        expected = self._mac(asset_id, exp)
        if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode("ascii", "replace")):
            raise SignatureError("bad signature")
        return exp

    def verify(self, asset_id: str, expires: int | str, signature: str) -> None:
        """Check a media URL's ``expires`` and ``signature`` (both may be raw query strings).

        A kept link (``keep_link``) of an asset that still exists passes after its expiry.

        Raises:
            SignatureError: the signature is malformed or does not match.
            SignatureExpired: it matches but ``expires`` has passed (and the link was not kept).
        """
        exp = self._authentic(asset_id, expires, signature)
        if self._clock() >= exp and not self._is_kept(asset_id, exp):
            raise SignatureExpired("link expired")

    def _is_kept(self, asset_id: str, expires: int) -> bool:
        with self._db.read() as conn:
            return conn.execute(
                "SELECT 1 FROM asset_links_kept k JOIN assets a ON a.id = k.asset_id "
                "WHERE k.asset_id = ? AND k.expires = ?", (asset_id, int(expires)),
            ).fetchone() is not None

    def keep_link(self, asset_id: str, expires: int | str, signature: str) -> bool:
        """Keep one signed link of an existing asset valid past its expiry, for as long as the asset exists.

        For URLs a client stores for good (the frontend's library). Only a link
        this store signed is kept, expired or not (whoever holds it was given
        it); True when kept, False for a link that is not this store's or an
        asset that does not exist.
        """
        try:
            exp = self._authentic(asset_id, expires, signature)
        except SignatureError:
            return False
        with self._db.write() as conn:
            if conn.execute("SELECT 1 FROM assets WHERE id = ?", (asset_id,)).fetchone() is None:
                return False
            conn.execute("INSERT OR IGNORE INTO asset_links_kept (asset_id, expires, since) VALUES (?, ?, ?)",
                         (asset_id, exp, self._clock()))
        return True

    @property
    def db(self) -> Database:
        """The SQLite file the rows live in (shared with what keeps data beside them: the image cache)."""
        return self._db

    def close(self) -> None:
        if self._owns_db:
            self._db.close()
