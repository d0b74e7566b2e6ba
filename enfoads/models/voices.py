"""The voice catalogue, as data: every voice the product knows, by backend.

Voice ids are namespaced ``<backend>:<backend's own name>``:

- ``piper:es_MX-claude-high``: a Piper voice (ONNX + JSON config from
  ``rhasspy/piper-voices``; ``repo_path`` is the file stem inside that repo,
  e.g. ``es/es_MX/claude/high/es_MX-claude-high`` + ``.onnx`` / ``.onnx.json``).
- ``espeak:es-419+f3``: an espeak-ng voice (language, optionally ``+variant``).
- ``edge:es-MX-DaliaNeural``: a Microsoft Edge online voice (edge-tts).

``FRONTEND_VOICES`` are the four bare ids the frontend knows; each maps to its
edge voice when edge-tts is reachable, else to the first installed voice of its
``fallbacks`` list (the last entry is always an espeak-ng voice, which is
always there).

Piper names come from piper-voices' VOICES.md (tag ``v1.0.0``); only voices
listed there are in the catalogue, plus ``es_AR-daniela-high``, added to the
repository after v1.0.0 (``revision="main"``). Piper's voice list gives no
speaker gender: ``gender`` is given only where the speaker's name or the
dataset makes it clear, else ``"unknown"`` (``es_MX-claude-high`` and
``es_MX-ald-medium`` are described both ways by third parties; their order in
the fallbacks is a guess to check by ear).

``gender`` is kept lowercase here (``female``, ``male``, ``unknown``); the
frontend compares it capitalised (it colours a voice pink when ``gender`` is
exactly ``Female``), so ``GET /voices`` answers :func:`frontend_gender`.
``country`` is already what it shows a flag for: exactly ``Colombia`` or
``México`` (with the accent, NFC).

This module holds data and lookups only; what is usable *now* (files present,
espeak-ng installed, edge reachable) is ``enfoads.services.tts.available_voices``.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

__all__ = [
    "PIPER",
    "ESPEAK",
    "EDGE",
    "BACKENDS",
    "PIPER_REPO",
    "PIPER_REVISION",
    "CatalogVoice",
    "FrontendVoice",
    "CATALOG",
    "FRONTEND_VOICES",
    "DEFAULT_PREFERENCE",
    "get",
    "canonical_id",
    "fallbacks_for",
    "piper_voices",
    "FRONTEND_GENDERS",
    "frontend_gender",
]

PIPER, ESPEAK, EDGE = "piper", "espeak", "edge"
BACKENDS = (PIPER, ESPEAK, EDGE)

PIPER_REPO = "rhasspy/piper-voices"
#: The tag every catalogued voice but those with their own ``revision`` is pinned to.
PIPER_REVISION = "v1.0.0"


@dataclass(frozen=True)
class CatalogVoice:
    """One voice. ``language`` is BCP 47 (``es-MX``), ``country`` a display name."""

    id: str  # namespaced: "piper:es_MX-claude-high"
    backend: str
    name: str  # what the frontend shows
    language: str
    gender: str  # "female", "male" or "unknown"
    country: str
    engine_voice: str  # the backend's own name: piper voice name, espeak voice, edge ShortName
    offline: bool = True
    repo_path: str | None = None  # piper: file stem in PIPER_REPO
    revision: str | None = None  # piper: git revision of PIPER_REPO (default PIPER_REVISION)
    size_mb: float | None = None  # piper: approximate .onnx size
    tiny: bool = False  # a test voice that makes noise, never chosen by default
    note: str | None = None

    @property
    def piper_files(self) -> tuple[str, str] | None:
        """The two files to fetch from ``PIPER_REPO`` (model, config), for the preloader."""
        if self.repo_path is None:
            return None
        return f"{self.repo_path}.onnx", f"{self.repo_path}.onnx.json"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FrontendVoice:
    """A bare id the frontend sends (an edge ShortName) and its offline stand-ins, best first."""

    id: str
    edge: str  # namespaced edge voice id
    fallbacks: tuple[str, ...] = field(default_factory=tuple)


def _piper(name: str, display: str, gender: str, country: str, size_mb: float, *, revision: str | None = None,
           note: str | None = None) -> CatalogVoice:
    locale, speaker, quality = name.split("-", 2)
    lang = locale.split("_")[0]
    return CatalogVoice(
        id=f"{PIPER}:{name}", backend=PIPER, name=display, language=locale.replace("_", "-"), gender=gender,
        country=country, engine_voice=name, repo_path=f"{lang}/{locale}/{speaker}/{quality}/{name}",
        revision=revision, size_mb=size_mb, note=note,
    )


def _espeak(voice: str, display: str, language: str, gender: str, country: str) -> CatalogVoice:
    return CatalogVoice(id=f"{ESPEAK}:{voice}", backend=ESPEAK, name=display, language=language, gender=gender,
                        country=country, engine_voice=voice)


def _edge(short_name: str, display: str, gender: str, country: str) -> CatalogVoice:
    language = "-".join(short_name.split("-")[:2])
    return CatalogVoice(id=f"{EDGE}:{short_name}", backend=EDGE, name=display, language=language, gender=gender,
                        country=country, engine_voice=short_name, offline=False)


_VOICES: tuple[CatalogVoice, ...] = (
    # Piper (neural, offline once preloaded). Sizes are the .onnx files' approximate sizes.
    _piper("es_MX-claude-high", "Claude (México)", "unknown", "México", 63.0),
    _piper("es_MX-ald-medium", "Ald (México)", "unknown", "México", 63.0),
    _piper("es_AR-daniela-high", "Daniela (Argentina)", "female", "Argentina", 114.0, revision="main",
           note="added to piper-voices after v1.0.0"),
    _piper("es_ES-davefx-medium", "DaveFX (España)", "male", "España", 63.0),
    _piper("es_ES-sharvard-medium", "Sharvard (España)", "unknown", "España", 77.0),
    _piper("es_ES-carlfm-x_low", "Carlfm (España, ligera)", "male", "España", 28.0),
    _piper("en_US-lessac-medium", "Lessac (US English)", "female", "United States", 63.0),
    _piper("en_US-amy-medium", "Amy (US English)", "female", "United States", 63.0),
    _piper("en_US-ryan-medium", "Ryan (US English)", "male", "United States", 63.0),
    _piper("en_GB-alan-medium", "Alan (British English)", "male", "United Kingdom", 63.0),
    # The tiny synthetic voice of the tests (enfoads.models.tiny.piper): listed only once built.
    CatalogVoice(
        id=f"{PIPER}:es_MX-enfoads_tiny-x_low", backend=PIPER, name="Tiny test voice (tones)", language="es-MX",
        gender="unknown", country="México", engine_voice="es_MX-enfoads_tiny-x_low", tiny=True,
        note="random tones through Piper's real loader; for tests and the tiny profile",
    ),
    # espeak-ng (formant synthesis, always offline; the fallback and what CI uses).
    _espeak("es-419", "eSpeak español latino (masculina)", "es-419", "male", "Latinoamérica"),
    _espeak("es-419+f3", "eSpeak español latino (femenina)", "es-419", "female", "Latinoamérica"),
    _espeak("es", "eSpeak español de España (masculina)", "es-ES", "male", "España"),
    _espeak("es+f3", "eSpeak español de España (femenina)", "es-ES", "female", "España"),
    _espeak("en-us", "eSpeak US English (male)", "en-US", "male", "United States"),
    _espeak("en-us+f3", "eSpeak US English (female)", "en-US", "female", "United States"),
    # Microsoft Edge online voices (edge-tts): only when reachable.
    _edge("es-CO-SalomeNeural", "Salomé (Colombia)", "female", "Colombia"),
    _edge("es-CO-GonzaloNeural", "Gonzalo (Colombia)", "male", "Colombia"),
    _edge("es-MX-DaliaNeural", "Dalia (México)", "female", "México"),
    _edge("es-MX-JorgeNeural", "Jorge (México)", "male", "México"),
    _edge("es-ES-ElviraNeural", "Elvira (España)", "female", "España"),
    _edge("es-ES-AlvaroNeural", "Álvaro (España)", "male", "España"),
    _edge("en-US-JennyNeural", "Jenny (US English)", "female", "United States"),
    _edge("en-US-GuyNeural", "Guy (US English)", "male", "United States"),
)

CATALOG: dict[str, CatalogVoice] = {v.id: v for v in _VOICES}

# Latin-American Spanish first, then Spain; within those, the known gender first.
_FEMALE_LATAM = ("piper:es_AR-daniela-high", "piper:es_MX-claude-high", "piper:es_MX-ald-medium",
                 "piper:es_ES-sharvard-medium", "piper:es_ES-davefx-medium", "espeak:es-419+f3")
_MALE_LATAM = ("piper:es_MX-ald-medium", "piper:es_MX-claude-high", "piper:es_ES-davefx-medium",
               "piper:es_AR-daniela-high", "piper:es_ES-sharvard-medium", "espeak:es-419")

FRONTEND_VOICES: dict[str, FrontendVoice] = {
    f.id: f
    for f in (
        FrontendVoice("es-CO-SalomeNeural", "edge:es-CO-SalomeNeural", _FEMALE_LATAM),
        FrontendVoice("es-CO-GonzaloNeural", "edge:es-CO-GonzaloNeural", _MALE_LATAM),
        FrontendVoice("es-MX-DaliaNeural", "edge:es-MX-DaliaNeural", _FEMALE_LATAM),
        FrontendVoice("es-MX-JorgeNeural", "edge:es-MX-JorgeNeural", _MALE_LATAM),
    )
}

#: The voice used when a request names none: the first one usable now.
DEFAULT_PREFERENCE: tuple[str, ...] = (
    "piper:es_MX-claude-high",
    "piper:es_MX-ald-medium",
    "piper:es_AR-daniela-high",
    "piper:es_ES-davefx-medium",
    "piper:es_ES-sharvard-medium",
    "edge:es-MX-DaliaNeural",
    "espeak:es-419",
)

# Offline stand-ins for edge voices that are not frontend ids.
_EDGE_FALLBACKS: dict[str, tuple[str, ...]] = {
    "edge:es-ES-ElviraNeural": ("piper:es_ES-sharvard-medium", "piper:es_ES-davefx-medium", "espeak:es+f3"),
    "edge:es-ES-AlvaroNeural": ("piper:es_ES-davefx-medium", "piper:es_ES-carlfm-x_low", "espeak:es"),
    "edge:en-US-JennyNeural": ("piper:en_US-lessac-medium", "piper:en_US-amy-medium", "espeak:en-us+f3"),
    "edge:en-US-GuyNeural": ("piper:en_US-ryan-medium", "espeak:en-us"),
}

_EDGE_SHORT_NAME = re.compile(r"^[a-z]{2,3}-[A-Z]{2}-[A-Za-z]+Neural$")
_PIPER_NAME = re.compile(r"^[a-z]{2,3}_[A-Z]{2}-[a-z0-9_]+-(x_low|low|medium|high)$")


#: ``gender`` as the frontend compares it (``voice.gender === 'Female'``).
FRONTEND_GENDERS: dict[str, str] = {"female": "Female", "male": "Male", "unknown": "Unknown"}


def frontend_gender(gender: str) -> str:
    """``Female``, ``Male`` or ``Unknown``: a catalogue gender spelled as the frontend compares it."""
    return FRONTEND_GENDERS.get(str(gender).strip().lower(), "Unknown")


def get(voice_id: str) -> CatalogVoice | None:
    """The catalogued voice with this namespaced id, or None."""
    return CATALOG.get(voice_id)


def canonical_id(voice_id: str) -> str:
    """A namespaced id for what a client sent: bare edge ShortNames and Piper names get their prefix.

    Unknown ids come back unchanged (the caller decides whether they exist).
    """
    vid = voice_id.strip()
    if ":" in vid:
        backend, _, rest = vid.partition(":")
        return f"{backend.strip().lower()}:{rest.strip()}"
    if vid in FRONTEND_VOICES:
        return FRONTEND_VOICES[vid].edge
    if _EDGE_SHORT_NAME.match(vid):
        return f"{EDGE}:{vid}"
    if _PIPER_NAME.match(vid):
        return f"{PIPER}:{vid}"
    return vid


def fallbacks_for(voice_id: str) -> tuple[str, ...]:
    """Offline stand-ins for an edge voice (namespaced or a bare frontend id), best first."""
    for f in FRONTEND_VOICES.values():
        if voice_id in (f.id, f.edge):
            return f.fallbacks
    return _EDGE_FALLBACKS.get(voice_id, ())


def piper_voices(*, include_tiny: bool = False) -> list[CatalogVoice]:
    """Catalogued Piper voices (what a preloader may fetch)."""
    return [v for v in _VOICES if v.backend == PIPER and (include_tiny or not v.tiny)]
