"""Model services: pure work, no Flask, no globals.

Each service is an object built over a runtime (``ImageService``,
``FaceSwapper``, ``SpeechTranscriber``, ``EnhanceService``; videos through ``video.job_kinds``
with an explicit TTS engine and avatar store). ``enfoads.engine`` builds one
of each, owns and closes them, and registers what their ``job_kinds()``
returns with the job backend. A ``JobKind`` is:

- ``options``: the kind's ``enfoads.services.options.Options`` model: the
  fields it accepts, their rules and the OpenAPI schema made from them.
- ``validate(params) -> dict`` parses params with that model (then checks
  what needs the runtime: installed models, avatars, voices, image headers), and normalises request params before the
  job is queued, raising ``enfoads.errors.InvalidInput`` (or a subclass) that
  names the offending field; the web layer calls it so a bad request gets its
  4xx at once instead of a failed job.
- ``handler(params, ctx) -> dict`` runs in a worker: it leases its model
  through ``runtime.residency``, runs the service with ``ctx.progress`` as the
  progress callback (which raises ``JobCancelled`` when the job was
  cancelled), saves outputs with ``ctx.save_bytes`` and returns JSON.

Each module's ``job_kinds(runtime, ...)`` function makes a new service and
returns its kinds, for tests and benches that need one service alone.
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
    options: type | None = None  # the Options model validate parses with (its schema is published)
