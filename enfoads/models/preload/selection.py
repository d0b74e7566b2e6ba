"""Choosing models and versions: the profile's entries (plus Piper voices and extras), ``--revision``
overrides, and the revision each hub component is to be installed at."""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from enfoads.models.catalog import CATALOG, MB, HubFiles, ModelEntry
from enfoads.models.manifest import Manifest
from enfoads.models.preload.errors import PreloadError
from enfoads.models.families import family_for

UNET_EXTRAS = ("quality", "lightning-steps")  # PRELOAD_EXTRAS that add UNets to the image pipeline


def resolve_profile_name(name: str) -> str:
    """``auto`` becomes the profile of this machine; others are taken as given (no CUDA needed to download)."""
    from enfoads.models.profiles import PROFILES, choose_profile, detect_hardware

    if name == "auto":
        return choose_profile("auto", detect_hardware()).name
    if name not in PROFILES:
        raise PreloadError(f"unknown profile {name!r}; choose one of auto, {', '.join(PROFILES)}")
    return name


def piper_entries(voice_ids: Iterable[str] | None = None) -> list[ModelEntry]:
    """Piper voices (``enfoads.models.voices``) as catalogue entries: two files each from ``rhasspy/piper-voices``.

    Default: the voices the product reaches for without being asked (``DEFAULT_PREFERENCE``
    and the offline stand-ins of the frontend's four voices).
    """
    try:
        from enfoads.models import voices
    except ImportError:  # an install without the TTS voice catalogue
        return []
    if voice_ids is None:
        wanted = list(voices.DEFAULT_PREFERENCE)
        for frontend in voices.FRONTEND_VOICES.values():
            wanted.extend(frontend.fallbacks)
    else:
        wanted = list(voice_ids)
    by_id = {v.id: v for v in voices.piper_voices()}
    entries = []
    for vid in dict.fromkeys(wanted):
        voice = by_id.get(vid)
        if voice is None or not voice.piper_files:
            continue
        size = int((voice.size_mb or 60) * MB)
        entries.append(
            ModelEntry(
                id=voice.id,
                role="tts",
                runtime="onnxruntime",
                loader="piper",
                description=f"Piper voice {voice.name}",
                licence="per voice: see its MODEL_CARD in rhasspy/piper-voices",
                download_bytes=size,
                vram_bytes=0,
                ram_bytes=size,
                sources={
                    "voice": HubFiles(
                        voices.PIPER_REPO,
                        revision=voice.revision or voices.PIPER_REVISION,
                        allow_patterns=voice.piper_files,
                    )
                },
            )
        )
    return entries


def select_models(
    profile: str,
    only: Iterable[str] | None = None,
    catalog: Mapping[str, ModelEntry] | None = None,
    extras: Iterable[str] = (),
) -> list[ModelEntry]:
    """The catalogue entries a profile uses, optionally limited to some roles or model ids.

    The ``tts`` role also brings the default Piper voices (not in the tiny profile);
    a single voice is chosen by its id (``piper:es_MX-claude-high``). ``extras``
    names optional downloads (``PRELOAD_EXTRAS``): ``quality`` and ``lightning-steps``
    for profiles whose image model is SDXL-Lightning, ``upscalers`` for any real profile.
    """
    from enfoads.models.profiles import PROFILES, ROLES

    catalog = CATALOG if catalog is None else catalog
    roles = PROFILES[profile].roles
    voices = piper_entries() if profile != "tiny" else []
    added = _extras(profile, extras, catalog)
    wanted = [w.strip() for w in (only or ()) if w.strip()]
    if not wanted:
        return _unique([*(catalog[choice.model_id] for choice in roles.values()), *voices, *added])
    all_voices = {e.id: e for e in piper_entries([w for w in wanted if w.startswith("piper:")])}
    chosen = []
    for word in wanted:
        if word in roles:
            chosen.append(catalog[roles[word].model_id])
            if word == "tts":
                chosen.extend(voices)
        elif word in catalog:
            chosen.append(catalog[word])
        elif word in all_voices:
            chosen.append(all_voices[word])
        else:
            raise PreloadError(
                f"--only {word!r}: not a role ({', '.join(ROLES)}), a model id ({', '.join(sorted(catalog))}) "
                "nor a Piper voice id (piper:NAME)"
            )
    return _unique([*chosen, *added])


