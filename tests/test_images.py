"""Image generation through the real tiny SDXL-Lightning kit, the real runtime and a real job queue."""
from __future__ import annotations

import io
import time

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from enfoads.work import events as ev
from enfoads.work.assets import AssetStore
from enfoads.errors import InvalidInput
from enfoads.work.events import RecordingBus
from enfoads.work.jobs import JobQueue
from enfoads.models.profiles import detect_hardware
from enfoads.models.runtime import build_runtime
from enfoads.services import images
from enfoads.services.image_options import ASPECT_RATIOS
from enfoads.services.images import ImageService
from enfoads.services.previews import MAX_PREVIEW_BYTES
from enfoads.settings import Settings
from enfoads.models.tiny.sdxl import LIGHTNING_UNET_FILES

MIB = 1024**2


@pytest.fixture(scope="module")
def env(models_dir, tmp_path_factory):
    """One tiny runtime, one service, one queue (with assets and a recording bus) for the module."""
    data = tmp_path_factory.mktemp("images-data")
    settings = Settings(profile="tiny", models_dir=models_dir, data_dir=data, gpu_budget_gb=64 / 1024,
                        ram_budget_gb=1.0)
    rt = build_runtime(settings, detect_hardware())
    service = ImageService(rt)
    bus = RecordingBus(data)
    queue = JobQueue(data, assets=AssetStore(data), bus=bus)
    for kind in service.job_kinds():
        queue.register(kind.name, kind.handler, device=kind.device)
    queue.start()
    yield {"rt": rt, "service": service, "queue": queue, "bus": bus, "assets": queue.assets}
    queue.close(grace_s=5)
    service.close()
    rt.close()


def run(env, params, kind="image.generate", timeout=60):
    service = env["service"]
    valid = service.validate_compare(params) if kind == "image.compare" else service.validate(params)
    job = env["queue"].submit_and_wait(kind, valid, timeout=timeout)
    assert job.state == "succeeded", job.error
    return job


def image_of(env, asset_id):
    return Image.open(io.BytesIO(env["assets"].read_bytes(asset_id)))


# ------------------------------------------------------------------ sizes


