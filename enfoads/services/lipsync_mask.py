"""Where MuseTalk looks and what it may change: the face crop, the lower-face mask, the paste-back.

Pure geometry over numpy arrays (cv2 draws and feathers the mask), no model.

- :class:`FaceGeometry` is what a face detector gives: InsightFace's box
  ``(x1, y1, x2, y2)`` and its 5 key points (left eye, right eye, nose tip,
  left and right mouth corner).
- :func:`crop_box` is MuseTalk 1.5's crop with those: x over the box, y from
  ``nose - (chin - nose)`` to ``chin + 10 px``, so the nose sits on the
  crop's middle row, the row where MuseTalk masks the lower half of its input.
  MuseTalk takes the nose and chin from 68 landmarks; here they are the nose
  key point and the box's bottom edge.
- :func:`lower_face_mask` replaces MuseTalk's face-parsing network (trained on
  non-commercial data) by a shape: an ellipse from halfway between nose and
  mouth down to just under the chin, inside the box, Gaussian-feathered
  inward so its outline and everything outside it are exactly 0.
- :func:`paste` blends the generated crop in with that mask; where the mask
  is 0 the portrait's bytes are left as they were.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: MuseTalk 1.5's ``extra_margin``: pixels kept below the chin.
EXTRA_MARGIN = 10
_MIN_SIDE = 8  # a crop narrower than this cannot carry a mouth


def _finite(values, count: int, what: str) -> tuple[float, ...]:
    try:
        numbers = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be {count} numbers, not {values!r}") from None
    if len(numbers) != count:
        raise ValueError(f"{what} must be {count} numbers, got {len(numbers)}")
    if not all(math.isfinite(v) for v in numbers):
        raise ValueError(f"{what} must be finite numbers, got {numbers}")
    return numbers


@dataclass(frozen=True)
class FaceGeometry:
    """One face: ``box`` (x1, y1, x2, y2) and ``kps``, 5 (x, y) key points in InsightFace's order."""

    box: tuple[float, float, float, float]
    kps: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        box = _finite(self.box, 4, "face box")
        try:
            points = list(self.kps)
        except TypeError:
            raise ValueError(f"key points must be 5 (x, y) pairs, not {self.kps!r}") from None
        if len(points) != 5:
            raise ValueError(f"key points must be 5 (x, y) pairs, got {len(points)}")
        kps = tuple(_finite(p, 2, "key point") for p in points)
        if box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError(f"face box {box} has no area (x2 must exceed x1 and y2 exceed y1)")
        object.__setattr__(self, "box", box)
        object.__setattr__(self, "kps", kps)

    def to_dict(self) -> dict:
        return {"box": list(self.box), "kps": [list(p) for p in self.kps]}

    @classmethod
    def from_dict(cls, data) -> FaceGeometry:
        if not isinstance(data, dict) or "box" not in data or "kps" not in data:
            raise ValueError("a face must be an object with 'box' (4 numbers) and 'kps' (5 [x, y] pairs)")
        return cls(box=data["box"], kps=data["kps"])

    def clamped_to(self, width: int, height: int) -> FaceGeometry:
        """The same face with its box clamped to a ``width`` x ``height`` image (key points as they are).

        Raises ValueError where less than a pixel of the box lies in the image.
        """
        x1, y1, x2, y2 = self.box
        box = (min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width),
               min(max(y2, 0.0), height))
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            raise ValueError(f"face box {self.box} lies outside the {width}x{height} image")
        return FaceGeometry(box=box, kps=self.kps)


def crop_box(face: FaceGeometry, width: int, height: int) -> tuple[int, int, int, int]:
    """MuseTalk 1.5's face crop in a ``width`` x ``height`` image, as integer (x1, y1, x2, y2).

    Falls back to the face box where the rule gives no usable crop (a nose
    key point at or below the chin, or a crop under 8 px a side).
    """
    face = face.clamped_to(width, height)
    bx1, by1, bx2, by2 = face.box
    nose_y, chin_y = face.kps[2][1], by2
    x1, x2 = round(bx1), round(bx2)
    y1 = max(0, round(nose_y - (chin_y - nose_y)))
    y2 = min(height, round(chin_y) + EXTRA_MARGIN)
    if chin_y > nose_y and x2 - x1 >= _MIN_SIDE and y2 - y1 >= _MIN_SIDE:
        return x1, y1, x2, y2
    fallback = (math.floor(bx1), math.floor(by1), math.ceil(bx2), math.ceil(by2))
    if fallback[2] - fallback[0] < _MIN_SIDE or fallback[3] - fallback[1] < _MIN_SIDE:
        raise ValueError(f"face box {face.box} is too small for lip sync (under {_MIN_SIDE} px a side)")
    return fallback