def _extras(profile: str, names: Iterable[str], catalog: Mapping[str, ModelEntry]) -> list[ModelEntry]:
    from enfoads.models.catalog import PRELOAD_EXTRAS
    from enfoads.models.profiles import PROFILES

    names = [n.strip() for n in names if n and n.strip()]
    if not names:
        return []
    image = catalog[PROFILES[profile].roles["image"].model_id]
    # Extra UNets only fit an SDXL-Lightning pipeline; the upscalers fit every real profile.
    unets = [n for n in names if n in UNET_EXTRAS]
    if unets and (not family_for(image).swaps_unets or image.tiny):
        raise PreloadError(
            f"--with {','.join(unets)}: the {profile!r} profile's image model ({image.id}) has no optional downloads"
        )
    out = []
    for name in names:
        if name not in PRELOAD_EXTRAS:
            raise PreloadError(f"--with {name!r}: choose from {', '.join(PRELOAD_EXTRAS)}")
        if profile == "tiny":
            raise PreloadError(f"--with {name!r}: the tiny profile has nothing to download")
        out.extend(catalog[i] for i in PRELOAD_EXTRAS[name])
    return out


def _unique(entries: Iterable[ModelEntry]) -> list[ModelEntry]:
    seen: dict[str, ModelEntry] = {}
    for e in entries:
        seen.setdefault(e.id, e)
    return list(seen.values())


def parse_revisions(items: Iterable[str]) -> dict[str, str]:
    """``["MODEL[.COMPONENT]=REV", ...]`` (a repo id also works as the key) -> dict."""
    out = {}
    for item in items or ():
        key, sep, rev = item.partition("=")
        if not sep or not key.strip() or not rev.strip():
            raise PreloadError(f"--revision {item!r}: expected MODEL=REVISION or MODEL.COMPONENT=REVISION")
        out[key.strip()] = rev.strip()
    return out


def _hub_sources(entry: ModelEntry) -> dict[str, HubFiles]:
    return {n: s for n, s in entry.sources.items() if isinstance(s, HubFiles)}


def _override_for(revisions: Mapping[str, str], entry: ModelEntry, name: str, src: HubFiles, used: set) -> str | None:
    keys = [f"{entry.id}.{name}", src.repo_id]
    if len(_hub_sources(entry)) == 1:
        keys.insert(1, entry.id)
    for key in keys:
        if key in revisions:
            used.add(key)
            return revisions[key]
    return None


def _check_unused_revisions(revisions: Mapping[str, str], entries: Sequence[ModelEntry], used: set) -> None:
    unused = sorted(set(revisions) - used)
    if not unused:
        return
    hints = []
    for key in unused:
        entry = next((e for e in entries if e.id == key), None)
        if entry is not None and len(_hub_sources(entry)) > 1:
            hints.append(f"{key} has several sources: use {', '.join(f'{key}.{n}' for n in _hub_sources(entry))}")
        else:
            hints.append(f"{key} is none of the selected models, their components or repositories")
    raise PreloadError("--revision: " + "; ".join(hints))


def _targets(entry, manifest: Manifest, revisions, used) -> tuple[dict[str, str], bool]:
    """Revision to install per hub component, and whether it was overridden on the command line."""
    active = manifest.active(entry.id) if manifest.is_pinned(entry.id) else None
    targets, overridden = {}, False
    for name, src in _hub_sources(entry).items():
        rev = _override_for(revisions, entry, name, src, used)
        if rev is not None:
            overridden = True
        elif active is not None and name in active.components:
            rev = active.components[name].commit  # a version chosen by hand stays chosen
        else:
            rev = src.revision
        targets[name] = rev
    return targets, overridden
