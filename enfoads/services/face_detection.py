"""Finding faces in a picture with InsightFace's detector: ``detect``.

Detection (and the recognition embedding of the source face) runs on a copy
whose longer side is at most ``DETECT_MAX_SIDE`` px, padded when the picture
is a thin strip; boxes and key points are mapped back to the picture's own
coordinates, and faces are numbered left to right by the left edge of their
box (ties: top to bottom).
"""
from __future__ import annotations

__all__ = ["DETECT_MAX_SIDE", "MAX_ASPECT", "detect"]

#: Longest side (px) of the copy detection and recognition run on.
DETECT_MAX_SIDE = 1920
#: Pictures longer than this many times their width (or wider than their height) are padded for detection.
MAX_ASPECT = 32


def _area(face) -> float:
    x1, y1, x2, y2 = (float(v) for v in face.bbox[:4])
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def _resized(pixels, max_side: int):
    """A copy whose longer side is at most ``max_side`` (INTER_AREA), and the scale used."""
    import cv2

    height, width = pixels.shape[:2]
    scale = min(1.0, max_side / float(max(height, width)))
    if scale >= 1.0:
        return pixels, 1.0
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA), scale


def _padded(pixels):
    """The picture, padded with black below or to the right up to a :data:`MAX_ASPECT` : 1 shape.

    The detector letterboxes its input into ``det_size``; a strip such as
    20000 x 1 px would shrink to 0 px there (an OpenCV error). Black padding is
    what the letterbox adds anyway: it holds no face and moves no coordinate.
    """
    import numpy as np

    height, width = pixels.shape[:2]
    need_h, need_w = -(-width // MAX_ASPECT), -(-height // MAX_ASPECT)
    if height >= need_h and width >= need_w:
        return pixels
    out = np.zeros((max(height, need_h), max(width, need_w), pixels.shape[2]), dtype=pixels.dtype)
    out[:height, :width] = pixels
    return out


def detect(app, pixels, *, max_side: int = DETECT_MAX_SIDE, embed: int | str | None = None):
    """Faces of a BGR picture, numbered left to right, in the picture's own coordinates.

    Args:
        app: a prepared insightface ``FaceAnalysis``.
        pixels: H x W x 3 BGR uint8.
        max_side: detection runs on a copy at most this large.
        embed: also compute the recognition embedding of this face index, or
            ``"largest"`` for the largest face.

    Returns:
        (faces, scale): insightface ``Face`` objects with ``bbox``, ``kps``,
        ``det_score`` (and ``embedding`` for ``embed``), and the detection scale.
    """
    import numpy as np
    from insightface.app.common import Face

    small, scale = _resized(pixels, max_side)
    small = _padded(small)
    bboxes, kpss = app.det_model.detect(small, max_num=0, metric="default")
    found = []
    for i in range(bboxes.shape[0]):
        kps = kpss[i] if kpss is not None else None
        found.append((bboxes[i, :4].astype(np.float32), kps, float(bboxes[i, 4])))
    found.sort(key=lambda f: (float(f[0][0]), float(f[0][1])))
    faces = [Face(bbox=b / scale, kps=None if k is None else k / scale, det_score=s) for b, k, s in found]
    if embed is not None and faces:
        index = max(range(len(faces)), key=lambda i: _area(faces[i])) if embed == "largest" else int(embed)
        if 0 <= index < len(faces):
            rec = app.models.get("recognition")
            if rec is None:
                raise RuntimeError("the face pack has no recognition model")
            b, k, s = found[index]
            # Recognition on the working copy: a 112 px crop sampled from a
            # huge original would alias.
            probe = Face(bbox=b, kps=k, det_score=s)
            rec.get(small, probe)
            faces[index].embedding = probe.embedding
    return faces, scale