def lower_face_mask(face: FaceGeometry, crop: tuple[int, int, int, int]) -> np.ndarray:
    """Blend weights in [0, 1], float32, the crop's shape: mouth, lower cheeks and jaw.

    An ellipse, horizontally inside the face box around the mouth's centre,
    vertically from halfway between nose and mouth (the crop's middle row
    if the key points disagree) to ``EXTRA_MARGIN`` under the chin. It is
    eroded by the feather's reach, then blurred with a kernel of that reach,
    so the weights rise smoothly from exactly 0 on the outline (and on the
    crop's edge, where the ellipse reaches it) to 1 inside.
    """
    import cv2

    cx1, cy1, cx2, cy2 = crop
    w, h = cx2 - cx1, cy2 - cy1
    if w < 1 or h < 1:
        raise ValueError(f"crop {crop} has no area")
    bx1, bx2 = face.box[0] - cx1, face.box[2] - cx1
    chin = face.box[3] - cy1
    nose_y = face.kps[2][1] - cy1
    mouth_x = (face.kps[3][0] + face.kps[4][0]) / 2 - cx1
    mouth_y = (face.kps[3][1] + face.kps[4][1]) / 2 - cy1

    bottom = min(chin + EXTRA_MARGIN, h)
    top = (nose_y + mouth_y) / 2 if nose_y < mouth_y < bottom else h / 2
    top = min(max(top, 0.0), bottom - 2)
    bw = bx2 - bx1
    # A mouth near the box's side (a turned head) still gets a mask half the box wide.
    centre_x = min(max(mouth_x, bx1 + bw / 4), bx2 - bw / 4)
    half_w = min(centre_x - bx1, bx2 - centre_x)
    half_h = (bottom - top) / 2

    shift = 4  # cv2 draws in fixed point: coordinates in 1/16 px
    hard = np.zeros((h, w), np.uint8)
    cv2.ellipse(hard, (round(centre_x * 16), round((top + half_h) * 16)),
                (max(1, round(half_w * 16)), max(1, round(half_h * 16))), 0, 0, 360, 1, -1, cv2.LINE_8, shift)
    # The crop's edge is part of the outline: the pasted face may not end in a seam there.
    hard[0, :] = hard[-1, :] = hard[:, 0] = hard[:, -1] = 0
    reach = max(1, round(0.15 * min(half_w, half_h)))
    kernel = 2 * reach + 1
    # Erode with a square as large as the blur's support: the blurred weights cannot reach past the outline.
    core = cv2.erode(hard, np.ones((kernel, kernel), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    soft = cv2.GaussianBlur(core.astype(np.float32), (kernel, kernel), reach / 2, borderType=cv2.BORDER_CONSTANT)
    soft *= hard  # a no-op by construction; kept so the promise does not rest on float rounding
    return np.clip(soft, 0.0, 1.0, out=soft)


def paste(portrait: np.ndarray, face_crop_rgb: np.ndarray, crop: tuple[int, int, int, int],
          mask: np.ndarray) -> np.ndarray:
    """A copy of ``portrait`` (H x W x 3 uint8) with ``face_crop_rgb`` blended into ``crop`` by ``mask``.

    Blended in float and rounded only where the mask is above 0; every other
    byte is the portrait's.
    """
    x1, y1, x2, y2 = crop
    if portrait.ndim != 3 or portrait.shape[2] != 3 or portrait.dtype != np.uint8:
        raise ValueError(f"portrait must be H x W x 3 uint8, got {portrait.shape} {portrait.dtype}")
    if not (0 <= x1 < x2 <= portrait.shape[1] and 0 <= y1 < y2 <= portrait.shape[0]):
        raise ValueError(f"crop {crop} is not inside the {portrait.shape[1]}x{portrait.shape[0]} portrait")
    size = (y2 - y1, x2 - x1)
    if face_crop_rgb.shape != (*size, 3) or face_crop_rgb.dtype != np.uint8:
        raise ValueError(f"face crop must be {size[0]} x {size[1]} x 3 uint8, got {face_crop_rgb.shape}")
    if mask.shape != size:
        raise ValueError(f"mask must be {size[0]} x {size[1]}, got {mask.shape}")
    out = portrait.copy()
    region = out[y1:y2, x1:x2]
    inside = mask > 0
    weight = mask[inside][:, None]
    old = region[inside].astype(np.float32)
    new = face_crop_rgb[inside].astype(np.float32)
    region[inside] = np.clip(np.rint(old + (new - old) * weight), 0, 255).astype(np.uint8)
    return out
