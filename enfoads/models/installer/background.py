"""The ``Installer``: the background thread that downloads a profile's missing models one after the
other, its status and events, and the errors a request gets for a model not installed yet."""
from __future__ import annotations

import functools
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from enfoads.work import events as ev
from enfoads.models.catalog import ModelEntry
from enfoads.models.installer.overrides import apply_catalog_overrides, load_catalog_overrides
from enfoads.models.installer.progress import (
    CHECKING,
    DOWNLOADING,
    FAILED,
    IN_PROGRESS,
    INSTALLED,
    OFF,
    OFFLINE,
    QUEUED,
    _bytes_on_disk,
    _probes,
    _Track,
)
from enfoads.models.registry import ModelNotInstalledError

log = logging.getLogger(__name__)


def _human(n: float | None) -> str:
    from enfoads.models.preload import human_bytes

    return human_bytes(n)


class ModelDownloadingError(ModelNotInstalledError):
    """A model the job needs is being downloaded by the server (HTTP 503 ``model_downloading``)."""

    status = 503
    code = "model_downloading"

    def __init__(self, entry: ModelEntry, progress: Mapping[str, Any], *, command: str):
        self.command = command
        self.model_id = entry.id
        self.progress = dict(progress)
        state = progress.get("state")
        if state == DOWNLOADING:
            done = (
                f"{progress.get('percent', 0):.0f}% ({_human(progress.get('bytes_done'))} "
                f"of {_human(progress.get('bytes_total'))})"
            )
            what = f"is downloading: {done}"
        elif state == QUEUED:
            what = f"is queued for download ({_human(progress.get('bytes_total'))}) after the models before it"
        else:
            what = "is about to be downloaded (the server is checking what it needs)"
        if progress.get("last_error"):
            # A download that keeps failing must not read as one that is merely slow.
            what += (f", attempt {progress.get('attempts')} of {progress.get('max_attempts')} "
                     f"(the last one failed: {progress['last_error']})")
        message = f"model {entry.id!r} {what}; it is used as soon as it is installed: retry in a minute"
        # EnfoadsError's constructor: the message is written here, not ModelNotInstalledError's.
        super(ModelNotInstalledError, self).__init__(message, details={"model_id": entry.id, **self.progress})