@pytest.mark.slow
def test_every_aspect_ratio_gives_its_exact_size(env):
    # One real 1-step render per ratio at full size (the tiny model is cheap; the VAE decode is most of it).
    for ratio, (w, h) in ASPECT_RATIOS.items():
        job = run(env, {"prompt": "a poster", "aspect_ratio": ratio, "steps": 1, "seed": 1,
                        "preview_every": 1 if ratio == "21:9" else 0, "format": "jpeg", "cache": False})
        r = job.result
        assert (r["width"], r["height"]) == (w, h), ratio
        img = image_of(env, r["images"][0]["asset_id"])
        assert img.size == (w, h) and img.format == "JPEG"
        asset = env["assets"].get(r["images"][0]["asset_id"])
        assert (asset.width, asset.height) == (w, h)
        if ratio == "21:9":
            (p,) = r["previews"]
            assert p["bytes"] <= MAX_PREVIEW_BYTES and (p["width"], p["height"]) == (w // 8, h // 8)


def test_explicit_size_and_profile_default(env):
    r = run(env, {"prompt": "a lamp", "width": 256, "height": 320, "cache": False}).result
    assert (r["width"], r["height"]) == (256, 320) and image_of(env, r["image_asset_id"]).size == (256, 320)
    r = run(env, {"prompt": "a lamp", "cache": False}).result
    assert (r["width"], r["height"]) == (64, 64)  # the tiny profile's default size


def test_512px_models_get_ratios_scaled_to_their_native_size(env):
    service = env["service"]
    assert service._size({"aspect_ratio": "16:9"}, 512, "sd-turbo") == (672, 384)
    assert service._size({"aspect_ratio": "9:21"}, 512, "sd-turbo") == (320, 768)
    assert service._size({"aspect_ratio": "16:9"}, 1024, "x") == (1344, 768)
    assert service._size({"width": 1024, "height": 512}, 512, "sd-turbo") == (1024, 512)


# ------------------------------------------------------------------ what runs


def test_frontend_speed_mode_runs_lightning_at_guidance_zero(env):
    r = run(env, {"prompt": "a shoe", "aspect_ratio": None, "steps": 4, "guidance": 2, "negative_prompt": "",
                  "style": "Photograph", "seed": 5}).result
    assert r["mode"] == "lightning" and r["steps"] == 4 and r["unet"] == LIGHTNING_UNET_FILES[4]
    assert r["guidance_used"] == 0.0 and r["guidance_requested"] == 2.0
    assert r["pipeline"]["cfg"] is False and r["pipeline"]["timestep_spacing"] == "trailing"
    assert r["pipeline"]["timesteps"] == [999, 749, 499, 249]
    assert any("guidance 0" in n for n in r["notes"])
    assert r["prompt"].startswith("photograph of a shoe") and r["style"] == "Photograph"
    # The tiny kit's tokenizer is nearly per-character: this styled prompt overflows its 77-token window.
    assert any("ignore the rest" in n for n in r["notes"])


@pytest.mark.parametrize("steps,guidance", [(30, 7), (10, 1), (50, 20), (3, 4.5)])
def test_frontend_quality_mode_and_sliders_run_the_quality_model(env, steps, guidance):
    r = run(env, {"prompt": "a shoe", "steps": steps, "guidance": guidance, "seed": 2, "preview_every": 0}).result
    assert r["mode"] == "quality" and r["model"] == "tiny-sdxl-base"
    assert r["steps"] == steps and len(r["pipeline"]["timesteps"]) == steps
    assert r["guidance_used"] == guidance and r["pipeline"]["cfg"] is (guidance > 1)
    assert r["pipeline"]["timestep_spacing"] == "leading"  # SDXL base's own scheduler config


@pytest.mark.parametrize("steps", [1, 2, 8])
def test_lightning_checkpoint_matches_the_step_count(env, models_dir, steps):
    r = run(env, {"prompt": "a kite", "steps": steps, "seed": 3, "preview_every": 0}).result
    assert r["steps"] == steps and r["unet"] == LIGHTNING_UNET_FILES[steps]
    assert len(r["pipeline"]["timesteps"]) == steps and r["pipeline"]["timesteps"][0] == 999
    assert r["pipeline"]["prediction_type"] == ("sample" if steps == 1 else "epsilon")
    # Inspect the resident pipeline itself, not what we meant to configure.
    kit = env["service"].lightning_layout()["unet_dir"]
    expected = load_file(str(kit / LIGHTNING_UNET_FILES[steps]))
    rt = env["rt"]
    with rt.residency.use(rt.model_key("image")) as pipe:
        assert pipe.scheduler.config.timestep_spacing == "trailing"
        assert pipe.scheduler.config.prediction_type == ("sample" if steps == 1 else "epsilon")
        state = pipe.unet.state_dict()
        for name in list(expected)[:: max(1, len(expected) // 20)]:
            assert torch.equal(state[name].to(torch.float16), expected[name]), name
        device = str(pipe.unet.device)
        assert str(pipe.unet.dtype) == ("torch.float16" if device.startswith("cuda") else "torch.float32")
        assert r["pipeline"]["dtype"] == str(pipe.unet.dtype).replace("torch.", "")
        assert pipe.vae.config.force_upcast is True  # no fp16 VAE overflow without the fp16-fix VAE


def test_swapping_checkpoints_keeps_fp16(models_dir):
    from enfoads.models.loaders.image import load_sdxl_lightning, swap_unet_weights
    from enfoads.models.tiny import ensure_tiny

    kit = ensure_tiny(models_dir, "tiny-sdxl-lightning")
    pipe = load_sdxl_lightning(kit / "base", kit / LIGHTNING_UNET_FILES[4], dtype="float16")
    swap_unet_weights(pipe, kit / LIGHTNING_UNET_FILES[1], mode="lightning-x0")
    assert pipe.unet.dtype == torch.float16 and all(p.dtype == torch.float16 for p in pipe.unet.parameters())
    want = load_file(str(kit / LIGHTNING_UNET_FILES[1]))
    name = next(iter(want))
    assert torch.equal(pipe.unet.state_dict()[name], want[name])
    assert pipe.scheduler.config.prediction_type == "sample" and pipe.scheduler.config.timestep_spacing == "trailing"
    swap_unet_weights(pipe, kit / LIGHTNING_UNET_FILES[2], mode="lightning")
    assert pipe.scheduler.config.prediction_type == "epsilon"
    with pytest.raises(ValueError, match="does not match"):
        swap_unet_weights(pipe, kit / "base" / "text_encoder" / "model.fp16.safetensors", mode="lightning")
    assert torch.equal(pipe.unet.state_dict()[name], load_file(str(kit / LIGHTNING_UNET_FILES[2]))[name])


def test_explicit_lightning_model_picks_the_nearest_checkpoint(env):
    r = run(env, {"prompt": "a kite", "model": "lightning", "steps": 6, "guidance": 7, "seed": 4,
                  "preview_every": 0}).result
    assert r["mode"] == "lightning" and r["steps"] == 8 and r["guidance_used"] == 0.0
    assert any("nearest, 8 steps" in n for n in r["notes"])
    r = run(env, {"prompt": "a kite", "model": "base", "seed": 4, "preview_every": 0}).result
    assert r["mode"] == "quality" and r["steps"] == 30 and r["guidance_used"] == 5.0


# ------------------------------------------------------------------ determinism, batches, cache


def test_same_seed_same_bytes(env):
    params = {"prompt": "a blue cup", "seed": 1234, "cache": False, "preview_every": 0}
    a = run(env, params).result["images"][0]
    b = run(env, params).result["images"][0]
    c = run(env, {**params, "seed": 1235}).result["images"][0]
    assert a["asset_id"] != b["asset_id"]
    assert env["assets"].read_bytes(a["asset_id"]) == env["assets"].read_bytes(b["asset_id"])
    assert a["sha256"] == b["sha256"] != c["sha256"]


def test_seed_is_random_when_absent_and_always_returned(env):
    seeds = {env["service"].validate({"prompt": "x"})["seed"] for _ in range(5)}
    assert len(seeds) > 1 and all(0 <= s < 2**32 for s in seeds)
    r = run(env, {"prompt": "a blue cup", "preview_every": 0}).result
    assert isinstance(r["seed"], int) and r["seeds"] == [r["seed"]]


def test_n_images_in_one_batched_call(env):
    for fmt, mime, pil in (("webp", "image/webp", "WEBP"), ("png", "image/png", "PNG")):
        r = run(env, {"prompt": "a plant", "n": 3, "seed": 10, "format": fmt}).result
        assert len(r["images"]) == 3 and r["seeds"] == [10, 11, 12]
        assert len({i["sha256"] for i in r["images"]}) == 3
        assert len(r["pipeline"]["timesteps"]) == r["steps"]  # one denoising loop for the batch
        for i in r["images"]:
            assert i["mime"] == mime and image_of(env, i["asset_id"]).format == pil
    png = image_of(env, r["images"][0]["asset_id"])
    assert "Seed: 10" in png.text["parameters"]


def test_identical_request_is_served_from_the_cache(env):
    params = {"prompt": "a green door", "seed": 77, "aspect_ratio": None, "style": "Cinematic"}
    first = run(env, params).result
    again = run(env, params)
    assert again.result["cached"] is True and first["cached"] is False
    assert again.result["images"] == first["images"] and again.result["previews"] == first["previews"]
    assert again.result["asset_ids"] == first["asset_ids"] and first["asset_ids"][0] == first["image_asset_id"]
    assert env["assets"].list(job_id=again.id) == []  # nothing new was saved
    # Every parameter is in the key: the original ignored style and aspect ratio.
    for change in ({"style": "Comic Book"}, {"style": None}, {"width": 256, "height": 256}, {"seed": 78},
                   {"negative_prompt": "blur"}, {"steps": 2}, {"format": "webp"}, {"n": 2}):
        assert run(env, {**params, **change}).result["cached"] is False, change
    # A cache hit whose image was cleaned up renders again.
    env["assets"].delete(first["images"][0]["asset_id"])
    assert run(env, params).result["cached"] is False


# ------------------------------------------------------------------ progress, previews, cancel


def test_progress_and_previews_every_k_steps(env):
    job = run(env, {"prompt": "a tree", "steps": 8, "preview_every": 2, "seed": 9, "cache": False})
    r = job.result
    assert [p["step"] for p in r["previews"]] == [2, 4, 6, 8]
    events = [e for e in env["bus"].for_job(job.id) if isinstance(e, ev.JobProgress)]
    percents = [e.progress for e in events]
    assert all(isinstance(p, int) and 0 <= p <= 100 for p in percents)
    assert percents == sorted(percents)
    with_preview = [e for e in events if e.preview_asset_id]
    assert [e.preview_asset_id for e in with_preview] == [p["asset_id"] for p in r["previews"]]
    # Frames are encoded on a background lane while the next step runs: each one's event carries
    # the job's latest stage (its own step or a later one), so the progress never goes backwards.
    for event, frame_step in zip(with_preview, (2, 4, 6, 8)):
        assert event.stage == "saving" or int(event.stage.split()[1].split("/")[0]) >= frame_step, event.stage
    assert sorted(a.params["step"] for a in env["assets"].list(job_id=job.id, kind="preview")) == [2, 4, 6, 8]
    steps = [e for e in events if e.stage.startswith("step ") and not e.preview_asset_id]
    assert [e.stage for e in steps] == [f"step {i}/8" for i in range(1, 9)]  # progress on every step
    assert env["queue"].get(job.id).progress == 100
    assert r["asset_ids"] == r["image_asset_ids"] + [p["asset_id"] for p in r["previews"]]
    # The frames stay retrievable after the job, as small decodable images.
    frames = env["assets"].list(job_id=job.id, kind="preview")
    assert {a.id for a in frames} == {p["asset_id"] for p in r["previews"]}
    for a in frames:
        data = env["assets"].read_bytes(a.id)
        assert len(data) <= MAX_PREVIEW_BYTES
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            assert im.format == "WEBP" and im.size == (a.width, a.height)


def test_cancel_stops_at_the_next_step(env):
    queue, bus, service = env["queue"], env["bus"], env["service"]
    params = service.validate({"prompt": "a slow one", "steps": 40, "guidance": 3, "seed": 1, "cache": False})
    target = {}

    def on_event(e):
        if isinstance(e, ev.JobProgress) and e.job_id == target.get("id") and e.stage == "step 2/40":
            queue.cancel(e.job_id)  # from the worker thread: the next step boundary must stop it

    unsubscribe = bus.subscribe(on_event)
    try:
        job = queue.submit("image.generate", params)
        target["id"] = job.id
        done = queue.wait(job.id, timeout=60)
    finally:
        unsubscribe()
    assert done.state == "cancelled"
    stages = [e.stage for e in bus.for_job(job.id) if isinstance(e, ev.JobProgress)]
    assert "step 2/40" in stages and "step 3/40" not in stages
    assert not queue.assets.list(job_id=job.id, kind="image")
    # The pipeline is usable again afterwards.
    assert run(env, {"prompt": "after cancel", "seed": 1, "preview_every": 0}).result["images"]


# ------------------------------------------------------------------ validation


BAD = [
    ({}, "prompt"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": 12}, "prompt"),
    ({"prompt": "x" * 2001}, "prompt"),
    ({"negative_prompt": "y" * 2001}, "negative_prompt"),
    ({"style": "Nope"}, "style"),
    ({"style": 3}, "style"),
    ({"aspect_ratio": "5:4"}, "aspect_ratio"),
    ({"aspect_ratio": "1:1", "width": 512, "height": 512}, "aspect_ratio"),
    ({"width": 100, "height": 512}, "width"),
    ({"width": 1001, "height": 512}, "width"),
    ({"width": 512, "height": 2048}, "height"),
    ({"width": 512}, "height"),
    ({"steps": 0}, "steps"),
    ({"steps": 51}, "steps"),
    ({"steps": 2.5}, "steps"),
    ({"steps": "many"}, "steps"),
    ({"steps": True}, "steps"),
    ({"guidance": -1}, "guidance"),
    ({"guidance": 21}, "guidance"),
    ({"guidance": "high"}, "guidance"),
    ({"guidance_scale": 30}, "guidance_scale"),
    ({"guidance": 2, "guidance_scale": 3}, "guidance_scale"),
    ({"seed": -1}, "seed"),
    ({"seed": 2**32}, "seed"),
    ({"n": 0}, "n"),
    ({"n": 5}, "n"),
    ({"format": "gif"}, "format"),
    ({"model": "no-such-model"}, "model"),
    ({"model": "user:missing"}, "model"),
    ({"model": 7}, "model"),
    ({"preview_every": -1}, "preview_every"),
    ({"cache": "maybe"}, "cache"),
]


@pytest.mark.parametrize("change,field", BAD, ids=[f"{f}-{i}" for i, (_, f) in enumerate(BAD)])
def test_every_invalid_option_is_rejected_with_its_field(env, change, field):
    params = {"prompt": "a valid prompt", **change}
    if "prompt" in change and change["prompt"] is None or change == {}:
        params.pop("prompt", None)
    with pytest.raises(InvalidInput) as info:
        env["service"].validate(params)
    assert field in info.value.fields, info.value.fields
    assert info.value.status == 400 and field in info.value.message
    assert info.value.to_dict()["details"]["fields"][field]


def test_several_bad_fields_are_all_named_and_good_values_pass(env):
    with pytest.raises(InvalidInput) as info:
        env["service"].validate({"prompt": "", "steps": 99, "n": 9, "format": "bmp"})
    assert set(info.value.fields) == {"prompt", "steps", "n", "format"}
    ok = env["service"].validate({"prompt": " hi ", "steps": "30", "guidance": "7", "guidance_scale": 7.0,
                                  "seed": 3.0, "format": "JPG", "style": "sai anime", "aspect_ratio": "16:9"})
    assert ok["prompt"] == "hi" and ok["steps"] == 30 and ok["guidance"] == 7.0 and ok["seed"] == 3
    assert ok["format"] == "jpeg" and ok["style"] == "SAI Anime" and ok["aspect_ratio"] == "16:9"
    assert env["service"].validate(ok) == ok  # normalising twice changes nothing
    assert env["service"].validate({"prompt": "a", "guidance_scale": 4})["guidance"] == 4.0


# ------------------------------------------------------------------ compare


def test_compare_two_step_counts(env):
    job = run(env, {"prompt": "a windmill", "seed": 21, "steps": [2, 8], "width": 256, "height": 256},
              kind="image.compare")
    r = job.result
    a, b = r["a"], r["b"]
    assert a["seed"] == b["seed"] == r["seed"] == 21
    assert (a["steps"], b["steps"]) == (2, 8) and a["unet"] != b["unet"]
    assert len(a["previews"]) == 2 and len(b["previews"]) == 8
    left, right = image_of(env, a["image_asset_id"]), image_of(env, b["image_asset_id"])
    both = image_of(env, r["side_by_side"]["asset_id"])
    assert both.width >= left.width + right.width and both.height >= left.height
    assert r["labels"][0].endswith("2 steps, guidance 0") and r["labels"][1].endswith("8 steps, guidance 0")
    gif = image_of(env, r["animation"]["asset_id"])
    assert gif.format == "GIF" and gif.n_frames == 8
    # Everything the comparison made belongs to its job.
    mine = {x.id for x in env["assets"].list(job_id=job.id, limit=1000)}
    assert {a["image_asset_id"], b["image_asset_id"], r["side_by_side"]["asset_id"]} <= mine
    assert {p["asset_id"] for p in a["previews"] + b["previews"]} <= mine
    assert set(r["asset_ids"]) == mine
    assert r["image_asset_ids"] == [r["side_by_side"]["asset_id"], a["image_asset_id"], b["image_asset_id"]]


def test_compare_validation(env):
    service = env["service"]
    with pytest.raises(InvalidInput) as info:
        service.validate_compare({"prompt": "x", "a": {"steps": 4}, "b": {"steps": 4}})
    assert "b" in info.value.fields
    with pytest.raises(InvalidInput) as info:
        service.validate_compare({"prompt": "x", "a": {"steps": 99}, "b": {"model": "nope"}})
    assert {"a.steps", "b.model"} <= set(info.value.fields)
    with pytest.raises(InvalidInput) as info:
        service.validate_compare({"prompt": "x", "models": ["auto"], "n": 2})
    assert {"models", "n"} <= set(info.value.fields)
    ok = service.validate_compare({"prompt": "x", "models": ["lightning", "base"], "seed": 1})
    assert ok["a"] == {"model": "lightning"} and ok["b"] == {"model": "base"} and ok["n"] == 1


# ------------------------------------------------------------------ job kinds and listing


def test_job_kinds_follow_the_convention(env):
    kinds = {k.name: k for k in images.job_kinds(env["rt"])}
    assert set(kinds) == {"image.generate", "image.compare"}
    assert all(k.device == "gpu" and callable(k.validate) and callable(k.handler) for k in kinds.values())
    listed = {m["id"]: m for m in env["service"].list_models()}
    assert listed["auto"]["default"] and listed["base"]["valid"] and listed["tiny-sdxl-lightning"]["valid"]
    assert listed["lightning"]["steps"] == [1, 2, 4, 8]


def test_service_without_a_queue_returns_encoded_images(env):
    service = env["service"]
    seen = []
    r = service.generate(service.validate({"prompt": "direct", "seed": 8}),
                         progress=lambda pct, stage=None, preview=None: seen.append(pct))
    assert r["images"][0]["asset_id"] is None and r["images"][0]["data"].startswith(b"\x89PNG")
    assert seen[0] == 0 and seen[-1] == 97 and seen == sorted(seen)


def test_generation_is_quick_on_the_tiny_profile(env):
    t0 = time.perf_counter()
    run(env, {"prompt": "speed", "cache": False})
    assert time.perf_counter() - t0 < 10


# ------------------------------------------------------------------ the real profiles' planning (no weights needed)


def _fake_snapshot(root, repo, files, commit="0" * 40):
    """A Hugging Face cache entry holding only the given (dummy) files, as `enfoads preload` would leave it."""
    folder = root / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    for name, content in files.items():
        path = folder / "snapshots" / commit / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


@pytest.fixture(scope="module")
def t4(tmp_path_factory):
    """The t4 profile on a (pretend) T4, with the 4- and 8-step Lightning UNets preloaded but no SDXL base UNet."""
    from enfoads.models.profiles import GIB, Hardware

    from enfoads.models.catalog import CATALOG

    root = tmp_path_factory.mktemp("fake-hub")
    src = CATALOG["sdxl-lightning-4step"].sources
    # Every file the catalogue's patterns select (presence checks them), no weights worth loading.
    base_files = {"model_index.json": "{}", "unet/config.json": "{}", "vae/config.json": "{}",
                  "scheduler/scheduler_config.json": "{}"}
    for enc in ("text_encoder", "text_encoder_2"):
        base_files.update({f"{enc}/config.json": "{}", f"{enc}/model.fp16.safetensors": "x"})
    for tok in ("tokenizer", "tokenizer_2"):
        base_files[f"{tok}/vocab.json"] = "{}"
    _fake_snapshot(root, src["base"].repo_id, base_files, src["base"].revision)
    _fake_snapshot(root, src["unet"].repo_id, {"sdxl_lightning_4step_unet.safetensors": "x",
                                               "sdxl_lightning_8step_unet.safetensors": "x"}, src["unet"].revision)
    _fake_snapshot(root, src["vae"].repo_id, {"config.json": "{}", "diffusion_pytorch_model.safetensors": "x"},
                   src["vae"].revision)
    hw = Hardware(cuda=True, device_name="Tesla T4", vram_total_bytes=15 * GIB, cuda_version="12.4", driver="550",
                  ram_total_bytes=12 * GIB, ram_available_bytes=11 * GIB, cpu_count=2)
    rt = build_runtime(Settings(profile="auto", models_dir=root, data_dir=tmp_path_factory.mktemp("t4-data")), hw)
    assert rt.profile.name == "t4"
    yield ImageService(rt)
    rt.close()


def test_t4_plans_the_matching_lightning_checkpoint_in_fp16(t4):
    plan = t4.plan(t4.validate({"prompt": "a car", "aspect_ratio": "16:9", "steps": 8, "guidance": 2}))
    assert plan.model == "sdxl-lightning-8step" and plan.unet == "sdxl_lightning_8step_unet.safetensors"
    assert (plan.steps, plan.guidance, plan.unet_mode) == (8, 0.0, "lightning")
    assert (plan.width, plan.height) == (1344, 768)
    assert (plan.expected_device, plan.expected_dtype) == ("cuda:0", "float16")
    default = t4.plan(t4.validate({"prompt": "a car"}))
    assert default.model == "sdxl-lightning-4step" and (default.width, default.height) == (1024, 1024)


def test_t4_falls_back_to_installed_checkpoints_and_says_so(t4):
    plan = t4.plan(t4.validate({"prompt": "a car", "steps": 2}))
    assert plan.steps == 4 and any("no installed checkpoint" in n for n in plan.notes)
    # The frontend's quality mode without the SDXL base UNet: Lightning, never an error.
    plan = t4.plan(t4.validate({"prompt": "a car", "steps": 30, "guidance": 7}))
    assert plan.mode == "lightning" and plan.steps == 8 and plan.guidance == 0.0
    assert any("quality model" in n for n in plan.notes)
    with pytest.raises(InvalidInput) as info:
        t4.plan(t4.validate({"prompt": "a car", "model": "base"}))
    assert "not installed" in info.value.fields["model"]
    listed = {m["id"]: m for m in t4.list_models()}
    assert not listed["base"]["valid"] and listed["lightning"]["steps"] == [4, 8]
    assert listed["sdxl-lightning-4step"]["default"]


def test_cpu_profile_plans_sd_turbo_within_its_limits(tmp_path):
    from enfoads.models.profiles import Hardware

    hw = Hardware(cuda=False, device_name="cpu", vram_total_bytes=0, cuda_version=None, driver=None,
                  ram_total_bytes=16 * 1024**3, ram_available_bytes=12 * 1024**3, cpu_count=4)
    rt = build_runtime(Settings(profile="auto", models_dir=tmp_path / "m", data_dir=tmp_path / "d"), hw)
    try:
        service = ImageService(rt)
        plan = service.plan(service.validate({"prompt": "a car", "aspect_ratio": "16:9", "steps": 30, "guidance": 7}))
        assert (plan.model, plan.mode, plan.steps, plan.guidance) == ("sd-turbo", "distilled", 4, 0.0)
        assert (plan.width, plan.height) == (672, 384) and len(plan.notes) == 2
        assert (plan.expected_device, plan.expected_dtype) == ("cpu", "float32")
        plan = service.plan(service.validate({"prompt": "a car"}))
        assert (plan.steps, plan.width, plan.height) == (2, 512, 512)  # the cpu profile's defaults
        with pytest.raises(InvalidInput) as info:
            service.validate({"prompt": "a car", "model": "lightning"})
        assert "profile" in info.value.fields["model"]
    finally:
        rt.close()
