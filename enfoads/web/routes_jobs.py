"""The native job API and the event long-poll (the frontend's library is in routes_frontend)."""
from __future__ import annotations

import time

from flask import Blueprint, jsonify, request

from enfoads.errors import InvalidInput
from enfoads.work.job_types import STATES
from enfoads.web.http import idempotency_key, job_view, json_body, query_number
from enfoads.web.state import engine, state

bp = Blueprint("jobs", __name__)
SUBMIT_ENDPOINTS = ["jobs.submit_job"]
LONG_POLL_MAX_S = 25.0  # under common proxy idle timeouts (ngrok, Colab)


@bp.post("/api/jobs")
def submit_job():
    body = json_body(state().settings.max_body_mb * 1_000_000)
    kind = body.get("kind")
    if not isinstance(kind, str) or not kind:
        raise InvalidInput.field("kind", f"required; one of {', '.join(sorted(engine().kinds))}")
    params = body.get("params", {})
    job = engine().submit(kind, params, idempotency_key=idempotency_key())
    response = jsonify(job_view(job))
    response.status_code = 202
    response.headers["Location"] = f"{request.script_root}/api/jobs/{job.id}"
    return response


@bp.get("/api/jobs")
def list_jobs():
    states = request.args.getlist("state")
    unknown = [s for s in states if s not in STATES]
    if unknown:
        raise InvalidInput.field("state", f"unknown state {unknown[0]!r}; one of {', '.join(STATES)}")
    limit = query_number("limit", 50, 1, 500)
    kind = request.args.get("kind")
    jobs = engine().jobs.list(states=states or None, kind=kind, limit=limit)
    return jsonify({"status": "success", "jobs": [job_view(j) for j in jobs]})


@bp.get("/api/jobs/<job_id>")
def get_job(job_id: str):
    return jsonify(job_view(engine().jobs.get(job_id)))


@bp.post("/api/jobs/<job_id>/cancel")
def cancel_job(job_id: str):
    return jsonify(job_view(engine().jobs.cancel(job_id)))


@bp.get("/api/events")
def events_since():
    """Long-poll fallback for when WebSockets fail through a tunnel: events after ``since``."""
    since = query_number("since", 0, 0, 2**62)
    timeout = query_number("timeout", LONG_POLL_MAX_S, 0.0, LONG_POLL_MAX_S, kind=float)
    job_id = request.args.get("job_id")
    bus = engine().bus
    deadline = time.monotonic() + timeout
    events = bus.events_since(since, job_id=job_id, limit=500)
    while not events and time.monotonic() < deadline:
        time.sleep(0.2)
        events = bus.events_since(since, job_id=job_id, limit=500)
    last = events[-1].seq if events else max(since, 0)
    return jsonify({"status": "success", "events": [e.to_dict() for e in events], "last_seq": last})
