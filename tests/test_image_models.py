"""User image models dropped into <models dir>/image/: discovery, validation, registration, generation.

Tiny SDXL and SD 1.5 pipelines are built here, saved as diffusers folders and
exported as single-file checkpoints in the original (Stability "LDM") layout,
the format of Civitai/Juggernaut-style downloads, so ``from_single_file`` runs
for real. Broken files of every kind sit next to them.
"""
from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from enfoads.work.assets import AssetStore
from enfoads.errors import InvalidInput
from enfoads.models.user_models import (
    InvalidModelFile,
    classify_checkpoint,
    discover_image_models,
    read_safetensors_header,
)
from enfoads.work.jobs import JobQueue
from enfoads.models.profiles import detect_hardware
from enfoads.models.runtime import build_runtime
from enfoads.services.images import ImageService
from enfoads.settings import Settings
from enfoads.models.tiny import ensure_tiny

# ---------------------------------------------------------------------------- diffusers -> original layout

_RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
           ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection"))


def _resnet(rest: str) -> str:
    for a, b in _RESNET:
        rest = rest.replace(a, b)
    return rest


def unet_to_ldm(sd: dict, cfg) -> dict:
    """Inverse of diffusers' ``convert_ldm_unet_checkpoint`` for any layers_per_block."""
    L = cfg["layers_per_block"]
    out = {}
    for k, v in sd.items():
        p = k.split(".")
        if p[0] in ("time_embedding", "add_embedding"):
            head = "time_embed" if p[0] == "time_embedding" else "label_emb.0"
            index = {"linear_1": 0, "linear_2": 2}[p[1]]
            nk = f"{head}.{index}.{p[2]}"
        elif p[0] == "conv_in":
            nk = "input_blocks.0.0." + p[1]
        elif p[0] == "conv_norm_out":
            nk = "out.0." + p[1]
        elif p[0] == "conv_out":
            nk = "out.2." + p[1]
        elif p[0] == "down_blocks":
            i = int(p[1])
            if p[2] == "resnets":
                nk = f"input_blocks.{1 + i * (L + 1) + int(p[3])}.0.{_resnet('.'.join(p[4:]))}"
            elif p[2] == "attentions":
                nk = f"input_blocks.{1 + i * (L + 1) + int(p[3])}.1." + ".".join(p[4:])
            else:
                nk = f"input_blocks.{(i + 1) * (L + 1)}.0.op.{p[-1]}"
        elif p[0] == "up_blocks":
            i = int(p[1])
            if p[2] == "resnets":
                nk = f"output_blocks.{i * (L + 1) + int(p[3])}.0.{_resnet('.'.join(p[4:]))}"
            elif p[2] == "attentions":
                nk = f"output_blocks.{i * (L + 1) + int(p[3])}.1." + ".".join(p[4:])
            else:
                has_attn = any(x.startswith(f"up_blocks.{i}.attentions.") for x in sd)
                nk = f"output_blocks.{i * (L + 1) + L}.{2 if has_attn else 1}.conv.{p[-1]}"
        elif p[0] == "mid_block":
            if p[1] == "resnets":
                nk = f"middle_block.{2 * int(p[2])}.{_resnet('.'.join(p[3:]))}"
            else:
                nk = "middle_block.1." + ".".join(p[3:])
        else:
            raise KeyError(k)
        out["model.diffusion_model." + nk] = v
    return out


_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def vae_to_ldm(sd: dict, cfg) -> dict:
    n = len(cfg["block_out_channels"])
    out = {}
    for k, v in sd.items():
        p = k.split(".")
        nk = k
        if p[1] == "down_blocks":
            i = int(p[2])
            nk = (f"encoder.down.{i}.block.{p[4]}." + ".".join(p[5:]) if p[3] == "resnets"
                  else f"encoder.down.{i}.downsample.conv.{p[-1]}")
        elif p[1] == "up_blocks":
            b = n - 1 - int(p[2])
            nk = (f"decoder.up.{b}.block.{p[4]}." + ".".join(p[5:]) if p[3] == "resnets"
                  else f"decoder.up.{b}.upsample.conv.{p[-1]}")
        elif p[1] == "mid_block" and p[2] == "resnets":
            nk = f"{p[0]}.mid.block_{int(p[3]) + 1}." + ".".join(p[4:])
        elif p[1] == "mid_block":
            inner, leaf = ".".join(p[4:-1]), p[-1]
            nk = f"{p[0]}.mid.attn_1.{_VAE_ATTN[inner]}.{leaf}"
            if v.ndim == 2:
                v = v[:, :, None, None]
        elif p[1] == "conv_norm_out":
            nk = f"{p[0]}.norm_out.{p[2]}"
        out["first_stage_model." + nk.replace("conv_shortcut", "nin_shortcut")] = v
    return out


