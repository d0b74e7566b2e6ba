"""Face restoration (``enfoads.services.face_restore``): alignment, paste-back, the loop, and a real spandrel GFPGAN.

Faces here are synthetic: key points made by mapping the FFHQ template
through a known similarity transform, and restorers that are plain
functions (inverting colours). The GFPGAN test builds the full architecture
(86 M parameters, random weights) once and loads it through spandrel's
``ModelLoader`` as the product does.
"""
import math

import cv2
import numpy as np
import pytest

from enfoads.services.face_restore import (FFHQ_TEMPLATE_512, GFPGAN_SIZE, align_face, gfpgan_restorer, paste_back,
                                           restore_faces)


def _similarity(scale: float, degrees: float, centre) -> np.ndarray:
    """The 2 x 3 matrix crop (512 px template) -> picture: template centre to ``centre``, scaled and rotated."""
    a = math.radians(degrees)
    rotation = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    middle = FFHQ_TEMPLATE_512.mean(axis=0).astype(np.float64)
    return np.hstack([rotation, (np.asarray(centre, dtype=np.float64) - rotation @ middle)[:, None]])


def _kps(scale: float, degrees: float, centre) -> np.ndarray:
    m = _similarity(scale, degrees, centre)
    return (FFHQ_TEMPLATE_512.astype(np.float64) @ m[:, :2].T + m[:, 2]).astype(np.float32)


