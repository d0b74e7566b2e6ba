"""The Ray backend's parts that need no Ray: deployment plans, the shipped inputs, a replica run in-process."""
from __future__ import annotations

import base64

import pytest

from enfoads.cluster.plans import plan_roles
from enfoads.cluster.replica import RoleReplica, replica_settings
from enfoads.cluster.wire import ShippedAssets, ship_inputs
from enfoads.errors import InvalidInput
from enfoads.models.catalog import get_entry
from enfoads.models.profiles import GIB, PROFILES
from enfoads.models.tiny import build_tiny_kit
from enfoads.settings import Settings
from enfoads.work.assets import AssetNotFound, AssetStore

ROLES = ["enhance", "faces", "image", "speech", "video"]


def test_gpu_fractions_come_from_the_catalogue_footprints_plus_the_reserve():
    t4 = PROFILES["t4"]
    plans = {p.role: p for p in plan_roles(Settings(), t4, ROLES, cluster_gpus=4)}
    sdxl = get_entry(t4.roles["image"].model_id).vram_bytes
    share = (sdxl + t4.gpu_reserve_gb * GIB) / (15 * GIB)
    assert plans["image"].gpu_fraction == pytest.approx(-(-share * 20 // 1) / 20)  # rounded up to a twentieth
    assert 0.6 <= plans["image"].gpu_fraction <= 0.75
    # The replica's residency budget is its share less the reserve: never more than the GPU it was given.
    assert plans["image"].gpu_budget_gb == pytest.approx(plans["image"].gpu_fraction * 15 - t4.gpu_reserve_gb, abs=0.01)
    assert plans["image"].gpu_budget_gb * GIB >= sdxl
    assert plans["speech"].gpu_fraction < plans["image"].gpu_fraction
    assert plans["image"].deployment_options()["ray_actor_options"]["num_gpus"] == plans["image"].gpu_fraction


def test_a_role_bigger_than_the_gpu_takes_a_whole_one_and_the_profile_sizes_its_budget():
    plans = {p.role: p for p in plan_roles(Settings(ray_gpu_gb=8), PROFILES["t4"], ROLES, cluster_gpus=1)}
    assert plans["image"].gpu_fraction == 1.0 and plans["image"].gpu_budget_gb is None


def test_without_gpus_replicas_ask_for_cpu_only():
    for plan in plan_roles(Settings(), PROFILES["t4"], ROLES, cluster_gpus=0):
        assert plan.gpu_fraction == 0 and plan.gpu_budget_gb is None
        assert plan.deployment_options()["ray_actor_options"] == {"num_cpus": 0.25, "num_gpus": 0.0}


def test_replicas_and_autoscaling_come_from_the_settings():
    settings = Settings(ray_replicas="image=2, speech=1", ray_max_replicas="image=4", ray_roles="image,speech")
    plans = {p.role: p for p in plan_roles(settings, PROFILES["t4"], ROLES, cluster_gpus=2)}
    assert set(plans) == {"image", "speech"}
    image = plans["image"].deployment_options()
    assert "num_replicas" not in image and image["max_ongoing_requests"] == 1
    assert image["autoscaling_config"] == {"min_replicas": 2, "max_replicas": 4, "target_ongoing_requests": 1}
    assert plans["speech"].deployment_options()["num_replicas"] == 1


@pytest.mark.parametrize("field,value,words", [
    ("ray_replicas", "painting=2", "unknown role 'painting'"),
    ("ray_replicas", "image=two", "whole number"),
    ("ray_replicas", "image=0", "at least 1"),
    ("ray_roles", "image,painting", "unknown role 'painting'"),
])
def test_bad_ray_settings_name_the_setting(field, value, words):
    with pytest.raises(InvalidInput) as info:
        plan_roles(Settings(**{field: value}), PROFILES["t4"], ROLES, cluster_gpus=0)
    assert field in info.value.message and words in info.value.message


def test_inputs_named_anywhere_in_the_params_are_shipped_and_read_like_the_store(tmp_path):
    store = AssetStore(tmp_path)
    png = store.save_bytes(b"\x89PNG fake", "image/png", width=2, height=1)
    wav = store.save_bytes(b"RIFF fake", "audio/wav")
    params = {"media": png.id, "scenes": [{"audio": wav.id}], "note": "a" * 32, "n": 3}
    shipped = ship_inputs(params, store)
    assert set(shipped) == {png.id, wav.id}  # "aaaa..." looks like an id but names no asset
    view = ShippedAssets(shipped, tmp_path / "scratch")
    (tmp_path / "scratch").mkdir()
    assert view.get(png.id) == png and view.read_bytes(wav.id) == b"RIFF fake"
    assert view.path(png.id).read_bytes() == b"\x89PNG fake" and view.path(png.id).suffix == ".png"
    with pytest.raises(AssetNotFound):
        view.get("b" * 32)
    assert view.db is None  # no SQLite on a replica: the image cache is skipped there


@pytest.fixture(scope="module")
def image_replica(models_dir, tmp_path_factory):
    build_tiny_kit(models_dir)
    settings = Settings(profile="tiny", models_dir=models_dir, data_dir=tmp_path_factory.mktemp("replica"),
                        auto_download="off", warm="off")
    replica = RoleReplica("image", replica_settings(settings), heartbeat_s=0.2)
    yield replica
    replica.close()


def test_a_replica_runs_a_job_as_an_ordered_message_stream(image_replica):
    messages = list(image_replica.run("image.generate", {"prompt": "a red kite", "steps": 2, "seed": 3,
                                                         "preview_every": 1}, {"id": "job1"}, {}))
    assert messages[-1]["type"] == "result"
    result = messages[-1]["result"]
    sent = {m["id"]: m for m in messages if m["type"] == "asset"}
    assert set(result["asset_ids"]) == set(sent)  # every id the result names travelled with its bytes
    assert base64.b64encode(sent[result["image_asset_id"]]["data"])
    # A preview's bytes come before the progress that names it.
    for i, m in enumerate(messages):
        if m["type"] == "progress" and m["preview_asset_id"]:
            assert any(p["type"] == "asset" and p["id"] == m["preview_asset_id"] for p in messages[:i])
    percents = [m["percent"] for m in messages if m["type"] == "progress"]
    assert percents == sorted(percents)


def test_a_replica_stops_the_job_when_its_reader_goes_away(image_replica):
    running = image_replica.start("image.generate", {"prompt": "long", "steps": 40, "width": 512, "height": 512,
                                                     "preview_every": 1, "cache": False}, {"id": "job2"}, {})
    while running.next_message()["type"] != "progress":
        pass
    running.stop(timeout=30)
    assert running.ctx.cancelled and not running._thread.is_alive()


def test_a_replica_refuses_kinds_of_other_roles(image_replica):
    (message,) = list(image_replica.run("faces.swap", {}, {"id": "job3"}, {}))
    assert message["type"] == "error" and message["status"] == 500 and "not 'faces.swap'" in message["message"]


def test_a_replica_error_keeps_its_type_and_status(image_replica):
    messages = list(image_replica.run("image.generate", {"prompt": "x", "model": "no-such-model"}, {"id": "j4"}, {}))
    error = messages[-1]
    assert error["type"] == "error" and 400 <= error["status"] < 500, error
