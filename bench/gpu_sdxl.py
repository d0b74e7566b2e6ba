"""Full-size SDXL on a CUDA device: UNet + VAE from the published configs, random fp16 weights, no download.

    python bench/gpu_sdxl.py                 # on a machine with CUDA (never in CI)
    python bench/gpu_sdxl.py --dry-run       # anywhere: build on the meta device, check parameter counts

What runs: ``StableDiffusionXLPipeline`` with the SDXL base 1.0 UNet config
(2.57 B parameters) and the SDXL VAE config (madebyollin/sdxl-vae-fp16-fix:
83.7 M parameters, no fp32 upcast), both embedded below, weights drawn at
random directly on the GPU in fp16. Prompt embeddings are random tensors of
the real shapes (the text encoders are not part of this bench). Scheduler:
Euler with trailing timesteps, as SDXL-Lightning uses.

Rows: 1024x1024, 4 steps, guidance 0 (the Lightning path), batch 1 and 4
(batch 4 also with VAE slicing, what a T4 needs); and the frontend's quality
mode, 30 steps at guidance 7 (classifier-free guidance doubles the UNet
batch), batch 1. For each: seconds per image, images per second, peak VRAM
(``torch.cuda.max_memory_allocated``) and the time of the VAE decode alone.

Random weights make random pixels; the speed of a run does not depend on the
values. Exits with a message (status 0) when there is no CUDA device.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/: the shared published configs
from sdxl_configs import SDXL_SCHEDULER_CONFIG, SDXL_UNET_CONFIG, SDXL_VAE_CONFIG  # noqa: E402,F401
from sdxl_configs import SDXL_UNET_PARAMS as UNET_PARAMS  # noqa: E402
from sdxl_configs import SDXL_VAE_PARAMS as VAE_PARAMS  # noqa: E402

TEXT_DIM, POOLED_DIM, TOKENS = 2048, 1280, 77  # CLIP-L 768 + OpenCLIP-G 1280; pooled from OpenCLIP-G


def _empty(cls, config):
    from accelerate import init_empty_weights

    with init_empty_weights():
        return cls.from_config(config)


def _randomise_on(module, device, dtype, seed: int):
    """Allocate a meta-device module on ``device`` and fill it with random weights there (no CPU init)."""
    import torch

    module = module.to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 1 and ("norm" in name or name.endswith("bias")):
                p.fill_(1.0 if "norm" in name and name.endswith("weight") else 0.0)
            else:
                fan_in = max(1, p[0].numel())
                p.normal_(0.0, fan_in ** -0.5, generator=gen)
        for _, b in module.named_buffers():
            b.zero_()
    return module.to(dtype).eval()


def dry_run() -> int:
    from diffusers import AutoencoderKL, UNet2DConditionModel

    unet = _empty(UNet2DConditionModel, SDXL_UNET_CONFIG)
    vae = _empty(AutoencoderKL, SDXL_VAE_CONFIG)
    counts = {"unet": sum(p.numel() for p in unet.parameters()), "vae": sum(p.numel() for p in vae.parameters())}
    print(f"dry run (meta device): unet_params={counts['unet']:,} vae_params={counts['vae']:,}")
    ok = counts["unet"] == UNET_PARAMS and counts["vae"] == VAE_PARAMS
    print("configs match the published parameter counts" if ok else "PARAMETER COUNTS DIFFER from the published ones")
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-quality", action="store_true", help="skip the 30-step guidance-7 row")
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()
    if args.dry_run:
        return dry_run()

    import torch

    if not torch.cuda.is_available():
        print("gpu_sdxl: no CUDA device here; this bench runs only on a GPU machine (skipped).")
        return 0

    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    device, dtype = "cuda", torch.float16
    props = torch.cuda.get_device_properties(0)
    t0 = time.perf_counter()
    unet = _randomise_on(_empty(UNet2DConditionModel, SDXL_UNET_CONFIG), device, dtype, seed=1)
    vae = _randomise_on(_empty(AutoencoderKL, SDXL_VAE_CONFIG), device, dtype, seed=2)
    build_s = time.perf_counter() - t0
    scheduler = EulerDiscreteScheduler.from_config(SDXL_SCHEDULER_CONFIG, timestep_spacing="trailing")
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=None, text_encoder_2=None, tokenizer=None,
                                     tokenizer_2=None, unet=unet, scheduler=scheduler, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    weights_gib = torch.cuda.memory_allocated() / 1024**3
    print(f"device={props.name} vram_total_gib={props.total_memory / 1024**3:.1f} torch={torch.__version__} "
          f"cuda={torch.version.cuda} dtype=float16 build_s={build_s:.1f} weights_gib={weights_gib:.2f}")
    print(f"unet_params={sum(p.numel() for p in unet.parameters()):,} vae_params={sum(p.numel() for p in vae.parameters()):,}")

    gen = torch.Generator(device=device).manual_seed(0)

    def embeds(batch: int):
        pe = torch.randn(batch, TOKENS, TEXT_DIM, device=device, dtype=dtype, generator=gen)
        pooled = torch.randn(batch, POOLED_DIM, device=device, dtype=dtype, generator=gen)
        return pe, pooled

    def run_once(batch: int, steps: int, guidance: float) -> tuple[float, float]:
        pe, pooled = embeds(batch)
        kwargs = dict(prompt_embeds=pe, pooled_prompt_embeds=pooled, num_inference_steps=steps,
                      guidance_scale=guidance, width=args.size, height=args.size, output_type="latent",
                      generator=torch.Generator(device=device).manual_seed(1))
        if guidance > 1:
            kwargs["negative_prompt_embeds"], kwargs["negative_pooled_prompt_embeds"] = embeds(batch)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.inference_mode():
            latents = pipe(**kwargs).images
            torch.cuda.synchronize()
            t1 = time.perf_counter()
            pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        return t2 - t0, t2 - t1

    rows = [(1, args.steps, 0.0, False), (4, args.steps, 0.0, False), (4, args.steps, 0.0, True)]
    if not args.no_quality:
        rows.append((1, 30, 7.0, False))
    print(f"size={args.size}x{args.size} scheduler=Euler(trailing) repeats={args.repeats}")
    for batch, steps, guidance, slicing in rows:
        pipe.vae.enable_slicing() if slicing else pipe.vae.disable_slicing()
        run_once(batch, steps, guidance)  # warm-up (kernels, allocator)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        totals, decodes = [], []
        for _ in range(args.repeats):
            total, decode = run_once(batch, steps, guidance)
            totals.append(total)
            decodes.append(decode)
        t = statistics.median(totals)
        peak = torch.cuda.max_memory_allocated() / 1024**3
        print(f"batch={batch} steps={steps} guidance={guidance:g} vae_slicing={'on' if slicing else 'off'}: "
              f"s_per_image={t / batch:.3f} images_per_s={batch / t:.2f} s_per_call={t:.3f} "
              f"vae_decode_s={statistics.median(decodes):.3f} peak_vram_gib={peak:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
