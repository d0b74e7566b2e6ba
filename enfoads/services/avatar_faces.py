"""The face of a talking picture: found once with InsightFace's detector, kept with the avatar.

``AvatarFaces.find(rgb)`` leases the profile's face model (the one face swaps
use) and returns the largest face's box and five key points, or None.
``AvatarFaces.for_avatar(avatar)`` gives an avatar's kept face, finding and
keeping it for an avatar stored before faces were kept. ``finder()`` is what
an upload passes to ``AvatarStore.add``: None when the face model is not
installed (the avatar is then stored without a face, found at its first
lip-synced render), so an upload never waits for a download.
"""
from __future__ import annotations

import logging

from enfoads.services.avatars import Avatar, AvatarStore, read_rgb
from enfoads.services.face_detection import detect

log = logging.getLogger(__name__)

FACES_ROLE = "faces"
#: Detector scores below this are not a face a mouth can be drawn on.
MIN_SCORE = 0.5
#: The smallest face box side (px) the lip-sync crop (256 px) is worth making from.
MIN_FACE_PX = 64


def face_dict(face) -> dict:
    """An insightface ``Face`` as the JSON an avatar keeps (pixels, one decimal)."""
    box = [round(float(v), 1) for v in face.bbox[:4]]
    kps = [[round(float(x), 1), round(float(y), 1)] for x, y in face.kps]
    return {"box": box, "kps": kps, "score": round(float(face.det_score), 3)}


class AvatarFaces:
    """Faces of avatars and portraits, over a runtime's face model and an avatar store."""

    def __init__(self, runtime, avatars: AvatarStore):
        self.runtime = runtime
        self.avatars = avatars

    def available(self) -> bool:
        """Whether the face model can load now (tiny models build on first use)."""
        from enfoads.models.registry import presence

        if FACES_ROLE not in self.runtime.profile.roles:
            return False
        entry = self.runtime.entry(FACES_ROLE)
        return bool(entry.tiny) or presence(entry, self.runtime.settings.models_dir).present

    def find(self, rgb) -> dict | None:
        """The largest clear face of an RGB picture, or None."""
        bgr = rgb[:, :, ::-1].copy()
        with self.runtime.residency.use(self.runtime.model_key(FACES_ROLE)) as app:
            faces, _scale = detect(app, bgr)
        usable = [f for f in faces if f.kps is not None and float(f.det_score) >= MIN_SCORE
                  and min(f.bbox[2] - f.bbox[0], f.bbox[3] - f.bbox[1]) >= MIN_FACE_PX]
        if not usable:
            return None
        largest = max(usable, key=lambda f: float((f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1])))
        return face_dict(largest)

    def finder(self):
        """``find`` for an upload, or None when the face model is not installed."""
        return self.find if self.available() else None

    def for_avatar(self, avatar: Avatar) -> dict | None:
        """The avatar's face: kept, or found now and kept (None when there is none)."""
        if avatar.face is not None:
            return avatar.face
        face = self.find(read_rgb(avatar.path))
        if face is not None:
            self.avatars.set_face(avatar.id, face)
        else:
            log.info("avatar %s: no face found; it is shown still", avatar.id)
        return face
