"""The options of ``enhance.image`` and ``enhance.video`` (see ``enfoads.services.enhance`` for what they do),
and of the frontend's ``POST /enhance-media {media_url, type}``.

``media`` is what to enhance: base64, a ``data:`` URI or the id of a stored
asset. The frontend route turns one of this server's own signed media URLs
into its asset id first; any other URL is refused there (the server never
fetches a URL it is given: a public tunnel must not become a proxy into the
machine's network).
"""
from __future__ import annotations

from pydantic import Field

from typing import Any

from enfoads.services.options import MediaReference, Options, aliases, checked, choice, fail, flag, text, whole_number

__all__ = ["EnhanceOptions", "EnhanceMediaRequest", "MAX_SCALE", "MEDIA_TYPES"]

MAX_SCALE = 8
MEDIA_TYPES = ("image", "video")

def _media_url(value: Any) -> str:
    # Its kind only; the route reads it (a data URI is decoded once, a URL is matched against our own links).
    if not isinstance(value, str) or not value.strip():
        fail("is required: a data URI (data:image/png;base64,...) or a media URL this server gave")
    return value.strip()


MediaUrl = checked(_media_url, {"type": "string", "minLength": 1,
                                "description": "a data URI, or a /media/<id>?exp=..&sig=.. URL of this server"}, str)
ModelName = text(160, what="model id")
Scale = whole_number(1, MAX_SCALE)
Tile = whole_number(16, 2048, unit="px")
FaceRestore = flag(False)
MediaType = choice(MEDIA_TYPES, default="image")


class EnhanceOptions(Options):
    """What to enhance and how; absent fields take the profile's defaults."""

    what = "enhance options"

    media: MediaReference = Field(validation_alias=aliases("media", "image", "video"))
    # An upscaler: a catalogue id (``/models`` lists them) or a drop-in's ``upscale:<name>``.
    model: ModelName = None
    # The output's size over the input's; default the model's own. Below it the model's output is
    # reduced (area filter); above it is refused.
    scale: Scale = None
    # Tile side in px (default the profile's: 512 on a GPU); halved on out-of-memory.
    tile: Tile = None
    face_restore: FaceRestore = Field(False, validation_alias=aliases("face_restore", "restore_faces", "restore"))
    restore_model: ModelName = None  # a face restorer (default the profile's GFPGAN)


class EnhanceMediaRequest(Options):
    """The frontend's body: ``media_url`` (a data URI or one of this server's media URLs) and ``type``."""

    what = "enhance request"

    media_url: MediaUrl
    type: MediaType = "image"
    model: ModelName = None
    scale: Scale = None
    tile: Tile = None
    face_restore: FaceRestore = Field(False, validation_alias=aliases("face_restore", "restore_faces", "restore"))
    restore_model: ModelName = None
