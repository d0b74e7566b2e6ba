"""Face swap: InsightFace ``buffalo_l`` finds the faces, ``inswapper_128`` swaps them (ONNX Runtime).

Job kind ``faces.swap``. Params (see :func:`validate_params`):

- ``source_image``, ``target_image``: base64, a ``data:`` URI, or the id of an
  existing asset (32 hex digits).
- ``source_face_index``: which face of the source gives the identity; default
  the largest one.
- ``target_face_indices``: which faces of the target are replaced; default all.
- ``paste_back``: true (default) gives the whole target picture with the faces
  replaced; false gives the aligned 128 px swapped faces, one PNG per face,
  each with the affine matrix that maps target pixels onto it.
- ``restore``: false (default); true runs GFPGAN over each replaced face
  afterwards (``enfoads.services.enhance``), with ``paste_back``.

Faces are numbered left to right by the left edge of their box (ties: top to
bottom), in both images; the result lists every face found, so a client can
show them and send indices back.

Large pictures: detection and recognition run on a copy whose longer side is
at most :data:`DETECT_MAX_SIDE` px (the detector itself works at the profile's
``det_size``, 640 px); boxes and key points are mapped back, and the swap is
pasted into the original at full size. Each face is swapped inside a crop
around it (insightface's own paste-back blends over the whole picture, which
costs seconds per face on a 12 MP photo; the crop gives the same pixels, +-1,
~50x faster): pixels outside that crop are never touched. Each replaced face
reports the box of the pixels that really changed (``region``): inswapper's
128 px frame reaches a little past the detected box, mostly below the chin.

Models are leased one at a time from the residency manager (detector, then
swapper), and no reference to a model outlives its lease, so eviction really
closes the ONNX Runtime sessions.

Result JSON (the web layer turns ``asset_id`` into the frontend's data URI)::

    {"asset_id": "...", "mime": "image/png", "width": W, "height": H,
     "paste_back": true,
     "source_face": {"index": 0, "box": [x1, y1, x2, y2], "score": 0.9},
     "target_faces": [{"index": 1, "box": [...], "score": 0.9,            # the faces replaced
                       "region": [x1, y1, x2, y2]}, ...],                # box of the pixels changed
     "faces_found": {"source": 1, "target": 2},
     "source_faces": [...], "target_faces_found": [...],                 # every face, by index
     "detection_scale": {"source": 1.0, "target": 0.75},
     "providers": {"faces": ["CPUExecutionProvider"], "swapper": ["CPUExecutionProvider"]},
     "provider": "CPUExecutionProvider"}

With ``paste_back`` false, ``faces`` lists ``{"index", "asset_id", "matrix"}``
per replaced face and ``asset_id`` is the first of them. ``provider_warning``
appears when a CUDA profile ended up on the CPU provider (a mismatched
onnxruntime-gpu build): the swap still works, ~50x slower.

Errors (``enfoads.errors``, each naming its field): not an image or a declared
type that lies (415), over the byte or pixel limit (413), bad base64 or a
truncated file, bad indices or an unknown asset id (400), found at ``validate``
from the headers alone; no face in an image (with the count in each) or an
index past the faces found (422), found by the job.

Finding the faces (``detect``) lives in ``face_detection``; the options,
the checks of the two images and the swap itself are here.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from enfoads.services import image_input, media
from enfoads.errors import InvalidInput, UnprocessableInput
from enfoads.services import JobKind
from enfoads.services.face_detection import DETECT_MAX_SIDE, _area, detect
from enfoads.services.options import MediaReference, Options, aliases, checked, fail, flag, to_whole_number

__all__ = ["JOB_KIND", "MAX_TARGET_FACES", "job_kinds", "FaceSwapper"]

log = logging.getLogger(__name__)

JOB_KIND = "faces.swap"
#: Most faces one request may replace.
MAX_TARGET_FACES = 64
_IMAGE_FIELDS = ("source_image", "target_image")
CUDA_PROVIDER = "CUDAExecutionProvider"


# --------------------------------------------------------------------------- options


def _index(value: Any) -> int:
    return to_whole_number(value, lo=0, hi=10_000)


def _optional_index(value: Any) -> int | None:
    return None if value is None else _index(value)


def _indices(value: Any) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, str) and "," in value:  # a form field "0,2"
        value = [v for v in value.split(",") if v.strip()]
    items = value if isinstance(value, (list, tuple)) else [value]
    if not items:
        fail("must list at least one face index (omit it to replace every face)")
    if len(items) > MAX_TARGET_FACES:
        fail(f"lists {len(items)} faces; at most {MAX_TARGET_FACES} per request")
    out = [_index(v) for v in items]
    if len(set(out)) != len(out):
        fail(f"lists a face twice: {out}")
    return out


FaceIndex = checked(_optional_index, {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string"}, {"type": "null"}],
                                      "description": "the source face (default the largest)"}, int | None)
FaceIndices = checked(_indices, {"anyOf": [
    {"type": "array", "minItems": 1, "maxItems": MAX_TARGET_FACES, "uniqueItems": True,
     "items": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string"}]}},
    {"type": "integer", "minimum": 0}, {"type": "string", "description": "indices as text: \"0,2\""},
    {"type": "null"}], "description": "the target faces to replace (default all)"}, Any)


PasteBack = flag(True)
Restore = flag(False)


class SwapOptions(Options):
    """``faces.swap``'s params."""

    what = "face swap options"

    source_image: MediaReference
    target_image: MediaReference
    source_face_index: FaceIndex = None
    target_face_indices: FaceIndices = None
    paste_back: PasteBack = True
    # GFPGAN over each replaced face afterwards (enfoads.services.enhance): inswapper's 128 px faces look soft.
    restore: Restore = Field(False, validation_alias=aliases("restore", "face_restore", "restore_faces"))