def _smooth_picture(height: int, width: int) -> np.ndarray:
    """A picture with gentle gradients in each channel: resampling it twice changes it very little."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = [128 + 90 * np.sin(x / 37.0 + k) * np.cos(y / 29.0 - k) for k in range(3)]
    return np.clip(np.stack(channels, axis=2), 0, 255).astype(np.uint8)


def _changed(a, b) -> np.ndarray:
    return np.any(a != b, axis=2)


# --------------------------------------------------------------------------- align_face


def test_the_template_is_ffhqs_and_read_only():
    assert FFHQ_TEMPLATE_512.shape == (5, 2)
    assert FFHQ_TEMPLATE_512[0].tolist() == pytest.approx([192.98138, 239.94708])
    with pytest.raises(ValueError):
        FFHQ_TEMPLATE_512[0, 0] = 0


def test_align_face_puts_the_key_points_on_the_template():
    height, width = 260, 300
    kps = _kps(0.3, 20.0, (160, 120))
    # One small Gaussian dot per key point, on black.
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    dots = sum(np.exp(-((x - px) ** 2 + (y - py) ** 2) / (2 * 1.2 ** 2)) for px, py in kps)
    picture = np.repeat((np.clip(dots, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)

    crop, matrix = align_face(picture, kps)
    assert crop.shape == (512, 512, 3) and crop.dtype == np.uint8
    assert matrix.shape == (2, 3)
    mapped = kps.astype(np.float64) @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(mapped - FFHQ_TEMPLATE_512).max() < 0.05
    # Each dot's centre of brightness in the crop, near its template point.
    gray = crop[..., 0].astype(np.float64)
    for tx, ty in FFHQ_TEMPLATE_512:
        x0, y0 = int(tx) - 20, int(ty) - 20
        window = gray[y0:y0 + 41, x0:x0 + 41]
        wy, wx = np.mgrid[0:41, 0:41]
        cx, cy = x0 + (window * wx).sum() / window.sum(), y0 + (window * wy).sum() / window.sum()
        assert math.hypot(cx - tx, cy - ty) < 1.0


def test_align_face_scales_the_template_with_size():
    kps = _kps(0.3, -10.0, (150, 130))
    crop, matrix = align_face(_smooth_picture(260, 300), kps, size=256)
    assert crop.shape == (256, 256, 3)
    mapped = kps.astype(np.float64) @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(mapped - FFHQ_TEMPLATE_512 / 2).max() < 0.05


@pytest.mark.parametrize("kps, word", [
    (np.zeros((4, 2)), "shape"), (np.full((5, 2), np.nan), "finite"), (np.full((5, 2), 10.0), "alignment"),
    ("eyes", "key points"),
])
def test_bad_key_points_are_a_value_error(kps, word):
    with pytest.raises(ValueError, match=word):
        align_face(_smooth_picture(64, 64), kps)


@pytest.mark.parametrize("pixels", [np.zeros((64, 64, 3), dtype=np.float32), np.zeros((64, 64), dtype=np.uint8),
                                    np.zeros((64, 64, 4), dtype=np.uint8), None])
def test_bad_pixels_are_a_value_error(pixels):
    with pytest.raises(ValueError, match="pixels_bgr"):
        align_face(pixels, _kps(0.1, 0, (32, 32)))


# --------------------------------------------------------------------------- paste_back


def test_pasting_the_aligned_crop_back_changes_almost_nothing():
    picture = _smooth_picture(260, 300)
    crop, matrix = align_face(picture, _kps(0.3, 15.0, (150, 130)))
    pasted, box = paste_back(picture, crop, matrix)
    diff = np.abs(pasted.astype(np.int16) - picture.astype(np.int16))
    assert diff.mean() < 0.05 and diff.max() <= 3
    assert pasted is not picture and pasted.shape == picture.shape


def test_a_pasted_crop_changes_only_the_warped_crop_with_a_feathered_edge():
    picture = np.full((260, 300, 3), 128, dtype=np.uint8)
    kps = _kps(0.3, 25.0, (150, 130))
    _crop, matrix = align_face(picture, kps)
    green = np.zeros((512, 512, 3), dtype=np.uint8)
    green[..., 1] = 255
    pasted, box = paste_back(picture, green, matrix)

    changed = _changed(pasted, picture)
    inverse = cv2.invertAffineTransform(matrix)
    inside = cv2.warpAffine(np.ones((512, 512), np.float32), inverse, (300, 260), flags=cv2.INTER_LINEAR) > 0
    assert changed.any() and not (changed & ~inside).any()
    ys, xs = np.nonzero(changed)
    assert box == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    # The middle of the face is all green; the edge takes values in between.
    cx, cy = (int(v) for v in kps.mean(axis=0))
    assert pasted[cy, cx].tolist() == [0, 255, 0]
    g = pasted[..., 1][changed]
    assert ((g > 140) & (g < 245)).sum() > 200


def test_feather_px_sets_the_width_of_the_edge():
    picture = np.full((260, 300, 3), 128, dtype=np.uint8)
    _crop, matrix = align_face(picture, _kps(0.3, 0.0, (150, 130)))
    white = np.full((512, 512, 3), 255, dtype=np.uint8)

    def between(feather):
        pasted, _box = paste_back(picture, white, matrix, feather_px=feather)
        g = pasted[..., 1].astype(int)
        return int(((g > 128) & (g < 255)).sum())

    assert between(0) < between(3) < between(12)


def test_a_face_past_the_pictures_edge_changes_only_the_picture():
    picture = _smooth_picture(200, 200)
    kps = _kps(0.4, 0.0, (10, 100))  # half the face lies left of the picture
    crop, matrix = align_face(picture, kps)
    pasted, box = paste_back(picture, 255 - crop, matrix)
    assert pasted.shape == picture.shape
    assert box[0] == 0 and box[2] <= 200 and box[1] >= 0 and box[3] <= 200
    assert _changed(pasted, picture)[:, 0].any()  # blended right up to the border


def test_a_crop_wholly_outside_the_picture_changes_nothing():
    picture = _smooth_picture(100, 100)
    matrix = cv2.invertAffineTransform(_similarity(0.2, 0.0, (1000, 1000)))
    pasted, box = paste_back(picture, np.zeros((512, 512, 3), np.uint8), matrix)
    assert box is None and np.array_equal(pasted, picture)


def test_paste_back_checks_its_inputs():
    picture = _smooth_picture(64, 64)
    crop = np.zeros((128, 128, 3), np.uint8)
    good = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    with pytest.raises(ValueError, match="matrix"):
        paste_back(picture, crop, np.eye(3))
    with pytest.raises(ValueError, match="singular"):
        paste_back(picture, crop, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="square"):
        paste_back(picture, np.zeros((128, 100, 3), np.uint8), good)
    with pytest.raises(ValueError, match="feather_px"):
        paste_back(picture, crop, good, feather_px=-1)


# --------------------------------------------------------------------------- restore_faces


class Inverter:
    """A real restorer: inverts the crop's colours, counting calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, crop):
        assert crop.shape == (512, 512, 3) and crop.dtype == np.uint8
        self.calls += 1
        return 255 - crop


TWO_FACES = [_kps(0.2, 10.0, (100, 150)), _kps(0.2, -5.0, (300, 150))]


def test_restore_faces_restores_each_face_and_nothing_else():
    picture = _smooth_picture(300, 400)
    restorer = Inverter()
    restored, boxes = restore_faces(restorer, picture, TWO_FACES)
    assert restorer.calls == 2 and len(boxes) == 2 and all(boxes)
    changed = _changed(restored, picture)
    for (x1, y1, x2, y2), kps in zip(boxes, TWO_FACES):
        assert changed[y1:y2, x1:x2].any()
        cx, cy = (int(v) for v in kps.mean(axis=0))
        assert np.abs(restored[cy, cx].astype(int) - (255 - picture[cy, cx].astype(int))).max() <= 3
    outside_boxes = np.ones(changed.shape, dtype=bool)
    for x1, y1, x2, y2 in boxes:
        outside_boxes[y1:y2, x1:x2] = False
    assert not changed[outside_boxes].any()
    assert np.array_equal(restored[:40], picture[:40]) and np.array_equal(restored[-40:], picture[-40:])
    assert np.array_equal(restored[:, 190:210], picture[:, 190:210])  # between the two faces