def openclip_to_ldm(sd: dict, prefix: str) -> dict:
    out, qkv = {}, {}
    for k, v in sd.items():
        k2 = k.removeprefix("text_model.")
        if k == "text_projection.weight":
            out[prefix + "text_projection"] = v.T.contiguous()
        elif k2 == "embeddings.position_embedding.weight":
            out[prefix + "positional_embedding"] = v
        elif k2 == "embeddings.token_embedding.weight":
            out[prefix + "token_embedding.weight"] = v
        elif k2.startswith("final_layer_norm."):
            out[prefix + "ln_final." + k2.split(".")[-1]] = v
        elif k2.startswith("encoder.layers."):
            idx, tail = k2[len("encoder.layers."):].split(".", 1)
            parts = tail.split(".")
            if parts[0] == "self_attn" and parts[1] in ("q_proj", "k_proj", "v_proj"):
                qkv.setdefault((idx, parts[2]), {})[parts[1][0]] = v
                continue
            tail = (tail.replace("self_attn.out_proj", "attn.out_proj").replace("layer_norm1", "ln_1")
                    .replace("layer_norm2", "ln_2").replace("mlp.fc1", "mlp.c_fc").replace("mlp.fc2", "mlp.c_proj"))
            out[f"{prefix}transformer.resblocks.{idx}.{tail}"] = v
    for (idx, kind), d in qkv.items():
        out[f"{prefix}transformer.resblocks.{idx}.attn.in_proj_{kind}"] = torch.cat([d["q"], d["k"], d["v"]])
    return out


def export_single_file(pipe, path: Path, family: str) -> None:
    """A diffusers pipeline -> one original-layout ``.safetensors`` (what ``from_single_file`` reads)."""
    from safetensors.torch import save_file

    sd = {**unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config), **vae_to_ldm(pipe.vae.state_dict(), pipe.vae.config)}
    te = {(k if k.startswith("text_model.") else "text_model." + k): v
          for k, v in pipe.text_encoder.state_dict().items() if "position_ids" not in k}
    if family == "sdxl":
        sd.update({"conditioner.embedders.0.transformer." + k: v for k, v in te.items()})
        sd.update(openclip_to_ldm(pipe.text_encoder_2.state_dict(), "conditioner.embedders.1.model."))
    else:
        sd.update({"cond_stage_model.transformer." + k: v for k, v in te.items()})
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))


# ---------------------------------------------------------------------------- tiny user models


def _tiny_pipelines(kit: Path):
    from diffusers import (AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline,
                           StableDiffusionXLPipeline, UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(kit / "tokenizer")
    tok2 = CLIPTokenizer.from_pretrained(kit / "tokenizer_2")
    vae = AutoencoderKL.from_pretrained(kit / "vae", variant="fp16")
    sched = EulerDiscreteScheduler.from_pretrained(kit / "scheduler")

    def text(hidden):
        return CLIPTextConfig(vocab_size=tok.vocab_size, hidden_size=hidden, intermediate_size=37, num_hidden_layers=2,
                              num_attention_heads=4, max_position_embeddings=77, projection_dim=hidden,
                              hidden_act="gelu", bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                              pad_token_id=tok.pad_token_id)

    unet = dict(sample_size=32, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4), norm_num_groups=8)
    torch.manual_seed(5)
    # The second text encoder is wider than the first, as in real SDXL (768 vs 1280): from_single_file
    # tells the two apart by width.
    xl = StableDiffusionXLPipeline(
        vae=vae, text_encoder=CLIPTextModel(text(32)), text_encoder_2=CLIPTextModelWithProjection(text(48)),
        tokenizer=tok, tokenizer_2=tok2, scheduler=sched, add_watermarker=False,
        unet=UNet2DConditionModel(**unet, transformer_layers_per_block=(1, 1), use_linear_projection=True,
                                  cross_attention_dim=80, addition_embed_type="text_time", addition_time_embed_dim=8,
                                  projection_class_embeddings_input_dim=96))
    torch.manual_seed(6)
    sd15 = StableDiffusionPipeline(
        vae=vae, text_encoder=CLIPTextModel(text(32)), tokenizer=tok, scheduler=sched, safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
        unet=UNet2DConditionModel(**unet, cross_attention_dim=32))
    return xl, sd15


