"""A transcript and its renderings: ``Transcript``, OpenAI's JSON bodies, SubRip, WebVTT and plain text.

The segments come with sane timestamps (``enfoads.services.speech.transcribe``
makes them so). SRT and VTT leave out zero-length cues (a player could not
show them) and cues without text, and keep each cue's text on one line;
JSON keeps every segment.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

__all__ = [
    "RESPONSE_FORMATS",
    "CONTENT_TYPES",
    "ASSET_MIMES",
    "Transcript",
    "render",
    "encode_body",
    "to_srt",
    "to_vtt",
    "format_timestamp",
]

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
#: What the web layer answers with, per format (OpenAI's types).
CONTENT_TYPES = {
    "json": "application/json",
    "verbose_json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}
#: The asset's MIME type, per format (the asset store picks the extension from it).
ASSET_MIMES = {
    "json": "application/json",
    "verbose_json": "application/json",
    "text": "text/plain",
    "srt": "application/x-subrip",
    "vtt": "text/vtt",
}


@dataclass
class Transcript:
    """A transcription with sane timestamps (see ``enfoads.services.speech``)."""

    task: str
    language: str | None
    language_probability: float | None
    language_detected: bool
    duration: float
    duration_after_vad: float
    segments: list[dict] = field(default_factory=list)  # OpenAI verbose_json segments
    words: list[dict] | None = None  # {"word", "start", "end"} when word timestamps were asked

    @property
    def text(self) -> str:
        return "".join(s["text"] for s in self.segments).strip()

    def verbose_json(self) -> dict:
        body = {
            "task": self.task,
            "language": self.language,
            "language_probability": self.language_probability,
            "duration": self.duration,
            "text": self.text,
            "segments": self.segments,
        }
        if self.words is not None:
            body["words"] = self.words
        return body


# --------------------------------------------------------------------------- output formats


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def format_timestamp(seconds: float, *, decimal: str = ",") -> str:
    """``HH:MM:SS,mmm`` (SRT) or with ``decimal="."`` ``HH:MM:SS.mmm`` (WebVTT).

    Rounded once, to the millisecond, before splitting (so 59.9996 s is
    ``00:01:00,000``, never ``00:00:60,000``); hours grow past two digits.
    """
    total = max(0, int(round(float(seconds) * 1000)))
    hours, rest = divmod(total, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


def _cue_text(text: str) -> str:
    """One line of cue text: no line breaks or control characters (a blank line ends a cue), no ``-->``."""
    text = _CONTROL.sub(" ", text)
    text = " ".join(text.split())
    while "-->" in text:
        text = text.replace("-->", "->")
    return text


def _cues(segments: list[dict]):
    for seg in segments:
        text = _cue_text(seg["text"])
        if text and seg["end"] > seg["start"]:
            yield seg["start"], seg["end"], text


def to_srt(segments: list[dict]) -> str:
    """SubRip: numbered cues ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, separated by blank lines."""
    blocks = [
        f"{n}\n{format_timestamp(start)} --> {format_timestamp(end)}\n{text}\n"
        for n, (start, end, text) in enumerate(_cues(segments), start=1)
    ]
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(segments: list[dict]) -> str:
    """WebVTT: the ``WEBVTT`` header, then cues ``HH:MM:SS.mmm --> HH:MM:SS.mmm`` with escaped text."""
    blocks = [
        f"{format_timestamp(start, decimal='.')} --> {format_timestamp(end, decimal='.')}\n{_vtt_escape(text)}\n"
        for start, end, text in _cues(segments)
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def render(transcript: Transcript, response_format: str) -> dict | str:
    """The OpenAI response body for ``response_format``: a dict for the JSON formats, else text."""
    if response_format == "json":
        return {"text": transcript.text}
    if response_format == "verbose_json":
        return transcript.verbose_json()
    if response_format == "text":
        return transcript.text + "\n" if transcript.text else ""
    if response_format == "srt":
        return to_srt(transcript.segments)
    if response_format == "vtt":
        return to_vtt(transcript.segments)
    raise ValueError(f"unknown response_format {response_format!r}")


def encode_body(body: dict | str) -> bytes:
    if isinstance(body, dict):
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")
    return body.encode("utf-8", "replace")
