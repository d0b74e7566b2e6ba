"""The OpenAPI 3.1 description of every route, and a small docs page that renders it."""
from __future__ import annotations

from typing import Mapping

from flask import Response

from enfoads import __version__
from enfoads.services.enhance import IMAGE_KIND as ENHANCE_IMAGE, VIDEO_KIND as ENHANCE_VIDEO
from enfoads.services.enhance_options import EnhanceMediaRequest, EnhanceOptions
from enfoads.services.faces import JOB_KIND as FACE_SWAP, SwapOptions
from enfoads.services.live_portrait import KIND as LIVE_PORTRAIT, LivePortraitOptions
from enfoads.services.image_options import CompareOptions, ImageOptions
from enfoads.services.speech import JOB_KIND as TRANSCRIBE
from enfoads.services.speech_options import TranscribeRequest
from enfoads.services.video import JOB_KIND as RENDER, JOB_KIND_MULTI as RENDER_MULTI
from enfoads.services.video_options import MultiSceneOptions, RenderOptions

ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _errors(*codes: int) -> dict:
    text = {
        400: "Invalid input (the offending fields are named)",
        401: "Missing or wrong API key",
        403: "Invalid or expired media signature",
        404: "Not found",
        409: "The job was cancelled",
        413: "Body too large",
        415: "Wrong content type",
        422: "Input that cannot be processed (for example no face found)",
        429: "Rate limit or full queue",
        500: "Internal error",
        501: "Capability not in this version",
        503: "Out of GPU memory, the engine is starting, or (OpenAI routes) the job outlived the sync wait",
    }
    return {str(c): {"description": text[c], "content": _json(ERROR)} for c in codes}


def _op(summary: str, responses: dict, *, body: dict | None = None, params: list | None = None,
        public: bool = False, tags: list[str] | None = None, body_content: dict | None = None,
        body_required: bool = True) -> dict:
    op: dict = {"summary": summary, "responses": responses}
    if tags:
        op["tags"] = tags
    if body is not None:
        op["requestBody"] = {"required": body_required, "content": _json(body)}
    if body_content is not None:
        op["requestBody"] = {"required": body_required, "content": body_content}
    if params:
        op["parameters"] = params
    if public:
        op["security"] = []
    return op


def _ok(schema: dict, code: str = "200", description: str = "OK") -> dict:
    return {code: {"description": description, "content": _json(schema)}}


OBJ = {"type": "object"}
WARM_STATE = {"enum": ["off", "pending", "warming", "warm", "skipped", "failed"]}
JOB = {"$ref": "#/components/schemas/Job"}
JOB_ID_PARAM = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 64}}
COMMON = (401, 429, 500, 503)
IDEMPOTENCY_KEY_PARAM = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "a retry with the same key gets the job the first try made (kept 24 h); "
                   "the same key with other parameters is a 422",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7e]+$"}}


def builtin_options() -> dict[str, type]:
    """Every built-in job kind's options model (the engine's kinds declare the same: a test holds that)."""
    return {"image.generate": ImageOptions, "image.compare": CompareOptions, FACE_SWAP: SwapOptions,
            TRANSCRIBE: TranscribeRequest, RENDER: RenderOptions, RENDER_MULTI: MultiSceneOptions,
            ENHANCE_IMAGE: EnhanceOptions, ENHANCE_VIDEO: EnhanceOptions, LIVE_PORTRAIT: LivePortraitOptions}


def _job_request(options: Mapping[str, type]) -> dict:
    """``POST /api/jobs``: one branch per kind, its params checked by that kind's options model."""
    return {"oneOf": [
        {"type": "object", "required": ["kind"], "properties": {
            "kind": {"const": kind}, "params": model.request_schema()}}
        for kind, model in sorted(options.items())]}


