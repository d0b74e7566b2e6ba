"""The options of ``speech.transcribe`` (see ``enfoads.services.speech`` for what they do).

``TranscribeOptions`` are what faster-whisper is run with
(``whisper_kwargs``), ``TranscribeRequest`` adds the audio; ``parse_options``
fills the profile's beam size in.
"""
from __future__ import annotations

import re
from typing import Any

from pydantic import Field

from enfoads.services.options import MediaReference, Options, checked, choice, fail, flag, text, to_number, whole_number
from enfoads.services.transcripts import RESPONSE_FORMATS

__all__ = ["TASKS", "DEFAULT_TEMPERATURES", "TranscribeOptions", "TranscribeRequest", "parse_options"]

TASKS = ("transcribe", "translate")
DEFAULT_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
MAX_BEAM_SIZE = 10
MAX_PROMPT_CHARS = 2000
MAX_NEW_TOKENS = 448  # Whisper's decoder context


def _language_codes() -> frozenset[str] | None:
    try:
        from faster_whisper.tokenizer import _LANGUAGE_CODES
    except Exception:  # a faster-whisper without that table: the model checks later
        return None
    return frozenset(_LANGUAGE_CODES)


def _language(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        fail(f"must be a language code such as 'en', not {value!r}")
    code = value.strip().lower().replace("_", "-").split("-")[0]  # "en-US" -> "en"
    if code in ("", "auto"):
        return None
    codes = _language_codes()
    if not re.fullmatch(r"[a-z]{2,3}", code) or (codes is not None and code not in codes):
        fail(f"{value!r} is not a language Whisper knows; use a code such as 'en' or 'fr'")
    return code


def _temperatures(value: Any) -> tuple[float, ...]:
    if value is None:
        return DEFAULT_TEMPERATURES
    items = value if isinstance(value, (list, tuple)) else [value]
    if not items or len(items) > 10:
        fail("must be a number or a list of 1 to 10 numbers")
    return tuple(to_number(v, lo=0.0, hi=1.0) for v in items)


Language = checked(_language, {"anyOf": [{"type": "string", "maxLength": 16}, {"type": "null"}],
                               "description": "an ISO 639-1 code; absent, empty or auto: detected"}, str | None)
Temperatures = checked(_temperatures, {"anyOf": [
    {"type": "number", "minimum": 0, "maximum": 1},
    {"type": "string"}, {"type": "null"},
    {"type": "array", "minItems": 1, "maxItems": 10, "items": {"anyOf": [
        {"type": "number", "minimum": 0, "maximum": 1}, {"type": "string"}]}}]})


Task = choice(TASKS, default="transcribe")
ResponseFormat = choice(RESPONSE_FORMATS, default="json")
Flag = flag(False)
InitialPrompt = text(MAX_PROMPT_CHARS)
BeamSize = whole_number(1, MAX_BEAM_SIZE)
MaxNewTokens = whole_number(1, MAX_NEW_TOKENS)


class TranscribeOptions(Options):
    """Validated transcription options; ``whisper_kwargs()`` is what faster-whisper gets."""

    what = "transcription options"

    language: Language = None
    task: Task = "transcribe"
    vad_filter: Flag = False
    word_timestamps: Flag = False
    initial_prompt: InitialPrompt = None
    temperature: Temperatures = DEFAULT_TEMPERATURES
    beam_size: BeamSize = Field(None, description="absent: the profile's")
    max_new_tokens: MaxNewTokens = None
    response_format: ResponseFormat = "json"

    def whisper_kwargs(self) -> dict:
        kwargs = dict(
            language=self.language,
            task=self.task,
            beam_size=self.beam_size or 5,
            temperature=list(self.temperature),
            vad_filter=self.vad_filter,
            word_timestamps=self.word_timestamps,
            initial_prompt=self.initial_prompt,
            without_timestamps=False,  # segment times come from Whisper's timestamp tokens
        )
        if self.max_new_tokens is not None:
            kwargs["max_new_tokens"] = self.max_new_tokens
        return kwargs




class TranscribeRequest(TranscribeOptions):
    """``speech.transcribe``'s params: the audio and the options."""

    audio: MediaReference


def parse_options(params: dict, *, default_beam_size: int = 5) -> TranscribeOptions:
    """Options from request params, each checked; errors name the field."""
    options = TranscribeOptions.parse(params)
    if options.beam_size is None:
        options.beam_size = default_beam_size
    return options
