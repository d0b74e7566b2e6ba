"""Every service over one runtime, built the one way the server and a remote replica both build them.

``build_services`` makes the TTS engine and one object per service (images,
faces, speech, enhance, video with its avatar faces and lip sync) and collects
their job kinds. The engine (``enfoads.engine``) calls it on the head with the
asset store, so ``validate`` can check stored inputs; a Ray Serve replica
(``enfoads.cluster.replica``) calls it without one, because handlers read
their inputs through ``ctx.assets``. Nothing loads here: models load on first
use or at the warm start.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from enfoads.services import JobKind
from enfoads.services import video as video_service
from enfoads.services.avatar_faces import AvatarFaces
from enfoads.services.avatars import AvatarStore
from enfoads.services.enhance import EnhanceService
from enfoads.services.faces import FaceSwapper
from enfoads.services.images import ImageService
from enfoads.services.speech import SpeechTranscriber
from enfoads.services.talking import Talker
from enfoads.services.tts import TTS

__all__ = ["ServiceSet", "build_services", "role_of"]


def role_of(kind: str) -> str:
    """The service a job kind belongs to: ``"image.generate"`` -> ``"image"`` (one deployment per role)."""
    return kind.split(".", 1)[0]


@dataclass
class ServiceSet:
    tts: TTS
    avatars: AvatarStore
    images: ImageService
    faces: FaceSwapper
    speech: SpeechTranscriber
    enhance: EnhanceService
    avatar_faces: AvatarFaces
    talker: Talker
    kinds: dict[str, JobKind] = field(default_factory=dict)

    @property
    def roles(self) -> list[str]:
        return sorted({role_of(name) for name in self.kinds})

    def warm_ups(self) -> dict:
        """The warm start's calls, by model role (``enfoads.warmup``)."""
        return {"image": self.images.warm_up, "faces": self.faces.warm_up, "speech": self.speech.warm_up}

    def close(self) -> None:
        self.images.close()
        self.tts.unload()


def build_services(settings, runtime, *, assets=None, avatars: AvatarStore | None = None) -> ServiceSet:
    avatars = avatars if avatars is not None else AvatarStore.from_settings(settings)
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
    return ServiceSet(tts=tts, avatars=avatars, images=images, faces=faces, speech=speech, enhance=enhance,
                      avatar_faces=avatar_faces, talker=talker, kinds={kind.name: kind for kind in job_kinds})