def build_spec(server_url: str = "/", options: Mapping[str, type] | None = None) -> dict:
    """The spec; request bodies of the job routes are the options models' own schemas (``options``: kind -> model)."""
    options = builtin_options() if options is None else options
    image_request = options["image.generate"].request_schema()
    # The frontend's saved asset: `id` its IndexedDB key (an integer), `createdAt` Date.now() (ms).
    library_item = {
        "type": "object", "required": ["type", "content"], "additionalProperties": False,
        "properties": {
            "id": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 2**53 - 1},
                             {"type": "string", "minLength": 1, "maxLength": 128}]},
            "type": {"enum": ["image", "video", "audio"]},
            "content": {"type": "string", "minLength": 1,
                        "description": "a data URI of the asset's type, or an http(s) URL"},
            "prompt": {"type": "string", "maxLength": 10000},
            "createdAt": {"anyOf": [{"type": "number", "minimum": 0, "maximum": 2**53 - 1},
                                    {"type": "string", "minLength": 1, "maxLength": 64}]},
            "name": {"type": "string", "maxLength": 500},
            "metadata": {"type": "object"},
        },
    }
    library_list = {"type": "object", "required": ["status", "assets", "assets_count"], "properties": {
        "status": {"const": "success"}, "assets": {"type": "array", "items": {
            "type": "object", "required": ["id", "type", "content"], "properties": {
                "id": {"type": ["integer", "string"]}, "type": {"type": "string"}, "content": {"type": "string"},
                "prompt": {"type": "string"}, "createdAt": {"type": ["number", "string"]}}}},
        "assets_count": {"type": "integer", "minimum": 0}}}
    sync_accepted = {"202": {"description": "Still running after the wait: poll the job",
                             "content": _json({"type": "object", "required": ["status", "job_id"],
                                               "properties": {"status": {"const": "processing"},
                                                              "job_id": {"type": "string"}}})}}
    paths = {
        "/": {"get": _op("Health check (no key)", _ok({
            "type": "object", "required": ["status", "warm_state"],
            "properties": {"status": {"const": "online"}, "ready": {"type": "boolean"},
                           "warm_state": WARM_STATE}}),
            public=True, tags=["system"])},
        "/auth/login": {"post": _op(
            "A short-lived bearer token for a caller that proved the key",
            {**_ok({"type": "object", "required": ["status", "token", "type"],
                    "properties": {"status": {"const": "success"}, "token": {"type": "string"},
                                   "type": {"const": "Bearer"}}}), **_errors(*COMMON)},
            # The body is optional and ignored (the frontend sends {"username": "demo_user"}).
            body_content={"application/json": {"schema": {}}}, body_required=False, tags=["frontend"])},
        "/gpu-status": {"get": _op("GPU and residency status", {**_ok({
            "type": "object", "required": ["status", "device", "vram_total_gb", "models_loaded"],
            # "online" whenever the engine runs, GPU or not (the frontend's badge is green only then).
            "properties": {"status": {"const": "online"}, "device": {"type": "string"},
                           "gpu": {"type": "boolean"},
                           "vram_total_gb": {"type": "number"}, "vram_allocated_gb": {"type": "number"},
                           "vram_reserved_gb": {"type": "number"}, "vram_free_gb": {"type": "number"},
                           "utilization_percent": {"type": ["number", "null"]},
                           "utilization_source": {"enum": ["nvml", "unavailable", "none"]},
                           "vram_used_percent": {"type": "number"}, "downloads": OBJ,
                           "warm_state": WARM_STATE, "warmup": OBJ,
                           "models_loaded": {"type": "array", "items": {"type": "string"}},
                           "cuda_version": {"type": ["string", "null"]}, "residency": OBJ}}),
            **_errors(*COMMON)}, tags=["system"])},
        "/generate-image": {"post": _op("Text to image; waits for the result", {
            **_ok({"type": "object", "required": ["status", "image", "cached"],
                   "properties": {"status": {"const": "success"}, "image": {"type": "string"},
                                  "images": {"type": "array", "items": {"type": "string"}},
                                  "cached": {"type": "boolean"}, "seed": {"type": ["integer", "null"]},
                                  "job_id": {"type": "string"}}}),
            **sync_accepted, **_errors(400, 409, 413, 415, *COMMON)}, body=image_request, tags=["frontend"])},
        "/face-swap": {"post": _op("Swap the source face into the target image; waits for the result", {
            **_ok({"type": "object", "required": ["status", "image"],
                   "properties": {"status": {"const": "success"}, "image": {"type": "string"}}}),
            **sync_accepted, **_errors(400, 409, 413, 415, 422, *COMMON)},
            body=options[FACE_SWAP].request_schema(), tags=["frontend"])},
        "/magic-prompt": {"post": _op("Enhance a prompt", {
            **_ok({"type": "object", "required": ["status", "prompt", "original", "method"],
                   "properties": {"status": {"const": "success"}, "prompt": {"type": "string"},
                                  "original": {"type": "string"}, "method": {"type": "string"}}}),
            **_errors(400, 413, 415, *COMMON)},
            body={"type": "object", "required": ["prompt"], "properties": {"prompt": {"type": "string"}}},
            tags=["frontend"])},
        "/styles": {"get": _op("Style names", {**_ok({"type": "object", "required": ["styles"], "properties": {
            "styles": {"type": "array", "items": {"type": "string"}}}}), **_errors(*COMMON)}, tags=["frontend"])},
        "/api/jobs": {
            "post": _op("Queue a job", {"202": {"description": "Queued", "content": _json(JOB)},
                                        **_errors(400, 413, 415, 422, *COMMON)},
                        body=_job_request(options), params=[IDEMPOTENCY_KEY_PARAM], tags=["jobs"]),
            "get": _op("List jobs", {**_ok({"type": "object", "required": ["jobs"], "properties": {
                "jobs": {"type": "array", "items": JOB}}}), **_errors(400, *COMMON)},
                params=[{"name": "state", "in": "query", "schema": {
                    "type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled"]}},
                        {"name": "kind", "in": "query", "schema": {"type": "string"}},
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}}],
                tags=["jobs"]),
        },
        "/api/jobs/{job_id}": {"get": _op("One job", {**_ok(JOB), **_errors(404, *COMMON)},
                                          params=[JOB_ID_PARAM], tags=["jobs"])},
        "/api/jobs/{job_id}/cancel": {"post": _op("Cancel a job", {**_ok(JOB), **_errors(404, *COMMON)},
                                                  params=[JOB_ID_PARAM], tags=["jobs"])},
        "/api/events": {"get": _op("Events after a sequence number (long-poll)", {
            **_ok({"type": "object", "required": ["events", "last_seq"], "properties": {
                "events": {"type": "array", "items": OBJ}, "last_seq": {"type": "integer"}}}),
            **_errors(400, *COMMON)},
            params=[{"name": "since", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                    {"name": "timeout", "in": "query", "schema": {"type": "number", "minimum": 0, "maximum": 25}},
                    {"name": "job_id", "in": "query", "schema": {"type": "string"}}], tags=["jobs"])},
        "/api/assets": {
            "get": _op("This client's saved assets, as it sent them", {**_ok(library_list), **_errors(400, *COMMON)},
                       params=[{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                                            "maximum": 1000}},
                               {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0,
                                                                             "maximum": 10**9}}],
                       tags=["frontend"]),
            "post": _op("Save an asset (or replace this client's asset of the same id)", {
                "201": {"description": "Saved", "content": _json(library_list)}, **_errors(400, 413, 415, *COMMON)},
                body={"anyOf": [library_item, {
                    "type": "object", "required": ["assets"], "additionalProperties": False,
                    "properties": {"assets": {"type": "array", "minItems": 1, "maxItems": 100,
                                              "items": library_item}}}]}, tags=["frontend"]),
        },
        "/media/{asset_id}": {"get": _op("A media file by signed URL (no key)", {
            "200": {"description": "The file", "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
            **_errors(403, 404, 500)},
            params=[{"name": "asset_id", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "exp", "in": "query", "required": True, "schema": {"type": "integer"}},
                    {"name": "sig", "in": "query", "required": True, "schema": {"type": "string"}}],
            public=True, tags=["media"])},
        "/models": {"get": _op("Models of the profile", {**_ok({"type": "object", "required": ["models"], "properties": {
            "models": {"type": "array", "items": OBJ},
            "enhance_models": {"type": "array", "items": OBJ,
                               "description": "upscalers and face restorers: the catalogue's and the files in upscale/"},
        }}), **_errors(*COMMON)}, tags=["system"])},
        "/config": {"get": _op("Non-secret settings", {**_ok({"type": "object", "required": ["config"]}),
                                                      **_errors(*COMMON)}, tags=["system"])},
        "/openapi.json": {"get": _op("This document", {**_ok(OBJ), **_errors(*COMMON)}, tags=["system"])},
        "/docs": {"get": _op("API docs page", {"200": {"description": "HTML", "content": {"text/html": {
            "schema": {"type": "string"}}}}, **_errors(*COMMON)}, tags=["system"])},
        "/v1/models": {"get": _op("OpenAI-compatible model list", {**_ok({"type": "object", "required": ["data"]}),
                                                                    **_errors(*COMMON)}, tags=["openai"])},
        "/v1/images/generations": {"post": _op("OpenAI-compatible image generation", {
            **_ok({"type": "object", "required": ["created", "data"], "properties": {
                "created": {"type": "integer"}, "data": {"type": "array", "items": OBJ}}}),
            **_errors(400, 409, 413, 415, 422, *COMMON)},
            body={"type": "object", "required": ["prompt"], "properties": {
                "prompt": {"type": "string"}, "n": {"type": "integer"}, "size": {"type": "string"},
                "response_format": {"enum": ["b64_json", "url"]}, "model": {"type": "string"}}},
            params=[IDEMPOTENCY_KEY_PARAM], tags=["openai"])},
        "/v1/audio/transcriptions": {"post": _op("OpenAI-compatible transcription", {
            "200": {"description": "Transcript", "content": {
                "application/json": {"schema": OBJ}, "text/plain": {"schema": {"type": "string"}},
                "application/x-subrip": {"schema": {"type": "string"}}, "text/vtt": {"schema": {"type": "string"}}}},
            **_errors(400, 409, 413, 415, 422, *COMMON)},
            body_content={"multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                "file": {"type": "string", "format": "binary"}, "model": {"type": "string"},
                "language": {"type": "string"}, "prompt": {"type": "string"},
                "response_format": {"enum": ["json", "text", "srt", "vtt", "verbose_json"]},
                "temperature": {"type": "number"}}}}}, params=[IDEMPOTENCY_KEY_PARAM], tags=["openai"])},
    }
    queued = {"202": {"description": "Queued", "content": _json({
        "type": "object", "required": ["status", "job_id", "message"],
        "properties": {"status": {"const": "success"}, "job_id": {"type": "string"}, "message": {"type": "string"}}})}}
    paths["/render-video"] = {"post": _op("Avatar video from a script (a job)", {
        **queued, **_errors(400, 413, 415, *COMMON)},
        body=options[RENDER].request_schema(), tags=["frontend"])}
    paths["/render-multi-scene"] = {"post": _op("A video of several scenes (a job)", {
        **queued, **_errors(400, 413, 415, *COMMON)},
        body=options[RENDER_MULTI].request_schema(), tags=["frontend"])}
    paths["/enhance-media"] = {"post": _op(
        "Upscale an image (waited for) or a video (a job, 202); faces restored with face_restore", {
            **_ok({"type": "object", "required": ["status", "image", "url"], "properties": {
                "status": {"const": "success"}, "image": {"type": "string", "description": "a data URI (PNG)"},
                "url": {"type": "string", "description": "a signed media URL of the same PNG"},
                "job_id": {"type": "string"}, "width": {"type": "integer"}, "height": {"type": "integer"},
                "model": {"type": "string"}, "scale": {"type": "integer"},
                "faces_restored": {"type": "integer"}}}),
            **queued,
            **_errors(400, 403, 413, 415, 422, *COMMON)},
        body=EnhanceMediaRequest.request_schema(), tags=["frontend"])}
    paths["/live-portrait"] = {"post": _op(
        "A portrait that speaks a clip, lip-synced (a job): image and audio as data URIs or base64", {
            **queued, **_errors(400, 403, 413, 415, *COMMON)},
        body=options[LIVE_PORTRAIT].request_schema(), tags=["frontend"])}
    paths["/voices"] = {"get": _op("Voices usable now", {**_ok({"type": "object", "required": ["voices"], "properties": {
        "voices": {"type": "array", "items": {
            "type": "object", "required": ["id", "name", "language", "gender", "country"],
            "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "language": {"type": "string"},
                           # Capitalised: the frontend colours a voice pink when gender is exactly "Female".
                           "gender": {"enum": ["Female", "Male", "Unknown"]}, "country": {"type": "string"}}}}}}),
        **_errors(*COMMON)}, tags=["frontend"])}
    avatar = {"type": "object", "required": ["id", "name", "img"]}
    paths["/avatars"] = {
        "get": _op("Avatars with signed image URLs", {**_ok({"type": "object", "required": ["avatars"], "properties": {
            "avatars": {"type": "array", "items": avatar}}}), **_errors(*COMMON)}, tags=["frontend"]),
        "post": _op("Upload an avatar (JSON image as base64/data URI, or multipart)", {
            "201": {"description": "Saved", "content": _json({"type": "object", "required": ["avatar"],
                                                               "properties": {"avatar": avatar}})},
            **_errors(400, 413, 415, *COMMON)},
            body={"type": "object", "required": ["image"], "properties": {"image": {"type": "string"},
                                                                          "name": {"type": "string"}}},
            tags=["frontend"]),
    }
    paths["/console"] = {"get": _op("The built-in console (redirects to /console/)", {
        "302": {"description": "to /console/"}}, public=True, tags=["console"])}
    paths["/console/"] = {"get": _op("The built-in console: a page of static ES modules (no key in it)", {
        "200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}},
        public=True, tags=["console"])}
    paths["/voices/{voice_id}/preview"] = {"get": _op("A short WAV of a voice (the console's preview)", {
        "200": {"description": "WAV", "content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}}},
        **_errors(400, 404, *COMMON)},
        params=[{"name": "voice_id", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 100}},
                {"name": "text", "in": "query", "required": False, "schema": {"type": "string", "maxLength": 200}}],
        tags=["console"])}
    paths["/api/models/{model_id}/unload"] = {"post": _op("Free a loaded model's memory now", {
        **_ok({"type": "object", "required": ["status", "model_id", "unloaded"], "properties": {
            "status": {"const": "success"}, "model_id": {"type": "string"}, "unloaded": {"type": "boolean"}}}),
        **_errors(400, 404, *COMMON)},
        params=[{"name": "model_id", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 200}}],
        tags=["system"])}
    paths["/avatars/{avatar_id}/image"] = {"get": _op("An avatar's picture by signed URL (no key)", {
        "200": {"description": "PNG", "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}},
        **_errors(403, 404, 500)},
        params=[{"name": "avatar_id", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "exp", "in": "query", "required": True, "schema": {"type": "integer"}},
                {"name": "sig", "in": "query", "required": True, "schema": {"type": "string"}}],
        public=True, tags=["frontend"])}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Enfoads API", "version": __version__,
                 "description": "Generative models on a small GPU, for a web frontend. Every route but `/` and "
                                "signed `/media` links needs the key (Bearer or X-API-Key), or the secret URL prefix."},
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}, {"apiKey": []}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
            "schemas": {
                "Error": {"type": "object", "required": ["status", "message"], "properties": {
                    "status": {"const": "error"}, "message": {"type": "string"}, "code": {"type": "string"},
                    "details": {}}},
                "Job": {"type": "object", "required": ["id", "status", "progress"], "properties": {
                    "id": {"type": "string"}, "status": {"enum": ["queued", "processing", "completed", "failed"]},
                    "state": {"enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
                    "progress": {"type": "integer", "minimum": 0, "maximum": 100},
                    "stage": {"type": ["string", "null"]}, "url": {"type": ["string", "null"]},
                    "error": {"type": ["string", "null"]}, "result": {"type": ["object", "null"]}}},
            },
        },
        "paths": paths,
    }


def docs_page() -> Response:
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Enfoads API {__version__}</title>
<style>body{{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}
code{{background:#f3f3f3;padding:0 .25rem}} li{{margin:.2rem 0}}</style></head>
<body><h1>Enfoads API {__version__}</h1>
<p>The machine-readable description is <a href="openapi.json"><code>openapi.json</code></a>.
Send the key as <code>Authorization: Bearer &lt;key&gt;</code> or <code>X-API-Key</code>,
or use the URL printed at start.</p><ul id="routes"></ul>
<script>
fetch("openapi.json", {{headers: {{}}}}).then(r => r.json()).then(spec => {{
  const ul = document.getElementById("routes");
  for (const [path, ops] of Object.entries(spec.paths)) for (const [m, op] of Object.entries(ops)) {{
    const li = document.createElement("li");
    li.textContent = `${{m.toUpperCase()}} ${{path}} — ${{op.summary}}`;
    ul.appendChild(li);
  }}
}}).catch(() => {{}});
</script></body></html>"""
    return Response(html, mimetype="text/html")
