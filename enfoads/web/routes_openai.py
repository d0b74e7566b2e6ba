"""OpenAI-compatible routes, so the official ``openai`` client works with ``base_url`` + ``api_key``."""
from __future__ import annotations

import base64
import time

from flask import Blueprint, Response, jsonify, request

from enfoads.errors import InvalidInput, PayloadTooLarge
from enfoads.web.errors import error_response, status_for_job_error
from enfoads.web.http import form_text, idempotency_key, json_body, media_url, result_asset_ids
from enfoads.web.state import engine, state

bp = Blueprint("openai", __name__, url_prefix="/v1")
SUBMIT_ENDPOINTS = ["openai.image_generations", "openai.audio_transcriptions"]

# OpenAI's names map to this profile's models; our own ids work too.
IMAGE_ALIASES = {None, "", "dall-e-2", "dall-e-3", "gpt-image-1"}
SPEECH_ALIASES = {None, "", "whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"}


def _openai_error(status: int, message: str, param: str | None = None, code: str | None = None):
    # OpenAI clients read error.message; keep our own fields beside it.
    response = error_response(status, message, code)
    body = response.get_json()
    body["error"] = {"message": message, "type": "invalid_request_error" if status < 500 else "server_error",
                     "param": param, "code": code}
    response.set_data(__import__("json").dumps(body))
    return response


def _check_model(model, aliases: set, role: str) -> None:
    eng = engine()
    if model is not None and not isinstance(model, str):  # a list or object is unhashable: a 400, not a 500
        raise InvalidInput.field("model", f"must be a model name, not {type(model).__name__}")
    if model in aliases or model == eng.runtime.model_key(role):
        return
    raise InvalidInput.field("model", f"unknown model {model!r}; use {sorted(a for a in aliases if a)} or {eng.runtime.model_key(role)!r}")


def _wait(kind: str, params: dict, sent: dict | None = None):
    eng = engine()
    key = idempotency_key()
    timeout = state().settings.sync_timeout_s
    job = eng.submit_and_wait(kind, params, timeout=timeout, idempotency_key=key, sent=sent)
    if job.state == "succeeded":
        return job, None
    if job.state in ("failed", "cancelled"):
        error = job.error or {"message": "cancelled"}
        status = status_for_job_error(error) if job.state == "failed" else 409
        return job, _openai_error(status, error.get("message") or "the job failed")
    how = ("a retry with the same Idempotency-Key waits for it" if key else
           "it goes on: poll it with the job API, or send an Idempotency-Key header so that a retry waits for it")
    response = _openai_error(503, f"still running after {timeout:g} s; job {job.id}: {how}", code="timeout")
    # openai-python (like every Stainless-made client) retries a 5xx unless told not to: without a
    # key its retry would queue the same work again behind this job; with one, it waits for this job.
    response.headers["x-should-retry"] = "true" if key else "false"
    if key:
        response.headers["Retry-After"] = "1"
    return job, response


@bp.get("/models")
def list_models():
    eng = engine()
    created = int(time.time())
    data = []
    for role, choice in eng.runtime.profile.roles.items():
        data.append({"id": choice.model_id, "object": "model", "created": created, "owned_by": "enfoads", "role": role})
    for alias, role in (("dall-e-3", "image"), ("dall-e-2", "image"), ("whisper-1", "speech")):
        data.append({"id": alias, "object": "model", "created": created, "owned_by": "enfoads",
                     "role": role, "maps_to": eng.runtime.model_key(role)})
    return jsonify({"object": "list", "data": data})


@bp.post("/images/generations")
def image_generations():
    body = json_body(state().settings.max_body_mb * 1_000_000)
    _check_model(body.get("model"), IMAGE_ALIASES, "image")
    params = {"prompt": body.get("prompt"), "n": body.get("n", 1)}
    size = body.get("size")
    if size not in (None, "auto"):
        if not isinstance(size, str) or "x" not in size:
            raise InvalidInput.field("size", "use WIDTHxHEIGHT, e.g. 1024x1024")
        try:
            params["width"], params["height"] = (int(v) for v in size.split("x", 1))
        except ValueError:
            raise InvalidInput.field("size", "use WIDTHxHEIGHT, e.g. 1024x1024") from None
    response_format = body.get("response_format") or "b64_json"
    if response_format not in ("b64_json", "url"):
        raise InvalidInput.field("response_format", "b64_json or url")
    for passthrough in ("seed", "steps", "negative_prompt", "style"):
        if passthrough in body:
            params[passthrough] = body[passthrough]
    job, early = _wait("image.generate", params)
    if early is not None:
        return early
    result = job.result or {}
    ids = result.get("image_asset_ids") or result_asset_ids(job)
    assets = engine().assets
    data = []
    for asset_id in ids:
        if response_format == "url":
            data.append({"url": media_url(asset_id, external=True), "revised_prompt": result.get("prompt")})
        else:
            data.append({"b64_json": base64.b64encode(assets.read_bytes(asset_id)).decode(),
                         "revised_prompt": result.get("prompt")})
    return jsonify({"created": int(job.finished_at or time.time()), "data": data})


@bp.post("/audio/transcriptions")
def audio_transcriptions():
    settings = state().settings
    limit = int(settings.max_upload_mb * 1_000_000)
    if (request.content_length or 0) > limit:
        raise PayloadTooLarge(f"the upload is over the {settings.max_upload_mb:.0f} MB limit")
    if request.mimetype != "multipart/form-data":
        raise InvalidInput.field("file", "send multipart/form-data with the audio in 'file'")
    upload = request.files.get("file")
    if upload is None:
        raise InvalidInput.field("file", "required: the audio file")
    form = request.form
    _check_model(form.get("model"), SPEECH_ALIASES, "speech")
    data = upload.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"the upload is over the {settings.max_upload_mb:.0f} MB limit")
    if not data:
        raise InvalidInput.field("file", "is empty (0 bytes): send the audio to transcribe")
    asset = engine().assets.save_bytes(data, upload.mimetype or "application/octet-stream", kind="upload",
                                       params={"filename_given": bool(upload.filename)})
    params: dict = {"audio": asset.id, "response_format": form.get("response_format") or "json"}
    for name in ("language", "prompt", "temperature"):
        value = form_text(name)
        if value not in (None, ""):
            params["initial_prompt" if name == "prompt" else name] = value
    granularities = form.getlist("timestamp_granularities[]") or form.getlist("timestamp_granularities")
    if "word" in granularities:
        params["word_timestamps"] = True
    # A retry uploads the file again, as a new asset: it is the same request if the bytes are the same.
    job, early = _wait("speech.transcribe", params, sent={**params, "audio": asset.sha256})
    if early is not None:
        return early
    result = job.result or {}
    fmt = params["response_format"]
    if fmt in ("text", "srt", "vtt"):
        mime = {"text": "text/plain", "srt": "application/x-subrip", "vtt": "text/vtt"}[fmt]
        return Response(result.get("content", ""), mimetype=mime)
    return jsonify(result.get("body") or {"text": result.get("text", "")})
