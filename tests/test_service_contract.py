"""The service contract every job kind passes (like diffusers' shared pipeline tests).

One engine on the tiny kit, built by ``build_engine`` as the server builds
it; every kind it registers is checked the same way: what it declares, how it
refuses bad params, that validation is idempotent, and that a real job runs
through the real queue with ordered progress to a JSON result whose assets
exist. A new kind without a sample here fails ``test_every_kind_has_a_sample``.
"""
from __future__ import annotations

import base64
import io
import json
import math
import wave

import numpy as np
import pytest

from enfoads.engine import build_engine
from enfoads.errors import InvalidInput
from enfoads.work.events import JobProgress
from enfoads.services.options import Options
from enfoads.settings import Settings
from enfoads.models.tiny import build_tiny_kit
from enfoads.models.tiny.faces import face_test_pattern


def _png_b64(bgr: np.ndarray) -> str:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(bgr[:, :, ::-1]).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def _wav_b64(seconds: float = 1.0, rate: int = 16000) -> str:
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * math.pi * 440 * t) * 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return base64.b64encode(out.getvalue()).decode()


def _mp4_b64(seconds: float = 1.0) -> str:
    """A 32x24 px, 10 fps H.264 clip with an AAC tone, made by the ffmpeg the product uses."""
    import subprocess
    import tempfile

    import imageio_ffmpeg

    with tempfile.TemporaryDirectory() as work:
        out = f"{work}/clip.mp4"
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error",
                        "-f", "lavfi", "-i", f"testsrc=size=32x24:rate=10:duration={seconds}",
                        "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
                        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", out], check=True)
        return "data:video/mp4;base64," + base64.b64encode(open(out, "rb").read()).decode()


def samples() -> dict[str, dict]:
    """A small valid request per kind, with real inputs the tiny models can work on."""
    marked = face_test_pattern(squares=((272, 192, 128),))
    marked[230:260, 300:370] = 40  # another "identity" than a plain square
    return {
        "image.generate": {"prompt": "a red bicycle", "steps": 2, "seed": 7},
        "image.compare": {"prompt": "a red bicycle", "seed": 7, "a": {"steps": 1}, "b": {"steps": 2}},
        "faces.swap": {"source_image": _png_b64(marked), "target_image": _png_b64(face_test_pattern())},
        "speech.transcribe": {"audio": _wav_b64(), "response_format": "verbose_json"},
        "video.render": {"script": "Hello there.", "avatar_id": "default", "resolution": 144, "fps": 10},
        "video.render_multi": {"scenes": [{"script": "Hello.", "avatarId": "default"},
                                          {"script": "Goodbye.", "avatarId": "default"}],
                               "resolution": 144, "fps": 10},
        "enhance.image": {"media": _png_b64(face_test_pattern(64, 48, squares=((16, 8, 32),))), "scale": 2},
        "enhance.video": {"media": _mp4_b64(), "scale": 2},
        "video.live_portrait": {"image": _png_b64(face_test_pattern()), "audio": _wav_b64(0.6), "fps": 10},
    }


SAMPLES = samples()


def _asset_ids(node) -> set[str]:
    """Every asset id a result names, at any depth (``asset_id``, ``*_asset_id``, ``*asset_ids``)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key.endswith("asset_id") and isinstance(value, str):
                found.add(value)
            elif key.endswith("asset_ids") and isinstance(value, list):
                found.update(v for v in value if isinstance(v, str))
            else:
                found |= _asset_ids(value)
    elif isinstance(node, list):
        for value in node:
            found |= _asset_ids(value)
    return found


@pytest.fixture(scope="module")
def engine(models_dir, tmp_path_factory):
    build_tiny_kit(models_dir)
    settings = Settings(profile="tiny", models_dir=models_dir, data_dir=tmp_path_factory.mktemp("contract"),
                        auto_download="off", warm="off")
    engine = build_engine(settings)
    yield engine
    engine.close()


def test_every_kind_has_a_sample(engine):
    assert set(engine.kinds) == set(SAMPLES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_the_kind_declares_its_name_device_and_options(engine, name):
    kind = engine.kinds[name]
    assert kind.name == name and kind.device in ("gpu", "cpu")
    assert issubclass(kind.options, Options)
    schema = kind.options.request_schema()
    assert schema["type"] == "object" and schema["properties"]
    assert callable(kind.handler) and callable(kind.validate)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_bad_params_are_refused_naming_the_field(engine, name):
    kind = engine.kinds[name]
    with pytest.raises(InvalidInput) as info:
        kind.validate(["not", "an", "object"])
    assert info.value.status == 400
    required = kind.options.request_schema().get("required", [])
    for field in required:
        params = {k: v for k, v in SAMPLES[name].items() if k != field}
        with pytest.raises(InvalidInput) as info:
            kind.validate(params)
        assert field in info.value.message, info.value.message
    assert required or name == "image.compare"  # every kind needs something, or says why not


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_validation_is_json_idempotent_and_ignores_unknown_keys(engine, name):
    kind = engine.kinds[name]
    valid = kind.validate({**SAMPLES[name], "zz_not_an_option": 1})
    assert "zz_not_an_option" not in valid
    assert json.loads(json.dumps(valid)) == valid  # what the job row stores
    assert kind.validate(valid) == valid


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_a_job_runs_through_the_queue_with_ordered_progress_to_a_json_result(engine, name):
    job = engine.submit_and_wait(name, SAMPLES[name], timeout=240)
    assert job.state == "succeeded", job.error
    assert job.progress == 100 and json.loads(json.dumps(job.result)) == job.result
    progress = [e.progress for e in engine.bus.events_since(0, job_id=job.id) if isinstance(e, JobProgress)]
    assert progress and progress == sorted(progress) and all(0 <= p <= 100 for p in progress)
    saved = {asset.id for asset in engine.assets.list(job_id=job.id, limit=1000)}
    named = _asset_ids(job.result)
    assert named, job.result  # every kind makes something, and its result says where
    # Its own outputs, or (an identical request served from the cache) the earlier job's.
    assert named <= saved or job.result.get("cached") is True
    for asset_id in named | saved:
        assert engine.assets.read_bytes(asset_id)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_a_cancelled_job_ends_cancelled_never_failed(engine, name):
    job = engine.submit(name, SAMPLES[name])
    engine.jobs.cancel(job.id)
    done = engine.jobs.wait(job.id, timeout=240)
    assert done.state in ("cancelled", "succeeded"), done.error  # it may have finished first