class Installer:
    """Downloads a profile's missing models in a background thread; see the module docstring.

    Args:
        models_dir: the cache the registry reads (``ENFOADS_MODELS_DIR``).
        profile: the resolved profile name (``cpu``, ``t4``...).
        bus: where ``ModelDownload`` events go (``None``: nowhere).
        mode: ``auto`` (download) or ``off`` (only report what is missing).
        catalog: the catalogue to select from (default ``enfoads.models.catalog.CATALOG``).
        overrides: ``{model_id: {component: {field: value}}}`` for the download (tests).
        retries: further attempts after a failed download (each resumes the partial files).
        retry_delay_s: wait before the first retry (doubled each time).
        endpoint: the hub URL; default ``HF_ENDPOINT`` / huggingface.co.
        poll_s: how often progress is read from the disk.
        log_every_s: how often the log shows a download's progress.
    """

    def __init__(
        self,
        models_dir: Path,
        profile: str,
        *,
        bus: ev.EventBus | None = None,
        mode: str = "auto",
        catalog: Mapping[str, ModelEntry] | None = None,
        overrides: Mapping[str, Mapping] | None = None,
        retries: int = 2,
        retry_delay_s: float = 5.0,
        poll_s: float = 0.5,
        log_every_s: float = 5.0,
        endpoint: str | None = None,
    ):
        if mode not in ("auto", "off"):
            raise ValueError(f"mode must be 'auto' or 'off', not {mode!r}")
        self.models_dir = Path(models_dir)
        self.profile = profile
        self.bus = bus
        self.mode = mode
        self.catalog = catalog
        self.overrides = dict(overrides or {})
        self.retries = int(retries)
        self.retry_delay_s = float(retry_delay_s)
        self.poll_s = float(poll_s)
        self.log_every_s = float(log_every_s)
        self.endpoint = endpoint
        self._tracks: dict[str, _Track] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_event: dict[str, tuple[float, float, str]] = {}  # model id -> (time, percent, state)

    @classmethod
    def from_settings(cls, settings, profile: str, bus: ev.EventBus | None = None, **kwargs) -> "Installer":
        return cls(
            settings.models_dir, profile, bus=bus, mode=settings.auto_download,
            overrides=load_catalog_overrides(settings.catalog_overrides), **kwargs,
        )

    @property
    def command(self) -> str:
        """What installs everything by hand (and what the 503s say when nothing is downloaded)."""
        return f"enfoads preload --profile {self.profile}"

    # ------------------------------------------------------------------ what is missing

    def _entries(self) -> list[ModelEntry]:
        from enfoads.models.preload import select_models

        entries = select_models(self.profile, catalog=self.catalog)
        return apply_catalog_overrides(entries, self.overrides)

    def start(self) -> "Installer":
        """Find the missing models (files only, no network) and, in ``auto`` mode, start downloading them."""
        from enfoads.models.preload.run import _offline
        from enfoads.models.registry import presence

        missing = [e for e in self._entries() if e.sources and not e.tiny and not presence(e, self.models_dir).present]
        if not missing:
            self._done.set()
            return self
        offline = _offline()
        if self.mode == "off" or offline:
            state = OFF if self.mode == "off" else OFFLINE
            why = "ENFOADS_AUTO_DOWNLOAD=off" if state == OFF else "HF_HUB_OFFLINE=1 is set"
            message = f"not installed and {why}, so the server downloads nothing: run `{self.command}`"
            with self._lock:
                for e in missing:
                    self._tracks[e.id] = _Track(e, state, int(e.download_bytes), message=message)
            log.warning(
                "%d model(s) of the %s profile are missing (%s; about %s) and %s, so nothing is downloaded: "
                "run `%s` (with a network), then restart. Until then, requests that need them answer 503.",
                len(missing), self.profile, ", ".join(e.id for e in missing),
                _human(sum(e.download_bytes for e in missing)), why, self.command,
            )
            for e in missing:
                self._publish(self._tracks[e.id], force=True)
            self._done.set()
            return self
        with self._lock:
            for e in missing:
                self._tracks[e.id] = _Track(e, CHECKING, int(e.download_bytes))
        self._thread = threading.Thread(target=self._run, args=(missing,), name="enfoads-installer", daemon=True)
        self._thread.start()
        return self

    # ------------------------------------------------------------------ the download thread

    def _run(self, missing: list[ModelEntry]) -> None:
        try:
            self._install_all(missing)
        except Exception as exc:  # noqa: BLE001 - reported in the status and on every request
            log.exception("the automatic model download stopped")
            with self._lock:
                for t in self._tracks.values():
                    if t.state in IN_PROGRESS:
                        t.state, t.message = FAILED, f"the download stopped: {exc}; run `{self.command}`"
            for t in list(self._tracks.values()):
                self._publish(t, force=True)
        finally:
            self._done.set()

    def _install_all(self, missing: list[ModelEntry]) -> None:
        from enfoads.models.preload import InsufficientDiskError, preload
        from enfoads.models.preload.remote import Reachability

        try:
            plan = preload(missing, models_dir=self.models_dir, dry_run=True, endpoint=self.endpoint,
                           progress=False, out=None)
        except InsufficientDiskError as exc:
            self._fail_all(str(exc))
            return
        plans = {p.entry.id: p for p in plan.models}
        with self._lock:
            for e in missing:
                t = self._tracks[e.id]
                p = plans.get(e.id)
                if p is not None and p.status == "download":
                    t.probes = _probes(p, self.models_dir)
                    t.bytes_total = sum(pr.size for pr in t.probes) or int(e.download_bytes)
                    t.bytes_done = _bytes_on_disk(t.probes)
                t.state = QUEUED
        if not plan.fits:
            self._fail_all(
                f"not enough free disk: {_human(plan.needed_bytes)} to download plus a {_human(plan.margin_bytes)} "
                f"margin, {_human(plan.free_bytes)} free in {self.models_dir}"
            )
            return
        total = sum(t.bytes_total - t.bytes_done for t in self._tracks.values())
        log.info(
            "%d model(s) of the %s profile are missing (%s): downloading %s in the background "
            "(ENFOADS_AUTO_DOWNLOAD=off turns this off); each is used as soon as it is installed, "
            "until then requests that need it answer 503 model_downloading",
            len(missing), self.profile, ", ".join(e.id for e in missing), _human(total),
        )
        for t in list(self._tracks.values()):
            self._publish(t, force=True)
        hosts = Reachability(self.endpoint)
        down: dict[str, str] = {}  # host -> why, once a model's attempts all ended with it giving no answer
        for entry in missing:
            if self._stop.is_set():
                return
            track = self._tracks[entry.id]
            known = next((down[h] for h in map(hosts.origin, entry.sources.values()) if h in down), "")
            if known:
                # It would sit through the same retries: it fails now, with the same reason.
                self._give_up(track, known)
                continue
            host = self._install(track)
            if host:
                down[host] = track.last_error

    def _fail_all(self, message: str) -> None:
        log.error("automatic model download refused: %s; run `%s` after freeing space", message, self.command)
        with self._lock:
            for t in self._tracks.values():
                t.state, t.message = FAILED, f"{message}; run `{self.command}`"
        for t in list(self._tracks.values()):
            self._publish(t, force=True)

    def _install(self, track: _Track) -> str:
        """Download ``track``'s model, retrying; the host that gave no answer, if that is how it ended."""
        from enfoads.models.preload import PreloadError, preload
        from enfoads.models.registry import presence

        entry = track.entry
        for attempt in range(self.retries + 1):
            with self._lock:
                track.state, track.message, track.attempts = DOWNLOADING, "", attempt + 1
                track.max_attempts = self.retries + 1
                track.started_at = track.started_at or time.monotonic()
            self._publish(track, force=True)
            log.info("downloading %s (%s, %s)", entry.id, entry.role, _human(track.bytes_total))
            stop_watch = threading.Event()
            watcher = threading.Thread(
                target=self._watch, args=(track, stop_watch), name="enfoads-installer-progress", daemon=True
            )
            watcher.start()
            note, unreachable = "", ""
            try:
                report = preload([entry], models_dir=self.models_dir, endpoint=self.endpoint, progress=False, out=None)
                status = report.models[0].status if report.models else "missing"
                note = report.models[0].note if report.models else ""
                unreachable = report.models[0].unreachable if report.models else ""
                ok = report.ok and status in ("downloaded", "present")
            except PreloadError as exc:
                ok, note = False, str(exc)
            except Exception as exc:  # noqa: BLE001 - retried, then reported
                ok, note = False, f"{type(exc).__name__}: {exc}"
            finally:
                stop_watch.set()
                watcher.join(5)
            here = presence(entry, self.models_dir)
            if ok and here.present:
                with self._lock:
                    track.state, track.bytes_done = INSTALLED, track.bytes_total
                    track.seconds = time.monotonic() - (track.started_at or time.monotonic())
                    track.message = track.last_error = ""
                self._publish(track, force=True)
                log.info("%s is installed (%s in %.1f s)", entry.id, _human(track.bytes_total), track.seconds)
                return ""
            if ok:
                note = f"downloaded, but the loader would not find it: {here.detail}"
            if attempt < self.retries and not self._stop.is_set():
                delay = self.retry_delay_s * (2**attempt)
                log.warning("downloading %s failed (%s); retrying in %.0f s (partial files are resumed)",
                            entry.id, note, delay)
                with self._lock:
                    track.last_error = note
                    track.message = f"attempt {attempt + 1} failed ({note}); retrying in {delay:.0f} s"
                self._publish(track, force=True)
                if self._stop.wait(delay):
                    return ""
                continue
            self._give_up(track, note)
            return unreachable
        return ""

    def _give_up(self, track: _Track, note: str) -> None:
        with self._lock:
            track.state, track.message = FAILED, f"the download failed: {note}; run `{self.command}`"
            track.last_error = note
        self._publish(track, force=True)
        log.error("could not download %s: %s. Requests that need it answer 503; run `%s`.",
                  track.entry.id, note, self.command)

    def _watch(self, track: _Track, stop: threading.Event) -> None:
        last_log = time.monotonic()
        while not stop.wait(self.poll_s):
            done = min(track.bytes_total, _bytes_on_disk(track.probes)) if track.probes else track.bytes_done
            with self._lock:
                if track.state != DOWNLOADING:
                    return
                track.bytes_done = max(track.bytes_done, done) if track.probes else done
            self._publish(track)
            if time.monotonic() - last_log >= self.log_every_s:
                last_log = time.monotonic()
                log.info("downloading %s: %.0f%% (%s of %s)", track.entry.id, track.percent(),
                         _human(track.bytes_done), _human(track.bytes_total))

    # ------------------------------------------------------------------ events

    def _publish(self, track: _Track, *, force: bool = False) -> None:
        if self.bus is None:
            return
        with self._lock:
            snapshot = track.as_dict()
        now = time.monotonic()
        last = self._last_event.get(track.entry.id)
        if not force and last is not None:
            if last[2] == snapshot["state"] and (now - last[0] < 1.0 or snapshot["percent"] - last[1] < 1.0):
                return
        self._last_event[track.entry.id] = (now, snapshot["percent"], snapshot["state"])
        try:
            self.bus.publish(ev.ModelDownload(
                model_id=track.entry.id, state=snapshot["state"], bytes_done=snapshot["bytes_done"],
                bytes_total=snapshot["bytes_total"], percent=snapshot["percent"], message=snapshot.get("message", ""),
            ))
        except Exception:  # noqa: BLE001 - a closed bus at shutdown, say; the status stays right
            log.debug("could not publish the download state of %s", track.entry.id, exc_info=True)

    # ------------------------------------------------------------------ reading

    def status(self) -> dict[str, dict[str, Any]]:
        """``{model_id: {state, bytes_done, bytes_total, percent, role, message?}}`` of every model it handles."""
        with self._lock:
            return {model_id: t.as_dict() for model_id, t in self._tracks.items()}

    def progress(self, model_id: str) -> dict[str, Any] | None:
        with self._lock:
            t = self._tracks.get(model_id)
            return None if t is None else t.as_dict()

    @property
    def busy(self) -> bool:
        """True while some model is still to be downloaded."""
        with self._lock:
            return any(t.state in IN_PROGRESS for t in self._tracks.values())

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every download ended (installed or failed); False on timeout."""
        return self._done.wait(timeout)

    def explain(self, exc: ModelNotInstalledError) -> Exception:
        """The error a request gets for a model not installed: downloading, or the command to run."""
        with self._lock:
            t = self._tracks.get(getattr(exc, "model_id", None))
            if t is None:
                return exc
            entry, state, snapshot = t.entry, t.state, t.as_dict()
        if isinstance(exc, ModelDownloadingError) or state == INSTALLED:
            return exc
        if state in IN_PROGRESS:
            return ModelDownloadingError(entry, snapshot, command=self.command)
        if state == OFF:
            reason = "automatic downloads are off (ENFOADS_AUTO_DOWNLOAD=off)"
        elif state == OFFLINE:
            reason = "HF_HUB_OFFLINE=1 is set, so the server downloads nothing"
        else:
            reason = snapshot.get("message", "the download failed").split("; run `")[0]
        return ModelNotInstalledError(entry, reason, command=self.command)

    def guard(self, handler: Callable[[dict, Any], Any]) -> Callable[[dict, Any], Any]:
        """``handler`` whose not-installed errors say downloading + progress, or the command to run."""

        @functools.wraps(handler)
        def run(params, ctx):
            try:
                return handler(params, ctx)
            except ModelNotInstalledError as exc:
                better = self.explain(exc)
                if better is exc:
                    raise
                raise better from exc

        return run

    def close(self, timeout: float = 0.0) -> None:
        """Stop after the current model (a download in flight is left to its daemon thread; it resumes next start)."""
        self._stop.set()
        if self._thread is not None and timeout:
            self._thread.join(timeout)
