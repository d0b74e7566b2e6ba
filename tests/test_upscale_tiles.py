"""Tiled super-resolution (``enfoads.services.upscale_tiles``) with a small real spandrel model, no mocks of torch.

The model is an SRVGGNetCompact (spandrel's ``Compact``, Real-ESRGAN's
small video model) with 2 body convs and random weights, saved in
Real-ESRGAN's ``{"params": ...}`` layout and loaded by spandrel's
``ModelLoader`` as the product loads it. Its receptive field is 4 px each
way (4 convs of 3 x 3), so 8 px of overlap makes tiling invisible.
"""
import numpy as np
import pytest
import torch

from enfoads.errors import EnfoadsError
from enfoads.models.residency_types import ModelMemoryError
from enfoads.services.upscale_tiles import is_out_of_memory, upscale_frames, upscale_image

SCALE = 4


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    import spandrel
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(0)
    net = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=SCALE)
    path = tmp_path_factory.mktemp("compact") / "compact_x4.pth"
    torch.save({"params": net.state_dict()}, path)
    descriptor = spandrel.ModelLoader().load_from_file(str(path))
    assert descriptor.architecture.id == "Compact"
    assert descriptor.scale == SCALE
    return descriptor


@pytest.fixture(scope="module")
def picture():
    return np.random.default_rng(1).integers(0, 256, size=(50, 70, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def untiled(model, picture):
    out, used = upscale_image(model, picture, scale=SCALE, tile=128)
    assert used == 128
    return out


class Recorder:
    """``run`` for the tests: the model, counting calls and input sizes, out of memory above ``max_side`` px."""

    def __init__(self, model, *, max_side=None, max_batch=None, fail_calls=(), error=None):
        self.model = model
        self.max_side = max_side
        self.max_batch = max_batch
        self.fail_calls = set(fail_calls)
        self.error = error
        self.calls = 0
        self.shapes = []

    def __call__(self, x):
        self.calls += 1
        self.shapes.append(tuple(x.shape))
        assert x.dtype == torch.float32 and x.device.type == "cpu"
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
        if self.error is not None:
            raise self.error
        too_big = self.max_side is not None and max(x.shape[-2:]) > self.max_side
        too_many = self.max_batch is not None and x.shape[0] > self.max_batch
        if too_big or too_many or self.calls in self.fail_calls:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.model(x)


def _max_diff(a, b) -> int:
    assert a.shape == b.shape
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


# --------------------------------------------------------------------------- tiling


def test_whole_picture_is_one_run_with_the_models_scale(model, picture, untiled):
    run = Recorder(model)
    out, used = upscale_image(run, picture, scale=SCALE, tile=128)
    assert out.shape == (200, 280, 3) and out.dtype == np.uint8
    assert used == 128
    assert run.shapes == [(1, 3, 50, 70)]
    assert np.array_equal(out, untiled)


def test_tiles_with_overlap_equal_the_untiled_output(model, picture, untiled):
    out, used = upscale_image(model, picture, scale=SCALE, tile=32, overlap=8, min_tile=8)
    assert used == 32
    assert _max_diff(out, untiled) <= 1


def test_without_overlap_the_seams_show(model, picture, untiled):
    out, _ = upscale_image(model, picture, scale=SCALE, tile=32, overlap=0, min_tile=8)
    diff = np.abs(out.astype(np.int16) - untiled.astype(np.int16)).max(axis=2)
    assert diff.max() > 8
    # Only near the seams (input x = 32, 64; y = 32), within the 4 px receptive field, scaled by 4.
    near_seam = np.zeros(diff.shape, dtype=bool)
    for seam in (32, 64):
        near_seam[:, (seam - 4) * SCALE:(seam + 4) * SCALE] = True
    near_seam[(32 - 4) * SCALE:(32 + 4) * SCALE, :] = True
    assert diff[~near_seam].max() <= 1


def test_progress_counts_up_to_the_total(model, picture):
    seen = []
    upscale_image(model, picture, scale=SCALE, tile=32, overlap=8, min_tile=8,
                  progress=lambda done, total: seen.append((done, total)))
    assert seen == [(n, 6) for n in range(1, 7)]  # 2 rows x 3 columns of 32 px tiles


def test_a_progress_that_raises_stops_the_work(model, picture):
    class Cancelled(Exception):
        pass

    def progress(done, total):
        if done == 2:
            raise Cancelled()

    run = Recorder(model)
    with pytest.raises(Cancelled):
        upscale_image(run, picture, scale=SCALE, tile=32, overlap=8, min_tile=8, progress=progress)
    assert run.calls == 2


# --------------------------------------------------------------------------- out of memory


def test_out_of_memory_halves_the_tile_until_it_fits(model, picture, untiled):
    run = Recorder(model, max_side=32)  # 16 px tiles with 8 px of context each side: 32 px at most
    out, used = upscale_image(run, picture, scale=SCALE, tile=64, overlap=8, min_tile=8)
    assert used == 16
    assert max(max(s[-2:]) for s in run.shapes[-5:]) <= 32
    assert _max_diff(out, untiled) <= 1


def test_after_a_halving_the_tiles_done_are_kept(model, picture, untiled):
    run = Recorder(model, fail_calls={3})  # a passing shortage, at the 3rd of six 32 px tiles
    seen = []
    out, used = upscale_image(run, picture, scale=SCALE, tile=32, overlap=8, min_tile=8,
                              progress=lambda done, total: seen.append((done, total)))
    assert used == 16
    # 2 tiles done, 1 failed, then the 16 px grid (4 x 5 tiles) less the 8 inside the two done ones.
    assert run.calls == 2 + 1 + 12
    assert seen[:2] == [(1, 6), (2, 6)] and seen[-1] == (20, 20) and len(seen) == 2 + 12
    assert _max_diff(out, untiled) <= 1


def test_out_of_memory_at_min_tile_is_a_model_memory_error(model, picture):
    run = Recorder(model, max_side=32)
    with pytest.raises(ModelMemoryError) as caught:
        upscale_image(run, picture, scale=SCALE, tile=64, overlap=8, min_tile=32)
    error = caught.value
    assert isinstance(error, EnfoadsError) and error.status == 503
    assert "32 px tiles" in error.message and "smaller picture" in error.message and "free" in error.message
    assert error.tier == "cpu" and error.key == "upscale"
    assert isinstance(error.__cause__, torch.cuda.OutOfMemoryError)


def test_other_errors_propagate_unchanged(model, picture):
    boom = RuntimeError("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED")
    run = Recorder(model, error=boom)
    with pytest.raises(RuntimeError) as caught:
        upscale_image(run, picture, scale=SCALE, tile=32, min_tile=8)
    assert caught.value is boom
    assert run.calls == 1


def test_what_counts_as_out_of_memory():
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB"))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 8.00 GB)"))
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 bytes"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))
    assert not is_out_of_memory(ModelMemoryError("out of memory", key="k", tier="gpu", needed=1))


