"""The MuseTalk 1.5 engine on the tiny kit's random weights, through the real loader (no mocks).

What is checked: the one-off fp16 conversion of ``unet.pth`` and what it
refuses; the audio windows' count and layout; the frames' count, size,
mouth movement and untouched pixels; cancellation through the progress
callback; the face geometry's validation.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from enfoads.models.loaders.lipsync import (  # noqa: E402
    CONVERTED_UNET,
    NotAMuseTalkUNet,
    converted_unet,
    load_musetalk,
    musetalk_paths,
)
from enfoads.models.tiny import musetalk as tiny_musetalk  # noqa: E402
from enfoads.services.lipsync import LipSync  # noqa: E402
from enfoads.services.lipsync_mask import FaceGeometry, crop_box, lower_face_mask, paste  # noqa: E402

SR = 16000
WIDTH, HEIGHT = 320, 400
FACE = FaceGeometry(box=(100, 120, 220, 280), kps=[(135, 175), (185, 175), (160, 210), (140, 245), (180, 245)])
MOUTH = (slice(236, 256), slice(140, 181))  # rows, columns around the mouth corners


def _portrait() -> np.ndarray:
    import cv2

    img = np.full((HEIGHT, WIDTH, 3), (70, 90, 110), np.uint8)
    cv2.ellipse(img, (160, 200), (62, 82), 0, 0, 360, (224, 182, 150), -1)
    for x in (135, 185):
        cv2.circle(img, (x, 175), 7, (40, 30, 30), -1)
    cv2.line(img, (160, 185), (160, 210), (180, 130, 110), 3)
    cv2.ellipse(img, (160, 245), (20, 6), 0, 0, 360, (170, 60, 70), -1)
    return img


def _burst_then_silence(seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return np.where(t < seconds / 2, 0.5 * np.sin(2 * np.pi * 440 * t), 0.0).astype(np.float32)


@pytest.fixture(scope="session")
def kit(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-musetalk")
    tiny_musetalk.build_into(folder, 0)
    return folder


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    return tmp_path_factory.mktemp("musetalk-converted")


@pytest.fixture(scope="session")
def models(kit, converted):
    return load_musetalk(musetalk_paths(kit), device="cpu", dtype="float16", converted_dir=converted)


@pytest.fixture(scope="session")
def engine(models):
    return LipSync(models, batch_size=8, fps=25)


@pytest.fixture(scope="session")
def prepared(engine):
    return engine.prepare(_portrait(), FACE)


# --------------------------------------------------------------------------- the kit and the loader


def test_tiny_kit_is_the_release_layout_and_small(kit):
    for name in tiny_musetalk.TINY_FILES:
        assert (kit / name).is_file(), name
    assert sum(p.stat().st_size for p in kit.rglob("*") if p.is_file()) < 16 * 1024**2


def test_loaded_models_are_float32_on_cpu_with_the_pth_weights(models, kit):
    assert models.dtype == torch.float32 and models.device == "cpu"
    assert models.unet.dtype == models.vae.dtype == models.whisper_encoder.dtype == torch.float32
    assert not hasattr(models.whisper_encoder, "decoder")
    source = torch.load(kit / "musetalkV15" / "unet.pth", weights_only=True)
    name = "conv_in.weight"
    assert torch.equal(models.unet.state_dict()[name], source[name].half().float())
    expected = sum(t.numel() * t.element_size() for m in models.modules()
                   for t in list(m.parameters()) + list(m.buffers()))
    assert models.parameter_bytes() == expected > 0
    assert models.to("cpu") is models and models.dtype == torch.float32  # float16 is for CUDA only


def test_the_pth_is_converted_once_and_again_when_it_changes(kit, models, converted):
    paths = musetalk_paths(kit)
    target = converted / CONVERTED_UNET

    def written():  # a rewrite is a new file (temp file, then os.replace): a new inode
        stat = target.stat()
        return stat.st_ino, stat.st_mtime_ns

    first = written()
    load_musetalk(paths, device="cpu", dtype="float32", converted_dir=converted)
    assert written() == first
    stat = paths["unet"].stat()
    os.utime(paths["unet"], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    load_musetalk(paths, device="cpu", dtype="float32", converted_dir=converted)
    assert written() != first
    assert json.loads((converted / "unet.fp16.json").read_text())["mtime_ns"] == paths["unet"].stat().st_mtime_ns


class _Payload:
    """Not a tensor: torch.load(weights_only=True) must refuse to rebuild it."""


def test_a_pth_that_is_not_a_matching_state_dict_is_refused(kit, tmp_path):
    config = json.loads((kit / "musetalkV15" / "musetalk.json").read_text())
    state = torch.load(kit / "musetalkV15" / "unet.pth", weights_only=True)
    cases = {
        "pickled.pth": {"conv_in.weight": _Payload()},
        "list.pth": [1, 2, 3],
        "wrong-keys.pth": {"not.a.unet": torch.zeros(2)},
        "missing-key.pth": {k: v for k, v in state.items() if k != "conv_in.weight"},
        "wrong-shape.pth": {**state, "conv_in.weight": torch.zeros(1)},
    }
    for name, payload in cases.items():
        torch.save(payload, tmp_path / name)
    (tmp_path / "text.pth").write_text("not a checkpoint")
    for name in [*cases, "text.pth"]:
        with pytest.raises(NotAMuseTalkUNet, match=name):
            converted_unet(tmp_path / name, config, tmp_path / "out")
    assert not (tmp_path / "out" / CONVERTED_UNET).exists()
    torch.save({"state_dict": state}, tmp_path / "nested.pth")  # one level of wrapping is fine
    assert converted_unet(tmp_path / "nested.pth", config, tmp_path / "out").is_file()


# --------------------------------------------------------------------------- audio


@pytest.mark.parametrize("seconds", [0.3, 1.0, 2.04])
def test_audio_windows_cover_every_frame(engine, models, seconds):
    n = int(round(seconds * SR))
    layers = models.whisper_encoder.config.encoder_layers + 1
    windows = engine.audio_windows(np.zeros(n, np.float32))  # silence works
    assert engine.frame_count(n) == int(np.ceil(seconds * 25 - 1e-9))
    assert tuple(windows.shape) == (engine.frame_count(n), 10 * layers, models.whisper_encoder.config.d_model)
    assert torch.isfinite(windows).all()
    # Time-major tokens: frame 0 starts with 2 frames (4 steps) of left padding.
    assert (windows[0, : 4 * layers] == 0).all() and (windows[0, 4 * layers:] != 0).any()


def test_audio_windows_stop_where_the_audio_does(engine):
    windows = engine.audio_windows(np.zeros(int(0.3 * SR), np.float32))
    layers = windows.shape[1] // 10
    # 0.3 s has 15 whisper steps; frame 7's window holds padded steps 14..23, i.e. audio steps 10..19.
    assert (windows[7, : 5 * layers] != 0).any() and (windows[7, 5 * layers:] == 0).all()


def test_audio_must_be_mono_and_not_empty(engine, prepared):
    with pytest.raises(ValueError, match="empty"):
        engine.audio_windows(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="empty"):
        engine.frames(prepared, np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="mono"):
        engine.audio_windows(np.zeros((2, 100), np.float32))


# --------------------------------------------------------------------------- frames


def test_frames_move_the_mouth_and_nothing_outside_the_mask(engine, prepared):
    portrait = _portrait()
    calls = []
    frames = list(engine.frames(prepared, _burst_then_silence(), progress=lambda d, t: calls.append((d, t))))
    assert calls == [(8, 25), (16, 25), (24, 25), (25, 25)]
    assert len(frames) == 25 and all(f.shape == portrait.shape and f.dtype == np.uint8 for f in frames)

    x1, y1, x2, y2 = prepared.crop
    untouched = np.ones(portrait.shape[:2], bool)
    untouched[y1:y2, x1:x2] = prepared.mask == 0
    assert untouched.mean() > 0.5
    for frame in frames:
        assert np.array_equal(frame[untouched], portrait[untouched])

    mouth = [f[MOUTH].astype(np.int16) for f in frames]
    assert prepared.mask[MOUTH[0].start - y1:MOUTH[0].stop - y1, MOUTH[1].start - x1:MOUTH[1].stop - x1].min() > 0.5
    tone_vs_silence = np.abs(mouth[3] - mouth[20]).mean()
    assert tone_vs_silence > 2.0  # grey levels: the audio drives the mouth
    assert np.abs(mouth[3] - portrait[MOUTH]).mean() > 2.0  # and the mouth is generated, not the portrait's


def test_a_raising_progress_callback_stops_after_one_batch(engine, models, prepared):
    forwards = []
    hook = models.unet.register_forward_hook(lambda *args: forwards.append(1))

    def cancel(done, total):
        raise RuntimeError(f"cancelled at {done}/{total}")

    try:
        with pytest.raises(RuntimeError, match="cancelled at 8/25"):
            list(engine.frames(prepared, _burst_then_silence(), progress=cancel))
    finally:
        hook.remove()
    assert len(forwards) == 1


def test_prepare_is_deterministic_and_keeps_the_latents_on_the_device(engine, prepared):
    again = engine.prepare(_portrait(), FACE)
    assert again.crop == prepared.crop == crop_box(FACE, WIDTH, HEIGHT)
    assert tuple(again.latents.shape) == (1, 8, 32, 32)
    assert torch.equal(again.latents, prepared.latents)


# --------------------------------------------------------------------------- geometry


def test_face_geometry_is_validated_and_round_trips_through_json():
    assert FaceGeometry.from_dict(json.loads(json.dumps(FACE.to_dict()))) == FACE
    kps = FACE.kps
    for box in [(float("nan"), 0, 10, 10), (10, 10, 10, 50), (10, 50, 60, 20), (0, 0, 1)]:
        with pytest.raises(ValueError):
            FaceGeometry(box=box, kps=kps)
    with pytest.raises(ValueError):
        FaceGeometry(box=FACE.box, kps=[*kps[:4], (float("inf"), 3)])
    with pytest.raises(ValueError):
        FaceGeometry(box=FACE.box, kps=kps[:4])
    with pytest.raises(ValueError):
        FaceGeometry.from_dict({"box": [1, 2, 3, 4]})
    outside = FaceGeometry(box=(400, 10, 500, 100), kps=kps)
    with pytest.raises(ValueError, match="outside"):
        crop_box(outside, WIDTH, HEIGHT)


def test_crop_puts_the_nose_on_the_middle_row_and_falls_back_to_the_box():
    x1, y1, x2, y2 = crop_box(FACE, WIDTH, HEIGHT)
    assert (x1, x2) == (100, 220) and y2 == 280 + 10
    assert y1 == 210 - (280 - 210)
    nose_below_chin = FaceGeometry(box=FACE.box, kps=[*FACE.kps[:2], (160, 290), *FACE.kps[3:]])
    assert crop_box(nose_below_chin, WIDTH, HEIGHT) == (100, 120, 220, 280)
    clamped = FaceGeometry(box=(-20, 300, 100, 420), kps=[(20, 330), (60, 330), (40, 360), (25, 390), (55, 390)])
    cx1, cy1, cx2, cy2 = crop_box(clamped, WIDTH, HEIGHT)
    assert cx1 == 0 and cy2 == HEIGHT


def test_mask_is_zero_on_its_outline_and_paste_keeps_the_rest():
    crop = crop_box(FACE, WIDTH, HEIGHT)
    mask = lower_face_mask(FACE, crop)
    assert mask.dtype == np.float32 and mask.shape == (crop[3] - crop[1], crop[2] - crop[0])
    assert mask.max() == 1.0 and mask.min() == 0.0
    assert (mask[: mask.shape[0] // 2] == 0).all()  # nothing above the nose-mouth midpoint
    assert (mask[0] == 0).all() and (mask[-1] == 0).all() and (mask[:, 0] == 0).all() and (mask[:, -1] == 0).all()
    portrait = _portrait()
    white = np.full((*mask.shape, 3), 255, np.uint8)
    out = paste(portrait, white, crop, mask)
    region, before = out[crop[1]:crop[3], crop[0]:crop[2]], portrait[crop[1]:crop[3], crop[0]:crop[2]]
    assert np.array_equal(region[mask == 0], before[mask == 0])
    assert (region[mask == 1] == 255).all()
    assert np.array_equal(out[: crop[1]], portrait[: crop[1]])
