"""``enfoads models``: list the installed versions, verify their files, choose the active one."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from enfoads.models.catalog import CATALOG, ModelEntry
from enfoads.models.manifest import Manifest, ManifestError, sha256_file
from enfoads.models.preload.errors import PreloadError
from enfoads.models.preload.layout import _files_present, _matching_version, component_file_paths
from enfoads.models.preload.plans import human_bytes
from enfoads.models.preload.selection import _hub_sources

CATALOG_VERSION = "catalog"  # `enfoads models --use MODEL=catalog`: back to the catalogue's pins


@dataclass
class VerifyResult:
    model_id: str
    version: str
    active: bool
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_installed(models_dir: Path, model_ids: Iterable[str] | None = None, *, deep: bool = True, all_versions: bool = False) -> list[VerifyResult]:
    """Check recorded files: present, right size and (``deep``) right sha256."""
    manifest = Manifest.load(models_dir)
    results = []
    for model_id in model_ids or manifest.model_ids():
        active = manifest.active_id(model_id)
        versions = manifest.versions(model_id)
        if not versions:
            results.append(VerifyResult(model_id, "-", False, ["not installed"]))
            continue
        for version in versions:
            if not all_versions and version.id != active:
                continue
            problems = []
            for comp in version.components.values():
                for name, path in component_file_paths(models_dir, comp).items():
                    rec = comp.files[name]
                    try:
                        size = path.stat().st_size
                    except OSError:
                        problems.append(f"{name}: missing ({path})")
                        continue
                    if size != rec.size:
                        problems.append(f"{name}: {size} bytes, recorded {rec.size}")
                    elif deep and sha256_file(path) != rec.sha256:
                        problems.append(f"{name}: sha256 differs from the recorded {rec.sha256[:12]}...")
            results.append(VerifyResult(model_id, version.id, version.id == active, problems))
    return results


def installed_table(models_dir: Path, results: Sequence[VerifyResult] | None = None) -> str:
    manifest = Manifest.load(models_dir)
    checked = {(r.model_id, r.version): r for r in results or ()}
    rows = [("", "model", "version", "installed", "files", "size", "state")]
    for model_id in manifest.model_ids():
        active = manifest.active_id(model_id)
        for v in reversed(manifest.versions(model_id)):
            result = checked.get((model_id, v.id))
            if result is None:
                state = "present" if _files_present(models_dir, v) else "files missing"
            else:
                state = "verified" if result.ok else "BAD: " + "; ".join(result.problems[:3])
            if v.id == active and manifest.is_pinned(model_id):
                state += " (pinned)"
            rows.append(("*" if v.id == active else "", model_id, v.id, v.installed_at.replace("T", " ").rstrip("Z"),
                         str(v.file_count), human_bytes(v.size), state))
    if len(rows) == 1:
        return f"no model recorded in {Path(models_dir) / 'enfoads-manifest.json'}: run `enfoads preload`"
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:6], widths)) + "  " + r[6] for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.append("* active (loaded at the next start); `enfoads models --use MODEL=VERSION` to switch")
    return "\n".join(lines)


def use_version(models_dir: Path, model_id: str, version: str, catalog: Mapping[str, ModelEntry] | None = None) -> str:
    """Make an installed version active (pinned); ``catalog`` unpins and goes back to the catalogue's pins."""
    catalog = CATALOG if catalog is None else catalog
    manifest = Manifest.load(models_dir)
    if version == CATALOG_VERSION:
        if model_id not in catalog:
            raise PreloadError(f"unknown model {model_id!r}")
        entry = catalog[model_id]
        targets = {n: s.revision for n, s in _hub_sources(entry).items()}
        record = _matching_version(models_dir, manifest, entry, targets)
        manifest.unpin(model_id)
        if record is None:
            manifest.save()
            return f"{model_id}: unpinned; the catalogue's version is not installed: run `enfoads preload --only {model_id}`"
        manifest.set_active(model_id, record.id, pinned=False)
        manifest.save()
        return f"{model_id}: {record.id} (the catalogue's version) is active"
    try:
        record = manifest.version(model_id, version)
    except ManifestError as exc:
        raise PreloadError(str(exc)) from None
    if not _files_present(models_dir, record):
        raise PreloadError(f"{model_id} {record.id}: files are missing; reinstall it with `enfoads preload --revision ...`")
    manifest.set_active(model_id, record.id, pinned=True)
    manifest.save()
    return f"{model_id}: {record.id} is active (pinned; `--use {model_id}={CATALOG_VERSION}` to follow the catalogue again)"
