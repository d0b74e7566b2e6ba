"""Signed media URLs: ``/media/<asset_id>?exp=..&sig=..``, usable in <img> and <video> tags."""
from __future__ import annotations

import re

from flask import Blueprint, request, send_file

from enfoads.work.assets import SignatureError
from enfoads.web.errors import error_response
from enfoads.web.state import engine

bp = Blueprint("media", __name__)
ASSET_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@bp.get("/media/<asset_id>")
def get_media(asset_id: str):
    if not ASSET_ID.match(asset_id):
        return error_response(404, "no such asset", "asset_not_found")
    expires, signature = request.args.get("exp", ""), request.args.get("sig", "")
    if not expires or not signature:
        raise SignatureError("this media link has no signature; ask the API for a fresh URL")
    assets = engine().assets
    assets.verify(asset_id, expires, signature)
    asset = assets.get(asset_id)
    response = send_file(assets.path(asset_id), mimetype=asset.mime, conditional=True, max_age=300)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
