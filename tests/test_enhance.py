"""Enhance end to end: the frontend's /enhance-media, the native job kinds, the models behind them.

Everything runs on the tiny kit through the product's loaders: random-weight
Real-ESRGAN (RRDBNet, SRVGGNetCompact) and GFPGAN state dicts in the release
files' key layouts, detected and loaded by spandrel; real InsightFace-format
detection for the faces; real ffmpeg for the videos.
"""
from __future__ import annotations

import base64
import io
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import PREFIX
from enfoads.models.catalog import CATALOG
from enfoads.models.loaders.upscale import NotAnEnhanceModel, load_spandrel, read_model_file
from enfoads.models.runtime import build_runtime
from enfoads.models.tiny import ensure_tiny
from enfoads.models.tiny.faces import face_test_pattern
from enfoads.models.user_upscalers import UNKNOWN_LICENCE
from enfoads.services.enhance_models import EnhanceModels
from enfoads.settings import Settings
from test_api import decode_data_uri, frontend_login, png_b64
from test_service_contract import _mp4_b64

FFMPEG = None


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def png_uri(pixels_bgr: np.ndarray) -> str:
    return "data:image/png;base64," + png_b64(pixels_bgr)


def noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return (np.random.RandomState(seed).rand(height, width, 3) * 255).astype(np.uint8)


