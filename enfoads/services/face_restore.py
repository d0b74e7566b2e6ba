"""Face restoration as GFPGAN does it, around any restorer: align, restore, blend, paste back.

Each face's 5 key points (InsightFace's ``face.kps``: left eye, right eye,
nose tip, left and right mouth corner, in the picture's left-to-right order)
are aligned onto the FFHQ template GFPGAN and facexlib use, by a similarity
transform (``cv2.estimateAffinePartial2D``, LMEDS, as facexlib does); the
size x size crop goes through a ``restore`` callable; the result, blended
with the crop by ``weight``, is warped back and blended over the picture
with a feathered mask (facexlib's: the crop's own mask warped back, eroded,
Gaussian-blurred, feathered by a twentieth of the face's side).

The picture's pixels outside each face's warped crop are never touched: the
mask is eroded by more than the blur's reach, and the work is done inside
the crop's bounding box only (which also keeps a 12 MP photo cheap). Each
face reports the box of the pixels that really changed.

Crops are warped with ``BORDER_REFLECT_101`` where a face reaches past the
picture's edge: GFPGAN's own default fills with flat gray, a hard edge next
to the face that a GAN restorer sharpens into it; the mirrored picture has
no such edge, and reflect-101 does not double the border row. What lies
outside the picture is never pasted back either way.

``gfpgan_restorer`` turns a spandrel GFPGAN descriptor into such a
callable. Where the model lives and when it is loaded are the service's.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["FFHQ_TEMPLATE_512", "GFPGAN_SIZE", "align_face", "paste_back", "restore_faces", "gfpgan_restorer"]

#: The 5-point FFHQ template GFPGAN and facexlib align faces to at 512 px, (x, y): left eye, right eye,
#: nose tip, left mouth corner, right mouth corner (the picture's left to right). Read-only.
FFHQ_TEMPLATE_512 = np.array([[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
                              [201.26117, 371.41043], [313.08905, 371.15118]], dtype=np.float32)
FFHQ_TEMPLATE_512.setflags(write=False)
#: The crop side GFPGAN's architecture is built for.
GFPGAN_SIZE = 512
_MIN_SIZE = 16


# --------------------------------------------------------------------------- checks


def _check_bgr(pixels, what: str) -> None:
    if not isinstance(pixels, np.ndarray):
        raise ValueError(f"{what} must be a numpy array (H x W x 3 uint8 BGR), not {type(pixels).__name__}")
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8 or 0 in pixels.shape:
        raise ValueError(f"{what} must be H x W x 3 uint8 BGR; got shape {pixels.shape}, dtype {pixels.dtype}")


def _check_kps(kps) -> np.ndarray:
    try:
        points = np.asarray(kps, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError(f"key points must be 5 (x, y) numbers, not {kps!r}") from None
    if points.shape != (5, 2):
        raise ValueError(f"key points must have shape (5, 2) (eyes, nose tip, mouth corners); got {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("key points must be finite numbers")
    return points


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < _MIN_SIZE:
        raise ValueError(f"size must be a whole number of at least {_MIN_SIZE} px, not {size!r}")
    return int(size)


def _check_matrix(matrix) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 3) or not np.isfinite(m).all():
        raise ValueError(f"matrix must be a finite 2 x 3 affine matrix; got shape {m.shape}")
    if abs(np.linalg.det(m[:, :2])) < 1e-12:
        raise ValueError("matrix is singular: it does not map the picture onto a crop")
    return m


# --------------------------------------------------------------------------- align and paste back


def align_face(pixels_bgr, kps, *, size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """The face warped onto the FFHQ template at size x size, and the 2 x 3 matrix picture -> crop.

    Raises:
        ValueError: bad pixels, key points that are not (5, 2), or points that fit no similarity transform.
    """
    import cv2

    _check_bgr(pixels_bgr, "pixels_bgr")
    points = _check_kps(kps)
    size = _check_size(size)
    template = FFHQ_TEMPLATE_512 * np.float32(size / 512.0)
    matrix, _inliers = cv2.estimateAffinePartial2D(points, template, method=cv2.LMEDS)
    if matrix is None or not np.isfinite(matrix).all() or abs(np.linalg.det(matrix[:, :2])) < 1e-12:
        raise ValueError(f"the key points {points.round(1).tolist()} fit no face alignment (all in one place?)")
    crop = cv2.warpAffine(np.ascontiguousarray(pixels_bgr), matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)
    return crop, matrix


def _crop_box(inverse: np.ndarray, size: int, width: int, height: int):
    """The picture box (x1, y1, x2, y2), end exclusive, that the crop covers once warped back, 1 px margin."""
    corners = np.array([[-1, -1], [size, -1], [-1, size], [size, size]], dtype=np.float64)
    mapped = corners @ inverse[:, :2].T + inverse[:, 2]
    x1, y1 = (max(0, math.floor(v) - 1) for v in mapped.min(axis=0))
    x2, y2 = (min(limit, math.ceil(v) + 2) for v, limit in zip(mapped.max(axis=0), (width, height)))
    return x1, y1, x2, y2


def _paste_into(image, restored_bgr, matrix, *, feather_px: int | None) -> list[int] | None:
    """``restored_bgr`` blended into ``image`` in place; the box of the pixels that changed, or None."""
    import cv2

    size = restored_bgr.shape[0]
    height, width = image.shape[:2]
    inverse = cv2.invertAffineTransform(matrix)
    x1, y1, x2, y2 = _crop_box(inverse, size, width, height)
    if x1 >= x2 or y1 >= y2:
        return None  # the crop lies wholly outside the picture
    # Warp into the box only: a whole-picture warp's pixels (within rounding), at the cost of the face's area.
    to_box = inverse.copy()
    to_box[:, 2] -= (x1, y1)
    box_size = (x2 - x1, y2 - y1)
    face = cv2.warpAffine(np.ascontiguousarray(restored_bgr), to_box, box_size, flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    mask = cv2.warpAffine(np.ones((size, size), dtype=np.float32), to_box, box_size, flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if feather_px is None:  # facexlib's: a twentieth of the face's side in the picture
        feather_px = max(1, int(math.sqrt(float(mask.sum()))) // 20)
    # Eroded by more than the blur reaches (feather_px), so the soft mask stays inside the warped crop,
    # clear of its interpolated fringe.
    reach = feather_px + 1
    soft = cv2.erode(mask, np.ones((2 * reach + 1, 2 * reach + 1), dtype=np.uint8))
    if feather_px:
        soft = cv2.GaussianBlur(soft, (2 * feather_px + 1, 2 * feather_px + 1), 0)
    region = image[y1:y2, x1:x2]
    before = region.astype(np.float32)
    blended = before + soft[..., None] * (face.astype(np.float32) - before)  # exactly `before` where soft is 0
    after = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    changed = np.any(after != region, axis=2)
    if not changed.any():
        return None
    rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
    region[...] = after
    return [int(x1 + cols[0]), int(y1 + rows[0]), int(x1 + cols[-1] + 1), int(y1 + rows[-1] + 1)]


def _check_feather(feather_px) -> int | None:
    if feather_px is None:
        return None
    if isinstance(feather_px, bool) or not isinstance(feather_px, numbers.Integral) or feather_px < 0:
        raise ValueError(f"feather_px must be a whole number of 0 or more, or None, not {feather_px!r}")
    return int(feather_px)


def _check_crop(crop, what: str) -> None:
    _check_bgr(crop, what)
    if crop.shape[0] != crop.shape[1]:
        raise ValueError(f"{what} must be square (size x size x 3); got {crop.shape}")


def paste_back(pixels_bgr, restored_bgr, matrix, *,
               feather_px: int | None = None) -> tuple[np.ndarray, list[int] | None]:
    """A new picture: ``restored_bgr`` warped back by the inverse of ``matrix`` and blended over ``pixels_bgr``.

    The mask is the whole crop warped back, eroded and Gaussian-blurred by
    ``feather_px`` (a twentieth of the face's side when None). Only pixels
    inside the warped crop may change.

    Returns:
        (the new picture, [x1, y1, x2, y2] box of the pixels that changed, end exclusive, or None).
    """
    _check_bgr(pixels_bgr, "pixels_bgr")
    _check_crop(restored_bgr, "restored_bgr")
    m = _check_matrix(matrix)
    feather_px = _check_feather(feather_px)
    image = pixels_bgr.copy()
    box = _paste_into(image, restored_bgr, m, feather_px=feather_px)
    return image, box


# --------------------------------------------------------------------------- restoring


def _check_weight(weight) -> float:
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not 0.0 <= float(weight) <= 1.0:
        raise ValueError(f"weight must be a number from 0 to 1, not {weight!r}")
    return float(weight)


def restore_faces(restore, pixels_bgr, faces_kps, *, size: int = 512, weight: float = 1.0,
                  progress=None) -> tuple[np.ndarray, list]:
    """Every face restored and pasted back into a new picture.

    Args:
        restore: takes and returns a size x size x 3 uint8 BGR crop.
        pixels_bgr: H x W x 3 uint8 BGR.
        faces_kps: one (5, 2) array of key points per face.
        size: the crop side ``restore`` works at.
        weight: 1.0 the restored crop only, 0.0 the original (nothing is run: the picture comes back unchanged);
            in between a blend of the two crops, as a "visibility" slider does.
        progress: ``progress(done, total)`` after each face; may raise to stop the work.

    Returns:
        (the new picture, one changed-pixels box [x1, y1, x2, y2] or None per face).

    Each face is aligned from the original picture, so overlapping faces
    are restored from the original pixels; the pastes accumulate in order.
    """
    import cv2

    _check_bgr(pixels_bgr, "pixels_bgr")
    size = _check_size(size)
    weight = _check_weight(weight)
    all_kps = [_check_kps(kps) for kps in faces_kps]  # every face checked before any work
    image = pixels_bgr.copy()
    boxes: list[list[int] | None] = []
    for done, kps in enumerate(all_kps, start=1):
        box = None
        if weight > 0.0:
            crop, matrix = align_face(pixels_bgr, kps, size=size)
            restored = restore(crop)
            if not isinstance(restored, np.ndarray) or restored.shape != crop.shape or restored.dtype != np.uint8:
                got = (getattr(restored, "shape", None), getattr(restored, "dtype", type(restored).__name__))
                raise ValueError(f"the restorer must return a {size} x {size} x 3 uint8 crop; got {got}")
            if weight < 1.0:
                restored = cv2.addWeighted(restored, weight, crop, 1.0 - weight, 0.0)
            box = _paste_into(image, restored, matrix, feather_px=None)
        boxes.append(box)
        if progress is not None:
            progress(done, len(all_kps))  # may raise (a cancel): it propagates as it is
    return image, boxes


def gfpgan_restorer(descriptor, *, device="cpu", dtype=None):
    """A ``restore`` callable over a spandrel GFPGAN descriptor already on ``device`` (``dtype``: float32 if None).

    The BGR uint8 crop becomes an RGB tensor 1 x 3 x 512 x 512 in [-1, 1]
    (GFPGAN's own normalisation: mean 0.5, std 0.5) and goes through
    ``descriptor.model`` itself: spandrel's call wrapper assumes [0, 1] in
    and clamps to [0, 1] out, wrong for GFPGAN's [-1, 1].

    Raises:
        ValueError: a descriptor that is not GFPGAN's, or (from the callable) a crop that is not 512 x 512 x 3 uint8.
    """
    architecture = getattr(getattr(descriptor, "architecture", None), "id", None)
    if architecture != "GFPGAN":
        raise ValueError(f"gfpgan_restorer needs a spandrel GFPGAN descriptor, not {architecture or descriptor!r}")
    model = descriptor.model

    def restore(crop_bgr):
        import torch

        _check_crop(crop_bgr, "the crop")
        if crop_bgr.shape[0] != GFPGAN_SIZE:
            raise ValueError(f"GFPGAN restores {GFPGAN_SIZE} x {GFPGAN_SIZE} crops; got {crop_bgr.shape}")
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(crop_bgr[..., ::-1])).to(device)
            x = x.permute(2, 0, 1).unsqueeze(0).to(torch.float32 if dtype is None else dtype)
            x = x.div_(255).sub_(0.5).div_(0.5)
            # randomize_noise=False: the decoder injects the checkpoint's stored noise, not fresh noise on
            # every call (GFPGAN's default), so the same face restores to the same pixels every time.
            out = model(x, return_rgb=False, randomize_noise=False)[0]
            del x
            out = out[0].float().clamp(-1, 1).add_(1).div_(2).mul_(255).round_().to(torch.uint8)
            rgb = out.permute(1, 2, 0).cpu().numpy()
        return np.ascontiguousarray(rgb[..., ::-1])

    return restore
