"""The options of ``image.generate`` and ``image.compare``: their limits, models and cross-field rules.

``ImageOptions.parse(params)`` checks and normalises a request: every bad
field is named; ``seed`` is drawn at random when absent; ``steps`` and
``guidance`` stay None for the model's defaults; ``width``/``height`` stay
None when an aspect ratio (or nothing) chooses the size. Normalising twice
changes nothing. Whether ``model`` is usable here is the service's check
(it needs the runtime), made after these.
"""
import secrets
from typing import Any

from pydantic import Field

from enfoads.services.options import (
    Options, aliases, checked, choice, fail, flag, number, schema_of, text, to_text, to_whole_number, whole_number,
)
from enfoads.services.prompts import MAX_PROMPT_CHARS
from enfoads.services.styles import get_style, style_names

# The frontend's aspect ratios and their exact sizes (width, height) on SDXL.
ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "16:9": (1344, 768),
    "9:16": (768, 1344),
    "21:9": (1536, 640),
    "9:21": (640, 1536),
    "11:8": (1152, 832),
    "8:11": (832, 1152),
    "4:3": (1152, 896),
    "3:4": (896, 1152),
}
FORMATS = {"png": "image/png", "webp": "image/webp", "jpeg": "image/jpeg"}
FORMAT_ALIASES = {"jpg": "jpeg", "image/png": "png", "image/webp": "webp", "image/jpeg": "jpeg"}
MIN_SIDE, MAX_SIDE = 256, 1536
MIN_STEPS, MAX_STEPS = 1, 50
MIN_GUIDANCE, MAX_GUIDANCE = 0.0, 20.0
MAX_N = 4
MAX_SEED = 2**32 - 1
MAX_MODEL_ID_CHARS = 300


def _style(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        fail(f"must be a style name, not {type(value).__name__}")
    try:
        found = get_style(value)
    except KeyError:
        fail(f"unknown style {value!r}; choose one of: {', '.join(style_names())}")
    return found.name if found else None


def _ratio(value: Any) -> str | None:
    if value is None:
        return None
    word = value.strip().replace(" ", "") if isinstance(value, str) else None
    if not word:
        return None if word == "" else fail(f"must be one of {', '.join(ASPECT_RATIOS)}, not {value!r}")
    if word not in ASPECT_RATIOS:
        fail(f"must be one of {', '.join(ASPECT_RATIOS)}, not {value!r}")
    return word


def _negative(value: Any) -> str:
    return "" if value is None else (to_text(value, max_chars=MAX_PROMPT_CHARS) or "")


ModelId = checked(lambda v: None if v is None else to_text(v, max_chars=MAX_MODEL_ID_CHARS, what="a model id (text)"),
                  {"anyOf": [{"type": "string", "maxLength": MAX_MODEL_ID_CHARS}, {"type": "null"}],
                   "description": "a catalogue id, user:<name>, lightning, base or auto"},
                  str | None)
Steps = whole_number(MIN_STEPS, MAX_STEPS)
Guidance = number(MIN_GUIDANCE, MAX_GUIDANCE)
Side = whole_number(MIN_SIDE, MAX_SIDE, multiple_of=8)
Prompt = text(MAX_PROMPT_CHARS, required=True)
NegativePrompt = checked(_negative, {"anyOf": [{"type": "string", "maxLength": MAX_PROMPT_CHARS}, {"type": "null"}]},
                         str)
Style = checked(_style, {"type": ["string", "null"], "description": "a style name from GET /styles (any case)",
                         "examples": style_names()}, str | None)
AspectRatio = checked(_ratio, {"anyOf": [{"enum": list(ASPECT_RATIOS)}, {"const": ""}, {"type": "null"}]},
                      str | None)
Seed = checked(lambda v: secrets.randbelow(MAX_SEED + 1) if v is None else to_whole_number(v, lo=0, hi=MAX_SEED),
               schema_of(whole_number(0, MAX_SEED)), int)
Count = whole_number(1, MAX_N)
Format = choice(FORMATS, aliases=FORMAT_ALIASES, default="png")
PreviewEvery = whole_number(0, MAX_STEPS)
Cache = flag(True)


class SideOptions(Options):
    """What one side of a comparison may set (and the options every render shares)."""

    what = "image options"

    model: ModelId = None
    steps: Steps = None
    guidance: Guidance = None
    guidance_scale: Guidance = Field(None, exclude=True, description="an alias of guidance")

    def cross_check(self) -> dict[str, str]:
        g, gs = self.guidance, self.guidance_scale
        if g is not None and gs is not None and g != gs:
            return {"guidance_scale": f"is an alias of guidance and disagrees with it ({gs:g} vs {g:g}); send one of them"}
        return {}

    def normalised(self):
        if self.guidance is None and self.guidance_scale is not None:
            self.guidance = self.guidance_scale
        return self


class ImageOptions(SideOptions):
    prompt: Prompt
    negative_prompt: NegativePrompt = ""
    style: Style = None
    aspect_ratio: AspectRatio = None
    width: Side = None
    height: Side = None
    seed: Seed = Field(default_factory=lambda: secrets.randbelow(MAX_SEED + 1), description="drawn at random when absent")
    n: Count = Field(1, validation_alias=aliases("n", "num_images"))
    format: Format = Field("png", validation_alias=aliases("format", "output_format"))
    preview_every: PreviewEvery = None
    cache: Cache = True

    def cross_check(self) -> dict[str, str]:
        errors = super().cross_check()
        w, h, ratio = self.width, self.height, self.aspect_ratio
        if (w is None) != (h is None):
            errors["height" if w is not None else "width"] = "give width and height together"
        if ratio and w is not None and h is not None and (w, h) != ASPECT_RATIOS[ratio]:
            rw, rh = ASPECT_RATIOS[ratio]
            errors["aspect_ratio"] = f"{ratio} is {rw}x{rh} but width/height say {w}x{h}; send one or the other"
        return errors

    def normalised(self):
        super().normalised()
        self.n = self.n or 1
        if self.aspect_ratio:  # the ratio chooses the size (scaled to the model's native resolution)
            self.width = self.height = None
        return self


def _pair(value: Any):
    if not isinstance(value, list) or len(value) != 2:
        fail("must be a list of two model ids")
    return value


StepsOrPair = checked(lambda v: v, {"anyOf": [
    *schema_of(Steps)["anyOf"], {"type": "array", "minItems": 2, "maxItems": 2, "items": schema_of(Steps)}]})
ModelPair = checked(_pair, {"type": "array", "minItems": 2, "maxItems": 2,
                            "items": {"type": "string", "maxLength": MAX_MODEL_ID_CHARS}})
OneImage = checked(lambda v: v, {"anyOf": [{"const": 1}, {"type": "null"}]})


class CompareOptions(ImageOptions):
    """``image.compare``: the shared options plus two sides, as ``a``/``b``, ``models: [x, y]`` or ``steps: [x, y]``.

    Only the request schema and the compare-only fields come from here; the
    service splits the sides out and checks each as ``SideOptions``.
    """

    steps: StepsOrPair = None
    models: ModelPair = None
    a: SideOptions | None = None
    b: SideOptions | None = None
    n: OneImage = 1
