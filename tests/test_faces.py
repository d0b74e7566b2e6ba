"""Face swap through the real runtime, residency manager and job queue, on the tiny InsightFace pack.

The tiny detector finds white squares on grey (``enfoads.models.tiny.faces``); the
tiny swapper's output depends on the source identity, so a swap visibly
changes the target square.
"""
from __future__ import annotations

import base64
import weakref
from types import SimpleNamespace

import numpy as np
import pytest

from enfoads.services import image_input
from enfoads.models.adapters import CPU_PROVIDER, CUDA_PROVIDER, adapter_for
from enfoads.work.assets import AssetStore
from enfoads.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from enfoads.work.jobs import JobQueue
from enfoads.models.profiles import Hardware, detect_hardware
from enfoads.models.runtime import build_runtime
from enfoads.services import faces as faces_service
from enfoads.settings import Settings
from enfoads.models.tiny.faces import face_test_pattern

MIB = 1024**2


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def hardware():
    return detect_hardware()


def make_env(models_dir, tmp, hardware, *, gpu_mib: float):
    settings = Settings(
        profile="tiny", models_dir=models_dir, data_dir=tmp / "data",
        gpu_budget_gb=gpu_mib / 1024, ram_budget_gb=0.5,
    )
    rt = build_runtime(settings, hardware)
    store = AssetStore(tmp)
    queue = JobQueue(tmp, assets=store)
    kinds = {k.name: k for k in faces_service.job_kinds(rt, assets=store)}
    for kind in kinds.values():
        queue.register(kind.name, kind.handler, device=kind.device)
    queue.start()
    return SimpleNamespace(rt=rt, store=store, queue=queue, kind=kinds["faces.swap"])


def close_env(env):
    env.queue.close(grace_s=2)
    env.rt.close()
    env.store.close()


@pytest.fixture(scope="module")
def env(models_dir, tmp_path_factory, hardware):
    env = make_env(models_dir, tmp_path_factory.mktemp("faces"), hardware, gpu_mib=64)
    yield env
    close_env(env)


def b64(bgr: np.ndarray, alpha=None) -> str:
    return base64.b64encode(image_input.encode_png(bgr, alpha=alpha)).decode()


def swap(env, **params):
    job = env.queue.submit_and_wait("faces.swap", env.kind.validate(params), timeout=60)
    assert job.done, job
    return job


def result_image(env, job) -> image_input.DecodedImage:
    asset = env.store.get(job.result["asset_id"])
    assert asset.mime == "image/png" and asset.job_id == job.id
    return image_input.decode_image(env.store.read_bytes(asset.id), channels="BGR")


def changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.any(before != after, axis=2)


def inside(mask: np.ndarray, boxes) -> bool:
    """True when every True pixel of ``mask`` lies in one of ``boxes`` ([x1, y1, x2, y2], end exclusive)."""
    allowed = np.zeros_like(mask)
    for x1, y1, x2, y2 in boxes:
        allowed[int(y1):int(y2), int(x1):int(x2)] = True
    return not np.any(mask & ~allowed)


def grow(box, fraction):
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) * fraction, (y2 - y1) * fraction
    return [x1 - dx, y1 - dy, x2 + dx, y2 + dy]


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def square_box(x, y, s):
    return [x, y, x + s, y + s]


