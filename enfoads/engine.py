"""The engine: the composition root of everything a running server holds, built once from settings.

``build_engine`` makes each part explicitly and the ``Engine`` owns and
closes all of them: the runtime (hardware, profile, residency), the asset
store, the event bus, the job queue (the local backend, ``enfoads.work.backend``),
the TTS engine, one object per service (images, faces, speech, enhance, video, avatar faces,
lip sync), the
installer that downloads the profile's missing models in the background
(``ENFOADS_AUTO_DOWNLOAD``) and the warm start (``ENFOADS_WARM``). The web
app keeps one in ``app.extensions["enfoads"]``; tests and the notebook build
their own. Nothing heavy happens here: models load at the warm start or on
first use.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from enfoads.work.assets import AssetStore
from enfoads.services.avatar_faces import AvatarFaces
from enfoads.services.avatars import AvatarStore
from enfoads.work.backend import JobBackend
from enfoads.errors import InvalidInput
from enfoads.work.events import EventBus
from enfoads.work.idempotency import IdempotencyKeys
from enfoads.models.installer import Installer
from enfoads.work.jobs import JobQueue
from enfoads.services.library import Library
from enfoads.models.profiles import Hardware
from enfoads.work.db import Database
from enfoads.models.runtime import Runtime, build_runtime
from enfoads.work.schema import open_database
from enfoads.services import JobKind
from enfoads.services.enhance import EnhanceService
from enfoads.services.faces import FaceSwapper
from enfoads.services.images import ImageService
from enfoads.services.service_set import build_services
from enfoads.services.speech import SpeechTranscriber
from enfoads.services.talking import Talker
from enfoads.settings import Settings
from enfoads.services.tts import TTS
from enfoads.warmup import Warmer

log = logging.getLogger(__name__)

GIB = 1024**3


@dataclass
class Engine:
    settings: Settings
    runtime: Runtime
    db: Database  # the data dir's one SQLite file, migrated (enfoads.work.schema); every store shares it
    assets: AssetStore
    bus: EventBus
    queue: JobQueue  # the local backend's queue, where job kinds are registered
    library: Library
    avatars: AvatarStore
    tts: TTS
    images: ImageService
    faces: FaceSwapper
    speech: SpeechTranscriber
    enhance: EnhanceService
    avatar_faces: AvatarFaces | None = None  # faces of avatars and portraits (found once, kept)
    talker: Talker | None = None  # lip sync (MuseTalk) for videos and live portraits
    kinds: dict[str, JobKind] = field(default_factory=dict)
    installer: Installer | None = None  # the background download of missing models
    warmer: Warmer | None = None  # the warm start of the default models (ENFOADS_WARM)
    backend: JobBackend | None = None  # what runs the jobs; default the local queue
    idempotency: IdempotencyKeys | None = None  # the job each Idempotency-Key made; default in self.db

    def __post_init__(self) -> None:
        if self.backend is None:
            self.backend = self.queue
        if self.idempotency is None:
            self.idempotency = IdempotencyKeys(self.db)

    @property
    def jobs(self) -> JobBackend:
        """Submit, read, wait for and cancel jobs (the web layer's only way to them)."""
        return self.backend

    def validate(self, kind: str, params: dict) -> dict:
        """Check a job's params before it is queued (raises InvalidInput naming the field)."""
        if kind not in self.kinds:
            raise InvalidInput.field("kind", f"unknown job kind {kind!r}; known: {', '.join(sorted(self.kinds))}")
        if not isinstance(params, dict):
            raise InvalidInput.field("params", "must be a JSON object")
        return self.kinds[kind].validate(params)

    def submit(self, kind: str, params: dict, *, idempotency_key: str | None = None, sent: dict | None = None):
        """Queue a job; with ``idempotency_key``, a retry of the same request gets the job the first made.

        A retry is matched on what the client sent (``sent``, default ``params``), not on the
        validated params: validation fills in a random seed, and a route that stores an upload
        first passes its content hash instead of the new asset's id.
        """
        valid = self.validate(kind, params)
        if idempotency_key is None:
            return self.jobs.submit(kind, valid)
        job, _ = self.idempotency.submit_once(idempotency_key, kind, params if sent is None else sent,
                                              lambda: self.jobs.submit(kind, valid), self.jobs.get)
        return job

    def submit_and_wait(self, kind: str, params: dict, timeout: float, *, idempotency_key: str | None = None,
                        sent: dict | None = None):
        if idempotency_key is None:
            return self.jobs.submit_and_wait(kind, self.validate(kind, params), timeout=timeout)
        return self.jobs.wait(self.submit(kind, params, idempotency_key=idempotency_key, sent=sent).id, timeout=timeout)

    def close(self, grace_s: float | None = None) -> None:
        """Stop everything; a running job gets ``grace_s`` (default the queue's) before it is re-queued."""
        if self.warmer is not None:
            self.warmer.close()
        if self.installer is not None:
            self.installer.close()
        self.jobs.close(grace_s)
        self.images.close()
        self.tts.unload()
        self.runtime.close()
        self.bus.close()
        self.library.close()
        self.db.close()


def build_engine(settings: Settings, hardware: Hardware | None = None, *, start: bool = True) -> Engine:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = open_database(settings.data_dir)  # an older release's file is upgraded here, in place
    runtime = build_runtime(settings, hardware)
    quota = int(settings.assets_quota_gb * GIB) if settings.assets_quota_gb else None
    assets = AssetStore(settings.data_dir, quota_bytes=quota, db=db)
    bus = EventBus(db)
    services = build_services(settings, runtime, assets=assets)
    remote = None
    if settings.ray is not None:
        # Model work runs in Ray Serve deployments; this process keeps the rows, events and assets.
        from enfoads.cluster.backend import RayBackend

        remote = RayBackend.from_settings(settings, runtime.profile, services.roles)
    queue = JobQueue(
        db,
        assets=assets,
        bus=bus,
        max_queued=settings.max_queued_jobs,
        cpu_workers=settings.cpu_workers,
        gpu_workers=remote.gpu_workers if remote is not None else 1,
        max_attempts=settings.job_attempts,
    )
    installer = Installer.from_settings(settings, runtime.profile.name, bus)
    for kind in services.kinds.values():
        handler = kind.handler if remote is None else remote.handler(kind.name, assets)
        # A missing model's error says "downloading, N%" (or the command to run) instead.
        queue.register(kind.name, installer.guard(handler), device=kind.device)
    # With Ray each replica warms its own models; the head loads none.
    warmer = None if remote is not None else Warmer(settings.warm_roles, services.warm_ups(), runtime=runtime,
                                                      queue=queue, installer=installer)
    engine = Engine(
        settings=settings, runtime=runtime, db=db, assets=assets, bus=bus, queue=queue,
        library=Library(db), avatars=services.avatars, tts=services.tts, images=services.images,
        faces=services.faces, speech=services.speech, enhance=services.enhance,
        avatar_faces=services.avatar_faces, talker=services.talker, kinds=services.kinds, installer=installer,
        warmer=warmer, backend=remote.attach(queue) if remote is not None else None,
    )
    if start:
        engine.jobs.start() if remote is not None else queue.start()
        installer.start()
        if warmer is not None:
            warmer.start()
    return engine
