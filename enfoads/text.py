"""One rule for every string a user sends: prompts, scripts, names, form fields.

Strings reach a tokenizer, a TTS engine, SQLite, subtitles and other people's
browsers. Whatever route they come by, the same characters are taken out:

- control characters (C0 but tab and newline, DEL, C1) become a space, so the
  words around them stay apart;
- bidirectional controls (embeddings, overrides, isolates, the LRM/RLM/ALM
  marks) are removed: they reorder what a reader sees ("Trojan Source");
- invisible characters (zero-width space, word joiner, BOM) are removed;
  zero-width (non-)joiners stay, since emoji sequences and Persian need them;
- line ends become ``\\n`` (``\\r\\n``, ``\\r``, U+2028, U+2029) and the text is
  NFC-normalised.

Removing, not refusing: the frontend sends pasted text, and copy-paste
carries such characters innocently. The response says what was removed
(see ``enfoads.web.http``), so nothing changes silently.
"""
from __future__ import annotations

import re
import unicodedata

__all__ = ["clean_text", "describe"]

_LINE_ENDS = re.compile(r"\r\n?|[\u2028\u2029]")
_KINDS = (
    ("control character", re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]"), " "),
    ("bidi control", re.compile(r"[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]"), ""),
    ("invisible character", re.compile(r"[\u200b\u2060\ufeff]"), ""),
)


def clean_text(text: str) -> tuple[str, dict[str, int]]:
    """``text`` under the rule above, and how many characters of each kind were taken out."""
    text = _LINE_ENDS.sub("\n", unicodedata.normalize("NFC", text))
    removed: dict[str, int] = {}
    for kind, pattern, replacement in _KINDS:
        text, n = pattern.subn(replacement, text)
        if n:
            removed[kind] = n
    return text, removed


def describe(removed: dict[str, int]) -> str:
    """``{"control character": 2, "bidi control": 1}`` -> ``"removed 2 control characters and 1 bidi control"``."""
    parts = [f"{n} {kind}{'' if n == 1 else 's'}" for kind, n in removed.items()]
    if not parts:
        return ""
    return "removed " + (parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1])