def png_header_only(width, height) -> bytes:
    """A PNG that declares ``width`` x ``height`` and holds almost nothing (a decompression bomb's shape)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def source_picture(squares=((272, 192, 128),)):
    """The source identity: squares with a dark mark each (a different 'face' than a plain square)."""
    img = face_test_pattern(squares=squares)
    for x, y, s in squares:
        img[y + s // 4 : y + s // 4 + s // 6, x + s // 4 : x + s // 2] = 0
    return img


TWO = ((80, 100, 96), (420, 260, 96))
THREE = ((40, 80, 96), (272, 192, 96), (504, 300, 96))


# --------------------------------------------------------------------------- swaps


def test_swap_changes_pixels_only_inside_the_target_face(env):
    target = face_test_pattern(squares=TWO)
    job = swap(env, source_image="data:image/png;base64," + b64(source_picture()), target_image=b64(target),
               target_face_indices=[1])
    assert job.state == "succeeded", job.error
    r = job.result
    assert r["faces_found"] == {"source": 1, "target": 2}
    assert [f["index"] for f in r["target_faces"]] == [1]
    assert (r["width"], r["height"], r["mime"]) == (640, 480, "image/png") and r["asset_ids"] == [r["asset_id"]]
    face = r["target_faces"][0]
    assert iou(face["box"], square_box(*TWO[1])) > 0.9
    assert [iou(f["box"], square_box(*sq)) > 0.9 for f, sq in zip(r["target_faces_found"], TWO)] == [True, True]

    out = result_image(env, job)
    assert out.pixels.shape == target.shape and out.alpha is None
    diff = changed(target, out.pixels)
    assert diff.any()
    # Only the reported region changed, and that region hugs the face box
    # (inswapper's 128 px frame reaches a little past the 112 px face box).
    assert inside(diff, [face["region"]])
    assert all(a >= b for a, b in zip(face["region"][:2], grow(face["box"], 0.25)[:2]))
    assert all(a <= b for a, b in zip(face["region"][2:], grow(face["box"], 0.25)[2:]))
    x1, y1, x2, y2 = (int(v) for v in face["box"])
    core = np.abs(out.pixels[y1 + 16 : y2 - 16, x1 + 16 : x2 - 16].astype(int) - target[y1 + 16 : y2 - 16, x1 + 16 : x2 - 16])
    assert core.mean() > 10  # the face itself really changed
    x1, y1, x2, y2 = square_box(*TWO[0])
    assert not diff[y1 - 20 : y2 + 20, x1 - 20 : x2 + 20].any()  # the other face is untouched


def test_defaults_largest_source_face_into_every_target_face(env):
    source = source_picture(((60, 100, 64), (380, 200, 128)))
    target = face_test_pattern(squares=THREE)
    job = swap(env, source_image=b64(source), target_image=b64(target))
    assert job.state == "succeeded", job.error
    r = job.result
    assert r["source_face"]["index"] == 1 and iou(r["source_face"]["box"], square_box(380, 200, 128)) > 0.8
    assert [f["index"] for f in r["target_faces"]] == [0, 1, 2]
    diff = changed(target, result_image(env, job).pixels)
    assert inside(diff, [f["region"] for f in r["target_faces"]])
    for x, y, s in THREE:
        assert diff[y + 16 : y + s - 16, x + 16 : x + s - 16].mean() > 0.5


def test_explicit_source_and_target_indices(env):
    source = source_picture(((60, 100, 64), (380, 200, 128)))
    target = face_test_pattern(squares=THREE)
    first = swap(env, source_image=b64(source), target_image=b64(target), source_face_index=0,
                 target_face_indices=[2, 0])
    assert first.state == "succeeded", first.error
    assert first.result["source_face"]["index"] == 0
    assert [f["index"] for f in first.result["target_faces"]] == [2, 0]
    out_first = result_image(env, first).pixels
    diff = changed(target, out_first)
    (x0, y0, s0), (x1, y1, s1), (x2, y2, s2) = THREE
    assert diff[y0 : y0 + s0, x0 : x0 + s0].any() and diff[y2 : y2 + s2, x2 : x2 + s2].any()
    assert not diff[y1 - 20 : y1 + s1 + 20, x1 - 20 : x1 + s1 + 20].any()  # face 1 kept

    # Another source face gives another result in the same place.
    second = swap(env, source_image=b64(source), target_image=b64(target), source_face_index=1,
                  target_face_indices=[0])
    out_second = result_image(env, second).pixels
    assert not np.array_equal(out_first[y0 : y0 + s0, x0 : x0 + s0], out_second[y0 : y0 + s0, x0 : x0 + s0])


def test_no_face_errors_name_the_image_and_count_faces(env):
    blank = face_test_pattern(squares=())
    job = swap(env, source_image=b64(blank), target_image=b64(face_test_pattern(squares=TWO)))
    assert job.state == "failed" and job.error["type"] == "UnprocessableInput"
    message = job.error["message"]
    assert message.startswith("source_image: no face found in the source image")
    assert "source image 0, target image 2" in message

    job = swap(env, source_image=b64(source_picture()), target_image=b64(blank))
    assert job.state == "failed" and job.error["message"].startswith("target_image: no face")
    assert "source image 1, target image 0" in job.error["message"]


def test_index_out_of_range_names_the_field(env):
    source, target = b64(source_picture()), b64(face_test_pattern(squares=TWO))
    job = swap(env, source_image=source, target_image=target, source_face_index=3)
    assert job.state == "failed" and job.error["type"] == "UnprocessableInput"
    assert job.error["message"].startswith("source_face_index: is 3 but the source image has 1 face(s)")
    job = swap(env, source_image=source, target_image=target, target_face_indices=[0, 5])
    assert job.state == "failed"
    assert job.error["message"].startswith("target_face_indices: [5] out of range: the target image has 2 face(s)")


def test_bad_requests_are_refused_before_queueing(env):
    good = b64(face_test_pattern(squares=TWO))

    def refused(exc_type, field, **params):
        params = {"source_image": good, "target_image": good, **params}
        before = env.queue.counts()
        with pytest.raises(exc_type) as err:
            env.kind.validate(params)
        assert err.type is exc_type and field in err.value.fields, err.value
        assert env.queue.counts() == before
        return err.value

    refused(InvalidInput, "source_image", source_image=None)
    refused(InvalidInput, "target_image", target_image="")
    refused(UnsupportedMediaType, "source_image", source_image=base64.b64encode(b"I am not a picture").decode())
    refused(UnsupportedMediaType, "target_image", target_image="data:image/jpeg;base64," + good)
    bomb = png_header_only(9000, 9000)
    err = refused(PayloadTooLarge, "target_image", target_image=base64.b64encode(bomb).decode())
    assert err.status == 413 and "9000x9000" in err.message
    refused(InvalidInput, "source_face_index", source_face_index=-1)
    refused(InvalidInput, "source_face_index", source_face_index=True)
    refused(InvalidInput, "target_face_indices", target_face_indices=[0, 0])
    refused(InvalidInput, "target_face_indices", target_face_indices=["x"])
    refused(InvalidInput, "target_face_indices", target_face_indices=[])
    refused(InvalidInput, "paste_back", paste_back="maybe")
    refused(InvalidInput, "source_image", source_image="0" * 32)  # no such asset
    # Strings from a form are fine.
    assert env.kind.validate({"source_image": good, "target_image": good, "source_face_index": "1",
                              "target_face_indices": "0,2", "paste_back": "false"}) == {
        "source_image": good, "target_image": good, "source_face_index": 1, "target_face_indices": [0, 2],
        "paste_back": False, "restore": False,
    }


def test_asset_ids_as_inputs_and_alpha_kept(env):
    target = face_test_pattern(squares=TWO)
    alpha = np.full(target.shape[:2], 255, dtype=np.uint8)
    alpha[:40] = 0  # a transparent band on top
    asset = env.store.save_bytes(image_input.encode_png(target, alpha=alpha), "image/png")
    job = swap(env, source_image=b64(source_picture()), target_image=asset.id)
    assert job.state == "succeeded", job.error
    out = result_image(env, job)
    assert np.array_equal(out.alpha, alpha)
    assert changed(target, out.pixels).any()


def test_large_picture_detected_small_and_swapped_at_full_size(env):
    squares = ((400, 400, 256), (1600, 700, 256))
    target = face_test_pattern(2560, 1440, squares=squares)
    job = swap(env, source_image=b64(source_picture()), target_image=b64(target))
    assert job.state == "succeeded", job.error
    r = job.result
    assert r["detection_scale"] == {"source": 1.0, "target": 0.75}  # 2560 -> 1920 px
    assert (r["width"], r["height"]) == (2560, 1440)
    for face, square in zip(r["target_faces"], squares):
        assert iou(face["box"], square_box(*square)) > 0.9  # boxes mapped back to full size
    out = result_image(env, job).pixels
    diff = changed(target, out)
    assert inside(diff, [f["region"] for f in r["target_faces"]])
    for x, y, s in squares:
        assert diff[y + 40 : y + s - 40, x + 40 : x + s - 40].mean() > 0.5


def test_paste_back_false_gives_aligned_faces(env):
    job = swap(env, source_image=b64(source_picture()), target_image=b64(face_test_pattern(squares=TWO)),
               paste_back=False, target_face_indices=[1, 0])
    assert job.state == "succeeded", job.error
    r = job.result
    assert r["paste_back"] is False and [f["index"] for f in r["faces"]] == [1, 0]
    assert r["asset_id"] == r["faces"][0]["asset_id"] and (r["width"], r["height"]) == (128, 128)
    for face in r["faces"]:
        crop = image_input.decode_image(env.store.read_bytes(face["asset_id"]))
        assert crop.pixels.shape == (128, 128, 3)
        assert np.asarray(face["matrix"]).shape == (2, 3)


# --------------------------------------------------------------------------- providers and residency


def test_provider_selection_follows_the_profile(env, models_dir, monkeypatch):
    # Here (tiny profile, no CUDA): CPU, really in use, for every session.
    job = swap(env, source_image=b64(source_picture()), target_image=b64(face_test_pattern(squares=TWO)))
    assert job.result["providers"] == {"faces": [CPU_PROVIDER], "swapper": [CPU_PROVIDER]}
    assert job.result["provider"] == CPU_PROVIDER and "provider_warning" not in job.result

    # On a CUDA device the adapters ask for CUDA first (a tight arena, heuristic
    # cuDNN search), then CPU; checked at the loader boundary, without loading anything.
    from enfoads.models.adapters import ORT_CUDA_OPTIONS
    from enfoads.models.loaders import faces as loaders

    cuda = (CUDA_PROVIDER, {"device_id": "0", **ORT_CUDA_OPTIONS})

    calls = []

    class Stop(Exception):
        pass

    def record(name):
        def fake(*args, **kwargs):
            calls.append((name, kwargs))
            raise Stop

        return fake

    monkeypatch.setattr(loaders, "load_face_analysis", record("analysis"))
    monkeypatch.setattr(loaders, "load_swapper", record("swapper"))
    for role in ("faces", "swapper"):
        adapter = adapter_for(env.rt.entry(role), env.rt.choice(role), models_dir)
        assert adapter.providers_for("cuda:0") == [cuda, CPU_PROVIDER]
        assert adapter.providers_for("cpu") == [CPU_PROVIDER]
        with pytest.raises(Stop):
            adapter.load("cuda:0")
    assert [c[1]["providers"] for c in calls] == [[cuda, CPU_PROVIDER]] * 2
    assert calls[0][1]["det_size"] == (640, 640)

    # A T4 runtime (CUDA hardware, t4 profile) places both models on "cuda:0"
    # and the service expects CUDA (it would warn on a CPU fall-back).
    t4 = Hardware(cuda=True, device_name="Tesla T4", vram_total_bytes=15 * 1024**3, cuda_version="12.4",
                  driver="550", ram_total_bytes=12 * 1024**3, ram_available_bytes=11 * 1024**3, cpu_count=2)
    rt = build_runtime(Settings(profile="t4", models_dir=models_dir, data_dir=env.store.data_dir / "t4"), t4)
    try:
        assert rt.residency.device_for("gpu") == "cuda:0"
        assert all(rt.choice(role).device == "gpu" for role in ("faces", "swapper"))
        assert faces_service.FaceSwapper(rt)._wants_cuda()
        assert not faces_service.FaceSwapper(env.rt)._wants_cuda()
        assert all(row["tier"] is None for row in rt.residency.stats().models)  # nothing loaded
    finally:
        rt.residency.close()


def test_eviction_closes_sessions_and_the_next_swap_rebuilds_them(models_dir, tmp_path, hardware):
    from enfoads.models.loaders import faces as loaders

    # ~4 MiB of simulated GPU: the 2.8 MB pack and the 2.7 MB swapper cannot share it.
    env = make_env(models_dir, tmp_path, hardware, gpu_mib=4)
    faces_key, swapper_key = env.rt.model_key("faces"), env.rt.model_key("swapper")
    params = dict(source_image=b64(source_picture()), target_image=b64(face_test_pattern(squares=TWO)))

    def rows():
        return {r["id"]: r for r in env.rt.residency.stats().models}

    try:
        first = swap(env, **params)
        assert first.state == "succeeded", first.error
        assert rows()[faces_key]["tier"] is None and rows()[swapper_key]["tier"] == "gpu"
        assert rows()[faces_key]["evictions"] == 1

        # Watch every ONNX Runtime session of a freshly loaded pack.
        with env.rt.residency.use(faces_key) as app:
            app.det_model.detect(face_test_pattern(), max_num=0)  # makes its fixed-shape copy too
            sessions = loaders._sessions(app)
            watched = [weakref.ref(s) for s in sessions.values()] + [weakref.ref(app)]
            del sessions
        del app
        assert len(watched) >= 6 and all(ref() is not None for ref in watched)
        assert rows()[swapper_key]["tier"] is None  # the swapper made room for it

        # While the next job runs with the swapper leased (the pack was evicted
        # to make room), the pack's sessions must already be gone: the service
        # keeps no reference to a model past its lease.
        seen = []

        def look(event):
            if getattr(event, "stage", "").startswith("swapping face 1"):
                seen.append([ref() is None for ref in watched])

        unsubscribe = env.queue.bus.subscribe(look)
        second = swap(env, **params)  # leases the pack (resident), then the swapper evicts it
        unsubscribe()
        assert second.state == "succeeded", second.error
        assert seen == [[True] * len(watched)]  # sessions closed and freed during the job

        third = swap(env, **params)  # rebuilt on use, same answer
        assert third.state == "succeeded", third.error
        assert rows()[faces_key]["loads"] == 3 and rows()[swapper_key]["loads"] == 3
        assert env.store.read_bytes(third.result["asset_id"]) == env.store.read_bytes(first.result["asset_id"])
        assert env.rt.residency.stats().over_budget_events == 0
    finally:
        close_env(env)


def test_importing_the_service_stays_light():
    import subprocess
    import sys

    code = (
        "import sys, enfoads.services.faces; "
        "heavy = {'insightface', 'onnxruntime', 'cv2', 'PIL', 'numpy'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