# --------------------------------------------------------------------------- checks


@pytest.mark.parametrize("pixels", [
    np.zeros((8, 8, 3), dtype=np.float32), np.zeros((8, 8), dtype=np.uint8), np.zeros((8, 8, 4), dtype=np.uint8),
    np.zeros((0, 8, 3), dtype=np.uint8), [[0, 0, 0]],
])
def test_bad_pixels_are_a_value_error(model, pixels):
    with pytest.raises(ValueError, match="pixels"):
        upscale_image(model, pixels, scale=SCALE)


@pytest.mark.parametrize("options, word", [
    ({"scale": 0}, "scale"), ({"scale": 4, "tile": 32, "min_tile": 64}, "min_tile"),
    ({"scale": 4, "tile": 64, "min_tile": 4}, "min_tile"), ({"scale": 4, "overlap": -1}, "overlap"),
    ({"scale": 4, "tile": 64.0}, "tile"),
])
def test_bad_options_are_a_value_error(model, options, word):
    with pytest.raises(ValueError, match=word):
        upscale_image(model, np.zeros((8, 8, 3), dtype=np.uint8), **options)


def test_a_scale_that_is_not_the_models_is_a_value_error(model):
    with pytest.raises(ValueError, match="scale=2"):
        upscale_image(model, np.zeros((8, 8, 3), dtype=np.uint8), scale=2)


# --------------------------------------------------------------------------- frames


def test_small_frames_go_in_batches(model):
    frames = np.random.default_rng(2).integers(0, 256, size=(5, 12, 10, 3), dtype=np.uint8)
    run = Recorder(model)
    out, used = upscale_frames(run, frames, scale=SCALE, tile=64, max_batch=2)
    assert out.shape == (5, 48, 40, 3) and out.dtype == np.uint8
    assert used == 64
    assert [s[0] for s in run.shapes] == [2, 2, 1]
    for frame, upscaled in zip(frames, out):
        assert _max_diff(upscaled, upscale_image(model, frame, scale=SCALE, tile=64)[0]) <= 1


def test_frames_larger_than_a_tile_are_tiled(model):
    frames = np.random.default_rng(3).integers(0, 256, size=(3, 40, 36, 3), dtype=np.uint8)
    run = Recorder(model)
    out, used = upscale_frames(run, frames, scale=SCALE, tile=16, overlap=8, min_tile=8)
    assert used == 16
    assert all(s[0] == 1 and max(s[-2:]) <= 32 for s in run.shapes)
    for frame, upscaled in zip(frames, out):
        assert np.array_equal(upscaled, upscale_image(model, frame, scale=SCALE, tile=16, overlap=8, min_tile=8)[0])
        assert _max_diff(upscaled, upscale_image(model, frame, scale=SCALE, tile=64)[0]) <= 1


def test_frames_out_of_memory_halve_the_batch_then_the_tile(model):
    frames = np.random.default_rng(4).integers(0, 256, size=(5, 24, 20, 3), dtype=np.uint8)
    run = Recorder(model, max_batch=1, max_side=16)  # one frame at a time, and then only tiles of 8 + 2 x 4 px
    out, used = upscale_frames(run, frames, scale=SCALE, tile=64, overlap=4, min_tile=8, max_batch=4)
    assert used == 8
    assert [s[0] for s in run.shapes[:3]] == [4, 2, 1]
    for frame, upscaled in zip(frames, out):
        assert _max_diff(upscaled, upscale_image(model, frame, scale=SCALE, tile=64)[0]) <= 1


def test_frames_out_of_memory_at_min_tile_is_a_model_memory_error(model):
    frames = np.zeros((2, 24, 20, 3), dtype=np.uint8)
    with pytest.raises(ModelMemoryError, match="16 px tiles"):
        upscale_frames(Recorder(model, max_side=16), frames, scale=SCALE, tile=16, overlap=4, min_tile=16)


def test_bad_frames_are_a_value_error(model):
    with pytest.raises(ValueError, match="frames"):
        upscale_frames(model, np.zeros((12, 10, 3), dtype=np.uint8), scale=SCALE)
    with pytest.raises(ValueError, match="max_batch"):
        upscale_frames(model, np.zeros((1, 12, 10, 3), dtype=np.uint8), scale=SCALE, max_batch=0)