def test_weight_zero_changes_nothing_and_half_blends():
    picture = _smooth_picture(300, 400)
    restorer = Inverter()
    same, boxes = restore_faces(restorer, picture, TWO_FACES, weight=0.0)
    assert np.array_equal(same, picture) and boxes == [None, None] and restorer.calls == 0

    half, _boxes = restore_faces(Inverter(), picture, TWO_FACES, weight=0.5)
    for kps in TWO_FACES:  # half the inverted crop plus half the crop: mid gray
        cx, cy = (int(v) for v in kps.mean(axis=0))
        assert np.abs(half[cy, cx].astype(int) - 127).max() <= 2


def test_a_progress_that_raises_stops_the_work():
    class Cancelled(Exception):
        pass

    seen = []

    def progress(done, total):
        seen.append((done, total))
        raise Cancelled()

    restorer = Inverter()
    with pytest.raises(Cancelled):
        restore_faces(restorer, _smooth_picture(300, 400), TWO_FACES, progress=progress)
    assert seen == [(1, 2)] and restorer.calls == 1


def test_restore_faces_checks_its_inputs():
    picture = _smooth_picture(300, 400)
    with pytest.raises(ValueError, match="weight"):
        restore_faces(Inverter(), picture, TWO_FACES, weight=1.5)
    with pytest.raises(ValueError, match="shape"):
        restore_faces(Inverter(), picture, [TWO_FACES[0], np.zeros((68, 2))])
    with pytest.raises(ValueError, match="restorer must return"):
        restore_faces(lambda crop: crop[:100], picture, TWO_FACES)
    same, boxes = restore_faces(Inverter(), picture, [])
    assert np.array_equal(same, picture) and boxes == []


# --------------------------------------------------------------------------- a real GFPGAN


@pytest.fixture(scope="module")
def gfpgan(tmp_path_factory):
    import spandrel
    import torch
    from spandrel.architectures.GFPGAN import GFPGAN

    torch.manual_seed(0)
    # GFPGANArch.load's hyperparameters (GFPGANv1Clean, as GFPGAN v1.3 / v1.4 ship it).
    net = GFPGAN(out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None, fix_decoder=False,
                 num_mlp=8, input_is_latent=True, different_w=True, narrow=1, sft_half=True)
    with torch.no_grad():  # noise strengths start at 0; trained ones are not, and the test needs the noise to show
        for name, param in net.named_parameters():
            if name.startswith("stylegan_decoder.style_conv") and name.endswith(".weight") and param.numel() == 1:
                param.fill_(0.5)
    path = tmp_path_factory.mktemp("gfpgan") / "GFPGANv1.4.pth"
    torch.save({"params_ema": net.state_dict()}, path)
    del net
    descriptor = spandrel.ModelLoader().load_from_file(str(path))
    assert descriptor.architecture.id == "GFPGAN"
    return descriptor


def test_gfpgan_restorer_runs_gfpgan_repeatably(gfpgan):
    import torch

    crop = _smooth_picture(GFPGAN_SIZE, GFPGAN_SIZE)
    restore = gfpgan_restorer(gfpgan)
    out = restore(crop)
    assert out.shape == (512, 512, 3) and out.dtype == np.uint8
    assert out.std() > 1  # not a flat clamp

    # GFPGAN's own pre- and post-processing, written out: RGB in [-1, 1], stored noise, back to BGR uint8.
    # Equal pixels also show the restorer repeats itself (a second run with the same stored noise).
    x = torch.from_numpy(crop[..., ::-1].copy()).permute(2, 0, 1)[None].float() / 255
    x = (x - 0.5) / 0.5
    with torch.inference_mode():
        y = gfpgan.model(x, return_rgb=False, randomize_noise=False)[0]
        reference = ((y.clamp(-1, 1) + 1) / 2 * 255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()[..., ::-1]
        fresh_noise = gfpgan.model(x, return_rgb=False)[0]  # GFPGAN's default: new noise each call
    assert np.array_equal(out, reference)
    assert (fresh_noise - y).abs().max() > 1e-3  # the noise does show, so randomize_noise=False matters


def test_gfpgan_restorer_checks_the_model_and_the_crop(gfpgan, tmp_path):
    import spandrel
    import torch
    from spandrel.architectures.Compact import Compact

    path = tmp_path / "compact.pth"
    torch.save({"params": Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=4).state_dict()}, path)
    with pytest.raises(ValueError, match="Compact"):
        gfpgan_restorer(spandrel.ModelLoader().load_from_file(str(path)))
    with pytest.raises(ValueError, match="512"):
        gfpgan_restorer(gfpgan)(np.zeros((256, 256, 3), np.uint8))
