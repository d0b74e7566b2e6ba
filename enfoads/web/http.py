"""Request parsing and response shapes shared by the route modules."""
from __future__ import annotations

import json
from typing import Any

from flask import after_this_request, g, request, url_for

from enfoads.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from enfoads.work.idempotency import HEADER as IDEMPOTENCY_HEADER, check_key
from enfoads.work.job_types import Job
from enfoads.text import clean_text, describe

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


def _check_tree(value: Any, limit: int) -> None:
    """Depth and text checks on parsed JSON, iteratively (no recursion on hostile input).

    Strings must be valid Unicode: a lone surrogate (``"\\ud800"``) parses in
    Python but breaks tokenizers, SQLite and the browser later on.
    """
    stack = [(value, 1, "")]
    while stack:
        item, depth, where = stack.pop()
        if depth > limit:
            raise InvalidInput(f"the JSON body is nested deeper than {limit} levels")
        if isinstance(item, _JsonConstant):
            raise InvalidInput.field(where or "body", f"{item.name} is not valid JSON; send a finite number")
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidInput.field(where or "body", "contains invalid Unicode (a lone surrogate)") from None
        elif isinstance(item, dict):
            for key, child in item.items():
                path = f"{where}.{key}" if where else str(key)
                stack.append((key, depth + 1, path))
                stack.append((child, depth + 1, path))
        elif isinstance(item, list):
            stack.extend((child, depth + 1, f"{where}[{i}]") for i, child in enumerate(item))


class _JsonConstant:
    """NaN or Infinity in a body: Python's json accepts them, JSON does not (nor the browser)."""

    def __init__(self, name: str):
        self.name = name


def _read_body(max_bytes: float | None) -> bytes:
    """The raw body, refusing more than ``max_bytes`` also when it arrives chunked (no Content-Length)."""
    max_bytes = int(max_bytes) if max_bytes is not None else None
    too_large = PayloadTooLarge(f"the body is over the {(max_bytes or 0) / 1_000_000:g} MB limit for this route")
    if max_bytes is not None and (request.content_length or 0) > max_bytes:
        raise too_large
    if max_bytes is None or request.content_length is not None:
        return request.get_data(cache=True)
    data = request.stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise too_large
    return data


def idempotency_key() -> str | None:
    """The request's ``Idempotency-Key`` header, checked (400 naming it); None when it sent none."""
    value = request.headers.get(IDEMPOTENCY_HEADER)
    return None if value is None else check_key(value)


def json_body(max_bytes: int | None = None) -> dict:
    """The request's JSON object, or a 4xx naming what is wrong with it."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(
            f"send a JSON body with Content-Type: application/json (got {request.mimetype or 'none'})"
        )
    raw = _read_body(max_bytes)
    try:
        body = json.loads(raw or b"null", parse_constant=_JsonConstant)
    except RecursionError:
        raise InvalidInput("the JSON body is nested too deeply") from None
    except ValueError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidInput("the JSON body must be an object")
    _check_tree(body, MAX_JSON_DEPTH)
    _clean_strings(body)
    return body


def _clean_strings(body: dict) -> None:
    """Every string value of a JSON body under ``enfoads.text``'s rule, in place; recorded per field."""
    stack: list[tuple[Any, str]] = [(body, "")]
    while stack:
        container, where = stack.pop()
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for key, child in list(items):
            path = (f"{where}.{key}" if where else str(key)) if isinstance(container, dict) else f"{where}[{key}]"
            if isinstance(child, str):
                cleaned, removed = clean_text(child)
                if removed:
                    container[key] = cleaned
                    note_cleaned(path, removed)
            elif isinstance(child, (dict, list)):
                stack.append((child, path))


def query_number(name: str, default, lo, hi, *, kind=int):
    """A query-string number (``kind`` int or float) within [lo, hi], or a 400 naming it."""
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise InvalidInput.field(name, "must be an integer" if kind is int else "must be a number") from None
    if not lo <= value <= hi:
        raise InvalidInput.field(name, f"must be between {lo} and {hi}")
    return value


def form_text(name: str) -> str | None:
    """A multipart or urlencoded form field under the same text rule as JSON bodies."""
    value = request.form.get(name)
    if value is None:
        return None
    cleaned, removed = clean_text(value)
    if removed:
        note_cleaned(name, removed)
    return cleaned


def note_cleaned(field: str, removed: dict[str, int]) -> None:
    """Say in the response what the text rule removed from ``field``.

    JSON object responses get ``text_cleaned: {field: "removed ..."}``; every
    response gets an ``X-Text-Cleaned`` header (plain-text transcripts too).
    """
    if "text_cleaned" not in g:
        g.text_cleaned = {}

        @after_this_request
        def _say(response):
            notes = g.get("text_cleaned") or {}
            # JSON with ensure_ascii: field names are the client's (any Unicode, even line breaks),
            # and a header carries only Latin-1 with no CR/LF.
            response.headers["X-Text-Cleaned"] = json.dumps(notes, ensure_ascii=True)[:2000]
            if response.is_json:
                body = response.get_json(silent=True)
                if isinstance(body, dict):
                    body["text_cleaned"] = notes
                    response.set_data(json.dumps(body))
            return response

    g.text_cleaned[field] = describe(removed)


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


def _summary(value, limit: int = 300):
    """Params as JSON with long strings (base64 images, data URIs) cut to a note of their length."""
    if isinstance(value, str):
        return value if len(value) <= limit else f"<{len(value)} characters>"
    if isinstance(value, dict):
        return {k: _summary(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [_summary(v, limit) for v in value[:50]]
    return value


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
        # A signed URL per output (images, previews, subtitles), for the console's gallery and downloads.
        "asset_urls": {a: media_url(a) for a in result_asset_ids(job)} if job.state == "succeeded" else {},
        "params": _summary(job.params),
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
