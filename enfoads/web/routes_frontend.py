"""The external frontend's contract (shared/frontend-contract.md), route by route."""
from __future__ import annotations

import base64

from flask import Blueprint, jsonify, request, send_file, url_for

from enfoads.errors import InvalidInput
from enfoads.web.errors import code_for_job_error, error_response, status_for_job_error
from enfoads.web.http import MEDIA_URL_TTL_S, json_body, media_url, query_number, result_asset_ids
from enfoads.web.state import engine, state

bp = Blueprint("frontend", __name__)
SUBMIT_ENDPOINTS = ["frontend.generate_image", "frontend.face_swap", "frontend.render_video",
                    "frontend.render_multi_scene", "frontend.upload_avatar", "frontend.enhance_media"]


@bp.post("/auth/login")
def login():
    """A short-lived token for a caller that proved the key (header or the secret URL)."""
    creds = state().credentials
    return jsonify({"status": "success", "token": creds.issue_token(), "type": "Bearer", "expires_in": 12 * 3600})


def _data_uri(asset_id: str) -> str:
    eng = engine()
    asset = eng.assets.get(asset_id)
    return f"data:{asset.mime};base64," + base64.b64encode(eng.assets.read_bytes(asset_id)).decode()


def _run_sync(kind: str, params: dict):
    """Submit and wait; the finished job, or a response carrying the job id on timeout or failure."""
    eng = engine()
    job = eng.submit_and_wait(kind, params, timeout=state().settings.sync_timeout_s)
    if job.state == "succeeded":
        return job, None
    if job.state == "failed":
        error = job.error or {}
        return job, error_response(
            status_for_job_error(error), error.get("message") or "the job failed", code_for_job_error(error),
            details={"job_id": job.id},
        )
    if job.state == "cancelled":
        return job, error_response(409, "the job was cancelled", "cancelled", details={"job_id": job.id})
    response = jsonify(
        {
            "status": "processing",
            "job_id": job.id,
            "progress": job.progress,
            "message": f"still working; poll /api/jobs/{job.id} or listen for job_update",
        }
    )
    response.status_code = 202
    return job, response


@bp.post("/generate-image")
def generate_image():
    body = json_body(state().settings.max_body_mb * 1_000_000)
    job, early = _run_sync("image.generate", body)
    if early is not None:
        return early
    result = job.result or {}
    # The images themselves, not their preview frames (which follow them in asset_ids).
    images = [_data_uri(i) for i in result.get("image_asset_ids") or result_asset_ids(job)[:1]]
    return jsonify(
        {
            "status": "success",
            "image": images[0] if images else None,
            "images": images,
            "cached": bool(result.get("cached", False)),
            "seed": result.get("seed"),
            "job_id": job.id,
            "width": result.get("width"),
            "height": result.get("height"),
        }
    )


@bp.post("/face-swap")
def face_swap():
    body = json_body(state().settings.max_body_mb * 1_000_000)
    job, early = _run_sync("faces.swap", body)
    if early is not None:
        return early
    ids = result_asset_ids(job)
    if not ids:
        return error_response(500, "the swap finished without an image", details={"job_id": job.id})
    return jsonify({"status": "success", "image": _data_uri(ids[0]), "job_id": job.id, "faces": (job.result or {}).get("faces")})


@bp.post("/magic-prompt")
def magic_prompt():
    from enfoads.services.prompts import enhance

    body = json_body(1_000_000)
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidInput.field("prompt", "required: a non-empty string")
    if len(prompt) > 2000:
        raise InvalidInput.field("prompt", "at most 2000 characters")
    enhanced = enhance(prompt)
    return jsonify({"status": "success", **enhanced})


@bp.get("/styles")
def styles():
    from enfoads.services.styles import STYLES

    return jsonify({"status": "success", "styles": list(STYLES)})


def _submit_render(kind: str):
    body = json_body(state().settings.max_body_mb * 1_000_000)
    job = engine().submit(kind, body)
    response = jsonify({"status": "success", "job_id": job.id, "message": "queued: listen for job_update or poll "
                        f"/api/jobs/{job.id}"})
    response.status_code = 202
    return response


@bp.post("/render-video")
def render_video():
    """Script -> speech -> avatar video (a job on the CPU pool); answers with the job id at once."""
    return _submit_render("video.render")


@bp.post("/render-multi-scene")
def render_multi_scene():
    return _submit_render("video.render_multi")


