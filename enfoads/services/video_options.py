"""The options of ``video.render`` and ``video.render_multi`` (see ``enfoads.services.video`` for what they do).

Field rules come from the options models (the frontend's names first, its
camelCase aliases accepted); what needs the server (the avatar exists, the
voice can speak) is checked after, naming the field as the client sent it.
"""
import math
from typing import Any

from pydantic import Field

from enfoads.services.avatars import AvatarStore
from enfoads.errors import InvalidInput
from enfoads.services.options import (
    FLAG_SCHEMA, Options, aliases, checked, choice, fail, flag, is_unicode, number, raise_fields, to_flag, to_whole_number, whole_number,
)
from enfoads.services.tts import TTS, split_text

#: Characters one script may have (~3 minutes of speech).
MAX_SCRIPT_CHARS = 3000
#: Scenes one multi-scene video may have, and characters in all their scripts.
MAX_SCENES = 10
MAX_TOTAL_CHARS = 12000
ORIENTATIONS = ("vertical", "horizontal", "square")
MOTIONS = ("zoom_in", "zoom_out", "pan", "none")
DEFAULT_RESOLUTION = 720
DEFAULT_FPS = 25
_ORIENTATION_ALIASES = {"portrait": "vertical", "9:16": "vertical", "landscape": "horizontal",
                        "16:9": "horizontal", "1:1": "square"}
_MOTION_ALIASES = {"zoom": "zoom_in", "zoom-in": "zoom_in", "zoom-out": "zoom_out", "static": "none"}


def _script(value: Any) -> str:
    if value is None:
        fail("is required: the text the avatar says")
    if not isinstance(value, str):
        fail("must be text")
    if len(value) > MAX_SCRIPT_CHARS:  # counted as sent, as the published maxLength is
        fail(f"is {len(value)} characters; at most {MAX_SCRIPT_CHARS} per video or scene")
    text = value.strip()
    if not text:
        fail("is empty: write what the avatar should say")
    if not is_unicode(text):
        fail("is not valid Unicode text (it holds a lone UTF-16 surrogate)")
    if len(text) > MAX_SCRIPT_CHARS:
        fail(f"is {len(text)} characters; at most {MAX_SCRIPT_CHARS} per video or scene")
    if not split_text(text):
        fail("has nothing to say (no letters or digits)")
    return text


def _resolution(value: Any) -> int:
    if value is None:
        return DEFAULT_RESOLUTION
    pixels = to_whole_number(value, lo=144, hi=1080, unit="p")
    if pixels % 2:
        fail("must be an even number of pixels")
    return pixels


def _scene_id(value: Any):
    if (not isinstance(value, (str, int, float)) or isinstance(value, bool) or len(str(value)) > 64
            or (isinstance(value, float) and not math.isfinite(value))
            or (isinstance(value, str) and not is_unicode(value))):
        fail("must be a short string or number")
    return value


def identifier(max_chars: int, what: str, schema: dict):
    """An id to look up later (an avatar, a voice): text of at most ``max_chars``; the store says if it exists."""
    def check(value: Any):
        if value is None:
            return None  # required ids are named by the store ("is required: an avatar id ...")
        if not isinstance(value, str):
            fail(f"must be {what}, not {type(value).__name__}")
        if len(value) > max_chars:
            fail(f"must be at most {max_chars} characters (got {len(value)})")
        return value
    return checked(check, schema, str | None)


Script = checked(_script, {"type": "string", "minLength": 1, "maxLength": MAX_SCRIPT_CHARS}, str)
AvatarId = identifier(128, "an avatar id from GET /avatars",
                      {"type": "string", "maxLength": 128, "description": "an id from GET /avatars"})
VoiceId = identifier(100, "a voice id from GET /voices",
                     {"anyOf": [{"type": "string", "maxLength": 100}, {"type": "null"}],
                      "description": "an id from GET /voices; absent: the default voice"})
Resolution = checked(_resolution, {"anyOf": [
    {"type": "integer", "minimum": 144, "maximum": 1080, "multipleOf": 2},
    {"type": "string", "description": "the same as text, \"720\" or \"720p\""}, {"type": "null"}],
    "description": "the short side in px"}, int)
SceneId = checked(lambda v: None if v is None else _scene_id(v),
                  {"anyOf": [{"type": "string", "maxLength": 64}, {"type": "number"}, {"type": "null"}]})
Orientation = choice(ORIENTATIONS, aliases=_ORIENTATION_ALIASES, default="vertical")
Motion = choice(MOTIONS, aliases=_MOTION_ALIASES, default="zoom_in")
Fps = whole_number(10, 30)
Speed = number(0.5, 2.0)
Flag = flag(False)
LipsyncFlag = flag(True)
Subtitles = checked(lambda v: None if v is None or v == "" else to_flag(v), FLAG_SCHEMA)


