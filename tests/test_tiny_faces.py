"""The tiny InsightFace pack, loaded through the product's own face loaders."""
import subprocess
import sys
import time

import numpy as np
import pytest

from enfoads.models.loaders import faces as loaders
from enfoads.models.tiny import ensure_tiny, faces as tiny_faces

CPU = ["CPUExecutionProvider"]
PACK_FILES = ("det_10g.onnx", "w600k_r50.onnx", "genderage.onnx", "2d106det.onnx", "1k3d68.onnx")


@pytest.fixture(scope="module")
def root(models_dir):
    return ensure_tiny(models_dir, "tiny-buffalo_l")


@pytest.fixture(scope="module")
def app(root):
    return loaders.load_face_analysis(root, providers=CPU, det_size=(640, 640))


@pytest.fixture(scope="module")
def swapper(root):
    return loaders.load_swapper(root / "models" / "inswapper_128.onnx", providers=CPU)


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _box(square):
    x, y, s = square
    return (x, y, x + s, y + s)


def _by_x(found):
    return sorted(found, key=lambda f: f.bbox[0])


def test_pack_files_present_and_small(root):
    pack = root / "models" / "buffalo_l"
    for name in PACK_FILES:
        assert (pack / name).is_file(), name
    assert (root / "models" / "inswapper_128.onnx").is_file()
    assert loaders.face_pack_bytes(root) == sum((pack / n).stat().st_size for n in PACK_FILES)
    total = loaders.file_bytes(root / "models")
    assert total == loaders.face_pack_bytes(root) + loaders.swapper_bytes(root / "models" / "inswapper_128.onnx")
    assert total < 20 * 1024 * 1024


def test_same_seed_same_bytes(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for folder, seed in ((a, 3), (b, 3), (c, 4)):
        folder.mkdir()
        tiny_faces.build_into(folder, seed)
    files = sorted(p.relative_to(a) for p in a.rglob("*.onnx"))
    assert len(files) == 6
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert (a / "models/buffalo_l/w600k_r50.onnx").read_bytes() != (c / "models/buffalo_l/w600k_r50.onnx").read_bytes()


def test_loads_on_cpu_with_every_task(app):
    assert set(app.models) == {"detection", "recognition", "genderage", "landmark_2d_106", "landmark_3d_68"}
    assert loaders.active_providers(app) == ["CPUExecutionProvider"]
    assert all(p == ["CPUExecutionProvider"] for p in loaders.session_providers(app).values())


def test_one_square_one_face(app):
    square = (272, 192, tiny_faces.TUNED_SQUARE)
    found = app.get(tiny_faces.face_test_pattern(squares=(square,)))
    assert len(found) == 1
    face = found[0]
    assert _iou(face.bbox, _box(square)) > 0.8
    assert face.det_score > 0.5
    assert face.kps.shape == (5, 2)
    assert face.embedding.shape == (512,)
    assert face.landmark_2d_106.shape == (106, 2)
    assert face.landmark_3d_68.shape == (68, 3)
    assert face.sex in ("M", "F") and isinstance(face.age, int)


def test_default_pattern_has_one_face(app):
    assert len(app.get(tiny_faces.face_test_pattern())) == 1


def test_blank_image_no_face(app):
    assert app.get(tiny_faces.face_test_pattern(squares=())) == []


@pytest.mark.parametrize(
    "squares",
    [
        ((80, 100, 96), (420, 260, 96)),
        ((40, 80, 96), (272, 192, 96), (504, 300, 96)),
    ],
    ids=["two", "three"],
)
def test_several_squares_several_faces(app, squares):
    found = _by_x(app.get(tiny_faces.face_test_pattern(squares=squares)))
    assert len(found) == len(squares)
    for face, square in zip(found, squares):
        assert _iou(face.bbox, _box(square)) > 0.8


@pytest.mark.parametrize(
    "width,height,square",
    [(480, 640, (100, 400, 96)), (1280, 720, (900, 300, 192))],
    ids=["portrait", "wide-scaled"],
)
def test_non_square_image(app, width, height, square):
    found = app.get(tiny_faces.face_test_pattern(width, height, squares=(square,)))
    assert len(found) == 1
    assert _iou(found[0].bbox, _box(square)) > 0.8


def test_recognition_depends_on_input(app):
    img = tiny_faces.face_test_pattern(squares=((80, 100, 96), (420, 260, 96)))
    img[120:140, 100:130] = 0  # a "different face": a dark mark in the first square
    a, b = _by_x(app.get(img))
    assert not np.allclose(a.normed_embedding, b.normed_embedding, atol=1e-3)
    rng = np.random.default_rng(0)
    rec = app.models["recognition"]
    x, y = (rng.integers(0, 256, (112, 112, 3), dtype=np.uint8) for _ in range(2))
    assert not np.allclose(rec.get_feat(x), rec.get_feat(y))


def test_swap_changes_the_target_face_only(app, swapper):
    img = tiny_faces.face_test_pattern(squares=((80, 100, 96), (420, 260, 96)))
    img[280:300, 440:470] = 0  # the source square gets a mark: another identity
    target, source = _by_x(app.get(img))
    fake_from_source, _ = swapper.get(img, target, source, paste_back=False)
    fake_from_target, _ = swapper.get(img, target, target, paste_back=False)
    assert fake_from_source.shape == (128, 128, 3)
    assert not np.array_equal(fake_from_source, fake_from_target)  # depends on the source
    out = swapper.get(img.copy(), target, source, paste_back=True)
    assert out.shape == img.shape and out.dtype == np.uint8
    x1, y1, x2, y2 = (int(round(v)) for v in target.bbox)
    inside = np.abs(out[y1 + 16 : y2 - 16, x1 + 16 : x2 - 16].astype(int) - img[y1 + 16 : y2 - 16, x1 + 16 : x2 - 16])
    assert inside.mean() > 10
    far = np.ones(img.shape[:2], dtype=bool)
    far[max(0, y1 - 48) : y2 + 48, max(0, x1 - 48) : x2 + 48] = False
    assert np.array_equal(out[far], img[far])
    assert loaders.active_providers(swapper) == ["CPUExecutionProvider"]


def test_missing_pack_fails_fast_without_download(tmp_path, monkeypatch):
    import insightface.utils.storage as storage

    def no_download(*args, **kwargs):
        raise AssertionError("insightface tried to download a model")

    monkeypatch.setattr(storage, "download_file", no_download)
    started = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="enfoads preload") as err:
        loaders.load_face_analysis(tmp_path, providers=CPU)
    assert str(tmp_path / "models" / "buffalo_l") in str(err.value)
    (tmp_path / "models" / "buffalo_l").mkdir(parents=True)  # a folder without models
    with pytest.raises(FileNotFoundError, match="enfoads preload"):
        loaders.load_face_analysis(tmp_path, providers=CPU)
    with pytest.raises(FileNotFoundError, match="enfoads preload"):
        loaders.load_swapper(tmp_path / "models" / "inswapper_128.onnx", providers=CPU)
    assert time.perf_counter() - started < 1.0


def test_providers_must_be_explicit(root):
    with pytest.raises(ValueError):
        loaders.load_face_analysis(root, providers=[])
    assert loaders.ctx_id_for(["CPUExecutionProvider"]) == -1
    assert loaders.ctx_id_for([("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]) == 0


def test_importing_loader_is_light():
    code = (
        "import sys, enfoads.models.loaders.faces, enfoads.models.tiny.faces; "
        "heavy = {'insightface', 'onnxruntime', 'cv2', 'onnx'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