@bp.post("/live-portrait")
def live_portrait():
    """A portrait that speaks a clip ``{image, audio}`` (data URIs or base64): a job, answered at once (202)."""
    from enfoads.services.live_portrait import KIND, MAX_AUDIO_BYTES
    from enfoads.services.media import is_asset_id, read_payload

    eng = engine()
    body = json_body(state().settings.max_body_mb * 1_000_000)
    params = dict(body)
    uploads = []
    try:
        # Each is decoded once and kept as an upload asset, so the job's row holds ids, not megabytes of base64.
        for name, limit in (("image", eng.avatars.max_bytes), ("audio", MAX_AUDIO_BYTES)):
            value = params.get(name)
            if isinstance(value, str) and value.strip() and not is_asset_id(value):
                value = _own_media(value, field=name)  # one of our signed media URLs -> its asset id
                if is_asset_id(value):
                    params[name] = value
                    continue
                payload = read_payload(value, field=name, max_bytes=limit)
                mime = payload.declared_mime or ("image/png" if name == "image" else "audio/wav")
                upload = eng.assets.save_bytes(payload.data, mime, kind="upload")
                uploads.append(upload.id)
                params[name] = upload.id
        job = eng.submit(KIND, params)
    except Exception:
        for upload_id in uploads:
            eng.assets.delete(upload_id)  # refused: nothing of it is kept
        raise
    response = jsonify({"status": "success", "job_id": job.id,
                        "message": f"queued: listen for job_update or poll /api/jobs/{job.id}"})
    response.status_code = 202
    return response


def _own_media(value: str, field: str = "media_url") -> str:
    """An asset id for one of this server's signed media URLs, a data URI as it is; never a fetch.

    The server never downloads a URL it is sent: behind a public tunnel that
    would let strangers make it request addresses inside its own network.
    """
    from enfoads.services.library import media_link
    from enfoads.services.media import is_asset_id

    if value[:5].lower() == "data:" or is_asset_id(value):
        return value
    link = media_link(value)
    if link is not None:
        asset_id, expires, signature = link
        engine().assets.verify(asset_id, expires, signature)  # 403 for a forged or expired link
        return asset_id
    if "://" in value[:16] or value[:5].lower() == "file:":  # base64 has no ":", so this is some other URL
        raise InvalidInput.field(field, "must be a data URI or a media URL this server gave "
                                              "(/media/<id>?exp=...&sig=...); other URLs are never fetched")
    return value  # base64 as it is: the service reads it


@bp.post("/enhance-media")
def enhance_media():
    """Upscale (and restore the faces of) an image, waited for like /generate-image, or a video, as a job (202)."""
    from enfoads.services.enhance import IMAGE_KIND, VIDEO_KIND
    from enfoads.services.enhance_options import EnhanceMediaRequest
    from enfoads.services.media import is_asset_id, read_payload

    eng = engine()
    body = json_body(state().settings.max_body_mb * 1_000_000)
    request_options = EnhanceMediaRequest.parse(body).to_params()
    media_type = request_options.pop("type")
    params = {**request_options, "media": _own_media(request_options.pop("media_url"))}
    if media_type == "video":
        upload = None
        if not is_asset_id(params["media"]):
            # Decoded once and kept as an upload asset, so the job's row holds an id, not megabytes of base64.
            payload = read_payload(params["media"], field="media_url", max_bytes=eng.enhance.limits.max_video_bytes)
            upload = eng.assets.save_bytes(payload.data, payload.declared_mime or "video/mp4", kind="upload")
            params["media"] = upload.id
        try:
            job = eng.submit(VIDEO_KIND, params)
        except Exception:
            if upload is not None:
                eng.assets.delete(upload.id)  # refused: nothing of it is kept
            raise
        response = jsonify({"status": "success", "job_id": job.id, "message": "queued: listen for job_update or "
                            f"poll /api/jobs/{job.id}"})
        response.status_code = 202
        return response
    job, early = _run_sync(IMAGE_KIND, params)
    if early is not None:
        return early
    result = job.result or {}
    asset_id = result.get("asset_id")
    if not asset_id:
        return error_response(500, "the enhance finished without an image", details={"job_id": job.id})
    return jsonify({"status": "success", "image": _data_uri(asset_id), "url": media_url(asset_id), "job_id": job.id,
                    **{k: result.get(k) for k in ("width", "height", "model", "scale", "faces_restored")}})


@bp.get("/voices")
def voices():
    """The voices usable now; ``gender`` as the frontend compares it (``Female``/``Male``, capitalised)."""
    from enfoads.services.tts import available_voices
    from enfoads.models.voices import frontend_gender

    listed = [{**v, "gender": frontend_gender(v["gender"])} for v in available_voices(engine().tts)]
    return jsonify({"status": "success", "voices": listed})


