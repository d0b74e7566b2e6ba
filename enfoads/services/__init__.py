"""Model services: pure work, no Flask, no globals.

Each service is a function of (validated options, a leased model, a progress
callback) -> result. Each service module also offers
``job_kinds(runtime) -> list[JobKind]`` for the job queue:

- ``validate(params) -> dict`` checks and normalises request params before the
  job is queued, raising ``enfoads.errors.InvalidInput`` (or a subclass) that
  names the offending field; the web layer calls it so a bad request gets its
  4xx at once instead of a failed job.
- ``handler(params, ctx) -> dict`` runs in a worker: it leases its model
  through ``runtime.residency``, runs the service with ``ctx.progress`` as the
  progress callback (which raises ``JobCancelled`` when the job was
  cancelled), saves outputs with ``ctx.save_bytes`` and returns JSON.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class JobKind:
    name: str  # e.g. "image.generate"
    handler: Callable[[dict, Any], dict]
    validate: Callable[[dict], dict]
    device: str = "gpu"  # "gpu": the one GPU worker; "cpu": the CPU pool
