"""Warm start: the default models load and run once in the background, never at another model's expense."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
import requests

from enfoads.engine import build_engine
from enfoads.work.jobs import JobQueue
from enfoads.models.residency import ResidencyManager
from enfoads.models.residency_types import GPU
from enfoads.settings import Settings
from enfoads.testing.simulation import SimulatedAdapter
from enfoads.warmup import Warmer, parse_warm_roles
from server_fixture import start_server

GB = 10**9


def test_the_setting_names_roles_or_off():
    assert parse_warm_roles("image") == ("image",)
    assert parse_warm_roles(" Speech , image,speech") == ("speech", "image")
    for off in ("", "off", "none", "OFF"):
        assert parse_warm_roles(off) == ()
    with pytest.raises(ValueError, match="unknown role.*video"):
        parse_warm_roles("image,video")
    assert Settings(warm="image, faces").warm_roles == ("image", "faces")
    with pytest.raises(ValueError):
        Settings(warm="everything")


# ------------------------------------------------------------------ policy, on simulated models


def simulated(tmp_path, *, gpu_gb: float, sizes: dict[str, float]):
    residency = ResidencyManager(gpu_budget=int(gpu_gb * GB), ram_budget=int(gpu_gb * GB), gpu_device="cpu")
    for key, size in sizes.items():
        residency.register(SimulatedAdapter(key, int(size * GB)), preferred=GPU)
    roles = {"image": "img", "speech": "asr", "faces": "det", "swapper": "swp"}
    runtime = SimpleNamespace(residency=residency, profile=SimpleNamespace(name="sim", roles=roles),
                              model_key=lambda role: roles[role])
    queue = JobQueue(tmp_path, cpu_workers=1)
    queue.start()

    def lease(*keys):
        def warm_up():
            for key in keys:
                with residency.use(key):
                    pass
            return {"model": keys[0]}
        return warm_up

    warm_ups = {"image": lease("img"), "speech": lease("asr"), "faces": lease("det", "swp")}
    return runtime, queue, warm_ups


def tiers(residency):
    return {row["id"]: row["tier"] for row in residency.stats().models}


def test_a_role_that_would_push_another_out_is_skipped_with_the_reason(tmp_path):
    runtime, queue, warm_ups = simulated(tmp_path, gpu_gb=10, sizes={"img": 7, "asr": 4, "det": 1, "swp": 1})
    try:
        warmer = Warmer(("image", "speech", "faces"), warm_ups, runtime=runtime, queue=queue).start()
        assert warmer.wait(10)
        status = warmer.status()
        assert status["roles"]["image"]["state"] == "warm"
        assert status["roles"]["speech"]["state"] == "skipped"
        assert "push out img" in status["roles"]["speech"]["reason"]
        assert status["roles"]["faces"]["state"] == "warm"  # 7 + 1 + 1 fits in 10
        assert status["state"] == "warm"
        assert tiers(runtime.residency) == {"img": GPU, "asr": None, "det": GPU, "swp": GPU}
        assert runtime.residency.stats().evictions == 0
    finally:
        queue.close()


def test_a_model_larger_than_the_budget_is_skipped_and_nothing_is_loaded(tmp_path):
    runtime, queue, warm_ups = simulated(tmp_path, gpu_gb=4, sizes={"img": 7, "asr": 1, "det": 1, "swp": 1})
    try:
        warmer = Warmer(("image",), warm_ups, runtime=runtime, queue=queue).start()
        assert warmer.wait(10)
        assert warmer.state == "skipped"
        assert "more than the whole budget" in warmer.status()["roles"]["image"]["reason"]
        assert runtime.residency.stats().loads == 0
    finally:
        queue.close()


def test_a_failing_warm_up_is_reported_and_the_worker_goes_on(tmp_path):
    runtime, queue, warm_ups = simulated(tmp_path, gpu_gb=10, sizes={"img": 1, "asr": 1, "det": 1, "swp": 1})
    queue.register("t.echo", lambda params, ctx: {"echo": params["x"]})

    def broken():
        raise RuntimeError("no kernel image is available for execution on the device")

    try:
        warmer = Warmer(("image",), {**warm_ups, "image": broken}, runtime=runtime, queue=queue).start()
        assert warmer.wait(10) and warmer.state == "failed"
        assert "no kernel image" in warmer.status()["roles"]["image"]["reason"]
        assert queue.submit_and_wait("t.echo", {"x": 3}, timeout=10).result == {"echo": 3}
    finally:
        queue.close()


def test_a_job_submitted_during_the_warm_up_runs_after_it_on_the_same_worker(tmp_path):
    runtime, queue, warm_ups = simulated(tmp_path, gpu_gb=10, sizes={"img": 1, "asr": 1, "det": 1, "swp": 1})
    release, order = threading.Event(), []

    def slow_warm_up():
        order.append("warm-up started")
        release.wait(10)
        warm_ups["image"]()
        order.append("warm-up done")
        return {}

    def job(params, ctx):
        order.append("job")
        with runtime.residency.use("img"):
            return {}

    queue.register("t.image", job)
    try:
        warmer = Warmer(("image",), {"image": slow_warm_up}, runtime=runtime, queue=queue).start()
        deadline = time.monotonic() + 10
        while warmer.state != "warming" and time.monotonic() < deadline:
            time.sleep(0.01)
        submitted = queue.submit("t.image", {})
        time.sleep(0.2)
        assert queue.get(submitted.id).state == "queued"  # it waits for the warm-up, no second load starts
        release.set()
        assert queue.wait(submitted.id, 10).state == "succeeded"
        assert order == ["warm-up started", "warm-up done", "job"]
        assert runtime.residency.stats().loads == 1
    finally:
        release.set()
        queue.close()


# ------------------------------------------------------------------ the real engine, the tiny kit


def engine_settings(models_dir, data_dir, **kw) -> Settings:
    return Settings(profile="tiny", models_dir=models_dir, data_dir=data_dir, auto_download="off", **kw)


def test_the_engine_warms_the_image_model_and_the_first_image_finds_it_loaded(models_dir, tmp_path):
    engine = build_engine(engine_settings(models_dir, tmp_path / "data"))
    try:
        deadline = time.monotonic() + 60
        while engine.warmer.state == "pending" and time.monotonic() < deadline:
            time.sleep(0.01)
        job = engine.submit_and_wait("image.generate", {"prompt": "a red sneaker", "seed": 3}, timeout=120)
        assert job.state == "succeeded", job.error
        assert engine.warmer.wait(60)
        status = engine.warmer.status()
        assert status["state"] == "warm", status
        image = status["roles"]["image"]
        assert image["model"] and image["load_s"] > 0 and image["pass_s"] > 0
        key = engine.runtime.model_key("image")
        (row,) = [r for r in engine.runtime.residency.stats().models if r["id"] == key]
        assert row["loads"] == 1 and row["tier"] is not None  # one load, by the warm-up
        assert job.result["timings"]["lease_s"] < image["load_s"]
    finally:
        engine.close()


def test_off_loads_nothing_and_a_missing_model_is_skipped(models_dir, tmp_path):
    engine = build_engine(engine_settings(models_dir, tmp_path / "off", warm="off"))
    try:
        assert engine.warmer.state == "off" and engine.warmer.wait(1)
        assert engine.runtime.residency.stats().loads == 0
    finally:
        engine.close()
    empty = tmp_path / "no-models"  # the cpu profile's real models, none installed (the tiny kit builds itself)
    empty.mkdir()
    settings = Settings(profile="cpu", models_dir=empty, data_dir=tmp_path / "missing", auto_download="off",
                        warm="image,speech")
    engine = build_engine(settings)
    try:
        assert engine.warmer.wait(60)
        status = engine.warmer.status()
        assert status["state"] == "skipped", status
        assert "not installed" in status["roles"]["image"]["reason"]
        assert str(empty) not in str(status)  # reasons never show server paths
    finally:
        engine.close()


@pytest.mark.slow
def test_the_server_says_warming_then_warm(models_dir, tmp_path):
    srv = start_server(models_dir, tmp_path / "data", extra_env={"ENFOADS_WARM": "image,faces"})
    try:
        seen = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            state = requests.get(srv.base + "/", timeout=5).json()["warm_state"]
            if not seen or seen[-1] != state:
                seen.append(state)
            if state in ("warm", "skipped", "failed"):
                break
            time.sleep(0.02)
        assert seen[-1] == "warm", seen
        assert set(seen) <= {"pending", "warming", "warm"}
        gpu = requests.get(srv.base + "/gpu-status", headers=srv.headers(), timeout=10).json()
        assert gpu["status"] == "online" and gpu["warm_state"] == "warm"
        assert gpu["warmup"]["roles"]["image"]["state"] == "warm"
        assert gpu["warmup"]["roles"]["faces"]["state"] == "warm"
        assert {"tiny-sdxl-lightning", "tiny-buffalo_l", "tiny-inswapper_128"} <= set(gpu["models_loaded"])
    finally:
        srv.stop()
