"""Socket.IO: the frontend's ``generation_progress`` and ``job_update`` events, to the clients they concern.

Two namespaces. The secret one (``/<prefix>``, what socket.io-client makes of
the pasted URL) is the frontend's: it subscribes to nothing and filters by
``job_id``, so its clients join the ``all`` room and get every job's events.
The default one (``/``) needs the key in the connect ``auth`` payload
(``{"key": ...}`` or ``{"token": ...}``) or an ``Authorization`` header; its
clients get only the jobs they ``subscribe`` to (``"*"`` for all).
Unauthenticated clients are refused; nothing is ever broadcast to everyone.

A client that connects late gets, at once, the latest ``job_update`` of every
unfinished job and of jobs finished in the last ``RECENT_S`` seconds: the
frontend opens its socket only after it has the job id, and a job that
finished before that would otherwise leave its page spinning forever.
"""
from __future__ import annotations

import logging
import time

from flask import request
from flask_socketio import SocketIO, join_room, leave_room

from enfoads.work import events as ev
from enfoads.security import Credentials
from enfoads.web.http import FRONTEND_STATUS, primary_asset_id

log = logging.getLogger(__name__)

ALL_ROOM = "all"
RECENT_S = 15 * 60


def _job_room(job_id: str) -> str:
    return f"job:{job_id}"


