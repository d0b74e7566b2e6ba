"""Splitting a script into the pieces text to speech synthesises one by one.

Owns :func:`clean_text` and :func:`split_text` (sentences, long ones at
clauses, then words) and :class:`Unit`, a piece plus the pause after it; the
engine (``enfoads.services.tts``) speaks each piece on its own, so each piece's
timing in the speech is exact and can be shown as one subtitle.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from enfoads.text import clean_text as unicode_rule

__all__ = ["DEFAULT_UNIT_CHARS", "PAUSES", "Unit", "clean_text", "split_text"]

#: Longest piece synthesised (and shown as one subtitle cue), in characters.
DEFAULT_UNIT_CHARS = 84
#: Silence after a piece, by what ended it.
PAUSES = {"clause": 0.15, "sentence": 0.3, "paragraph": 0.5, "end": 0.0}


_SPACES = re.compile(r"[ \t\u00a0]+")
_SENTENCE_END = re.compile(r"[.!?…]+[\"'»”’)\]]*\s+")
_CLAUSE_END = re.compile(r"(?<=[,;:—–])\s+")
_ABBREVIATIONS = frozenset(
    "sr sra srta srs sres dr dra dres lic ing arq prof etc ej ejs p pp pág págs núm no nro vs mr mrs ms st av avda "
    "ud uds vd vds cía dpto tel aprox máx mín e.g i.e approx".split()
)


def clean_text(text: str) -> str:
    """NFC, no control characters, single spaces, at most one blank line between paragraphs."""
    text = unicode_rule(text)[0]  # enfoads.text: the rule every user string gets
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    out, blank = [], False
    for line in lines:
        if not line:
            blank = bool(out)
            continue
        if blank:
            out.append("")
        out.append(line)
        blank = False
    return "\n".join(out)


@dataclass(frozen=True)
class Unit:
    """A piece of text synthesised on its own, and the pause after it ("clause", "sentence", "paragraph", "end")."""

    text: str
    boundary: str

    @property
    def pause_after(self) -> float:
        return PAUSES[self.boundary]


def _sentences(paragraph: str) -> list[str]:
    out, start = [], 0
    for m in _SENTENCE_END.finditer(paragraph):
        before = paragraph[start:m.start()].rsplit(" ", 1)[-1].lower().lstrip("¿¡(\"'«")
        following = paragraph[m.end():m.end() + 1]
        if following.islower():
            continue  # "Espera... y luego", "etc. y más": the sentence goes on
        if m.group().startswith(".") and not m.group().startswith("..."):
            # "Sr. García", "p. ej.", "J. Pérez": no sentence ends there.
            if before in _ABBREVIATIONS or (len(before) == 1 and before.isalpha()):
                continue
        out.append(paragraph[start:m.end()].strip())
        start = m.end()
    if paragraph[start:].strip():
        out.append(paragraph[start:].strip())
    return out


def _pack(pieces: list[str], max_chars: int) -> list[str]:
    out: list[str] = []
    for piece in pieces:
        if out and len(out[-1]) + 1 + len(piece) <= max_chars:
            out[-1] = f"{out[-1]} {piece}"
        else:
            out.append(piece)
    return out


def _split_long(sentence: str, max_chars: int) -> list[str]:
    if len(sentence) <= max_chars:
        return [sentence]
    parts: list[str] = []
    for clause in _pack(_CLAUSE_END.split(sentence), max_chars):
        if len(clause) <= max_chars:
            parts.append(clause)
        else:
            parts.extend(_pack(clause.split(" "), max_chars))  # a single huge "word" stays whole
    return parts


def split_text(text: str, max_chars: int = DEFAULT_UNIT_CHARS) -> list[Unit]:
    """Split a script into pieces to synthesise one by one (and show as one subtitle each).

    Paragraphs (line breaks) and sentences always end a piece; a sentence longer
    than ``max_chars`` is cut at commas, semicolons, colons and dashes, and a
    clause still too long between words. Pieces without a letter or digit
    (stray punctuation) are dropped.
    """
    units: list[Unit] = []
    paragraphs = [p for p in clean_text(text).split("\n") if p]
    for pi, paragraph in enumerate(paragraphs):
        sentences = _sentences(paragraph)
        for si, sentence in enumerate(sentences):
            pieces = [p for p in _split_long(sentence, max_chars) if any(c.isalnum() for c in p)]
            for ci, piece in enumerate(pieces):
                if ci < len(pieces) - 1:
                    boundary = "clause"
                elif si < len(sentences) - 1:
                    boundary = "sentence"
                elif pi < len(paragraphs) - 1:
                    boundary = "paragraph"
                else:
                    boundary = "end"
                units.append(Unit(piece, boundary))
    if units and units[-1].boundary != "end":
        units[-1] = replace(units[-1], boundary="end")
    return units
