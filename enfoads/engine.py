"""The engine: everything a running server holds, built once from settings.

Runtime (hardware, profile, residency), asset store, event bus, job queue,
the job kinds of every service and the installer that downloads the
profile's missing models in the background (``enfoads.installer``;
``ENFOADS_AUTO_DOWNLOAD``). The web app keeps one in
``app.extensions["enfoads"]``; tests and the notebook build their own.
Nothing heavy happens here: models load on first use.
"""
from __future__ import annotations

import importlib
import inspect
import logging
from dataclasses import dataclass, field

from enfoads.assets import AssetStore
from enfoads.avatars import AvatarStore
from enfoads.errors import InvalidInput
from enfoads.events import EventBus
from enfoads.installer import Installer
from enfoads.jobs import JobQueue
from enfoads.library import Library
from enfoads.profiles import Hardware
from enfoads.runtime import Runtime, build_runtime
from enfoads.services import JobKind
from enfoads.settings import Settings
from enfoads.warmup import Warmer

log = logging.getLogger(__name__)

# Service modules offering ``job_kinds(runtime)``; one line per capability.
SERVICE_MODULES = (
    "enfoads.services.images",
    "enfoads.services.faces",
    "enfoads.services.speech",
    "enfoads.services.video",
)

GIB = 1024**3


@dataclass
class Engine:
    settings: Settings
    runtime: Runtime
    assets: AssetStore
    bus: EventBus
    queue: JobQueue
    library: Library
    avatars: AvatarStore
    kinds: dict[str, JobKind] = field(default_factory=dict)
    installer: Installer | None = None  # the background download of missing models
    warmer: Warmer | None = None  # the warm start of the default models (ENFOADS_WARM)

    def validate(self, kind: str, params: dict) -> dict:
        """Check a job's params before it is queued (raises InvalidInput naming the field)."""
        if kind not in self.kinds:
            raise InvalidInput.field("kind", f"unknown job kind {kind!r}; known: {', '.join(sorted(self.kinds))}")
        if not isinstance(params, dict):
            raise InvalidInput.field("params", "must be a JSON object")
        return self.kinds[kind].validate(params)

    def submit(self, kind: str, params: dict):
        return self.queue.submit(kind, self.validate(kind, params))

    def submit_and_wait(self, kind: str, params: dict, timeout: float):
        return self.queue.submit_and_wait(kind, self.validate(kind, params), timeout=timeout)

    def close(self, grace_s: float | None = None) -> None:
        """Stop everything; a running job gets ``grace_s`` (default the queue's) before it is re-queued."""
        if self.warmer is not None:
            self.warmer.close()
        if self.installer is not None:
            self.installer.close()
        self.queue.close(grace_s)
        self.runtime.close()
        self.bus.close()
        self.library.close()


def build_engine(
    settings: Settings,
    hardware: Hardware | None = None,
    *,
    start: bool = True,
    service_modules: tuple[str, ...] = SERVICE_MODULES,
) -> Engine:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    runtime = build_runtime(settings, hardware)
    quota = int(settings.assets_quota_gb * GIB) if settings.assets_quota_gb else None
    assets = AssetStore(settings.data_dir, quota_bytes=quota)
    bus = EventBus(settings.data_dir)
    queue = JobQueue(
        settings.data_dir,
        assets=assets,
        bus=bus,
        max_queued=settings.max_queued_jobs,
        cpu_workers=settings.cpu_workers,
        max_attempts=settings.job_attempts,
    )
    avatars = AvatarStore.from_settings(settings)
    installer = Installer.from_settings(settings, runtime.profile.name, bus)
    # Shared stores a service may ask for by naming them in job_kinds' keywords.
    shared = {"assets": assets, "avatars": avatars}
    kinds: dict[str, JobKind] = {}
    for module_name in service_modules:
        job_kinds = importlib.import_module(module_name).job_kinds
        accepted = inspect.signature(job_kinds).parameters
        for kind in job_kinds(runtime, **{k: v for k, v in shared.items() if k in accepted}):
            kinds[kind.name] = kind
            # A missing model's error says "downloading, N%" (or the command to run) instead.
            queue.register(kind.name, installer.guard(kind.handler), device=kind.device)
    warmer = Warmer(settings.warm_roles, warm_ups(runtime), runtime=runtime, queue=queue, installer=installer)
    engine = Engine(
        settings=settings, runtime=runtime, assets=assets, bus=bus, queue=queue,
        library=Library(settings.data_dir), avatars=avatars, kinds=kinds, installer=installer, warmer=warmer,
    )
    if start:
        queue.start()
        installer.start()
        warmer.start()
    return engine


def warm_ups(runtime: Runtime) -> dict:
    """Role -> the call that loads its models and runs them once (``enfoads.warmup``)."""
    def image() -> dict:
        from enfoads.services.images import service_for

        return service_for(runtime).warm_up()

    def faces() -> dict:
        from enfoads.services.faces import FaceSwapper

        return FaceSwapper(runtime).warm_up()

    def speech() -> dict:
        from enfoads.services.speech import SpeechTranscriber

        return SpeechTranscriber(runtime).warm_up()

    return {"image": image, "faces": faces, "speech": speech}