class Realtime:
    def __init__(self, app, socketio: SocketIO, credentials: Credentials, holder):
        self.app = app
        self.socketio = socketio
        self.credentials = credentials
        self.holder = holder
        self.frontend_ns = "/" + credentials.prefix

    # ---------------------------------------------------------------- payloads
    def _media_url(self, asset_id: str) -> str | None:
        from enfoads.web.http import absolute_media_url

        return absolute_media_url(self.app, self.holder.engine_if_ready, asset_id)

    def job_update(self, job) -> dict:
        """A ``job_update`` payload from a job row."""
        payload = {"job_id": job.id, "kind": job.kind, "status": FRONTEND_STATUS[job.state], "state": job.state,
                   "progress": int(job.progress), "message": job.stage}
        main = primary_asset_id(job.result)
        if job.state == "succeeded" and main:
            payload["url"] = self._media_url(main)
        if job.state == "failed":
            payload["error"] = (job.error or {}).get("message") or "failed"
        if job.state == "cancelled":
            payload["error"] = "cancelled"
        return payload

    def _event_payload(self, event: ev.Event) -> dict | None:
        base = {"job_id": event.job_id, "kind": event.kind, "seq": event.seq}
        if isinstance(event, ev.JobCreated):
            return {**base, "status": "queued", "state": "queued", "progress": 0, "message": "queued"}
        if isinstance(event, ev.JobProgress):
            status = "queued" if event.state == "queued" else "processing"
            payload = {**base, "status": status, "state": event.state, "progress": int(event.progress),
                       "message": event.stage}
            if event.preview_asset_id:
                payload["preview_url"] = self._media_url(event.preview_asset_id)
            return payload
        if isinstance(event, ev.JobSucceeded):
            payload = {**base, "status": "completed", "state": "succeeded", "progress": 100, "message": "done"}
            main = primary_asset_id(event.result)
            if main:
                payload["url"] = self._media_url(main)
            return payload
        if isinstance(event, ev.JobFailed):
            return {**base, "status": "failed", "state": "failed", "progress": 100,
                    "error": event.error_message or event.error_type}
        if isinstance(event, ev.JobCancelled):
            return {**base, "status": "failed", "state": "cancelled", "error": "cancelled"}
        return None

    # ------------------------------------------------------------------ emitting
    def on_event(self, event: ev.Event) -> None:
        """Bus subscriber (runs in a worker thread): forward to the rooms concerned."""
        if isinstance(event, ev.ModelDownload):
            # First-start downloads concern every client (no job owns them): model_download to all.
            payload = {"model_id": event.model_id, "state": event.state, "bytes_done": event.bytes_done,
                       "bytes_total": event.bytes_total, "percent": event.percent, "message": event.message,
                       "seq": event.seq}
            for namespace in ("/", self.frontend_ns):
                self.socketio.emit("model_download", payload, to=[ALL_ROOM], namespace=namespace)
            return
        payload = self._event_payload(event)
        if payload is None:
            return
        rooms = [_job_room(event.job_id), ALL_ROOM]
        for namespace in ("/", self.frontend_ns):
            self.socketio.emit("job_update", payload, to=rooms, namespace=namespace)
            if event.kind == "image.generate":
                status = "completed" if payload["status"] == "completed" else "generating"
                if payload["status"] == "failed":
                    status = "failed"
                self.socketio.emit(
                    "generation_progress",
                    {"job_id": event.job_id, "progress": payload.get("progress", 0), "status": status,
                     "preview_url": payload.get("preview_url")},
                    to=rooms, namespace=namespace,
                )

    def catch_up(self, sid: str, namespace: str) -> None:
        engine = self.holder.engine_if_ready
        if engine is None:
            return
        now = time.time()
        jobs = engine.jobs.list(states=["queued", "running"], limit=200)
        jobs += [j for j in engine.jobs.list(states=["succeeded", "failed", "cancelled"], limit=200)
                 if j.finished_at and now - j.finished_at <= RECENT_S]
        for job in jobs:
            self.socketio.emit("job_update", self.job_update(job), to=sid, namespace=namespace)

    # --------------------------------------------------------------- handlers
    def authorised(self, auth) -> bool:
        if isinstance(auth, dict):
            for field in ("key", "token"):
                if self.credentials.check_bearer(auth.get(field)):
                    return True
        header = request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer " and self.credentials.check_bearer(header[7:].strip()):
            return True
        return self.credentials.check_bearer(request.headers.get("X-API-Key"))

    def register(self) -> None:
        sio = self.socketio

        @sio.on("connect", namespace=self.frontend_ns)
        def _frontend_connect(auth=None):
            join_room(ALL_ROOM)
            self.catch_up(request.sid, self.frontend_ns)

        @sio.on("connect", namespace="/")
        def _connect(auth=None):
            if not self.authorised(auth):
                log.info("refused an unauthenticated Socket.IO connection")
                return False
            return None

        def subscribe(data):
            job_id = (data or {}).get("job_id") if isinstance(data, dict) else data
            if job_id == "*":
                join_room(ALL_ROOM)
                self.catch_up(request.sid, request.namespace)
                return {"status": "success", "subscribed": "*"}
            if not isinstance(job_id, str) or not job_id:
                return {"status": "error", "message": "send {job_id: <id>} or {job_id: '*'}"}
            join_room(_job_room(job_id))
            engine = self.holder.engine_if_ready
            if engine is not None:
                try:
                    job = engine.jobs.get(job_id)
                except KeyError:
                    return {"status": "error", "message": f"no job {job_id!r}"}
                sio.emit("job_update", self.job_update(job), to=request.sid, namespace=request.namespace)
            return {"status": "success", "subscribed": job_id}

        def unsubscribe(data):
            job_id = (data or {}).get("job_id") if isinstance(data, dict) else data
            leave_room(ALL_ROOM if job_id == "*" else _job_room(str(job_id)))
            return {"status": "success"}

        for namespace in ("/", self.frontend_ns):
            sio.on_event("subscribe", subscribe, namespace=namespace)
            sio.on_event("unsubscribe", unsubscribe, namespace=namespace)


def init_app(app, socketio: SocketIO, credentials: Credentials, holder) -> Realtime:
    realtime = Realtime(app, socketio, credentials, holder)
    realtime.register()
    holder.on_ready(lambda engine: engine.bus.subscribe(realtime.on_event))
    app.extensions["enfoads.realtime"] = realtime
    return realtime
