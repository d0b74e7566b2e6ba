"""Model families: one module per kind of model files, each knowing its files, checks, load and measure.

``family_for(entry)`` is the one place a catalogue entry's ``loader`` name is
looked at. Adding a family: one class in a module here (see ``base.Family``),
listed in ``FAMILIES``, one catalogue entry that names its ``loader``, and
the service that uses it.
"""
from __future__ import annotations

from enfoads.models.catalog import ModelEntry
from enfoads.models.families.base import Family
from enfoads.models.families.diffusers_pipelines import DiffusersFolder, SdxlLightning, UnetFiles
from enfoads.models.families.insightface import FacePack, OnnxSwapper
from enfoads.models.families.musetalk import MuseTalk
from enfoads.models.families.spandrel_models import SpandrelModel
from enfoads.models.families.speech import CTranslate2Whisper, EspeakProgram, PiperVoice
from enfoads.models.families.user_checkpoints import UserCheckpoint

FAMILIES: dict[str, Family] = {
    family.loader: family
    for family in (SdxlLightning(), DiffusersFolder(), UnetFiles(), FacePack(), OnnxSwapper(), CTranslate2Whisper(),
                   PiperVoice(), EspeakProgram(), UserCheckpoint("single_file"), UserCheckpoint("diffusers_folder"),
                   SpandrelModel(), MuseTalk())
}


def family_for(entry: ModelEntry) -> Family:
    try:
        return FAMILIES[entry.loader]
    except KeyError:
        raise ValueError(f"{entry.id}: no model family {entry.loader!r}; known: {', '.join(sorted(FAMILIES))}") from None


__all__ = ["FAMILIES", "Family", "family_for"]
