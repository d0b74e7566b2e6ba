"""Image styles as data: a positive template around ``{prompt}`` plus a negative prompt.

The names are the ones the frontend lists (``GET /styles``), plus a few
extras. Rules every template follows:

- the user's words come first (or after a two- or three-word lead-in such as
  "cinematic photo of"), so CLIP's 77-token window truncates style words, not
  the user's;
- only words about rendering, light, medium and finish: no subject matter
  (the original server's default style put "disheveled hair, earrings" into
  every prompt, also a prompt for a car);
- a negative prompt of things the style should avoid.

``None`` (or the style named "None") leaves the prompt alone. "Fooocus V2" is,
in Fooocus, a prompt-expansion model rather than a template: here it runs the
rule-based prompt enhancer (``enfoads.services.prompts``) and says so.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Style", "STYLES", "STYLE_NAMES", "FRONTEND_STYLE_NAMES", "get_style", "apply_style", "style_names"]


@dataclass(frozen=True)
class Style:
    name: str
    template: str  # must contain "{prompt}" exactly once
    negative: str = ""
    enhance: bool = False  # run the prompt enhancer instead of (before) the template
    description: str = ""

    def __post_init__(self):
        if self.template.count("{prompt}") != 1:
            raise ValueError(f"style {self.name!r}: the template must contain {{prompt}} exactly once")


_STYLES = (
    Style(
        "Fooocus V2",
        "{prompt}",
        "low quality, blurry, jpeg artifacts",
        enhance=True,
        description="the prompt enhancer's quality and composition words (rule-based, like /magic-prompt)",
    ),
    Style(
        "Cinematic",
        "cinematic film still of {prompt}, shallow depth of field, dramatic lighting, film grain, "
        "anamorphic framing, highly detailed",
        "cartoon, anime, illustration, painting, drawing, text, watermark, low quality, deformed",
        description="a still from a high-budget film",
    ),
    Style(
        "Photograph",
        "photograph of {prompt}, 35mm lens, natural light, sharp focus, professional photography, "
        "high detail",
        "drawing, painting, illustration, cartoon, anime, render, blurry, overexposed, deformed",
        description="a professional photograph",
    ),
    Style(
        "Cyberpunk",
        "{prompt}, cyberpunk style, neon lighting, high-tech atmosphere, vivid contrast, highly detailed",
        "pastoral, rustic, sepia, washed out, low contrast, blurry, deformed",
        description="neon-lit, high-tech, high contrast",
    ),
    Style(
        "Fantasy",
        "fantasy art of {prompt}, ethereal light, magical atmosphere, painterly, epic, richly detailed",
        "photograph, realistic, modern, mundane, dull colours, low quality, deformed",
        description="painterly fantasy illustration",
    ),
    Style(
        "Digital Art",
        "digital art of {prompt}, concept art, clean lines, vibrant colours, illustrative, highly detailed",
        "photograph, photorealistic, film grain, blurry, low quality, deformed",
        description="polished digital illustration",
    ),
    Style(
        "Neonpunk",
        "{prompt}, neonpunk style, vaporwave palette, magenta and cyan neon glow, dark purple shadows, "
        "sleek, ultramodern, crisp detail",
        "natural daylight, muted colours, rustic, painting, blurry, low contrast, deformed",
        description="vaporwave neon colours",
    ),
    Style(
        "Comic Book",
        "comic book illustration of {prompt}, bold ink outlines, halftone shading, vibrant flat colours, "
        "graphic novel art",
        "photograph, photorealistic, 3d render, blurry, noisy, deformed",
        description="inked, flat-coloured comic art",
    ),
    Style(
        "SAI Anime",
        "anime artwork of {prompt}, anime style, key visual, vibrant, studio anime, highly detailed",
        "photograph, photorealistic, 3d render, black and white, low contrast, deformed",
        description="Stability AI's anime style",
    ),
    Style(
        "SAI 3D Model",
        "professional 3d model of {prompt}, octane render, volumetric lighting, dramatic lighting, "
        "highly detailed",
        "photograph, drawing, painting, flat, low poly, blurry, noisy, deformed",
        description="Stability AI's 3D render style",
    ),
    Style(
        "MRE Cinematic Dynamic",
        "epic cinematic shot of {prompt}, dynamic motion, action film still, motion blur, raw photo, "
        "high resolution",
        "static, motionless, drawing, painting, illustration, low budget, low resolution, low quality",
        description="a dynamic action-film shot",
    ),
    Style("None", "{prompt}", "", description="the prompt as written"),
    # Extras beyond the frontend's list.
    Style(
        "Watercolor",
        "watercolor painting of {prompt}, soft washes, visible paper texture, delicate brushwork",
        "photograph, photorealistic, 3d render, harsh lines, oversaturated, deformed",
        description="soft watercolour painting",
    ),
    Style(
        "Product Shot",
        "studio product photograph of {prompt}, clean seamless background, softbox lighting, "
        "sharp focus, commercial photography",
        "cluttered background, drawing, painting, blurry, noisy, deformed, text, watermark",
        description="clean advertising product photography",
    ),
)

STYLES: dict[str, Style] = {s.name: s for s in _STYLES}
STYLE_NAMES: tuple[str, ...] = tuple(STYLES)
# The frontend's list, in its order (``GET /styles``).
FRONTEND_STYLE_NAMES: tuple[str, ...] = (
    "Fooocus V2", "Cinematic", "Photograph", "Cyberpunk", "Fantasy", "Digital Art", "Neonpunk",
    "Comic Book", "SAI Anime", "SAI 3D Model", "MRE Cinematic Dynamic", "None",
)

_BY_KEY = {"".join(ch for ch in name.lower() if ch.isalnum()): name for name in STYLES}


def style_names() -> list[str]:
    """Every style name, the frontend's first (what ``GET /styles`` returns)."""
    return list(FRONTEND_STYLE_NAMES) + [n for n in STYLE_NAMES if n not in FRONTEND_STYLE_NAMES]


def get_style(name: str | None) -> Style | None:
    """The style called ``name`` (case, spaces and dashes ignored); None for no style.

    Raises:
        KeyError: no such style.
    """
    if name is None:
        return None
    key = "".join(ch for ch in str(name).lower() if ch.isalnum())
    if key in ("", "none", "null"):
        return None
    try:
        return STYLES[_BY_KEY[key]]
    except KeyError:
        raise KeyError(f"unknown style {name!r}; choose one of: {', '.join(style_names())}") from None


def _join(*parts: str) -> str:
    return ", ".join(p.strip().strip(",").strip() for p in parts if p and p.strip().strip(","))


def apply_style(style: Style | str | None, prompt: str, negative_prompt: str = "") -> tuple[str, str, dict]:
    """The styled prompt and negative prompt, and what was done.

    Returns:
        ``(prompt, negative_prompt, info)``; ``info`` holds ``style`` (its
        name or None) and, for an enhancing style, the enhancer's ``method``.
    """
    if isinstance(style, str) or style is None:
        style = get_style(style)
    info: dict = {"style": style.name if style else None}
    if style is None:
        return prompt, negative_prompt, info
    body = prompt.strip().rstrip(",;. ")
    if style.enhance:
        from enfoads.services.prompts import enhance_prompt

        enhanced = enhance_prompt(body)
        body = enhanced["prompt"]
        info["method"] = enhanced["method"]
    styled = style.template.replace("{prompt}", body)
    return styled, _join(negative_prompt, style.negative), info
