"""Tiled super-resolution that survives running out of memory: ``upscale_image``, ``upscale_frames``.

A super-resolution model's activations grow with the input's area, so a
12 MP photo does not fit through a Real-ESRGAN on a T4 in one piece. The
picture is cut into tiles as Real-ESRGAN's own ``tile_process`` does it: each
tile is run with ``overlap`` px of context on every side (clamped at the
picture's border) and only the tile's own region of the output is kept, so
when ``overlap`` covers the model's receptive field the tiled output equals
the untiled one up to float rounding. A picture that fits in one tile is run
whole.

Out of memory during a tile: the references are dropped, the CUDA cache is
emptied, the tile is halved (never below ``min_tile``) and the work goes on
with the smaller tile over what is not done yet. The output pixels already
written are kept (a bit mask of done input pixels says which), so a big
picture that runs out of memory late does not start over; a new-grid tile
that is only partly done is run again whole and overwrites its part with
the same values. Progress then counts on the new grid, whose finished tiles
count as done. At ``min_tile`` a further out of memory is a
``ModelMemoryError`` that names the tile size and what to try.

This module owns only the tiling, the uint8 <-> float conversions and the
fallback; which model runs, where it lives and when it is loaded are the
service's and the residency manager's. Each tile's output goes straight into
one preallocated uint8 array: host RAM holds the output and one tile, never
a stack of tile tensors.
"""
from __future__ import annotations

import logging
import math
import numbers
import sys
from typing import TYPE_CHECKING

from enfoads.models.residency_types import CPU, GPU, ModelMemoryError

if TYPE_CHECKING:  # numpy and torch are imported where they are used
    import numpy as np

__all__ = ["upscale_image", "upscale_frames", "is_out_of_memory"]

log = logging.getLogger(__name__)

# Lower-case phrases by which torch's allocators report a failed allocation: CUDA and MPS say
# "out of memory"; the CPU allocator says "DefaultCPUAllocator: can't allocate memory" (or "not enough memory").
_OOM_PHRASES = ("out of memory", "can't allocate memory", "not enough memory")
_SMALLEST_TILE = 8


def is_out_of_memory(exc: BaseException) -> bool:
    """True for ``torch.cuda.OutOfMemoryError`` or a RuntimeError whose message says the allocator ran out.

    A ``ModelMemoryError`` is not one: it already says a model does not fit
    at all, which smaller tiles cannot fix.
    """
    if isinstance(exc, ModelMemoryError):
        return False
    torch = sys.modules.get("torch")  # no torch loaded: the exception cannot be torch's
    cuda_oom = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    if cuda_oom is not None and isinstance(exc, cuda_oom):
        return True
    if not isinstance(exc, RuntimeError):
        return False
    text = str(exc).lower()
    return any(phrase in text for phrase in _OOM_PHRASES)


# --------------------------------------------------------------------------- checks


