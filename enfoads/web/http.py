"""Request parsing and response shapes shared by the route modules."""
from __future__ import annotations

import json
from typing import Any

from flask import request, url_for

from enfoads.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from enfoads.jobs import Job

# The frontend's words for job states.
FRONTEND_STATUS = {
    "queued": "queued",
    "running": "processing",
    "succeeded": "completed",
    "failed": "failed",
    "cancelled": "failed",
}
MAX_JSON_DEPTH = 32
MEDIA_URL_TTL_S = 24 * 3600


def _depth(value: Any, limit: int) -> int:
    """Nesting depth, stopping early past ``limit`` (iterative: no recursion on hostile input)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return depth
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def json_body(max_bytes: int | None = None) -> dict:
    """The request's JSON object, or a 4xx naming what is wrong with it."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(
            f"send a JSON body with Content-Type: application/json (got {request.mimetype or 'none'})"
        )
    if max_bytes is not None and (request.content_length or 0) > max_bytes:
        raise PayloadTooLarge(f"the body is over the {max_bytes // 1_000_000} MB limit for this route")
    raw = request.get_data(cache=True)
    try:
        body = json.loads(raw or b"null")
    except RecursionError:
        raise InvalidInput("the JSON body is nested too deeply") from None
    except ValueError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidInput("the JSON body must be an object")
    if _depth(body, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise InvalidInput(f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels")
    return body


def media_url(asset_id: str, *, external: bool = True) -> str:
    """A signed, expiring URL for an asset: works in <img>/<video> tags without headers.

    Absolute by default: the frontend puts it in a tag on its own origin.
    """
    from enfoads.web.state import engine

    expires, signature = engine().assets.sign(asset_id, ttl_s=MEDIA_URL_TTL_S)
    return url_for("media.get_media", asset_id=asset_id, exp=expires, sig=signature, _external=external)


def absolute_media_url(app, engine, asset_id: str) -> str | None:
    """A media URL built outside any request (Socket.IO events from worker threads).

    Uses the public base URL of the last authenticated request (the tunnel's),
    so the link works from the frontend's page.
    """
    if engine is None:
        return None
    from enfoads.web.state import EXTENSION

    expires, signature = engine.assets.sign(asset_id, ttl_s=MEDIA_URL_TTL_S)
    base = app.extensions[EXTENSION].public_base
    return f"{base}/media/{asset_id}?exp={expires}&sig={signature}"


def result_asset_ids(job: Job) -> list[str]:
    return list((job.result or {}).get("asset_ids") or [])


def primary_asset_id(result: dict | None) -> str | None:
    """The asset a job's ``url`` points at: its declared main output, else its first asset."""
    result = result or {}
    if isinstance(result.get("asset_id"), str):
        return result["asset_id"]
    ids = result.get("asset_ids") or []
    return ids[0] if ids else None


def job_view(job: Job) -> dict:
    """A job in the frontend's fields (id, status, url, error) plus progress, stage, result."""
    main = primary_asset_id(job.result)
    view = {
        "id": job.id,
        "job_id": job.id,
        "kind": job.kind,
        "status": FRONTEND_STATUS[job.state],
        "state": job.state,
        "progress": int(job.progress),
        "stage": job.stage,
        "url": media_url(main) if main and job.state == "succeeded" else None,
        "error": None,
        "result": job.result,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "attempts": job.attempts,
    }
    if job.state == "failed" and job.error:
        view["error"] = job.error.get("message") or job.error.get("type")
    elif job.state == "cancelled":
        view["error"] = "cancelled"
    return view