@pytest.fixture(scope="module")
def user_models(models_dir, tmp_path_factory):
    """A models dir sharing the session's tiny kit, with good and broken drop-ins in image/."""
    root = tmp_path_factory.mktemp("user-models")
    kit = ensure_tiny(models_dir, "tiny-sdxl-lightning")
    os.symlink(kit.parent, root / kit.parent.name)  # reuse the built kit
    image = root / "image"
    image.mkdir()
    xl, sd15 = _tiny_pipelines(kit / "base")
    xl.save_pretrained(image / "xl-folder")
    export_single_file(xl, image / "juggernaut-tiny.safetensors", "sdxl")
    sd15.save_pretrained(image / "sd15-folder")
    export_single_file(sd15, image / "dreamshaper-tiny.safetensors", "sd15")
    # Broken or unusable things, each with its own reason.
    (image / "random-bytes.safetensors").write_bytes(os.urandom(4096))
    whole = (image / "juggernaut-tiny.safetensors").read_bytes()
    (image / "truncated.safetensors").write_bytes(whole[: len(whole) // 2])
    shutil.copy(kit / "sdxl_lightning_2step_unet.safetensors", image / "lightning-unet.safetensors")
    from safetensors.torch import save_file

    save_file({"lora_unet_down_blocks_0.lora_down.weight": torch.zeros(4, 4)}, str(image / "style-lora.safetensors"))
    (image / "old-model.ckpt").write_bytes(b"\x80\x02}q\x00.")
    (image / "notes").mkdir()
    shutil.copytree(image / "sd15-folder", image / "no-unet")
    shutil.rmtree(image / "no-unet" / "unet")
    (image / "README.txt").write_text("ignored")
    return {"root": root, "image": image, "xl": xl, "sd15": sd15, "kit": kit}


@pytest.fixture(scope="module")
def env(user_models, tmp_path_factory):
    data = tmp_path_factory.mktemp("user-models-data")
    settings = Settings(profile="tiny", models_dir=user_models["root"], data_dir=data, gpu_budget_gb=64 / 1024,
                        ram_budget_gb=1.0)
    rt = build_runtime(settings, detect_hardware())
    service = ImageService(rt)
    queue = JobQueue(data, assets=AssetStore(data))
    for kind in service.job_kinds():
        queue.register(kind.name, kind.handler, device=kind.device)
    queue.start()
    yield {"rt": rt, "service": service, "queue": queue, **user_models}
    queue.close(grace_s=5)
    service.close()
    rt.close()


def run(env, params, kind="image.generate"):
    valid = env["service"].validate_compare(params) if kind == "image.compare" else env["service"].validate(params)
    job = env["queue"].submit_and_wait(kind, valid, timeout=60)
    assert job.state == "succeeded", job.error
    return job.result


# ---------------------------------------------------------------------------- tests


def test_discovery_lists_good_and_broken_models_with_reasons(env):
    found = {m.id: m for m in env["service"].models.list()}
    valid = {k for k, m in found.items() if m.valid}
    assert valid == {"user:xl-folder", "user:juggernaut-tiny", "user:sd15-folder", "user:dreamshaper-tiny"}
    assert found["user:xl-folder"].kind == "diffusers_folder" and found["user:xl-folder"].family == "sdxl"
    assert found["user:juggernaut-tiny"].kind == "single_file" and found["user:juggernaut-tiny"].family == "sdxl"
    assert found["user:dreamshaper-tiny"].family == "sd15" and found["user:dreamshaper-tiny"].native_px == 512
    # Each single file borrows its configs from the folder whose shapes match it.
    assert Path(found["user:juggernaut-tiny"].config_dir).name == "xl-folder"
    assert Path(found["user:dreamshaper-tiny"].config_dir).name == "sd15-folder"
    reasons = {k: m.reason for k, m in found.items() if not m.valid}
    assert "not a safetensors file" in reasons["user:random-bytes"]
    assert "truncated" in reasons["user:truncated"]
    assert "UNet-only" in reasons["user:lightning-unet"]
    assert "LoRA" in reasons["user:style-lora"]
    assert "pickle" in reasons["user:old-model.ckpt"]
    assert "model_index.json" in reasons["user:notes"]
    assert "unet" in reasons["user:no-unet"]
    assert "user:README.txt" not in found
    # Only the valid ones are known to the residency manager.
    registered = set(env["rt"].residency.registered())
    assert valid <= registered and not (set(reasons) & registered)


def test_discovery_never_raises(tmp_path):
    assert discover_image_models(tmp_path) == []  # no image/ folder at all
    (tmp_path / "image").mkdir()
    (tmp_path / "image" / "weird.safetensors").mkdir()  # a folder with a file's name
    (tmp_path / "image" / "empty.safetensors").write_bytes(b"")
    (tmp_path / "image" / "x").mkdir()
    (tmp_path / "image" / "x" / "model_index.json").write_text("{not json")
    models = {m.name: m for m in discover_image_models(tmp_path)}
    assert not any(m.valid for m in models.values())
    assert "8-byte header" in models["empty"].reason and "not valid JSON" in models["x"].reason
    # A single file with nothing to borrow configs from is reported, not loaded.
    assert all(not m.valid for m in discover_image_models(tmp_path, config_folders=[tmp_path / "nowhere"]))


def test_header_checks_and_classification(env):
    image = env["image"]
    table = read_safetensors_header(image / "juggernaut-tiny.safetensors")
    assert classify_checkpoint(table) == "sdxl"
    assert classify_checkpoint(read_safetensors_header(image / "dreamshaper-tiny.safetensors")) == "sd15"
    inpaint = dict(table)
    inpaint["model.diffusion_model.input_blocks.0.0.weight"] = {"dtype": "F32", "shape": [32, 9, 3, 3], "numel": 1}
    with pytest.raises(InvalidModelFile, match="inpainting"):
        classify_checkpoint(inpaint)
    refiner = {k.replace("conditioner.embedders.1.", "conditioner.embedders.0."): v for k, v in table.items()
               if not k.startswith("conditioner.embedders.0.")}
    with pytest.raises(InvalidModelFile, match="refiner"):
        classify_checkpoint(refiner)


def test_single_file_loads_exactly_the_checkpoints_weights(env):
    rt = env["rt"]
    with rt.residency.use("user:juggernaut-tiny") as pipe:
        assert type(pipe).__name__ == "StableDiffusionXLPipeline"
        for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
            want = getattr(env["xl"], name).state_dict()
            got = getattr(pipe, name).state_dict()
            assert all(torch.equal(got[k], want[k]) for k in want), name
    with rt.residency.use("user:dreamshaper-tiny") as pipe:
        assert type(pipe).__name__ == "StableDiffusionPipeline"
        want = env["sd15"].unet.state_dict()
        assert all(torch.equal(pipe.unet.state_dict()[k], want[k]) for k in want)


@pytest.mark.parametrize("model,family", [("user:juggernaut-tiny", "sdxl"), ("user:xl-folder", "sdxl"),
                                          ("user:dreamshaper-tiny", "sd15"), ("user:sd15-folder", "sd15")])
def test_generate_with_a_dropped_in_model(env, model, family):
    r = run(env, {"prompt": "a red bicycle", "model": model, "steps": 3, "guidance": 6, "width": 256,
                  "height": 256, "seed": 2})
    assert r["model"] == model and r["mode"] == "standard" and r["steps"] == 3
    assert r["guidance_used"] == 6 and r["pipeline"]["cfg"] is True and r["width"] == 256
    assert len(r["previews"]) == 3 and r["model_revision"]
    with Image.open(io.BytesIO(env["queue"].assets.read_bytes(r["image_asset_id"]))) as im:
        assert im.size == (256, 256)


def test_user_model_defaults_and_512px_ratios(env):
    r = run(env, {"prompt": "a red bicycle", "model": "user:dreamshaper-tiny", "steps": 2, "aspect_ratio": "16:9",
                  "seed": 1, "preview_every": 0})
    assert (r["width"], r["height"]) == (672, 384)  # 16:9 scaled to an SD 1.5 model's 512 px
    assert r["guidance_used"] == 7.5  # SD 1.x default when no guidance is sent


def test_invalid_or_unknown_user_models_are_refused_by_name(env):
    service = env["service"]
    with pytest.raises(InvalidInput) as info:
        service.validate({"prompt": "x", "model": "user:truncated"})
    assert "truncated" in info.value.fields["model"]
    with pytest.raises(InvalidInput) as info:
        service.validate({"prompt": "x", "model": "user:nothing-here"})
    assert "user:juggernaut-tiny" in info.value.fields["model"]  # lists what is available


def test_a_model_dropped_in_later_is_found_on_demand(env):
    shutil.copy(env["image"] / "dreamshaper-tiny.safetensors", env["image"] / "late-arrival.safetensors")
    try:
        r = run(env, {"prompt": "late", "model": "user:late-arrival", "steps": 2, "width": 256, "height": 256,
                      "preview_every": 0})
        assert r["model"] == "user:late-arrival"
        listed = {m["id"]: m for m in env["service"].list_models()}
        assert listed["user:late-arrival"]["valid"] and not listed["user:truncated"]["valid"]
    finally:
        (env["image"] / "late-arrival.safetensors").unlink()


def test_compare_the_default_model_with_a_user_model(env):
    r = run(env, {"prompt": "a lighthouse", "seed": 11, "width": 256, "height": 256,
                  "models": ["auto", "user:juggernaut-tiny"], "steps": 4}, kind="image.compare")
    assert r["a"]["model"] == "tiny-sdxl-lightning" and r["b"]["model"] == "user:juggernaut-tiny"
    assert r["a"]["seed"] == r["b"]["seed"] == 11
    assert r["b"]["guidance_used"] == 5.0 and r["a"]["guidance_used"] == 0.0
    assert r["side_by_side"]["width"] >= 512 and r["animation"]["asset_id"]
