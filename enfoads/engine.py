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
from enfoads.models.installer import Installer
from enfoads.work.jobs import JobQueue
from enfoads.services.library import Library
from enfoads.models.profiles import Hardware
from enfoads.work.db import Database
from enfoads.models.runtime import Runtime, build_runtime
from enfoads.work.schema import open_database
from enfoads.services import JobKind
from enfoads.services import video as video_service
from enfoads.services.enhance import EnhanceService
from enfoads.services.faces import FaceSwapper
from enfoads.services.images import ImageService
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

    def __post_init__(self) -> None:
        if self.backend is None:
            self.backend = self.queue

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

    def submit(self, kind: str, params: dict):
        return self.jobs.submit(kind, self.validate(kind, params))

    def submit_and_wait(self, kind: str, params: dict, timeout: float):
        return self.jobs.submit_and_wait(kind, self.validate(kind, params), timeout=timeout)

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
    queue = JobQueue(
        db,
        assets=assets,
        bus=bus,
        max_queued=settings.max_queued_jobs,
        cpu_workers=settings.cpu_workers,
        max_attempts=settings.job_attempts,
    )
    avatars = AvatarStore.from_settings(settings)
    installer = Installer.from_settings(settings, runtime.profile.name, bus)
    tts = TTS.from_settings(settings)
    images = ImageService(runtime)
    enhance = EnhanceService(runtime)
    faces = FaceSwapper(runtime, enhance=enhance)
    speech = SpeechTranscriber(runtime)
    avatar_faces = AvatarFaces(runtime, avatars)
    talker = Talker(runtime)
    job_kinds = [
        *images.job_kinds(),
        *faces.job_kinds(assets=assets),
        *speech.job_kinds(assets=assets),
        *enhance.job_kinds(assets=assets),
        *video_service.job_kinds(runtime, tts=tts, avatars=avatars, assets=assets, talker=talker,
                                 faces=avatar_faces),
    ]
    kinds: dict[str, JobKind] = {}
    for kind in job_kinds:
        kinds[kind.name] = kind
        # A missing model's error says "downloading, N%" (or the command to run) instead.
        queue.register(kind.name, installer.guard(kind.handler), device=kind.device)
    warm_ups = {"image": images.warm_up, "faces": faces.warm_up, "speech": speech.warm_up}
    warmer = Warmer(settings.warm_roles, warm_ups, runtime=runtime, queue=queue, installer=installer)
    engine = Engine(
        settings=settings, runtime=runtime, db=db, assets=assets, bus=bus, queue=queue,
        library=Library(db), avatars=avatars, tts=tts, images=images, faces=faces, speech=speech, enhance=enhance,
        avatar_faces=avatar_faces, talker=talker, kinds=kinds, installer=installer, warmer=warmer,
    )
    if start:
        queue.start()
        installer.start()
        warmer.start()
    return engine