@dataclass(frozen=True)
class Limits:
    max_pixels: int = image_input.DEFAULT_MAX_IMAGE_PIXELS
    max_bytes: int = image_input.DEFAULT_MAX_IMAGE_BYTES
    detect_max_side: int = DETECT_MAX_SIDE

    @classmethod
    def from_settings(cls, settings) -> "Limits":
        # Settings may grow these knobs (ENFOADS_MAX_IMAGE_PIXELS, ENFOADS_MAX_IMAGE_MB); until then, defaults.
        max_mb = getattr(settings, "max_image_mb", None)
        return cls(
            max_pixels=int(getattr(settings, "max_image_pixels", None) or image_input.DEFAULT_MAX_IMAGE_PIXELS),
            max_bytes=int(max_mb * media.MB) if max_mb else image_input.DEFAULT_MAX_IMAGE_BYTES,
        )


def validate_params(params: dict, *, limits: Limits = Limits(), assets=None, probe: bool = True) -> dict:
    """Check and normalise ``faces.swap`` params; cheap (image headers only).

    With ``probe`` false the images are not looked at (the handler decodes
    them anyway, with the same checks).

    Raises:
        InvalidInput (or a subclass): naming the field.
    """
    out = SwapOptions.parse(params).to_params()
    for field in _IMAGE_FIELDS:
        value = out[field]
        if not probe:
            pass
        elif media.is_asset_id(value):
            if assets is not None:
                _asset_image(assets, value, field, limits, read=False)
        else:
            image_input.probe_image(value, field=field, max_pixels=limits.max_pixels, max_bytes=limits.max_bytes)
    return out


def _asset_image(assets, asset_id: str, field: str, limits: Limits, read: bool = True) -> bytes | None:
    media.stored_asset(assets, asset_id, field=field, types=("image/",), what="an image", max_bytes=limits.max_bytes)
    return assets.read_bytes(asset_id) if read else None