# ------------------------------------------------------------------ the saved-assets library

MAX_ASSETS_PER_POST = 100


def _library_client() -> str:
    """This request's library partition (see ``enfoads.services.library.client_identity`` for why these values)."""
    from enfoads.services.library import client_identity

    creds = state().credentials
    header = request.headers.get("Authorization", "")
    bearer = header[7:].strip() if header[:7].lower() == "bearer " else None
    api_key = request.headers.get("X-API-Key")
    is_key = creds.check_key(bearer) or (bearer is None and creds.check_key(api_key))
    return client_identity(bearer or None, is_api_key=is_key, remote_addr=request.remote_addr,
                           user_agent=request.headers.get("User-Agent"))


@bp.get("/api/assets")
def list_library():
    """This client's saved assets, in exactly the shape it sent them, the last first saved first."""
    lib, client = engine().library, _library_client()
    limit = query_number("limit", 200, 1, 1000)
    offset = query_number("offset", 0, 0, 10**9)
    return jsonify({"status": "success", "assets": lib.list(client, limit=limit, offset=offset),
                    "assets_count": lib.count(client)})


@bp.post("/api/assets")
def add_to_library():
    """Save one asset (the frontend's ``{id, type, content, prompt, createdAt}``) or ``{assets: [...]}``.

    A ``content`` that is one of this server's signed media URLs is kept
    valid past its expiry for as long as its asset exists: the frontend keeps
    the URL for good.
    """
    from enfoads.services.library import media_link, validate_item

    body = json_body(state().settings.max_body_mb * 1_000_000)
    if "assets" in body:
        items = body["assets"]
        if set(body) != {"assets"}:
            raise InvalidInput.field("assets", "send either one asset or {\"assets\": [...]} alone")
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_ASSETS_PER_POST:
            raise InvalidInput.field("assets", f"a list of 1 to {MAX_ASSETS_PER_POST} assets")
    else:
        items = [body]
    checked = []
    for index, item in enumerate(items):
        try:
            checked.append(validate_item(item))
        except InvalidInput as exc:
            if "assets" not in body:
                raise
            raise type(exc)(f"assets[{index}]: {exc.message}",
                            fields={f"assets[{index}].{k}": v for k, v in exc.fields.items()}) from None
    # Every item is valid before any is saved.
    eng, client = engine(), _library_client()
    saved = []
    for stored in checked:
        link = media_link(stored["content"])
        kept = link is not None and eng.assets.keep_link(*link)
        saved.append(eng.library.add(client, stored, media_asset_id=link[0] if kept else None))
    response = jsonify({"status": "success", "assets": saved, "assets_count": eng.library.count(client)})
    response.status_code = 201
    return response


def _avatar_view(avatar) -> dict:
    assets = engine().assets
    expires, signature = assets.sign(f"avatar-{avatar.id}", ttl_s=MEDIA_URL_TTL_S)
    img = url_for("frontend.avatar_image", avatar_id=avatar.id, exp=expires, sig=signature, _external=True)
    return {**avatar.to_dict(), "img": img}


@bp.get("/avatars")
def avatars():
    return jsonify({"status": "success", "avatars": [_avatar_view(a) for a in engine().avatars.list()]})


@bp.post("/avatars")
def upload_avatar():
    """A new avatar: JSON ``{image: base64 or data URI, name?}`` or multipart ``image`` (+ ``name``)."""
    eng = engine()
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("image") or request.files.get("file")
        if upload is None:
            raise InvalidInput.field("image", "required: the image file")
        avatar = eng.avatars.add(upload.read(), request.form.get("name"), find_face=eng.avatar_faces.finder())
    else:
        body = json_body(state().settings.max_body_mb * 1_000_000)
        if "image" not in body:
            raise InvalidInput.field("image", "required: base64 or a data URI")
        avatar = eng.avatars.add(body["image"], body.get("name"), find_face=eng.avatar_faces.finder())
    response = jsonify({"status": "success", "avatar": _avatar_view(avatar)})
    response.status_code = 201
    return response


@bp.get("/avatars/<avatar_id>/image")
def avatar_image(avatar_id: str):
    """An avatar's picture by signed URL (no key: <img> tags send no headers)."""
    eng = engine()
    eng.assets.verify(f"avatar-{avatar_id}", request.args.get("exp", ""), request.args.get("sig", ""))
    return send_file(eng.avatars.path(avatar_id), mimetype="image/png", max_age=300)
