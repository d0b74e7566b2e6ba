"""The prompt enhancer behind the frontend's ``/magic-prompt``: rule-based, deterministic, idempotent.

What it does, and all it does (``method: "rule-based"``):

1. tidies the text (whitespace collapsed, trailing separators dropped);
2. decides whether the prompt is about a person (a word list in English and
   Spanish: "woman", "retrato", "chef"...) -> portrait words, else
   composition words;
3. appends the missing ones of those words, then quality words, after the
   user's own words, only while the text stays inside the text encoders'
   77-token window (75 tokens plus the start and end tokens).

A phrase already present (case, hyphens and spacing ignored) is not added
again, so enhancing an enhanced prompt returns it unchanged. No model runs:
it takes microseconds. Pass a CLIP ``tokenizer`` for exact token counts;
without one, a conservative estimate is used (words of up to 6 letters count
as one token, longer words as one per 6 letters, punctuation as one).
"""
from __future__ import annotations

import math
import re

from enfoads.errors import InvalidInput

__all__ = ["enhance_prompt", "enhance", "validate_prompt", "count_tokens", "METHOD", "TOKEN_WINDOW", "MAX_PROMPT_CHARS"]

METHOD = "rule-based"
TOKEN_WINDOW = 77  # CLIP's context, both SDXL text encoders
_BUDGET = TOKEN_WINDOW - 2  # minus <|startoftext|> and <|endoftext|>
MAX_PROMPT_CHARS = 2000

PORTRAIT_WORDS = ("detailed face", "natural skin texture", "expressive eyes", "soft lighting")
SCENE_WORDS = ("balanced composition", "depth of field", "cinematic lighting")
QUALITY_WORDS = ("high quality", "highly detailed", "sharp focus")

# Words that mean the picture shows a person (English and Spanish; plural forms included).
_PERSON = """
person people man men woman women boy boys girl girls child children kid kids baby babies
face faces portrait portraits selfie headshot lady ladies gentleman guy guys teen teenager
mother father mom dad grandmother grandfather bride groom couple family actor actress singer
dancer athlete player doctor nurse chef teacher student worker businessman businesswoman
soldier warrior knight king queen prince princess wizard witch astronaut pilot farmer
someone somebody human humans cowboy firefighter policeman policewoman
persona personas gente hombre hombres mujer mujeres nino nina ninos ninas niño niña niños niñas
chico chica chicos chicas bebe bebé bebés cara caras rostro rostros retrato retratos señor
señora senor senora anciano anciana abuelo abuela madre padre novia novio pareja familia
actriz cantante bailarin bailarina atleta jugador jugadora medico médico medica médica
enfermera enfermero cocinero cocinera profesor profesora estudiante trabajador trabajadora
soldado guerrero guerrera caballero rey reina principe príncipe princesa mago bruja
astronauta piloto granjero alguien humano humana
""".split()
_PERSON_RE = re.compile(r"\b(" + "|".join(re.escape(w) for w in sorted(set(_PERSON), key=len, reverse=True)) + r")\b",
                        re.IGNORECASE)
_TOKEN_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def validate_prompt(prompt, field: str = "prompt", *, required: bool = True, max_chars: int = MAX_PROMPT_CHARS) -> str:
    """The trimmed prompt, or ``InvalidInput`` naming ``field``."""
    if prompt is None:
        if required:
            raise InvalidInput.field(field, "is required")
        return ""
    if not isinstance(prompt, str):
        raise InvalidInput.field(field, f"must be text, not {type(prompt).__name__}")
    text = prompt.strip()
    if required and not text:
        raise InvalidInput.field(field, "must not be empty")
    if len(text) > max_chars:
        raise InvalidInput.field(field, f"must be at most {max_chars} characters (got {len(text)})")
    return text


def count_tokens(text: str, tokenizer=None) -> int:
    """Tokens of ``text`` without the start/end tokens: exact with a CLIP tokenizer, else an upper estimate."""
    if tokenizer is not None:
        return len(tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"])
    total = 0
    for tok in _TOKEN_RE.findall(text):
        total += 1 if not tok[0].isalnum() else max(1, math.ceil(len(tok) / 6))
    return total


def _norm(text: str) -> str:
    return re.sub(r"[\s\-_]+", " ", text.lower()).strip()


def _present(phrase: str, text_norm: str) -> bool:
    return re.search(r"(?<!\w)" + re.escape(_norm(phrase)) + r"(?!\w)", text_norm) is not None


def _tidy(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text.rstrip(",;:. ").strip()


def mentions_person(text: str) -> bool:
    return _PERSON_RE.search(text) is not None


def enhance_prompt(prompt: str, *, tokenizer=None) -> dict:
    """Enhance a prompt with rule-based quality and portrait/composition words.

    Args:
        prompt: the user's prompt (1-2000 characters after trimming).
        tokenizer: optional CLIP tokenizer for exact token counts.

    Returns:
        ``{"prompt", "original", "method", "category", "added", "tokens", "token_window"}``:
        the enhanced text (the user's words first), the input as given, ``"rule-based"``,
        ``"portrait"`` or ``"scene"``, the phrases added (empty when already enhanced or
        when the prompt fills the window), and the token count of the result.

    Raises:
        InvalidInput: the prompt is missing, empty or too long (field ``prompt``).
    """
    original = validate_prompt(prompt)
    text = _tidy(original)
    category = "portrait" if mentions_person(text) else "scene"
    candidates = (PORTRAIT_WORDS if category == "portrait" else SCENE_WORDS) + QUALITY_WORDS
    added: list[str] = []
    tokens = count_tokens(text, tokenizer)
    for phrase in candidates:
        if _present(phrase, _norm(text)):
            continue
        extra = count_tokens(", " + phrase, tokenizer)
        if tokens + extra > _BUDGET:
            continue
        text = f"{text}, {phrase}"
        tokens += extra
        added.append(phrase)
    if tokenizer is not None:
        tokens = count_tokens(text, tokenizer)
    return {
        "prompt": text,
        "original": prompt,
        "method": METHOD,
        "category": category,
        "added": added,
        "tokens": tokens,
        "token_window": TOKEN_WINDOW,
    }


enhance = enhance_prompt  # the name the web layer's /magic-prompt calls