def _load_image(value: str, field: str, limits: Limits, assets):
    if media.is_asset_id(value):
        if assets is None:
            raise InvalidInput.field(field, "asset ids need an asset store")
        value = _asset_image(assets, value, field, limits)
    return image_input.decode_image(value, field=field, max_pixels=limits.max_pixels, max_bytes=limits.max_bytes,
                                    channels="BGR")


# --------------------------------------------------------------------------- the work


def _box(face) -> list[float]:
    return [round(float(v), 1) for v in face.bbox[:4]]


def _describe(index: int, face) -> dict:
    return {"index": index, "box": _box(face), "score": round(float(face.det_score), 4)}


def _crop_box(swapper, face, shape) -> tuple[int, int, int, int]:
    """The part of the picture the swapper's aligned crop covers, plus a margin for its blend."""
    import cv2
    import numpy as np
    from insightface.utils import face_align

    size = swapper.input_size[0]
    matrix = face_align.estimate_norm(face.kps, size)
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], dtype=np.float64) @ inverse.T
    (x1, y1), (x2, y2) = corners.min(axis=0), corners.max(axis=0)
    margin = max(8.0, 0.1 * max(x2 - x1, y2 - y1))
    height, width = shape[:2]
    return (
        int(max(0, np.floor(x1 - margin))),
        int(max(0, np.floor(y1 - margin))),
        int(min(width, np.ceil(x2 + margin))),
        int(min(height, np.ceil(y2 + margin))),
    )


def swap_into(swapper, pixels, target_face, source_face):
    """Swap one face into ``pixels`` (BGR, modified in place) inside a crop around it.

    Returns:
        The box ``[x1, y1, x2, y2]`` (end exclusive) of the pixels that
        changed, or None when none did.
    """
    import numpy as np
    from insightface.app.common import Face

    x1, y1, x2, y2 = _crop_box(swapper, target_face, pixels.shape)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return None  # the face lies outside the picture
    offset = np.array([x1, y1], dtype=np.float32)
    local = Face(bbox=target_face.bbox - np.tile(offset, 2), kps=target_face.kps - offset,
                 det_score=target_face.det_score)
    crop = np.ascontiguousarray(pixels[y1:y2, x1:x2])
    swapped = swapper.get(crop, local, source_face, paste_back=True)
    pixels[y1:y2, x1:x2] = swapped
    ys, xs = np.nonzero(np.any(swapped != crop, axis=2))
    if ys.size == 0:
        return None
    return [x1 + int(xs.min()), y1 + int(ys.min()), x1 + int(xs.max()) + 1, y1 + int(ys.max()) + 1]