class _Look(Options):
    """What every scene of a video shares: its shape, motion and speech rate."""

    what = "video options"

    orientation: Orientation = Field(
        "vertical", validation_alias=aliases("orientation", "aspect_ratio"))
    resolution: Resolution = Field(DEFAULT_RESOLUTION, validation_alias=aliases("resolution", "height"))
    fps: Fps = DEFAULT_FPS
    motion: Motion = "zoom_in"
    speed: Speed = 1.0
    # The avatar's mouth follows the speech whenever the lip-sync model is installed; false: the still avatar.
    lipsync: LipsyncFlag = Field(True, validation_alias=aliases("lipsync", "lip_sync", "lipSync"))

    def normalised(self):
        self.fps = self.fps or DEFAULT_FPS
        self.speed = self.speed or 1.0
        return self


class RenderOptions(_Look):
    """``video.render`` (``POST /render-video``)."""

    script: Script
    avatar_id: AvatarId = Field(None, validation_alias=aliases("avatar_id", "avatarId"))
    voice_id: VoiceId = Field(None, validation_alias=aliases("voice_id", "voiceId", "voice"))
    subtitles: Flag = Field(False, validation_alias=aliases("generate_subtitles", "subtitles",
                                                                    "generateSubtitles"))


class SceneOptions(Options):
    """One scene, in the frontend's shape ``{id, avatarId, script, generateSubtitles}`` (display fields ignored)."""

    id: SceneId = None
    script: Script
    avatar_id: AvatarId = Field(None, validation_alias=aliases("avatarId", "avatar_id"))
    voice_id: VoiceId = Field(None, validation_alias=aliases("voiceId", "voice_id"))
    subtitles: Subtitles = Field(None, validation_alias=aliases("generateSubtitles", "generate_subtitles",
                                                                 "subtitles"))


def _scenes(value: Any) -> list:
    if value is None:
        fail("is required: a list of scenes")
    if not isinstance(value, list):
        fail("must be a list of scenes")
    if not value:
        fail("is empty: add at least one scene")
    if len(value) > MAX_SCENES:
        fail(f"has {len(value)} scenes; at most {MAX_SCENES} per video")
    return value


Scenes = checked(_scenes, {"type": "array", "minItems": 1, "maxItems": MAX_SCENES,
                           "items": SceneOptions.request_schema()})


class MultiSceneOptions(_Look):
    """``video.render_multi`` (``POST /render-multi-scene``): the scenes, and what they share."""

    scenes: Scenes
    voice_id: VoiceId = Field(None, validation_alias=aliases("voice_id", "voiceId"))
    subtitles: Flag = Field(False, validation_alias=aliases("generate_subtitles", "subtitles",
                                                                    "generateSubtitles"))


def _sent_name(params: dict, *names: str) -> str:
    """The name the client used for a field (the first of ``names`` present), for its error message."""
    return next((n for n in names if params.get(n) is not None), names[0])


def _voice(value: Any, field: str, tts: TTS) -> str | None:
    """Check that a voice id can speak now (or has a stand-in); keep what the client sent."""
    return tts.resolve(value, field=field).requested


def validate_render(params: Any, *, tts: TTS, avatars: AvatarStore) -> dict:
    """Check and normalise ``video.render`` params.

    Raises:
        InvalidInput: naming the field at fault; nothing has been done yet.
    """
    options = RenderOptions.parse(params)
    out = options.to_params()
    out["avatar_id"] = avatars.get(options.avatar_id, field=_sent_name(params, "avatar_id", "avatarId")).id
    out["voice_id"] = _voice(options.voice_id, _sent_name(params, "voice_id", "voiceId", "voice"), tts)
    return out


def validate_render_multi(params: Any, *, tts: TTS, avatars: AvatarStore) -> dict:
    """Check and normalise ``video.render_multi`` params."""
    options = MultiSceneOptions.parse(params)
    default_voice = None
    if options.voice_id is not None:
        default_voice = _voice(options.voice_id, _sent_name(params, "voice_id", "voiceId"), tts)
    out_scenes, total = [], 0
    for i, raw in enumerate(options.scenes):
        where = f"scenes[{i}]"
        if not isinstance(raw, dict):
            raise InvalidInput.field(where, "must be an object {id, avatarId, script, generateSubtitles}")
        try:
            scene = SceneOptions.parse(raw)
        except InvalidInput as exc:
            raise_fields({f"{where}.{k}": v for k, v in exc.fields.items()}, "scene options")
        total += len(scene.script)
        avatar = avatars.get(scene.avatar_id, field=f"{where}.{_sent_name(raw, 'avatarId', 'avatar_id')}")
        voice = default_voice
        if scene.voice_id is not None:
            voice = _voice(scene.voice_id, f"{where}.{_sent_name(raw, 'voiceId', 'voice_id')}", tts)
        out_scenes.append({"id": i + 1 if scene.id is None else scene.id, "script": scene.script,
                           "avatar_id": avatar.id, "voice_id": voice,
                           "subtitles": options.subtitles if scene.subtitles is None else scene.subtitles})
    if total > MAX_TOTAL_CHARS:
        raise InvalidInput.field("scenes", f"scripts total {total} characters; at most {MAX_TOTAL_CHARS} per video")
    out = options.to_params()
    out.pop("voice_id")
    out.pop("subtitles")
    return {**out, "scenes": out_scenes}