def wait_job(api, job_id: str, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while (job := api.get(f"/api/jobs/{job_id}").get_json())["status"] not in ("completed", "failed", "cancelled"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    return job


def streams(path: Path) -> list[str]:
    out = subprocess.run([ffmpeg(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    return [line.split(": ", 1)[1].strip() for line in out.splitlines() if line.strip().startswith("Stream #")]


# --------------------------------------------------------------------------- the models


@pytest.mark.parametrize("model_id,architecture,scale,purpose", [
    ("tiny-realesrgan-x4plus", "ESRGAN", 4, "SR"),
    ("tiny-realesr-general-x4v3", "Compact", 4, "SR"),
    ("tiny-gfpgan", "GFPGAN", 1, "FaceSR"),
])
def test_tiny_kit_files_are_detected_by_spandrel_like_the_releases(models_dir, model_id, architecture, scale,
                                                                   purpose):
    entry = CATALOG[model_id]
    path = ensure_tiny(models_dir, entry.tiny) / entry.options["file"]
    # The real release's file name, and its top-level key (params_ema / params), which spandrel unwraps.
    real = CATALOG[model_id.removeprefix("tiny-").replace("gfpgan", "gfpgan-v1.4")]
    assert path.name == real.options["file"]
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert list(raw) == (["params"] if architecture == "Compact" else ["params_ema"])
    facts = read_model_file(path)
    assert (facts.architecture, facts.scale, facts.purpose) == (architecture, scale, purpose)
    model = load_spandrel(path, device="cpu", dtype="float16")
    # fp16 only where spandrel says the architecture supports it; GFPGAN stays float32.
    assert str(model.dtype) == ("torch.float32" if architecture == "GFPGAN" else "torch.float16")


def test_real_catalogue_entries_are_pinned_release_files():
    for model_id in ("realesrgan-x4plus", "realesrgan-x4plus-anime-6b", "realesr-general-x4v3", "gfpgan-v1.4"):
        entry = CATALOG[model_id]
        src = entry.sources["model"]
        assert src.url.startswith(("https://github.com/xinntao/Real-ESRGAN/releases/download/",
                                   "https://github.com/TencentARC/GFPGAN/releases/download/"))
        assert src.filename == entry.options["file"] and len(src.sha256) == 64 and src.bytes == entry.download_bytes
        # Never the user's drop-in folder.
        assert src.unpack_to == f"enhance/{model_id}"
        assert entry.licence and entry.staging_bytes >= src.bytes


def test_not_a_model_and_truncated_files_are_refused_with_the_reason(tmp_path, models_dir):
    text = tmp_path / "notes.pth"
    text.write_text("not a model")
    with pytest.raises(NotAnEnhanceModel, match="not a readable model file"):
        read_model_file(text)
    good = ensure_tiny(models_dir, "tiny-upscalers") / "RealESRGAN_x4plus.pth"
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(NotAnEnhanceModel, match="not a readable model file"):
        read_model_file(cut)
    lora = tmp_path / "lora.safetensors"
    from safetensors.torch import save_file

    save_file({"lora_unet_down.lora_up.weight": torch.zeros(4, 4)}, str(lora))
    with pytest.raises(NotAnEnhanceModel, match="not an architecture spandrel recognises"):
        read_model_file(lora)
    with pytest.raises(NotAnEnhanceModel, match="not a .pth or .safetensors"):
        read_model_file(tmp_path / "model.onnx")


@pytest.fixture
def drop_in_runtime(tmp_path, models_dir):
    """A tiny-profile runtime whose models dir has an ``upscale/`` folder of its own."""
    own = tmp_path / "models"
    (own / "enfoads-tiny").mkdir(parents=True)
    for recipe in ("tiny-upscalers", "tiny-gfpgan", "tiny-buffalo_l"):
        (own / "enfoads-tiny" / recipe).symlink_to(ensure_tiny(models_dir, recipe))
    (own / "upscale").mkdir()
    runtime = build_runtime(Settings(profile="tiny", models_dir=own, data_dir=tmp_path / "data", warm="off",
                                     auto_download="off"))
    yield runtime, own / "upscale"
    runtime.close()


def _codeformer_like(path: Path) -> None:
    # Only the keys spandrel_extra_arches' CodeFormer detector looks for: refused before any load.
    keys = ("position_emb", "idx_pred_layer.1.weight", "quantize.embedding.weight",
            "ft_layers.0.self_attn.in_proj_weight", "encoder.blocks.0.weight")
    torch.save({"params_ema": {k: torch.zeros(2, 2) for k in keys}}, path)


def test_drop_in_models_are_listed_detected_and_usable(drop_in_runtime, models_dir):
    runtime, folder = drop_in_runtime
    shutil.copy(ensure_tiny(models_dir, "tiny-upscalers") / "realesr-general-x4v3.pth", folder / "my-x4.pth")
    (folder / "junk.pth").write_text("hello")
    _codeformer_like(folder / "codeformer.pth")
    models = EnhanceModels(runtime)
    listed = {m["id"]: m for m in models.listing()}
    mine = listed["upscale:my-x4"]
    assert mine["valid"] and mine["architecture"] == "Compact" and mine["scale"] == 4
    assert mine["licence"] == UNKNOWN_LICENCE and mine["source"] == "drop-in"
    assert not listed["upscale:junk"]["valid"] and "not a readable model file" in listed["upscale:junk"]["reason"]
    restricted = listed["upscale:codeformer"]
    assert not restricted["valid"] and restricted["restricted"] and restricted["architecture"] == "CodeFormer"
    assert "ENFOADS_ALLOW_RESTRICTED_UPSCALERS" in restricted["reason"]
    # The catalogue's tiny models are listed too, the profile's marked default.
    assert listed["tiny-realesrgan-x4plus"]["default"] and listed["tiny-gfpgan"]["role"] == "restore"

    chosen = models.resolve("upscale:my-x4", "upscale", field="model")
    assert chosen.scale == 4
    with runtime.residency.use(chosen.key) as model:
        out = model(torch.rand(1, 3, 8, 8))
    assert tuple(out.shape) == (1, 3, 32, 32)
    from enfoads.errors import InvalidInput

    with pytest.raises(InvalidInput, match="cannot be used") as info:
        models.resolve("upscale:codeformer", "upscale", field="model")
    assert set(info.value.fields) == {"model"} and "ENFOADS_ALLOW_RESTRICTED_UPSCALERS" in info.value.fields["model"]
    with pytest.raises(InvalidInput, match="is a face restorer"):
        models.resolve("tiny-gfpgan", "upscale", field="model")
    with pytest.raises(InvalidInput, match="unknown upscaler"):
        models.resolve("x9000", "upscale", field="model")


# --------------------------------------------------------------------------- the frontend's route


def test_enhance_media_image_from_a_data_uri_and_from_our_own_url(client, api):
    headers = frontend_login(client)
    r = client.post(PREFIX + "/enhance-media", json={"media_url": png_uri(noise(20, 30)), "type": "image"},
                    headers=headers)
    assert r.status_code == 200, r.text
    body = r.get_json()
    assert body["status"] == "success" and (body["width"], body["height"]) == (120, 80)
    assert decode_data_uri(body["image"]).size == (120, 80)
    assert client.get(body["url"]).headers["Content-Type"] == "image/png"
    # Our own signed URL goes in again (the frontend has the URL of an earlier result), at scale 2.
    r = client.post(PREFIX + "/enhance-media", json={"media_url": body["url"], "type": "image", "scale": 2},
                    headers=headers)
    assert r.status_code == 200, r.text
    assert decode_data_uri(r.get_json()["image"]).size == (240, 160)
    # A forged signature is a 403; another site's URL is never fetched: a 400 naming the field.
    forged = body["url"].replace("sig=", "sig=0")
    assert client.post(PREFIX + "/enhance-media", json={"media_url": forged}, headers=headers).status_code == 403
    for url in ("https://example.com/cat.png", "http://169.254.169.254/latest/meta-data", "file:///etc/passwd"):
        r = client.post(PREFIX + "/enhance-media", json={"media_url": url}, headers=headers)
        assert r.status_code == 400 and r.get_json()["message"].startswith("media_url: "), url
        assert "never fetched" in r.get_json()["message"]


def test_enhance_media_refuses_bad_input_by_name(client, api, app):
    from enfoads.web.state import EXTENSION

    headers = frontend_login(client)
    uploads = app.extensions[EXTENSION].holder.get(timeout=60).assets

    def post(body):
        return client.post(PREFIX + "/enhance-media", json=body, headers=headers)

    r = post({"media_url": png_uri(noise(8, 1100)), "type": "image"})  # x4: 4400 px wide, over 4096
    assert r.status_code == 413 and "4096" in r.get_json()["message"] and "scale of at most 3" in r.get_json()["message"]
    assert post({"media_url": png_uri(noise(8, 8)), "scale": 8}).status_code == 400
    assert "enlarges x4" in post({"media_url": png_uri(noise(8, 8)), "scale": 8}).get_json()["message"]
    assert post({"media_url": png_uri(noise(8, 8)), "model": "nope"}).get_json()["message"].startswith("model: ")
    assert post({"media_url": "data:image/png;base64,iVBORw0KGgo="}).status_code in (400, 415)
    assert post({"media_url": png_uri(noise(8, 8)), "type": "gif"}).status_code == 400
    assert post({}).get_json()["message"].startswith("media_url: ")
    # A truncated video is refused before anything is queued.
    clip = _mp4_b64()
    head, data = clip.split(",", 1)
    raw = base64.b64decode(data)
    cut = head + "," + base64.b64encode(raw[: len(raw) // 2]).decode()
    kept = len(uploads.list(kind="upload", limit=1000))
    r = post({"media_url": cut, "type": "video"})
    assert r.status_code == 400 and "media" in r.get_json()["message"]
    assert len(uploads.list(kind="upload", limit=1000)) == kept  # the refused upload was not kept


def test_enhance_media_video_is_a_job_with_the_rendered_videos_format(client, api, app, tmp_path):
    headers = frontend_login(client)
    r = client.post(PREFIX + "/enhance-media", json={"media_url": _mp4_b64(1.0), "type": "video", "scale": 2},
                    headers=headers)
    assert r.status_code == 202, r.text
    job = wait_job(api, r.get_json()["job_id"])
    assert job["status"] == "completed", job
    result = job["result"]
    assert (result["width"], result["height"], result["frames"]) == (64, 48, 10)
    assert result["audio"] == "copied" and result["input"]["frames"] == 10
    video = client.get(job["url"])
    assert video.headers["Content-Type"] == "video/mp4"
    out = tmp_path / "out.mp4"
    out.write_bytes(video.data)
    kinds = streams(out)
    assert len(kinds) == 2 and kinds[0].startswith("Video: h264") and "yuv420p" in kinds[0] and "64x48" in kinds[0]
    assert kinds[1].startswith("Audio: aac")


# --------------------------------------------------------------------------- faces


def test_face_restore_changes_only_the_faces(app):
    from enfoads.web.state import EXTENSION

    eng = app.extensions[EXTENSION].holder.get(timeout=60)
    picture = png_uri(face_test_pattern(320, 240, squares=((112, 72, 96),)))
    plain = eng.submit_and_wait("enhance.image", {"media": picture, "scale": 1}, timeout=120)
    faces = eng.submit_and_wait("enhance.image", {"media": picture, "scale": 1, "face_restore": True}, timeout=120)
    assert plain.state == faces.state == "succeeded", (plain.error, faces.error)
    assert faces.result["faces_found"] == faces.result["faces_restored"] == 1
    a = np.asarray(Image.open(io.BytesIO(eng.assets.read_bytes(plain.result["asset_id"]))).convert("RGB"), np.int16)
    b = np.asarray(Image.open(io.BytesIO(eng.assets.read_bytes(faces.result["asset_id"]))).convert("RGB"), np.int16)
    changed = np.argwhere(np.any(a != b, axis=2))
    assert len(changed) > 500  # GFPGAN (random weights) repainted the face
    (y1, x1), (y2, x2) = changed.min(axis=0), changed.max(axis=0)
    # Only around the square (its aligned 512 crop maps to about twice its size), never the corners.
    assert 20 <= x1 and x2 <= 300 and 0 <= y1 and y2 <= 239
    assert not np.any(a[:20, :20] != b[:20, :20]) and not np.any(a[-20:, -20:] != b[-20:, -20:])


def test_face_swap_with_restore(client, api):
    headers = frontend_login(client)
    marked = face_test_pattern(squares=((272, 192, 128),))
    marked[230:260, 300:370] = 40
    body = {"source_image": png_b64(marked), "target_image": png_b64(face_test_pattern()), "restore": True}
    r = client.post(PREFIX + "/face-swap", json=body, headers=headers)
    assert r.status_code == 200, r.text
    job = api.get(f"/api/jobs/{r.get_json()['job_id']}").get_json()
    assert job["result"]["restored_faces"] == 1
    spec = api.get("/openapi.json").get_json()
    assert "restore" in spec["paths"]["/face-swap"]["post"]["requestBody"]["content"]["application/json"]["schema"][
        "properties"]


def test_models_lists_the_enhance_models(api):
    models = api.get("/models").get_json()
    roles = {m["role"]: m for m in models["models"]}
    assert roles["upscale"]["id"] == "tiny-realesrgan-x4plus" and roles["restore"]["id"] == "tiny-gfpgan"
    ids = {m["id"] for m in models["enhance_models"]}
    assert {"tiny-realesrgan-x4plus", "tiny-realesr-general-x4v3", "tiny-gfpgan"} <= ids


# --------------------------------------------------------------------------- preload


def test_preload_fetches_a_release_file_verifies_it_and_the_registry_finds_it(tmp_path, models_dir, monkeypatch):
    """The real entry, its URL pointed at the fake hub's release server on 127.0.0.1 (as the overrides do)."""
    import hashlib
    from dataclasses import replace

    from huggingface_hub import constants

    from enfoads.models import registry
    from enfoads.models.preload import preload, verify_installed
    from hub_server import standard_hub

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    content = (ensure_tiny(models_dir, "tiny-upscalers") / "realesr-general-x4v3.pth").read_bytes()
    real = CATALOG["realesr-general-x4v3"]
    cache = tmp_path / "models"
    with standard_hub() as hub:
        hub.add_archive("realesr-general-x4v3.pth", content)

        def entry_with(sha256: str):
            src = replace(real.sources["model"], url=hub.archive_url("realesr-general-x4v3.pth"), sha256=sha256,
                          bytes=len(content))
            return replace(real, sources={"model": src}, download_bytes=len(content))

        bad = preload([entry_with("0" * 64)], models_dir=cache, endpoint=hub.endpoint, progress=False, out=None)
        assert not bad.ok and not (cache / "enhance").exists()  # a wrong digest places nothing
        entry = entry_with(hashlib.sha256(content).hexdigest())
        report = preload([entry], models_dir=cache, endpoint=hub.endpoint, progress=False, out=None)
    assert report.ok, report.table()
    placed = cache / "enhance" / "realesr-general-x4v3" / "realesr-general-x4v3.pth"
    assert placed.read_bytes() == content
    assert registry.local_paths(entry, cache)["model"] == placed
    assert all(r.ok for r in verify_installed(cache))
    assert read_model_file(placed).architecture == "Compact"


def test_a_cancel_stops_a_video_between_batches_and_leaves_nothing(app, tmp_path):
    """The job's progress raises on a cancel: the ffmpeg pipes stop, the half-written output is gone."""
    from enfoads.services.enhance_video import probe_video
    from enfoads.services.enhance_video_job import VideoEnhancer
    from enfoads.web.state import EXTENSION

    eng = app.extensions[EXTENSION].holder.get(timeout=60)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(base64.b64decode(_mp4_b64(3.0).split(",", 1)[1]))
    videos = VideoEnhancer(eng.enhance)
    params = videos.validate({"media": _mp4_b64(3.0), "scale": 2})
    info = probe_video(clip, ffmpeg=eng.enhance.ffmpeg)
    calls = []

    class Cancelled(Exception):
        pass

    def progress(percent, stage):
        calls.append(stage)
        if len(calls) == 2:
            raise Cancelled()

    out = tmp_path / "out.mp4"
    with pytest.raises(Cancelled):
        videos.run(params, clip, out, info, progress=progress)
    assert calls == ["frame 8 of 30", "frame 16 of 30"] and not out.exists()
    # The leases ended: the upscaler can be leased again at once.
    with eng.runtime.residency.use(params["model"]):
        pass
