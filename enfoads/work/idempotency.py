"""Idempotency keys: a client's retry of a submission gets the job its first try made.

The OpenAI routes answer 503 when a job outlives the sync wait (on a T4, a
backlog of generations does), and openai-python retries a 5xx twice by default.
A retry that sends the first try's ``Idempotency-Key`` header (openai-python:
``extra_headers={"Idempotency-Key": ...}``, kept on each retry) waits for the
first job instead of queueing the same generation again behind it.

Kept in the data dir's database for ``ttl_s`` (24 h, as Stripe keeps them), so a
retry after a restart finds its job. A key whose job failed or was cancelled
starts over: the client retrying a failure means to try again. A key sent again
with other parameters is refused (422), never answered with another request's job.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from typing import Callable

from enfoads.errors import InvalidInput, UnprocessableInput
from enfoads.work.db import Database
from enfoads.work.job_types import Job, JobNotFound

__all__ = ["HEADER", "IdempotencyKeyReused", "IdempotencyKeys", "check_key"]

HEADER = "Idempotency-Key"
DEFAULT_TTL_S = 24 * 3600.0
MAX_KEY_CHARS = 255
_KEY = re.compile(r"[\x21-\x7e]+")  # visible ASCII: what a header carries unchanged through proxies
_REPLAYED_STATES = ("queued", "running", "succeeded")


class IdempotencyKeyReused(UnprocessableInput):
    code = "idempotency_key_reused"


def check_key(value: str) -> str:
    """``value`` if it is a usable key (1-255 visible ASCII characters); InvalidInput naming the header if not."""
    if not 1 <= len(value) <= MAX_KEY_CHARS or not _KEY.fullmatch(value):
        raise InvalidInput.field(HEADER, f"use 1-{MAX_KEY_CHARS} visible ASCII characters (e.g. a UUID)")
    return value


def fingerprint(kind: str, params: dict) -> str:
    """What a retry must send again: the job kind and the params as the client sent them."""
    text = json.dumps([kind, params], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class IdempotencyKeys:
    """Key -> the job it made, in the ``idempotency_keys`` table (schema migration 3)."""

    def __init__(self, db: Database, *, ttl_s: float = DEFAULT_TTL_S, clock: Callable[[], float] = time.time):
        self._db = db
        self.ttl_s = ttl_s
        self._clock = clock
        # One check-then-submit at a time: two concurrent tries of one call must not both submit.
        self._lock = threading.Lock()

    def submit_once(self, key: str, kind: str, params: dict, submit: Callable[[], Job],
                    get: Callable[[str], Job]) -> tuple[Job, bool]:
        """``(job, replayed)``: the job ``key`` made (``replayed``), or the one ``submit()`` makes now.

        Raises:
            InvalidInput: the key is not 1-255 visible ASCII characters.
            IdempotencyKeyReused: the key was sent with another kind or other params.
        """
        check_key(key)
        wanted = fingerprint(kind, params)
        with self._lock:
            now = self._clock()
            with self._db.read() as conn:
                row = conn.execute("SELECT fingerprint, job_id, created FROM idempotency_keys WHERE key = ?",
                                   (key,)).fetchone()
            if row is not None and row["created"] > now - self.ttl_s:
                if row["fingerprint"] != wanted:
                    raise IdempotencyKeyReused(
                        f"{HEADER}: this key was used for another request (job {row['job_id']}); "
                        "send a new key for new parameters", fields={HEADER: "used for another request"})
                try:
                    job = get(row["job_id"])
                except JobNotFound:  # pruned since: the key starts over
                    job = None
                if job is not None and job.state in _REPLAYED_STATES:
                    return job, True
            job = submit()
            with self._db.write() as conn:
                conn.execute("DELETE FROM idempotency_keys WHERE created <= ?", (now - self.ttl_s,))
                conn.execute("INSERT OR REPLACE INTO idempotency_keys (key, fingerprint, job_id, created) "
                             "VALUES (?, ?, ?, ?)", (key, wanted, job.id, now))
            return job, False
