"""Work the GPU worker hands off (progress rows, events, preview frames) runs in order, off its path."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from enfoads.work import events as ev
from enfoads.work.assets import AssetStore
from enfoads.work.events import RecordingBus
from enfoads.work.jobs import JobQueue
from enfoads.models.profiles import detect_hardware
from enfoads.models.runtime import build_runtime
from enfoads.work.serial import SerialLane
from enfoads.services.images import ImageService
from enfoads.services.previews import LatentSnapshot, _project_on_device, latents_to_rgb
from enfoads.settings import Settings


# ------------------------------------------------------------------ the lane


def test_lane_runs_in_order_and_flush_waits_for_what_came_before():
    lane = SerialLane("test-lane")
    seen, gate = [], threading.Event()
    lane.submit(gate.wait, 5)
    for i in range(50):
        lane.submit(seen.append, i)
    assert lane.pending == 51 and seen == []  # the caller never waited for any of it
    gate.set()
    assert lane.flush(5)
    assert seen == list(range(50)) and lane.pending == 0
    lane.close()


def test_a_failing_task_is_logged_and_the_lane_goes_on(caplog):
    lane = SerialLane("test-lane")
    seen = []
    lane.submit(lambda: 1 / 0)
    lane.submit(seen.append, "after")
    assert lane.flush(5) and seen == ["after"]
    assert "background task failed" in caplog.text
    lane.close()
    lane.submit(seen.append, "closed")  # after close: runs in the caller's thread, nothing is dropped
    assert seen == ["after", "closed"]


def test_flush_from_inside_the_lane_does_not_deadlock():
    lane = SerialLane("test-lane")
    done = []
    lane.submit(lambda: done.append(lane.flush(1)))
    assert lane.flush(5) and done == [True]
    lane.close()


def test_progress_rows_and_events_keep_their_order_and_the_final_event_comes_last(tmp_path):
    bus = RecordingBus(tmp_path)
    queue = JobQueue(tmp_path, bus=bus)

    def handler(params, ctx):
        for i in range(1, 100):
            ctx.progress(i, f"step {i}")
        return {"ok": True}

    queue.register("t.many", handler, device="cpu")
    queue.start()
    try:
        job = queue.submit_and_wait("t.many", {}, timeout=30)
        assert job.state == "succeeded" and job.progress == 100
        events = bus.for_job(job.id)
        assert isinstance(events[0], ev.JobCreated) and isinstance(events[-1], ev.JobSucceeded)
        progress = [e.progress for e in events if isinstance(e, ev.JobProgress)]
        assert progress == [0, *range(1, 100)]
    finally:
        queue.close()


# ------------------------------------------------------------------ preview frames


def test_the_device_projection_matches_the_reference_one():
    lat = torch.randn(4, 24, 40) * 3
    lat[0, 0, 0] = float("nan")
    for family, sigma in (("sdxl", None), ("sd", 4.5), ("sdxl", 0.3)):
        ours = _project_on_device(lat, family, sigma).numpy()
        ref = latents_to_rgb(lat, family, sigma)
        assert ours.dtype == np.uint8 and ours.shape == ref.shape == (24, 40, 3)
        assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1


def test_a_snapshot_does_not_change_when_the_scheduler_reuses_the_latents():
    lat = torch.randn(1, 4, 8, 8)
    snap = LatentSnapshot(lat, family="sdxl")
    expected = latents_to_rgb(lat[0].clone(), "sdxl")
    lat.zero_()  # the next step writes into the same tensor
    assert np.array_equal(snap.rgb(), expected)


@pytest.fixture(scope="module")
def image_env(models_dir, tmp_path_factory):
    data = tmp_path_factory.mktemp("background-images")
    settings = Settings(profile="tiny", models_dir=models_dir, data_dir=data, gpu_budget_gb=64 / 1024,
                        ram_budget_gb=1.0)
    rt = build_runtime(settings, detect_hardware())
    service = ImageService(rt)
    yield rt, service, AssetStore(data)
    service.close()
    rt.close()


def test_denoising_steps_never_wait_for_slow_preview_frames(image_env):
    """Saving a frame blocks here until the last step is done (a stalled Drive mount): the steps go on
    without their frames, and the result still lists every frame, in step order."""
    _rt, service, assets = image_env
    all_steps_done = threading.Event()
    saved_after_last_step = []

    def progress(percent, stage=None, preview_asset_id=None):
        if stage == "step 4/4" and preview_asset_id is None:
            all_steps_done.set()

    def stalled_save(data, mime, **meta):
        if meta.get("kind") == "preview":
            # Inline on the step's path this would stall the render for the whole timeout.
            saved_after_last_step.append(all_steps_done.wait(timeout=10))
        return assets.save_bytes(data, mime, **meta)

    options = service.validate({"prompt": "a kite", "steps": 4, "seed": 5, "width": 256, "height": 256,
                                "cache": False})
    result = service.generate(options, progress=progress, save=stalled_save, assets=assets)
    assert saved_after_last_step == [True] * 4, "a step waited for a preview frame"
    assert [p["step"] for p in result["previews"]] == [1, 2, 3, 4]  # the result waited for the frames
    for p in result["previews"]:
        assert assets.get(p["asset_id"]).params["step"] == p["step"]