def _whole(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a whole number, not {value!r}")
    return int(value)


def _check_options(*, scale, tile, overlap, min_tile) -> tuple[int, int, int, int]:
    """The options as plain ints (numpy integers are fine), or ValueError naming the bad one."""
    scale, tile, overlap, min_tile = (_whole(name, value) for name, value in
                                      (("scale", scale), ("tile", tile), ("overlap", overlap), ("min_tile", min_tile)))
    if scale < 1:
        raise ValueError(f"scale must be at least 1, not {scale}")
    if min_tile < _SMALLEST_TILE:
        raise ValueError(f"min_tile must be at least {_SMALLEST_TILE} px, not {min_tile}")
    if tile < min_tile:
        raise ValueError(f"tile ({tile} px) must be at least min_tile ({min_tile} px)")
    if overlap < 0:
        raise ValueError(f"overlap must be 0 or more, not {overlap}")
    return scale, tile, overlap, min_tile


def _check_uint8_rgb(array, *, what: str, ndim: int) -> None:
    import numpy as np

    shape = "N x H x W x 3" if ndim == 4 else "H x W x 3"
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{what} must be a numpy array ({shape} uint8 RGB), not {type(array).__name__}")
    if array.ndim != ndim or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise ValueError(f"{what} must be {shape} uint8 RGB; got shape {array.shape}, dtype {array.dtype}")
    if array.shape[-2] < 1 or array.shape[-3] < 1:
        raise ValueError(f"{what} has no pixels (shape {array.shape})")


# --------------------------------------------------------------------------- one run of the model


def _torch_dtype(dtype):
    import torch

    return torch.float32 if dtype is None else dtype


def _run_patch(run, patch, out_box, *, scale: int, device, dtype):
    """``patch`` (B x h x w x 3 uint8) through ``run``; the ``out_box`` (y0, y1, x0, x1) of its output as uint8.

    The upload is uint8 (a quarter of the float bytes); only the kept part
    of the output is converted and brought back.
    """
    import numpy as np
    import torch

    batch, height, width = patch.shape[:3]
    # A copy where the view is read-only (a decoded PNG's array): torch wants writable memory.
    x = torch.from_numpy(patch if patch.flags.writeable and patch.flags.c_contiguous else np.array(patch)).to(device)
    x = x.permute(0, 3, 1, 2).to(_torch_dtype(dtype)).div_(255)
    y = run(x)
    del x
    expected = (batch, 3, height * scale, width * scale)
    if tuple(y.shape) != expected:
        raise ValueError(f"the model turned a {batch} x 3 x {height} x {width} input into {tuple(y.shape)}; "
                         f"expected {expected} (is scale={scale} the model's scale?)")
    y0, y1, x0, x1 = out_box
    kept = y[:, :, y0:y1, x0:x1].float().clamp(0, 1).mul_(255).round_().to(torch.uint8)
    del y
    return kept.permute(0, 2, 3, 1).cpu().numpy()


def _free_device_memory(device) -> None:
    """What an out of memory leaves behind, released: the caller has dropped its references already."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if str(device).startswith("mps") and mps is not None and hasattr(mps, "empty_cache"):
        mps.empty_cache()


def _smaller_tile(tile: int, *, min_tile: int, width: int, height: int, device, cause: BaseException | None) -> int:
    """The tile to try after an out of memory at ``tile``, or ``ModelMemoryError`` at ``min_tile``."""
    if tile <= min_tile:
        on_gpu = not str(device).startswith("cpu")
        where = "GPU" if on_gpu else "host"
        raise ModelMemoryError(
            f"out of {where} memory upscaling a {width}x{height} picture even with {tile} px tiles "
            f"(the smallest allowed); try a smaller picture, or free the {where} memory "
            f"(other jobs or loaded models may be holding it) and retry",
            key="upscale",
            tier=GPU if on_gpu else CPU,
            needed=0,  # unknown: the model's activations, not the tile, are what did not fit
            retryable=on_gpu,
        ) from cause
    smaller = max(tile // 2, min_tile)
    log.info("out of memory at %d px tiles on a %dx%d picture; retrying with %d px tiles", tile, width, height, smaller)
    return smaller


# --------------------------------------------------------------------------- the tiling


def _tile_boxes(height: int, width: int, tile: int, overlap: int):
    """Each tile of the grid in raster order: its own input box and its input box with context.

    Boxes are (y0, y1, x0, x1), end exclusive, as Real-ESRGAN's ``tile_process`` cuts them.
    """
    for row in range(math.ceil(height / tile)):
        for col in range(math.ceil(width / tile)):
            y0, x0 = row * tile, col * tile
            y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
            yield (y0, y1, x0, x1), (max(y0 - overlap, 0), min(y1 + overlap, height),
                                     max(x0 - overlap, 0), min(x1 + overlap, width))


def _run_grid(run, pixels, out, done, *, tile: int, overlap: int, scale: int, device, dtype, progress):
    """Every tile of one grid not already ``done``, written into ``out``; None, or the out-of-memory error.

    The error comes back without its traceback (whose frames hold the
    tile's tensors), so the caller can free the device before going on.
    """
    height, width = pixels.shape[:2]
    boxes = list(_tile_boxes(height, width, tile, overlap))
    for count, ((y0, y1, x0, x1), (py0, py1, px0, px1)) in enumerate(boxes, start=1):
        if done[y0:y1, x0:x1].all():  # finished before a halving
            continue
        out_box = ((y0 - py0) * scale, (y1 - py0) * scale, (x0 - px0) * scale, (x1 - px0) * scale)
        try:
            kept = _run_patch(run, pixels[None, py0:py1, px0:px1], out_box, scale=scale, device=device, dtype=dtype)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            return exc.with_traceback(None)
        out[y0 * scale:y1 * scale, x0 * scale:x1 * scale] = kept[0]
        del kept
        done[y0:y1, x0:x1] = True
        if progress is not None:
            progress(count, len(boxes))  # may raise (a cancel): it propagates as it is
    return None


def _upscale_into(run, pixels, out, *, scale: int, tile: int, overlap: int, min_tile: int, device, dtype,
                  progress) -> int:
    """``pixels`` upscaled into ``out`` (H*scale x W*scale x 3 uint8), halving the tile on out of memory."""
    import numpy as np
    import torch

    height, width = pixels.shape[:2]
    done = np.zeros((height, width), dtype=bool)  # input pixels whose output is written
    with torch.inference_mode():
        while True:
            failure = _run_grid(run, pixels, out, done, tile=tile, overlap=overlap, scale=scale, device=device,
                                dtype=dtype, progress=progress)
            if failure is None:
                return tile
            _free_device_memory(device)
            tile = _smaller_tile(tile, min_tile=min_tile, width=width, height=height, device=device, cause=failure)


# --------------------------------------------------------------------------- the API


def upscale_image(run, pixels, *, scale: int, tile: int = 512, overlap: int = 32, min_tile: int = 64,
                  device="cpu", dtype=None, progress=None) -> tuple["np.ndarray", int]:
    """One picture through a super-resolution model, tiled, halving the tile on out of memory.

    Args:
        run: takes a float tensor B x 3 x h x w in [0, 1] on ``device`` with
            ``dtype`` and returns B x 3 x (h*scale) x (w*scale) in [0, 1]; a
            spandrel ``ImageModelDescriptor`` is one.
        pixels: H x W x 3 uint8 RGB.
        scale: the model's scale.
        tile: tile side (px) to start with; a picture that fits in one tile is run whole.
        overlap: context (px) each tile is run with on every side.
        min_tile: the smallest tile out of memory may halve down to.
        device, dtype: where the input tensors go (``torch.float32`` when dtype is None).
        progress: ``progress(done_tiles, total_tiles)`` after each tile; may raise to stop the work.

    Returns:
        (H*scale x W*scale x 3 uint8 RGB, the tile size that worked).

    Raises:
        ValueError: bad pixels or options, or a model whose output is not ``scale`` times its input.
        ModelMemoryError: out of memory even at ``min_tile``.
    """
    import numpy as np

    _check_uint8_rgb(pixels, what="pixels", ndim=3)
    scale, tile, overlap, min_tile = _check_options(scale=scale, tile=tile, overlap=overlap, min_tile=min_tile)
    height, width = pixels.shape[:2]
    out = np.empty((height * scale, width * scale, 3), dtype=np.uint8)
    used = _upscale_into(run, pixels, out, scale=scale, tile=tile, overlap=overlap, min_tile=min_tile,
                         device=device, dtype=dtype, progress=progress)
    return out, used


def upscale_frames(run, frames, *, scale: int, tile: int = 512, overlap: int = 32, min_tile: int = 64,
                   device="cpu", dtype=None, max_batch: int = 8) -> tuple["np.ndarray", int]:
    """Video frames through a super-resolution model: whole frames in batches when they fit one tile, else tiled.

    Frames no larger than ``tile`` go through ``run`` up to ``max_batch`` at
    a time; out of memory halves the batch (for the rest of the frames).
    When one frame alone does not fit, the rest are tiled from half of
    ``tile`` down, as :func:`upscale_image` does; each frame starts at the
    tile size the previous one ended with, so the fallback is found once.

    Returns:
        (N x H*scale x W*scale x 3 uint8 RGB, the tile size that worked).

    Raises:
        ValueError: bad frames or options. ModelMemoryError: out of memory even at ``min_tile``.
    """
    import numpy as np
    import torch

    _check_uint8_rgb(frames, what="frames", ndim=4)
    scale, tile, overlap, min_tile = _check_options(scale=scale, tile=tile, overlap=overlap, min_tile=min_tile)
    max_batch = _whole("max_batch", max_batch)
    if max_batch < 1:
        raise ValueError(f"max_batch must be at least 1, not {max_batch}")
    count, height, width = frames.shape[:3]
    out = np.empty((count, height * scale, width * scale, 3), dtype=np.uint8)
    start = 0
    if height <= tile and width <= tile:
        batch = max_batch
        whole = (0, height * scale, 0, width * scale)
        with torch.inference_mode():
            while start < count:
                failure = None
                end = min(start + batch, count)
                try:
                    out[start:end] = _run_patch(run, frames[start:end], whole, scale=scale, device=device, dtype=dtype)
                except Exception as exc:
                    if not is_out_of_memory(exc):
                        raise
                    failure = exc.with_traceback(None)  # the traceback's frames hold the batch's tensors
                if failure is None:
                    start = end
                    continue
                _free_device_memory(device)
                if batch > 1:
                    batch //= 2
                    log.info("out of memory at %d frames a batch; retrying with %d", batch * 2, batch)
                    continue
                tile = _smaller_tile(tile, min_tile=min_tile, width=width, height=height, device=device,
                                     cause=failure)
                break
    for index in range(start, count):
        tile = _upscale_into(run, frames[index], out[index], scale=scale, tile=tile, overlap=overlap,
                             min_tile=min_tile, device=device, dtype=dtype, progress=None)
    return out, tile