class FaceSwapper:
    """The face swap service over a runtime's residency manager (no Flask, no globals)."""

    def __init__(self, runtime, *, limits: Limits | None = None, enhance=None):
        self.runtime = runtime
        self.limits = limits or Limits.from_settings(runtime.settings)
        self._enhance = enhance  # the EnhanceService whose restore_faces runs for ``restore: true``

    @property
    def enhance(self):
        if self._enhance is None:
            from enfoads.services.enhance import EnhanceService

            self._enhance = EnhanceService(self.runtime)
        return self._enhance

    def warm_up(self) -> dict:
        """Load the face analysis pack and the swapper and run each once on a blank input."""
        import numpy as np

        started = time.perf_counter()
        with self.runtime.residency.use(self.runtime.model_key("faces")) as app:
            detect(app, np.zeros((256, 256, 3), dtype=np.uint8), max_side=self.limits.detect_max_side)
        with self.runtime.residency.use(self.runtime.model_key("swapper")) as swapper:
            session = getattr(swapper, "session", None)
            if session is not None:  # one run: ONNX Runtime sizes its arena and picks its kernels now
                feeds = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], dtype=np.float32)
                         for i in session.get_inputs()}
                session.run(None, feeds)
        return {"model": self.runtime.model_key("faces"), "swapper": self.runtime.model_key("swapper"),
                "seconds": round(time.perf_counter() - started, 3)}

    def job_kinds(self, *, assets=None) -> list[JobKind]:
        """The ``faces.swap`` job kind (GPU worker).

        Args:
            assets: the ``AssetStore``; when given, ``validate`` also checks that
                an asset id names an existing image (the handler uses ``ctx.assets``).
        """
        def validate(params: dict) -> dict:
            params = validate_params(params, limits=self.limits, assets=assets)
            if params["restore"]:
                from enfoads.models.catalog_enhance import RESTORE

                self.enhance.models.resolve(None, RESTORE, field="restore")  # a 400 now if it cannot run
            return params

        def handler(params: dict, ctx) -> dict:
            params = validate_params(params, limits=self.limits, probe=False)

            def save(png: bytes, width: int, height: int) -> str:
                return ctx.save_bytes(png, "image/png", width=width, height=height).id

            return self.swap(params, assets=ctx.assets, progress=ctx.progress, save=save)

        return [JobKind(name=JOB_KIND, handler=handler, validate=validate, device="gpu", options=SwapOptions)]

    def _wants_cuda(self) -> bool:
        rt = self.runtime
        gpu = rt.residency.gpu_budget > 0 and str(rt.residency.gpu_device).startswith("cuda")
        return gpu and all(rt.choice(role).device == "gpu" for role in ("faces", "swapper"))

    # Each lease lives in its own function: no local variable keeps a model
    # alive after its lease, so an eviction while the next model loads frees it.
    def _detect_both(self, source, target, source_index):
        from enfoads.models.loaders.faces import active_providers

        with self.runtime.residency.use(self.runtime.model_key("faces")) as app:
            side = self.limits.detect_max_side
            embed = "largest" if source_index is None else source_index
            source_faces, source_scale = detect(app, source.pixels, max_side=side, embed=embed)
            target_faces, target_scale = detect(app, target.pixels, max_side=side)
            providers = active_providers(app)
        return source_faces, source_scale, target_faces, target_scale, providers

    def _swap(self, target, source_face, chosen, paste_back, progress):
        from enfoads.models.loaders.faces import active_providers

        with self.runtime.residency.use(self.runtime.model_key("swapper")) as swapper:
            providers = active_providers(swapper)
            if paste_back:
                out = target.pixels.copy()
                regions = []
                for n, (index, face) in enumerate(chosen):
                    progress(40 + 50 * n / len(chosen), f"swapping face {n + 1} of {len(chosen)}")
                    regions.append(swap_into(swapper, out, face, source_face))
                return (out, regions), providers
            crops = []
            for n, (index, face) in enumerate(chosen):
                progress(40 + 50 * n / len(chosen), f"swapping face {n + 1} of {len(chosen)}")
                fake, matrix = swapper.get(target.pixels, face, source_face, paste_back=False)
                crops.append((index, fake, matrix))
            return crops, providers

    def swap(self, params: dict, *, assets=None, progress=None, save=None) -> dict:
        """Run a swap on validated params.

        Args:
            params: the output of :func:`validate_params`.
            assets: an ``AssetStore`` to resolve asset ids.
            progress: ``progress(percent, stage)``; may raise to cancel.
            save: ``save(png_bytes, width, height) -> asset id``.
        """
        progress = progress or (lambda pct, stage=None: None)
        progress(0, "decoding images")
        source = _load_image(params["source_image"], "source_image", self.limits, assets)
        target = _load_image(params["target_image"], "target_image", self.limits, assets)
        source_index = params.get("source_face_index")
        progress(10, "detecting faces")
        source_faces, source_scale, target_faces, target_scale, face_providers = self._detect_both(
            source, target, source_index
        )
        counts = {"source": len(source_faces), "target": len(target_faces)}
        found = f"faces found: source image {counts['source']}, target image {counts['target']}"
        missing = {f: f"no face found in the {f.split('_')[0]} image ({found})"
                   for f, n in (("source_image", counts["source"]), ("target_image", counts["target"])) if n == 0}
        if missing:
            raise UnprocessableInput("; ".join(f"{k}: {v}" for k, v in missing.items()), fields=missing)
        if source_index is None:
            source_index = max(range(len(source_faces)), key=lambda i: _area(source_faces[i]))
        elif source_index >= len(source_faces):
            raise UnprocessableInput.field(
                "source_face_index",
                f"is {source_index} but the source image has {len(source_faces)} face(s) "
                f"(indices 0 to {len(source_faces) - 1})",
            )
        indices = params.get("target_face_indices")
        if indices is None:
            indices = list(range(len(target_faces)))
        bad = [i for i in indices if i >= len(target_faces)]
        if bad:
            raise UnprocessableInput.field(
                "target_face_indices",
                f"{bad} out of range: the target image has {len(target_faces)} face(s) "
                f"(indices 0 to {len(target_faces) - 1})",
            )
        source_face = source_faces[source_index]
        chosen = [(i, target_faces[i]) for i in indices]

        progress(40, "swapping faces")
        out, swap_providers = self._swap(target, source_face, chosen, params.get("paste_back", True), progress)
        progress(90, "encoding")
        result: dict[str, Any] = {
            "paste_back": bool(params.get("paste_back", True)),
            "source_face": _describe(source_index, source_face),
            "target_faces": [_describe(i, f) for i, f in chosen],
            "faces_found": counts,
            "source_faces": [_describe(i, f) for i, f in enumerate(source_faces)],
            "target_faces_found": [_describe(i, f) for i, f in enumerate(target_faces)],
            "detection_scale": {"source": round(source_scale, 4), "target": round(target_scale, 4)},
            "providers": {"faces": face_providers, "swapper": swap_providers},
        }
        common = [p for p in swap_providers if p in face_providers]
        result["provider"] = common[0] if common else (swap_providers[:1] or [None])[0]
        if self._wants_cuda() and result["provider"] != CUDA_PROVIDER:
            # onnxruntime-gpu without a matching CUDA/cuDNN falls back to the CPU, ~50x slower.
            result["provider_warning"] = (
                f"the CUDA execution provider did not load (running on {result['provider']}); "
                "install the onnxruntime-gpu build that matches this machine's CUDA and cuDNN"
            )
            log.warning("face swap ran on %s: %s", result["provider"], result["provider_warning"])
        if result["paste_back"]:
            out, regions = out
            for face, region in zip(result["target_faces"], regions):
                face["region"] = region
            if params.get("restore"):
                progress(92, "restoring faces")
                out, restored = self.enhance.restore_faces(out, kps=[face.kps for _i, face in chosen])
                result["restored_faces"] = sum(box is not None for box in restored)
            if save is None:
                result["pixels"] = out
                return result
            png = image_input.encode_png(out, channels="BGR", alpha=target.alpha)
            result.update(asset_id=save(png, target.width, target.height), mime="image/png",
                          width=target.width, height=target.height)
        else:
            if save is None:
                result["faces"] = out
                return result
            faces = []
            for index, fake, matrix in out:
                png = image_input.encode_png(fake, channels="BGR")
                faces.append({"index": index, "asset_id": save(png, fake.shape[1], fake.shape[0]),
                              "matrix": [[round(float(v), 6) for v in row] for row in matrix]})
            result.update(faces=faces, asset_id=faces[0]["asset_id"], mime="image/png",
                          width=int(out[0][1].shape[1]), height=int(out[0][1].shape[0]))
        return result


def job_kinds(runtime, *, assets=None) -> list[JobKind]:
    """The ``faces.swap`` job kind of a new ``FaceSwapper`` for ``runtime`` (see ``FaceSwapper.job_kinds``)."""
    return FaceSwapper(runtime).job_kinds(assets=assets)
