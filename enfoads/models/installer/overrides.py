"""``ENFOADS_CATALOG_OVERRIDES``: the catalogue source fields a replica hub cannot match, read from a
JSON file, applied to entries for the download only, and written for two catalogues."""
from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from enfoads.models.catalog import HubFiles, ModelEntry, UrlArchive, UrlFile

# Fields of a source that a replica cannot match, by source type; nothing else may be overridden.
OVERRIDABLE: dict[type, frozenset[str]] = {
    UrlArchive: frozenset({"url", "sha256", "bytes"}),
    UrlFile: frozenset({"url", "sha256", "bytes"}),
    HubFiles: frozenset({"sha256"}),
}


def load_catalog_overrides(path: Path | str | None) -> dict[str, dict[str, dict[str, Any]]]:
    """The ``{model_id: {component: {field: value}}}`` of an overrides file (empty without one)."""
    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"ENFOADS_CATALOG_OVERRIDES: cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"ENFOADS_CATALOG_OVERRIDES: {path} must map model ids to {{component: {{field: value}}}}")
    return data


def apply_catalog_overrides(entries: Sequence[ModelEntry], overrides: Mapping[str, Mapping]) -> list[ModelEntry]:
    """``entries`` with the overridden source fields replaced; anything but ``OVERRIDABLE`` is refused."""
    out = []
    for entry in entries:
        changes = overrides.get(entry.id)
        if not changes:
            out.append(entry)
            continue
        sources = dict(entry.sources)
        for name, values in changes.items():
            src = sources.get(name)
            if src is None:
                raise ValueError(f"catalogue overrides: {entry.id} has no source {name!r}")
            allowed = OVERRIDABLE[type(src)]
            refused = sorted(set(values) - allowed)
            if refused:
                raise ValueError(
                    f"catalogue overrides: {entry.id}.{name} may override only {sorted(allowed)}, not {refused}"
                )
            values = dict(values)
            if "sha256" in values and isinstance(src, HubFiles):
                values["sha256"] = tuple((str(p), str(d)) for p, d in values["sha256"])
            sources[name] = replace(src, **values)
        out.append(replace(entry, sources=sources))
    return out


def catalog_overrides(base: Mapping[str, ModelEntry], changed: Mapping[str, ModelEntry]) -> dict:
    """The JSON-ready overrides that turn ``base``'s sources into ``changed``'s (only ``OVERRIDABLE`` fields)."""
    out: dict[str, dict] = {}
    for model_id, entry in changed.items():
        original = base.get(model_id)
        if original is None or original.sources == entry.sources:
            continue
        for name, src in entry.sources.items():
            before = original.sources.get(name)
            if before == src:
                continue
            if before is None or type(before) is not type(src):
                raise ValueError(f"{model_id}.{name}: the source itself differs, which an override cannot express")
            diff = {}
            for f in fields(src):
                old, new = getattr(before, f.name), getattr(src, f.name)
                if old == new:
                    continue
                if f.name not in OVERRIDABLE[type(src)]:
                    raise ValueError(f"{model_id}.{name}.{f.name} differs, which an override may not change")
                diff[f.name] = [list(pair) for pair in new] if f.name == "sha256" and isinstance(src, HubFiles) else new
            out.setdefault(model_id, {})[name] = diff
    return out
