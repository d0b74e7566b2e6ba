"""The whole run, ``preload()``: settle what needs no network, plan the rest against the hub, check
the disk, then build, download, verify and record each model."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from enfoads.models.catalog import HubFiles, ModelEntry, UrlArchive
from enfoads.models.manifest import Manifest, VersionRecord
from enfoads.models.preload.errors import InsufficientDiskError, PreloadError, short_reason
from enfoads.models.preload.fetch import _bar_classes, _fetch_archive, _fetch_hub
from enfoads.models.preload.layout import _matching_version, free_disk_bytes
from enfoads.models.preload.plans import ComponentPlan, FilePlan, ModelPlan, PreloadReport, human_bytes
from enfoads.models.preload.remote import Reachability, _plan_archive, _plan_hub
from enfoads.models.preload.selection import (
    _check_unused_revisions,
    _hub_sources,
    _targets,
    resolve_profile_name,
    select_models,
)

GIB = 1024**3
DEFAULT_MARGIN_BYTES = 1 * GIB


def resolve_hf_token(token: str | None = None) -> str | None:
    """An explicit token, else ``HF_TOKEN`` from the environment or the Colab secrets (never printed)."""
    if token:
        return token
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        if os.environ.get(var):
            return os.environ[var]
    from enfoads.user_secrets import get_secret

    return get_secret("HF_TOKEN", prompt=False, env=False)


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.is_offline_mode())


def preload(
    models: Sequence[ModelEntry] | None = None,
    *,
    profile: str = "auto",
    only: Iterable[str] | None = None,
    extras: Iterable[str] = (),
    models_dir: Path | None = None,
    revisions: Mapping[str, str] | None = None,
    dry_run: bool = False,
    endpoint: str | None = None,
    token: str | None = None,
    margin_bytes: int = DEFAULT_MARGIN_BYTES,
    disk_free: Callable[[Path], int] = free_disk_bytes,
    progress: bool = True,
    prefer_xet: bool = False,
    out: Callable[[str], None] | None = print,
) -> PreloadReport:
    """Install the models of ``profile`` (or ``models``) into ``models_dir``; see the module docstring.

    Args:
        models: catalogue entries to install; default: those of ``profile`` and ``only``.
        profile: ``auto``, ``t4``, ``gpu``, ``cpu`` or ``tiny`` (tiny builds the tiny kit).
        only: roles (``image``, ``faces``...) or model ids to limit the run to.
        extras: optional downloads by name (``quality``: SDXL base's UNet for 10-50 steps).
        models_dir: the cache root; default ``Settings().models_dir`` (the HF cache).
        revisions: ``{"MODEL[.COMPONENT]" or repo id: revision}`` to install instead of the pins.
        dry_run: plan only (asks the hub for sizes), download nothing.
        endpoint: the hub URL; default ``HF_ENDPOINT`` / huggingface.co.
        margin_bytes: free disk to keep beyond what the downloads need.
        disk_free: how free disk is measured (tests pass their own).
        prefer_xet: let huggingface_hub's Xet client fetch Xet-stored files (faster on a fat
            pipe; an interrupted file then restarts, short of Xet's own chunk cache). By
            default every file goes through the resumable HTTP path.

    Returns:
        A ``PreloadReport``. Raises ``InsufficientDiskError`` before downloading
        when the models do not fit; other per-model failures are reported in it.
    """
    started = time.perf_counter()
    say = out or (lambda _line: None)
    if models_dir is None:
        from enfoads.settings import Settings

        models_dir = Settings().models_dir
    models_dir = Path(models_dir).expanduser()
    if models is None:
        models = select_models(resolve_profile_name(profile), only, extras=extras)
    revisions = dict(revisions or {})
    manifest = Manifest.load(models_dir)
    plans = [ModelPlan(e) for e in models]
    used: set = set()
    needs_hub: list[tuple[ModelPlan, dict[str, str]]] = []
    manifest_changed = False

    # 1. What is settled without the network: tiny kits, system programs, installed versions.
    for plan in plans:
        entry = plan.entry
        if entry.tiny:
            from enfoads.models.tiny import is_built, tiny_path

            built = is_built(tiny_path(models_dir, entry.tiny), entry.tiny)
            plan.status = "present" if built else ("to build" if dry_run else "build")
            plan.version = "tiny kit"
            continue
        if not entry.sources:
            from enfoads.models.registry import presence

            state = presence(entry, models_dir)
            plan.status = "system" if state.present else "missing"
            plan.note = "nothing to download" if state.present else state.detail
            continue
        targets, overridden = _targets(entry, manifest, revisions, used)
        plan.pin = True if overridden else None
        installed = _matching_version(models_dir, manifest, entry, targets)
        if installed is not None:
            plan.status, plan.version, plan.size = "present", installed.id, installed.size
            newly_pinned = overridden and not manifest.is_pinned(entry.id)
            if manifest.active_id(entry.id) != installed.id or newly_pinned:
                plan.note = "now active" + (", pinned" if overridden else "")
                if not dry_run:
                    manifest.set_active(entry.id, installed.id, pinned=overridden or manifest.is_pinned(entry.id))
                    manifest_changed = True
            continue
        needs_hub.append((plan, targets))
    _check_unused_revisions(revisions, models, used)
    if manifest_changed:
        manifest.save()

    # 2. Ask the hub about the rest.
    if needs_hub and _offline() and not dry_run:
        raise PreloadError(
            "HF_HUB_OFFLINE=1 is set, so nothing can be downloaded: unset it for `enfoads preload` "
            f"({', '.join(p.entry.id for p, _ in needs_hub)} still to install)"
        )
    api = None
    if needs_hub:
        from huggingface_hub import HfApi

        token = resolve_hf_token(token)
        api = HfApi(endpoint=endpoint, token=token)
    hosts = Reachability(endpoint)
    for plan, targets in needs_hub:
        entry = plan.entry
        try:
            if _offline():
                raise PreloadError("offline (HF_HUB_OFFLINE=1)")
            for src in entry.sources.values():
                if why := hosts.why_not(src):
                    plan.unreachable = hosts.origin(src)
                    raise PreloadError(why)
            for name, src in entry.sources.items():
                if isinstance(src, HubFiles):
                    plan.components.append(_plan_hub(api, models_dir, name, src, targets[name]))
                else:
                    plan.components.append(_plan_archive(models_dir, name, src, entry.download_bytes, online=True))
        except Exception as exc:  # noqa: BLE001 - reported per model, the others go on
            if dry_run:
                plan.components = _estimate(entry, models_dir)
                plan.status, plan.note = "download", f"estimate; {short_reason(exc)}"
                plan.size = sum(c.size for c in plan.components)
                continue
            plan.status, plan.note = "failed", short_reason(exc)
            continue
        plan.status = "download"
        plan.size = sum(c.size for c in plan.components)
        plan.version = "+".join((c.commit or c.revision or "unpinned")[:8] for c in plan.components)

    # 3. Disk space for what remains, before downloading anything.
    needed = sum(p.disk_needed for p in plans)
    report = PreloadReport(models_dir, plans, dry_run=dry_run, needed_bytes=needed, margin_bytes=margin_bytes)
    if needed:
        report.free_bytes = disk_free(models_dir)
        if not report.fits and not dry_run:
            raise InsufficientDiskError(
                f"not enough free disk for the models: {human_bytes(needed)} to download plus a "
                f"{human_bytes(margin_bytes)} margin, but only {human_bytes(report.free_bytes)} free in {models_dir}. "
                "Free some space, preload fewer models (--only image,faces), or point ENFOADS_MODELS_DIR "
                "at a bigger disk (on Colab: Google Drive).",
                needed=needed + margin_bytes,
                free=report.free_bytes,
                path=models_dir,
            )
    if dry_run:
        report.seconds = time.perf_counter() - started
        say(report.table())
        say(report.summary())
        return report

    # 4. Build, download, verify, record.
    bars = _bar_classes(progress)
    for plan in plans:
        entry = plan.entry
        t0 = time.perf_counter()
        if plan.status == "build":
            from enfoads.models.tiny import ensure_tiny, folder_bytes

            folder = ensure_tiny(models_dir, entry.tiny)
            plan.status, plan.size, plan.seconds = "built", folder_bytes(folder), time.perf_counter() - t0
            continue
        if plan.status != "download":
            continue
        say(f"{entry.id}: {human_bytes(plan.remaining)} to download ({entry.licence})")
        try:
            components = {}
            for comp in plan.components:
                if comp.is_archive:
                    record, fetched = _fetch_archive(comp, models_dir, bars=bars)
                else:
                    record, fetched = _fetch_hub(
                        comp, models_dir, manifest, endpoint=endpoint, token=token, bars=bars, prefer_xet=prefer_xet
                    )
                components[comp.name] = record
                plan.downloaded += fetched
        except Exception as exc:  # noqa: BLE001 - reported per model; partial files stay for a resume
            plan.status, plan.note, plan.seconds = "failed", short_reason(exc), time.perf_counter() - t0
            continue
        version = VersionRecord(components)
        pinned = True if plan.pin else None
        plan.version = manifest.record(entry.id, version, activate=True, pinned=pinned)
        manifest.save()
        plan.status, plan.size, plan.seconds = "downloaded", version.size, time.perf_counter() - t0
    report.seconds = time.perf_counter() - started
    say(report.table())
    say(report.summary())
    return report


def _estimate(entry: ModelEntry, models_dir: Path) -> list[ComponentPlan]:
    """Without the hub: archives at their published size, hub files at the catalogue's estimate."""
    plans = [
        _plan_archive(models_dir, name, src, entry.download_bytes, online=False)
        for name, src in entry.sources.items()
        if isinstance(src, UrlArchive)
    ]
    hub = _hub_sources(entry)
    if hub:
        name, src = next(iter(hub.items()))
        rest = max(0, entry.download_bytes - sum(p.size for p in plans))
        plans.append(ComponentPlan(name, src, src.revision, None, [FilePlan("*", rest)]))
    return plans
