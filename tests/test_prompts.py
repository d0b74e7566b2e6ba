"""The prompt enhancer (/magic-prompt), the styles and the latent previews: text and pixels, no model."""
import io
import re
import time

import numpy as np
import pytest

from enfoads.errors import InvalidInput
from enfoads.services import prompts
from enfoads.services.previews import MAX_PREVIEW_BYTES, encode_preview, latents_to_rgb, preview_from_latents
from enfoads.services.prompts import enhance_prompt
from enfoads.services.styles import FRONTEND_STYLE_NAMES, STYLES, apply_style, get_style, style_names

PROMPTS = [
    "a red sports car on a mountain road",
    "portrait of an old fisherman",
    "retrato de una mujer sonriendo en la playa",
    "un gato durmiendo en una ventana",
    "  Product photo of a perfume bottle.  ",
    "chef cooking pasta, warm kitchen, high quality",
    "a castle, " * 40,  # far beyond the 77-token window
]


# ------------------------------------------------------------------ enhancer


@pytest.mark.parametrize("prompt", PROMPTS)
def test_enhancer_is_idempotent_and_keeps_the_users_words_first(prompt):
    once = enhance_prompt(prompt)
    twice = enhance_prompt(once["prompt"])
    assert twice["prompt"] == once["prompt"]
    assert twice["added"] == []
    assert once["method"] == "rule-based" and once["original"] == prompt
    tidy = re.sub(r"\s+", " ", prompt).strip().rstrip(",;:. ")
    assert once["prompt"].startswith(tidy)
    assert enhance_prompt(prompt) == once  # deterministic


def test_portrait_or_composition_words():
    person = enhance_prompt("retrato de una mujer")
    scene = enhance_prompt("a lighthouse at dusk")
    assert person["category"] == "portrait" and "detailed face" in person["added"]
    assert scene["category"] == "scene" and "balanced composition" in scene["added"]
    assert "detailed face" not in scene["prompt"]
    for r in (person, scene):
        assert "highly detailed" in r["added"]


def test_words_already_there_are_not_repeated():
    r = enhance_prompt("a bridge, Highly-Detailed, sharp  focus")
    assert "highly detailed" not in r["added"] and "sharp focus" not in r["added"]
    assert r["prompt"].lower().count("detailed") == 1


def test_stays_inside_the_77_token_window():
    for prompt in PROMPTS:
        r = enhance_prompt(prompt)
        base_tokens = prompts.count_tokens(re.sub(r"\s+", " ", prompt).strip().rstrip(",;:. "))
        if base_tokens <= 60:
            assert r["tokens"] <= 75 and r["added"]
        else:
            assert r["tokens"] <= max(75, base_tokens)
    long = enhance_prompt("a castle, " * 40)
    assert long["added"] == []  # nothing appended past the window


def test_exact_counts_with_a_tokenizer(models_dir):
    from transformers import CLIPTokenizer

    from enfoads.models.tiny import ensure_tiny

    tok = CLIPTokenizer.from_pretrained(ensure_tiny(models_dir, "tiny-sdxl-lightning") / "base" / "tokenizer")
    r = enhance_prompt("a small boat on a lake", tokenizer=tok)  # the tiny vocabulary is nearly per-character
    assert r["tokens"] == len(tok(r["prompt"], add_special_tokens=False)["input_ids"]) <= 75
    assert enhance_prompt(r["prompt"], tokenizer=tok)["prompt"] == r["prompt"]


@pytest.mark.parametrize("bad", [None, "", "   ", 42, "x" * 2001])
def test_enhancer_rejects_bad_prompts(bad):
    with pytest.raises(InvalidInput) as info:
        enhance_prompt(bad)
    assert set(info.value.fields) == {"prompt"} and info.value.status == 400


def test_enhancer_is_fast():
    t0 = time.perf_counter()
    for i in range(1000):
        enhance_prompt(f"portrait of a woman number {i}")
    assert time.perf_counter() - t0 < 1.0


# ------------------------------------------------------------------ styles


def test_frontend_styles_exist_in_its_order():
    assert len(FRONTEND_STYLE_NAMES) == 12
    assert style_names()[:12] == list(FRONTEND_STYLE_NAMES)
    for name in FRONTEND_STYLE_NAMES:
        assert name == "None" or get_style(name).name == name
    assert get_style("None") is None and get_style(None) is None
    assert get_style("sai-anime").name == "SAI Anime"  # case, spaces and dashes ignored
    with pytest.raises(KeyError, match="unknown style"):
        get_style("Vaporwave Deluxe")


# Subject words that a style must never inject (the original's default style added hair and earrings).
SUBJECT_WORDS = {"hair", "earrings", "woman", "man", "girl", "boy", "face", "eyes", "city", "cityscape",
                 "street", "rain", "car", "skyscrapers", "forest", "beach", "dress", "smile"}


@pytest.mark.parametrize("name", list(STYLES))
def test_styles_read_well_and_add_no_subject(name):
    style = STYLES[name]
    styled, negative, info = apply_style(style, "a teapot on a table", "")
    assert info["style"] == name
    assert "a teapot on a table" in styled
    # The user's words come first or after a short lead-in: they survive CLIP's truncation.
    assert styled.index("a teapot") <= 40
    words = set(re.findall(r"[a-z]+", (style.template + " " + style.negative).lower()))
    assert not words & SUBJECT_WORDS, words & SUBJECT_WORDS
    assert "  " not in styled and ",," not in styled and " ." not in styled


def test_style_negatives_are_merged_after_the_users():
    styled, negative, _ = apply_style("Cinematic", "a dog", "blurry, cats")
    assert negative.startswith("blurry, cats, ") and "cartoon" in negative
    assert apply_style(None, "a dog", "cats") == ("a dog", "cats", {"style": None})
    styled, _, info = apply_style("Fooocus V2", "a dog", "")
    assert info["method"] == "rule-based" and styled.startswith("a dog, ")


# ------------------------------------------------------------------ previews


def test_latents_to_rgb_and_small_previews():
    rng = np.random.default_rng(0)
    lat = rng.standard_normal((4, 192, 80)).astype(np.float32) * 14.6  # start of a trailing Euler run
    rgb = latents_to_rgb(lat, "sdxl", sigma=14.6)
    assert rgb.shape == (192, 80, 3) and rgb.dtype == np.uint8
    assert 40 < rgb.mean() < 215  # normalised by sigma: not saturated
    data, mime, size = preview_from_latents(lat, family="sdxl", sigma=14.6)
    assert mime == "image/webp" and len(data) <= MAX_PREVIEW_BYTES and size == (80, 192)
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "WEBP" and im.size == (80, 192)
    # Worst case: full-resolution noise must still fit the byte limit.
    noise = rng.integers(0, 256, size=(192, 192, 3), dtype=np.uint8)
    for fmt in ("webp", "jpeg"):
        data, mime, _ = encode_preview(noise, fmt=fmt)
        assert len(data) <= MAX_PREVIEW_BYTES and mime == f"image/{fmt}"
    tiny, _, size = preview_from_latents(np.zeros((4, 8, 8), np.float32), family="sd")
    assert size == (64, 64)  # small grids are enlarged (nearest) to stay visible
    with pytest.raises(ValueError):
        latents_to_rgb(np.zeros((3, 8, 8)))
