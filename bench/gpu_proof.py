"""What a CPU cannot check: the t4 profile's models at full size on a real NVIDIA GPU, through the package's own code.

    python bench/gpu_proof.py                       # on a machine with one CUDA GPU (never in CI)
    python bench/gpu_proof.py --only sdxl,residency --steps 4 --size 1024
    python bench/gpu_proof.py --cpu-smoke           # anywhere: the same code paths, tiny shapes, CPU
    python bench/gpu_proof.py --cpu-smoke --full-shapes --size 64 --repeats 1
                                                    # the real sizes on a CPU (~3 min, ~16 GB RAM)

Nothing is downloaded: every model has random weights, built from configs
written below as data (the published configs of the real models), saved in
the real on-disk formats into a temporary folder and loaded back through
``enfoads.models.loaders`` (and ``enfoads.models.residency`` with ``CudaProbe``).

Checks (each in its own try block; one failing does not hide the others):

sdxl       SDXL base 1.0 UNet (2.57 B parameters), CLIP ViT-L and OpenCLIP
           bigG text encoders, sdxl-vae-fp16-fix VAE, fp16: written as an
           SDXL base folder + a Lightning-format UNet file + a VAE folder
           (~6.9 GB on disk), loaded by ``load_sdxl_lightning`` through the
           real ``TorchPipelineAdapter`` under a ``ResidencyManager``; 4 steps,
           guidance 0, 1024 px: seconds per image, UNet FLOPs
           (``FlopCounterMode``), UNet MFU against the card's dense fp16
           tensor peak, peak reserved VRAM, finite output.
residency  the same pipeline evicted GPU -> CPU by memory pressure and leased
           back onto the GPU: seconds each way, measured footprint vs bytes
           of the modules, and that the pipeline still generates.
onnx       buffalo_l- and inswapper-shaped ONNX graphs (``enfoads.models.tiny.faces``)
           through ``load_face_analysis`` / ``load_swapper`` with the CUDA
           execution provider: every session really on CUDA, ms per swap.
whisper    a random-weight Whisper of large-v3-turbo's shape converted with
           CTranslate2 (float16), loaded by ``load_whisper(device="cuda")``:
           transcription time of 30 s of audio.
enhance    Real-ESRGAN x4plus at full size (RRDBNet, 23 blocks, 16.7 M
           parameters, random weights) saved as a .pth and loaded by
           ``load_spandrel`` in fp16, a ``--size`` px picture upscaled x4 in
           512 px tiles (32 px of context) by ``upscale_image``: seconds per
           output megapixel, peak VRAM, the tile that worked; GFPGAN v1.4's
           architecture (random weights) on one 512 px face: ms per face.
lipsync    MuseTalk 1.5 at full size (the release's musetalk.json UNet,
           850 M parameters; sd-vae-ft-mse's VAE; whisper-tiny's encoder;
           random weights, fp16), ``LipSync`` over the built-in avatar and a
           4 s clip: frames per second at batch 8 and 16, the ratio to real
           time (25 fps), peak VRAM (the tiny kit, through ``load_musetalk``,
           with ``--cpu-smoke``).

Output: one figure per line, ``name=value`` on stdout (the libraries' own
chatter goes to stderr), and ``check_<name>=ok`` or ``check_<name>=FAILED
<why>``. Exit status: 0 all checks passed, 1 some check failed, 2 no CUDA
device (without ``--cpu-smoke``).

Needs about 7 GB free in the temporary folder (``--workdir``) and, for the
onnx check, onnxruntime-gpu (``pip install -e ".[gpu]"``, installed last).

Random weights give noise images and random text; speed and memory do not
depend on the values. The face graphs are tiny (real input and output
shapes, not real compute), so ``onnx_swap_ms`` proves the provider, not the
speed of the real inswapper.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

# Never reach a model hub, whatever a library tries.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CHECKS = ("sdxl", "residency", "onnx", "whisper", "enhance", "lipsync")
GB = 10**9
GIB = 1024**3
SAMPLE_RATE = 16_000
AUDIO_SECONDS = 30
PROMPT = "a red chair in a sunlit room, product photo"

# --------------------------------------------------------------------------
# published configs (data)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/: the shared published configs
from sdxl_configs import (  # noqa: E402
    _CLIP_IDS,
    SDXL_SCHEDULER_CONFIG,
    SDXL_TEXT_ENCODER_2_CONFIG,
    SDXL_TEXT_ENCODER_2_PARAMS,
    SDXL_TEXT_ENCODER_CONFIG,
    SDXL_TEXT_ENCODER_PARAMS,
    SDXL_UNET_CONFIG,
    SDXL_UNET_PARAMS,
    SDXL_VAE_CONFIG,
    SDXL_VAE_PARAMS,
)

SDXL_MODEL_INDEX = {
    "_class_name": "StableDiffusionXLPipeline",
    "_diffusers_version": "0.19.0.dev0",
    "force_zeros_for_empty_prompt": True,
    "add_watermarker": None,
    "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "tokenizer_2": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}

# Tiny shapes for --cpu-smoke: the tiny kit's UNet (enfoads.models.tiny.sdxl), text encoders
# of hidden size 32 (32 + 32 = the UNet's cross_attention_dim 64), a 4-block VAE.
TINY_TEXT_ENCODER_CONFIG = {**_CLIP_IDS, "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
                            "num_attention_heads": 4, "hidden_act": "quick_gelu", "projection_dim": 32}
TINY_TEXT_ENCODER_2_CONFIG = {**TINY_TEXT_ENCODER_CONFIG, "hidden_act": "gelu"}
TINY_VAE_CONFIG = {**SDXL_VAE_CONFIG, "block_out_channels": [8, 16, 16, 16], "norm_num_groups": 8, "sample_size": 128}

# openai/whisper-large-v3-turbo's shape (mobiuslabsgmbh/faster-whisper-large-v3-turbo is
# its CTranslate2 conversion): 32 encoder layers, 4 decoder layers, v3 vocabulary.
WHISPER_TURBO_CONFIG = {
    "d_model": 1280, "encoder_layers": 32, "decoder_layers": 4, "encoder_attention_heads": 20,
    "decoder_attention_heads": 20, "encoder_ffn_dim": 5120, "decoder_ffn_dim": 5120, "num_mel_bins": 128,
}
WHISPER_TINY_CONFIG = {
    "d_model": 32, "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 2,
    "decoder_attention_heads": 2, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "num_mel_bins": 128,
}
WHISPER_V3_VOCAB = 51866

# Dense fp16 tensor-core peak (TFLOPS, no sparsity), by device name; first match wins.
FP16_PEAK_TFLOPS = (
    (r"\bT4\b", 65.0),
    (r"\bL4\b", 121.0),
    (r"\bA10G\b", 125.0),
    (r"\bA100\b", 312.0),
    (r"\bH100\b.*\bPCIe\b", 756.0),
    (r"\bH100 NVL\b", 835.0),
    (r"\bH100\b", 989.0),  # SXM ("NVIDIA H100 80GB HBM3")
    (r"\bH200 NVL\b", 835.0),
    (r"\bH200\b", 989.0),
    (r"\bRTX 4090\b", 165.0),
)


def fp16_peak_tflops(device_name: str) -> float | None:
    for pattern, tflops in FP16_PEAK_TFLOPS:
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            return tflops
    return None


# --------------------------------------------------------------------------
# output


class Report:
    """Figures and checks, one per line on the real stdout."""

    def __init__(self, stream):
        self.stream = stream
        self.failed: list[str] = []

    def figure(self, name: str, value) -> None:
        if value is None:
            text = "n/a"
        elif isinstance(value, bool):
            text = str(value).lower()
        elif isinstance(value, float):
            text = f"{value:.4g}"
        else:
            text = str(value)
        text = " ".join(text.split())  # one line, always
        print(f"{name}={text}", file=self.stream, flush=True)

    def check(self, name: str, ok: bool, why: str = "") -> bool:
        if ok:
            self.figure(f"check_{name}", "ok")
        else:
            self.failed.append(name)
            self.figure(f"check_{name}", f"FAILED {why or 'condition not met'}")
        return ok

    @contextlib.contextmanager
    def section(self, name: str):
        """Run one check's body: its exception becomes ``check_<name>=FAILED``, not the end of the run."""
        t0 = time.perf_counter()
        try:
            with contextlib.redirect_stdout(sys.stderr):
                yield
        except Exception as exc:  # noqa: BLE001 - every failure is reported, then the next check runs
            traceback.print_exc(file=sys.stderr)
            self.check(name, False, f"{type(exc).__name__}: {exc}"[:600])
        else:
            self.check(name, True)
        finally:
            self.figure(f"{name}_section_seconds", time.perf_counter() - t0)


# --------------------------------------------------------------------------
# helpers


class Device:
    """Where the proof runs: the CUDA GPU, or the CPU for --cpu-smoke."""

    def __init__(self, cuda: bool, full: bool):
        import torch

        self.cuda = cuda
        self.full = full  # the real architectures' sizes (always on a GPU; --full-shapes on the CPU)
        self.torch_device = "cuda:0" if cuda else "cpu"
        self.build_dtype = torch.float16  # like the published fp16 files
        self.name = torch.cuda.get_device_name(0) if cuda else "cpu"

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def free(self) -> None:
        gc.collect()
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.empty_cache()


@contextlib.contextmanager
def materialise_on(device: str, dtype):
    """Modules built inside are allocated on ``device`` in ``dtype`` and initialised there (fast on a GPU)."""
    import torch

    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(old)


_ST_DTYPES = {"float16": "F16", "bfloat16": "BF16", "float32": "F32", "float64": "F64", "int64": "I64",
              "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}


def save_safetensors_streaming(state: dict, path: Path) -> int:
    """Write a safetensors file one tensor at a time (host RAM: one tensor, not the 5 GB UNet); returns bytes."""
    import torch

    items = sorted(state.items())
    header, offset = {}, 0
    for name, t in items:
        size = t.numel() * t.element_size()
        header[name] = {"dtype": _ST_DTYPES[str(t.dtype).removeprefix("torch.")], "shape": list(t.shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = {"format": "pt"}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as fh:
        fh.write(struct.pack("<Q", len(blob)))
        fh.write(blob)
        for _name, t in items:
            flat = t.detach().contiguous().reshape(-1).to("cpu")
            fh.write(flat.view(torch.uint8).numpy())
    tmp.replace(path)
    return path.stat().st_size


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def write_clip_tokenizer(folder: Path, pad_token: str, vocab_size: int = 49408) -> int:
    """A CLIP BPE tokenizer with CLIP's real size and special ids (49406, 49407); loads offline.

    The byte-level alphabet and merges are the tiny kit's (``enfoads.models.tiny.sdxl``);
    filler tokens that no merge produces bring the vocabulary to ``vocab_size``,
    so it matches the text encoders' embedding tables.
    """
    from enfoads.models.tiny.sdxl import _byte_level_alphabet

    folder.mkdir(parents=True, exist_ok=True)
    alphabet = _byte_level_alphabet()
    merges = [("t", "h"), ("th", "e</w>"), ("a", "n"), ("an", "d</w>"), ("i", "n"), ("in", "g</w>")]
    tokens = alphabet + [c + "</w>" for c in alphabet] + [a + b for a, b in merges]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    n = 0
    while len(vocab) < vocab_size - 2:
        vocab[f"fill{n}</w>"] = len(vocab)
        n += 1
    vocab["<|startoftext|>"] = vocab_size - 2
    vocab["<|endoftext|>"] = vocab_size - 1
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    specials = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
                "pad_token": pad_token}
    write_json(folder / "tokenizer_config.json",
               {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True, **specials})
    write_json(folder / "special_tokens_map.json", specials)
    return len(vocab)


def median(values) -> float:
    return float(statistics.median(values))


# --------------------------------------------------------------------------
# SDXL: build the files, load them through the residency manager


class SdxlRig:
    """The SDXL folder on disk and a ResidencyManager holding it through the real TorchPipelineAdapter.

    Shared by the ``sdxl`` and ``residency`` checks; built on first use.
    """

    KEY = "gpu-proof-sdxl"

    def __init__(self, dev: Device, args, workdir: Path, report: Report, hardware):
        self.dev, self.args, self.report = dev, args, report
        self.hardware = hardware  # detected at start, as the server does (budgets come from it)
        self.root = workdir / "sdxl"
        self.manager = None
        self.adapter = None
        self.paths: dict[str, Path] | None = None
        self.loaded_once = False
        self.error: Exception | None = None

    # ---- files
    def build(self) -> dict[str, Path]:
        if self.paths is not None:
            return self.paths
        if self.error is not None:  # built once and failed: do not spend the time again
            raise RuntimeError(f"the SDXL files could not be built: {self.error}") from self.error
        try:
            return self._build()
        except Exception as exc:
            self.error = exc
            raise

    def _build(self) -> dict[str, Path]:
        import torch
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

        from enfoads.models.tiny.sdxl import _unet_config

        dev, full = self.dev, self.dev.full
        entry = self.catalog_entry()
        base, vae_dir = self.root / "base", self.root / "vae"
        unet_file = self.root / entry.options["unet_file"]
        unet_config = dict(SDXL_UNET_CONFIG) if full else {k: list(v) if isinstance(v, tuple) else v
                                                           for k, v in _unet_config().items()}
        te_configs = (SDXL_TEXT_ENCODER_CONFIG, SDXL_TEXT_ENCODER_2_CONFIG) if full else (
            TINY_TEXT_ENCODER_CONFIG, TINY_TEXT_ENCODER_2_CONFIG)
        vae_config = SDXL_VAE_CONFIG if full else TINY_VAE_CONFIG
        build_s = write_s = 0.0

        # The base folder as `enfoads preload` fetches it (catalog SDXL_BASE patterns):
        # tokenizers, scheduler, fp16 text encoders, configs of the UNet and VAE.
        t0 = time.perf_counter()
        write_json(base / "model_index.json", SDXL_MODEL_INDEX)
        write_json(base / "scheduler" / "scheduler_config.json", SDXL_SCHEDULER_CONFIG)
        for name, pad in (("tokenizer", "<|endoftext|>"), ("tokenizer_2", "!")):
            write_clip_tokenizer(base / name, pad)
        write_json(base / "unet" / "config.json",
                   {"_class_name": "UNet2DConditionModel", "_diffusers_version": "0.19.0.dev0", **unet_config})
        write_json(base / "vae" / "config.json",
                   {"_class_name": "AutoencoderKL", "_diffusers_version": "0.20.0.dev0", **vae_config})
        write_s += time.perf_counter() - t0

        torch.manual_seed(0)
        for sub, cls, cfg in (("text_encoder", CLIPTextModel, te_configs[0]),
                              ("text_encoder_2", CLIPTextModelWithProjection, te_configs[1])):
            t0 = time.perf_counter()
            with materialise_on(dev.torch_device, dev.build_dtype):
                model = cls(CLIPTextConfig(**cfg)).eval()
            dev.sync()
            t1 = time.perf_counter()
            model.save_pretrained(base / sub, variant="fp16", safe_serialization=True)
            write_s += time.perf_counter() - t1
            build_s += t1 - t0
            del model
            dev.free()

        # The Lightning checkpoint: a whole UNet state dict in fp16, streamed to disk.
        t0 = time.perf_counter()
        with materialise_on(dev.torch_device, dev.build_dtype):
            unet = UNet2DConditionModel.from_config(unet_config).eval()
        dev.sync()
        t1 = time.perf_counter()
        save_safetensors_streaming(unet.state_dict(), unet_file)
        write_s += time.perf_counter() - t1
        build_s += t1 - t0
        del unet
        dev.free()

        # The fp16-fix VAE folder.
        t0 = time.perf_counter()
        with materialise_on(dev.torch_device, dev.build_dtype):
            vae = AutoencoderKL.from_config(vae_config).eval()
        dev.sync()
        t1 = time.perf_counter()
        vae.save_pretrained(vae_dir, safe_serialization=True)
        write_s += time.perf_counter() - t1
        build_s += t1 - t0
        del vae
        dev.free()

        self.paths = {"base": base, "unet": unet_file, "vae": vae_dir}
        self.report.figure("sdxl_build_seconds", build_s)
        self.report.figure("sdxl_write_seconds", write_s)
        self.report.figure("sdxl_files_gb", folder_bytes(self.root) / GB)
        return self.paths

    def catalog_entry(self):
        from enfoads.models.catalog import get_entry

        steps = self.args.steps
        real = get_entry(f"sdxl-lightning-{steps}step" if steps in (1, 2, 4, 8) else "sdxl-lightning-4step")
        sizes = real if self.dev.full else get_entry("tiny-sdxl-lightning")
        # The catalogue's entry (its sizes, its Lightning file, x0 mode), files from this proof's folder.
        return dataclasses.replace(sizes, id=self.KEY, tiny=None, options=dict(real.options), sources={})

    # ---- residency
    def ensure_manager(self):
        if self.manager is not None:
            return self.manager
        from enfoads.models.adapters import TorchPipelineAdapter
        from enfoads.models.profiles import PROFILES
        from enfoads.models.residency import ResidencyManager
        from enfoads.models.residency_types import CudaProbe, NoProbe
        from enfoads.settings import Settings

        paths = self.build()
        dev = self.dev

        class ProofSdxlAdapter(TorchPipelineAdapter):
            """The real adapter; only its files come from this proof's folder, and moves are timed."""

            def paths(self):
                return dict(paths)

            def move(self, model, device):
                t0 = time.perf_counter()
                moved = super().move(model, device)
                dev.sync()
                self.moves.append((str(device), time.perf_counter() - t0))
                return moved

        hardware = self.hardware
        if dev.cuda:
            profile = PROFILES["t4"]
            settings = Settings()
            gpu_budget = settings.gpu_budget_bytes(profile, hardware)
            ram_budget = settings.ram_budget_bytes(profile, hardware)
            probe, gpu_device = CudaProbe(0), "cuda:0"
        else:
            # A simulated GPU on the CPU, as ENFOADS_GPU_BUDGET_GB does on a CPU machine.
            profile = PROFILES["tiny"]
            gpu_budget, ram_budget = (64 * GIB, 64 * GIB) if dev.full else (1 * GIB, 4 * GIB)
            probe, gpu_device = NoProbe(), "cpu"
        adapter = ProofSdxlAdapter(self.catalog_entry(), profile.roles["image"], self.root)
        adapter.moves = []
        manager = ResidencyManager(gpu_budget=gpu_budget, ram_budget=ram_budget, gpu_device=gpu_device,
                                   probe=probe, lease_wait_s=5.0)
        manager.register(adapter)
        self.report.figure("residency_gpu_budget_gb", gpu_budget / GB)
        self.report.figure("residency_ram_budget_gb", ram_budget / GB)
        self.manager, self.adapter = manager, adapter
        return manager

    @contextlib.contextmanager
    def lease(self):
        """``manager.use`` of the pipeline; the first lease loads it (timed: sdxl_load_seconds)."""
        from enfoads.models.residency_types import ModelMemoryError

        manager = self.ensure_manager()
        t0 = time.perf_counter()
        with contextlib.ExitStack() as stack:
            try:
                pipe = stack.enter_context(manager.use(self.KEY))
            except ModelMemoryError as exc:
                # Say which budget refused: a load onto the GPU also reserves the
                # adapter's staging bytes of host RAM.
                raise RuntimeError(
                    f"{exc} [GPU budget {manager.gpu_budget / GB:.2f} GB, RAM budget "
                    f"{manager.ram_budget / GB:.2f} GB, estimate {self.adapter.estimate('gpu') / GB:.2f} GB "
                    f"on the GPU, staging {self.adapter.staging_bytes / GB:.2f} GB of RAM]"
                ) from exc
            if not self.loaded_once:
                self.dev.sync()
                self.loaded_once = True
                self.report.figure("sdxl_load_seconds", time.perf_counter() - t0)
            yield pipe

    def row(self) -> dict:
        return next(m for m in self.manager.stats().models if m["id"] == self.KEY)

    def close(self) -> None:
        if self.manager is not None:
            self.manager.close()
            self.manager = self.adapter = None
        shutil.rmtree(self.root, ignore_errors=True)
        self.paths = None
        self.dev.free()


class UnetTimer:
    """Times every UNet forward (CUDA events on a GPU) and keeps the first call's inputs."""

    def __init__(self, unet, dev: Device):
        self.dev = dev
        self.enabled = False
        self.inputs = None
        self._open = None
        self.spans: list = []
        self._handles = [
            unet.register_forward_pre_hook(self._pre, with_kwargs=True),
            unet.register_forward_hook(self._post, with_kwargs=True),
        ]

    def _mark(self):
        if self.dev.cuda:
            import torch

            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def _pre(self, module, args, kwargs):
        if self.inputs is None:
            self.inputs = (args, dict(kwargs))
        if self.enabled:
            self._open = self._mark()

    def _post(self, module, args, kwargs, output):
        if self.enabled and self._open is not None:
            self.spans.append((self._open, self._mark()))
            self._open = None

    def seconds(self) -> list[float]:
        self.dev.sync()
        if self.dev.cuda:
            return [start.elapsed_time(end) / 1000.0 for start, end in self.spans]
        return [end - start for start, end in self.spans]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self.inputs = None
        self.spans = []


def generate(pipe, dev: Device, size: int, steps: int, seed: int):
    import torch

    dev.sync()
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = pipe(PROMPT, num_inference_steps=steps, guidance_scale=0.0, height=size, width=size,
                   output_type="np", generator=torch.Generator(device=dev.torch_device).manual_seed(seed))
    dev.sync()
    return time.perf_counter() - t0, out.images


def trailing_timesteps(steps: int, train: int = 1000) -> list[int]:
    return [int(round(train - i * train / steps)) - 1 for i in range(steps)]


def check_sdxl(rig: SdxlRig, report: Report, args) -> None:
    import numpy as np
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from enfoads.models.loaders.image import module_bytes

    dev, size, steps = rig.dev, args.size, args.steps
    with rig.lease() as pipe:
        want = torch.float16 if dev.cuda else torch.float32
        dtypes = {name: getattr(pipe, name).dtype for name in ("unet", "vae", "text_encoder", "text_encoder_2")}
        devices = {name: getattr(pipe, name).device.type for name in dtypes}
        pipe.scheduler.set_timesteps(steps)
        got_t = [int(t) for t in pipe.scheduler.timesteps]
        problems = [f"{n} dtype {d}" for n, d in dtypes.items() if d != want]
        problems += [f"{n} on {d}" for n, d in devices.items() if d != ("cuda" if dev.cuda else "cpu")]
        if pipe.scheduler.config.timestep_spacing != "trailing" or got_t != trailing_timesteps(steps):
            problems.append(f"scheduler {pipe.scheduler.config.timestep_spacing} timesteps {got_t}")
        if pipe.vae.config.force_upcast:
            problems.append("VAE force_upcast (the fp16-fix VAE should decode in fp16)")
        report.check("sdxl_loaded", not problems, "; ".join(problems))
        report.figure("sdxl_weights_gb", module_bytes(pipe) / GB)
        report.figure("sdxl_size_px", size)
        report.figure("sdxl_steps", steps)

        timer = UnetTimer(pipe.unet, dev)
        try:
            if dev.cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                resident = torch.cuda.memory_allocated()
            generate(pipe, dev, size, steps, seed=0)  # warm-up: kernels, allocator, cuDNN choices
            timer.enabled = True
            totals, images = [], None
            for i in range(args.repeats):
                seconds, images = generate(pipe, dev, size, steps, seed=1 + i)
                totals.append(seconds)
            timer.enabled = False
            unet_s = timer.seconds()
            peak_reserved = torch.cuda.max_memory_reserved() / GB if dev.cuda else None
            peak_allocated = torch.cuda.max_memory_allocated() / GB if dev.cuda else None
            activations = (torch.cuda.max_memory_allocated() - resident) / GB if dev.cuda else None

            # FLOPs of one UNet forward with the inputs the pipeline gave it (batch 1 at guidance 0);
            # ~6.76 TFLOP at 1024 px. (On a CPU, torch's flop counter misses the CPU attention kernel.)
            call_args, call_kwargs = timer.inputs
            batch = int(call_args[0].shape[0]) if call_args else int(call_kwargs["sample"].shape[0])
            with torch.inference_mode(), FlopCounterMode(display=False) as counter:
                pipe.unet(*call_args, **call_kwargs)
            flops = float(counter.get_total_flops())
        finally:
            timer.remove()

        per_image = median(totals)
        per_step = median(unet_s)
        achieved = flops / per_step if per_step > 0 else 0.0
        peak = args.peak_tflops if args.peak_tflops else (fp16_peak_tflops(dev.name) if dev.cuda else None)
        report.figure("sdxl_seconds_per_image", per_image)
        report.figure("sdxl_images_per_minute", 60.0 / per_image)
        report.figure("sdxl_unet_batch", batch)
        report.figure("sdxl_unet_seconds_per_step", per_step)
        report.figure("sdxl_non_unet_seconds_per_image", per_image - per_step * steps)
        report.figure("sdxl_unet_gflops_per_step", flops / 1e9)
        report.figure("sdxl_unet_achieved_tflops", achieved / 1e12)
        report.figure("sdxl_fp16_peak_tflops", peak)
        report.figure("sdxl_unet_mfu", achieved / (peak * 1e12) if peak else None)
        report.figure("sdxl_peak_vram_reserved_gb", peak_reserved)
        report.figure("sdxl_peak_vram_allocated_gb", peak_allocated)
        report.figure("sdxl_activation_peak_gb", activations)  # the t4 profile keeps 2.5 GiB for these

        image = np.asarray(images)
        finite = bool(np.isfinite(image).all())
        report.figure("sdxl_image_shape", "x".join(str(s) for s in image.shape))
        report.figure("sdxl_image_std", float(np.nan_to_num(image).std()))
        report.check("sdxl_image_finite", finite and image.shape[1:3] == (size, size),
                     f"{int((~np.isfinite(image)).sum())} non-finite values, shape {image.shape}")
        del pipe, images, image


class _PressureAdapter:
    """Another model that wants most of the GPU budget: leasing it makes the manager evict SDXL.

    It holds no memory itself (only its catalogue-style estimate matters for
    the eviction plan); its measured footprint is one byte.
    """

    runtime = "torch"
    movable = False
    staging_bytes = 0

    def __init__(self, key: str, nbytes: int):
        self.key = key
        self.nbytes = int(nbytes)

    def estimate(self, tier: str) -> int:
        return self.nbytes

    def load(self, device: str):
        return object()

    def move(self, model, device: str):
        raise RuntimeError("not movable")

    def unload(self, model) -> None:
        pass

    def measure(self, model, device: str) -> int:
        return 1


def check_residency(rig: SdxlRig, report: Report, args) -> None:
    import numpy as np
    import torch

    from enfoads.models.loaders.image import module_bytes
    from enfoads.models.residency_types import CPU, GPU

    dev = rig.dev
    with rig.lease() as pipe:  # loaded on the GPU tier (already, after the sdxl check)
        modules = module_bytes(pipe)
        del pipe
    manager, adapter = rig.manager, rig.adapter
    row = rig.row()
    measured = row["bytes"]
    report.figure("residency_catalog_vram_gb", adapter.entry.vram_bytes / GB)
    report.figure("residency_measured_gpu_gb", measured / GB)
    report.figure("residency_module_gb", modules / GB)
    report.figure("residency_measured_over_module", measured / modules if modules else None)

    # Evict by pressure: a model whose estimate leaves room for only half of SDXL.
    pressure = _PressureAdapter("gpu-proof-pressure", manager.gpu_budget - measured // 2)
    manager.register(pressure)
    allocated_before = torch.cuda.memory_allocated() if dev.cuda else None
    adapter.moves.clear()
    with manager.use(pressure.key):
        pass
    row = rig.row()
    to_cpu = [s for d, s in adapter.moves if d == "cpu"]
    allocated_after = torch.cuda.memory_allocated() if dev.cuda else None
    report.figure("residency_gpu_to_cpu_seconds", to_cpu[0] if to_cpu else None)
    report.figure("residency_gpu_allocated_after_evict_gb", allocated_after / GB if dev.cuda else None)
    problems = []
    if row["tier"] != CPU:
        problems.append(f"SDXL tier after eviction is {row['tier']!r}, not 'cpu' (RAM budget "
                        f"{manager.ram_budget / GB:.1f} GB for {measured / GB:.1f} GB?)")
    if not to_cpu:
        problems.append("the adapter's move to the CPU was not called")
    if dev.cuda and allocated_before - allocated_after < 0.9 * modules:
        problems.append(f"GPU memory freed {(allocated_before - allocated_after) / GB:.2f} GB "
                        f"of {modules / GB:.2f} GB of weights")
    report.check("residency_evicted_to_cpu", not problems, "; ".join(problems))

    adapter.moves.clear()
    t0 = time.perf_counter()
    with rig.lease() as pipe:
        lease_s = time.perf_counter() - t0
        row = rig.row()
        to_gpu = [s for d, s in adapter.moves if d == manager.gpu_device]
        report.figure("residency_cpu_to_gpu_seconds", to_gpu[0] if to_gpu else None)
        report.figure("residency_lease_back_seconds", lease_s)
        unet_device = pipe.unet.device.type
        _s, images = generate(pipe, dev, max(64, args.size // 4), 1, seed=7)
        finite = bool(np.isfinite(np.asarray(images)).all())
        del pipe, images
    want_device = "cuda" if dev.cuda else "cpu"
    problems = []
    if row["tier"] != GPU:
        problems.append(f"tier {row['tier']!r}")
    if not to_gpu:
        problems.append("moved back by a reload, not a move" if row["loads"] > 1 else "no move back recorded")
    if unet_device != want_device:
        problems.append(f"UNet on {unet_device}")
    if not finite:
        problems.append("non-finite image after the move back")
    report.check("residency_back_on_gpu", not problems, "; ".join(problems))
    report.figure("residency_evictions", row["evictions"])


# --------------------------------------------------------------------------
# ONNX Runtime: insightface sessions on the CUDA execution provider


def check_onnx(dev: Device, workdir: Path, report: Report, args) -> None:
    import onnxruntime

    from enfoads.models.loaders import faces
    from enfoads.models.tiny import faces as tiny_faces

    report.figure("onnxruntime_version", onnxruntime.__version__)
    report.figure("onnx_available_providers", ",".join(onnxruntime.get_available_providers()))
    root = workdir / "insightface"
    tiny_faces.build_into(root, seed=0)
    if dev.cuda:
        providers = [("CUDAExecutionProvider", {"arena_extend_strategy": "kSameAsRequested",
                                                 "cudnn_conv_algo_search": "HEURISTIC"}), "CPUExecutionProvider"]
        want = faces.CUDA
    else:
        providers = [("CPUExecutionProvider", {})]
        want = faces.CPU
    t0 = time.perf_counter()
    app = faces.load_face_analysis(root, providers=providers, det_size=(640, 640))
    swapper = faces.load_swapper(faces.swapper_path(root), providers=providers)
    report.figure("onnx_load_seconds", time.perf_counter() - t0)

    image = tiny_faces.face_test_pattern()
    found = app.get(image)  # also creates insightface 2.x's fixed-shape detector sessions
    report.figure("onnx_faces_detected", len(found))
    report.check("onnx_face_found", len(found) == 1, f"{len(found)} faces in the test pattern, expected 1")

    sessions = {**{f"analysis:{k}": v for k, v in faces.session_providers(app).items()},
                **{f"swapper:{k}": v for k, v in faces.session_providers(swapper).items()}}
    report.figure("onnx_sessions", len(sessions))
    off = {label: used for label, used in sessions.items() if want not in used}
    common = set(faces.active_providers(app)) & set(faces.active_providers(swapper))
    report.check("onnx_providers", not off and want in common,
                 f"{want} not active in {sorted(off)} (they use {sorted({p for u in off.values() for p in u})}); "
                 f"available: {onnxruntime.get_available_providers()}")

    analysis_ms = []
    for i in range(args.onnx_repeats + 1):
        t0 = time.perf_counter()
        app.get(image)
        if i:  # the first is a warm-up
            analysis_ms.append((time.perf_counter() - t0) * 1000)
    report.figure("onnx_face_analysis_ms", median(analysis_ms))
    if found:
        swap_ms = []
        for i in range(args.onnx_repeats + 1):
            t0 = time.perf_counter()
            out = swapper.get(image, found[0], found[0], paste_back=True)
            if i:
                swap_ms.append((time.perf_counter() - t0) * 1000)
        report.figure("onnx_swap_ms", median(swap_ms))
        report.check("onnx_swap_output", out.shape == image.shape, f"swap output shape {out.shape}")
    del app, swapper


# --------------------------------------------------------------------------
# CTranslate2: a large-v3-turbo-shaped faster-whisper on CUDA, float16


def whisper_v3_tokenizer():
    """Whisper v3's token layout (100 languages, 51866 tokens) on the tiny kit's byte-level BPE."""
    from tokenizers import AddedToken, Tokenizer, models, processors

    from enfoads.models.tiny import whisper as tw

    base = tw._build_tokenizer()  # the v2 layout; its BPE part (ids 0..50256) is shared by v3
    spec = json.loads(base.to_str())
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in spec["model"]["merges"]]
    vocab = spec["model"]["vocab"]
    assert len(vocab) == tw.EOT_ID, len(vocab)
    languages = list(tw.LANGUAGES) + ["yue"]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = base.pre_tokenizer
    tok.decoder = base.decoder
    specials = ["<|endoftext|>", "<|startoftranscript|>"] + [f"<|{c}|>" for c in languages]
    specials += ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>",
                 "<|notimestamps|>"]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    no_ts = tok.token_to_id("<|notimestamps|>")
    n_ts = WHISPER_V3_VOCAB - no_ts - 1
    tok.add_tokens([AddedToken("<|%.2f|>" % (i * 0.02), special=False, normalized=False) for i in range(n_ts)])
    sot, eot = tok.token_to_id("<|startoftranscript|>"), tok.token_to_id("<|endoftext|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftranscript|> <|notimestamps|> $A <|endoftext|>",
        pair="<|startoftranscript|> <|notimestamps|> $A $B <|endoftext|>",
        special_tokens=[("<|startoftranscript|>", sot), ("<|notimestamps|>", no_ts), ("<|endoftext|>", eot)],
    )
    assert tok.get_vocab_size() == WHISPER_V3_VOCAB, tok.get_vocab_size()
    assert no_ts == 50364 and tok.token_to_id("<|30.00|>") == WHISPER_V3_VOCAB - 1
    ids = {
        "sot": sot, "eot": eot, "no_timestamps": no_ts,
        "translate": tok.token_to_id("<|translate|>"), "transcribe": tok.token_to_id("<|transcribe|>"),
        "lang_to_id": {f"<|{c}|>": tok.token_to_id(f"<|{c}|>") for c in languages},
    }
    return tok, ids


def build_whisper(dev: Device, folder: Path, report: Report) -> Path:
    """Random-weight Whisper (turbo shape; tiny for --cpu-smoke), converted by CTranslate2."""
    import torch
    from ctranslate2.converters import TransformersConverter
    from transformers import GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    hf_dir, ct2_dir = folder / "hf", folder / "ct2"
    hf_dir.mkdir(parents=True)
    t0 = time.perf_counter()
    tok, ids = whisper_v3_tokenizer()
    tok.save(str(hf_dir / "tokenizer.json"))
    write_json(hf_dir / "tokenizer_config.json", {
        "tokenizer_class": "WhisperTokenizer", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "model_max_length": 1024})
    shape = WHISPER_TURBO_CONFIG if dev.full else WHISPER_TINY_CONFIG
    suppress = [1, 2, 7, 8, 9, 10, 14, 25, 26, 27, 28, 29, 31, 58, 59, 60, 61, 62, 63, 90, 91, 92, 93]
    suppress += [ids["sot"], ids["translate"], ids["transcribe"], ids["transcribe"] + 1, ids["transcribe"] + 2,
                 ids["transcribe"] + 3]
    common = dict(decoder_start_token_id=ids["sot"], bos_token_id=ids["eot"], eos_token_id=ids["eot"],
                  pad_token_id=ids["eot"], suppress_tokens=suppress, begin_suppress_tokens=[220, ids["eot"]])
    config = WhisperConfig(vocab_size=WHISPER_V3_VOCAB, max_source_positions=1500, max_target_positions=448,
                           **shape, **common)
    torch.manual_seed(0)
    with materialise_on(dev.torch_device, dev.build_dtype):
        model = WhisperForConditionalGeneration(config).eval()
    layers = shape["decoder_layers"]
    model.generation_config = GenerationConfig(
        max_length=448, **common,
        lang_to_id=ids["lang_to_id"], task_to_id={"translate": ids["translate"], "transcribe": ids["transcribe"]},
        no_timestamps_token_id=ids["no_timestamps"], is_multilingual=True, max_initial_timestamp_index=50,
        alignment_heads=[[layers - 2, 0], [layers - 1, 1]],
    )
    model.save_pretrained(hf_dir)
    WhisperFeatureExtractor(feature_size=shape["num_mel_bins"]).save_pretrained(hf_dir)
    del model
    dev.free()
    report.figure("whisper_build_seconds", time.perf_counter() - t0)

    # As the published turbo conversion: float16 weights (CTranslate2 converts them to int8 when
    # a CPU loads them with compute_type="int8").
    t0 = time.perf_counter()
    TransformersConverter(str(hf_dir), copy_files=["tokenizer.json", "preprocessor_config.json"],
                          load_as_float16=True).convert(str(ct2_dir), quantization="float16", force=True)
    report.figure("whisper_convert_seconds", time.perf_counter() - t0)
    shutil.rmtree(hf_dir, ignore_errors=True)
    return ct2_dir


def make_audio(workdir: Path):
    """30 s of 16 kHz audio: espeak-ng speech repeated when present, else an amplitude-modulated tone."""
    import numpy as np

    n = AUDIO_SECONDS * SAMPLE_RATE
    espeak = shutil.which("espeak-ng")
    if espeak:
        try:
            from faster_whisper.audio import decode_audio

            wav = workdir / "speech.wav"
            subprocess.run([espeak, "-w", str(wav), "This is a test of the transcription service on a GPU."],
                           check=True, timeout=60, capture_output=True)
            speech = decode_audio(str(wav), sampling_rate=SAMPLE_RATE)
            speech = np.concatenate([speech, np.zeros(SAMPLE_RATE // 3, dtype=np.float32)])
            return np.resize(speech, n).astype(np.float32), "espeak-ng"
        except Exception as exc:  # noqa: BLE001 - fall back to the tone
            print(f"espeak-ng failed ({exc}); using a tone", file=sys.stderr)
    t = np.arange(n, dtype=np.float64) / SAMPLE_RATE
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    tone += 0.1 * np.sin(2 * np.pi * 660 * t)
    return tone.astype(np.float32), "tone"


def check_whisper(dev: Device, workdir: Path, report: Report, args) -> None:
    import ctranslate2

    from enfoads.models.loaders.speech import load_whisper, whisper_model_bytes

    folder = workdir / "whisper"
    try:
        ct2_dir = build_whisper(dev, folder, report)
        report.figure("whisper_model_gb", whisper_model_bytes(ct2_dir) / GB)
        cuda_devices = ctranslate2.get_cuda_device_count()
        report.figure("whisper_ctranslate2_cuda_devices", cuda_devices)
        t0 = time.perf_counter()
        if dev.cuda:
            model = load_whisper(ct2_dir, device="cuda", compute_type="float16")
        else:
            model = load_whisper(ct2_dir, device="cpu", compute_type="int8")
        report.figure("whisper_load_seconds", time.perf_counter() - t0)
        inner = model.model
        if dev.cuda:
            ok = cuda_devices > 0 and inner.device == "cuda" and inner.compute_type == "float16"
        else:
            ok = inner.device == "cpu"
        report.check("whisper_device", ok, f"ctranslate2 CUDA devices {cuda_devices}, model on {inner.device} "
                                           f"({inner.compute_type}), {inner.n_mels} mel bins")
        audio, source = make_audio(workdir)
        report.figure("whisper_audio_source", source)
        report.figure("whisper_audio_seconds", len(audio) / SAMPLE_RATE)
        options = dict(beam_size=1, temperature=0.0, language="en", without_timestamps=True,
                       condition_on_previous_text=False, max_new_tokens=args.whisper_tokens, vad_filter=False)
        times, segments = [], []
        for i in range(args.repeats + 1):
            t0 = time.perf_counter()
            segments, _info = model.transcribe(audio, **options)
            segments = list(segments)
            if i:  # the first is a warm-up
                times.append(time.perf_counter() - t0)
        report.figure("whisper_transcribe_seconds", median(times))
        report.figure("whisper_realtime_factor", median(times) / AUDIO_SECONDS)
        report.figure("whisper_segments", len(segments))
        del model, inner
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        dev.free()


def check_enhance(dev: Device, workdir: Path, report: Report, args) -> None:
    import numpy as np
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from enhance import full_size_state

    from enfoads.models.loaders.upscale import load_spandrel
    from enfoads.models.tiny.upscalers import GFPGAN_FILE, build_gfpgan_into
    from enfoads.services.face_restore import gfpgan_restorer
    from enfoads.services.upscale_tiles import upscale_image

    device = "cuda" if dev.cuda else "cpu"
    folder = workdir / "enhance"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        path = folder / "RealESRGAN_x4plus.pth"
        if dev.full:
            torch.save(full_size_state("x4plus"), path)
        else:  # the tiny kit's file: same name and layout, 8 features
            from enfoads.models.tiny.upscalers import build_into

            build_into(folder)
        model = load_spandrel(path, device=device, dtype="float16" if dev.cuda else "float32")
        report.figure("enhance_x4plus_dtype", str(model.dtype).replace("torch.", ""))
        pixels = (np.random.RandomState(0).rand(args.size, args.size, 3) * 255).astype(np.uint8)
        upscale_image(model, pixels[:64, :64], scale=4, device=device, dtype=model.dtype)  # kernels, cuDNN
        if dev.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out, tile = upscale_image(model, pixels, scale=4, tile=512, overlap=32, min_tile=64, device=device,
                                      dtype=model.dtype)
            dev.sync()
            times.append(time.perf_counter() - t0)
        report.figure("enhance_x4plus_s_per_output_mp", median(times) / (out.shape[0] * out.shape[1] / 1e6))
        report.figure("enhance_x4plus_tile", tile)
        if dev.cuda:
            report.figure("enhance_x4plus_peak_vram_gb", torch.cuda.max_memory_allocated() / GB)
        report.check("enhance_x4plus_output", out.shape == (4 * args.size, 4 * args.size, 3), f"shape {out.shape}")
        del model
        dev.free()
        build_gfpgan_into(folder)
        gfpgan = load_spandrel(folder / GFPGAN_FILE, device=device, dtype="float32")
        restore = gfpgan_restorer(gfpgan, device=device, dtype=gfpgan.dtype)
        face = (np.random.RandomState(1).rand(512, 512, 3) * 255).astype(np.uint8)
        restore(face)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            restored = restore(face)
            dev.sync()
            times.append(time.perf_counter() - t0)
        report.figure("enhance_gfpgan_ms_per_face", 1000 * median(times))
        report.check("enhance_gfpgan_output", restored.shape == (512, 512, 3), f"shape {restored.shape}")
        del gfpgan, restore
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        dev.free()


def _musetalk_models(dev: Device, workdir: Path):
    """MuseTalk 1.5 at its real sizes with random weights (or the tiny kit), through the product's loader.

    Full size: the UNet of the release's musetalk.json (850 M parameters), sd-vae-ft-mse's VAE config and
    whisper-tiny's encoder config, built in fp16 on the device. The tiny kit goes through ``load_musetalk``.
    """
    import torch

    from enfoads.models.loaders.lipsync import MUSETALK_UNET_CONFIG, MuseTalkModels, load_musetalk, musetalk_paths
    from enfoads.models.loaders.lipsync import sinusoidal_positions

    device = "cuda" if dev.cuda else "cpu"
    if not dev.full:
        from enfoads.models.tiny.musetalk import build_into

        kit = workdir / "musetalk"
        kit.mkdir(parents=True, exist_ok=True)
        build_into(kit, 0)
        return load_musetalk(musetalk_paths(kit), device=device, dtype="float16", converted_dir=kit / "converted")
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    dtype = torch.float16 if dev.cuda else torch.float32
    config = {k: v for k, v in MUSETALK_UNET_CONFIG.items() if not k.startswith("_")}
    unet = UNet2DConditionModel(**config).to(device, dtype).eval()
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4,
                        sample_size=256).to(device, dtype).eval()
    whisper = WhisperModel(WhisperConfig(d_model=384, encoder_layers=4, encoder_attention_heads=6,
                                         decoder_layers=1, decoder_attention_heads=6, encoder_ffn_dim=1536,
                                         decoder_ffn_dim=64, num_mel_bins=80)).encoder.to(device, dtype).eval()
    return MuseTalkModels(unet=unet, vae=vae, whisper_encoder=whisper, features=WhisperFeatureExtractor(),
                          positional=sinusoidal_positions(384).to(device, dtype), device=device, dtype=dtype)


def check_lipsync(dev: Device, workdir: Path, report: Report, args) -> None:
    """MuseTalk frames per second at batch 8 and 16 over a 4 s clip (25 fps: 100 frames), and peak VRAM."""
    import numpy as np
    import torch

    from enfoads.services.avatars import default_face, packaged_default_avatar, read_rgb
    from enfoads.services.lipsync import LipSync
    from enfoads.services.lipsync_mask import FaceGeometry

    models = _musetalk_models(dev, workdir)
    try:
        report.figure("lipsync_unet_parameters_m", sum(p.numel() for p in models.unet.parameters()) / 1e6)
        report.figure("lipsync_weights_gb", models.parameter_bytes() / GB)
        portrait = read_rgb(packaged_default_avatar())
        face = FaceGeometry.from_dict(default_face(portrait.shape[1], portrait.shape[0]))
        seconds = 4.0 if dev.full and dev.cuda else 1.0
        t = np.arange(int(seconds * 16000)) / 16000
        audio = (0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)
        for batch in (8, 16):
            engine = LipSync(models, batch_size=batch, fps=25)
            prepared = engine.prepare(portrait, face)
            sum(1 for _ in engine.frames(prepared, audio[:16000 // 5]))  # kernels, cuDNN
            if dev.cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            count = sum(1 for _ in engine.frames(prepared, audio))
            dev.sync()
            elapsed = time.perf_counter() - t0
            report.figure(f"lipsync_fps_batch{batch}", count / elapsed)
            report.figure(f"lipsync_realtime_x_batch{batch}", count / elapsed / 25)
            if dev.cuda:
                report.figure(f"lipsync_peak_vram_gb_batch{batch}", torch.cuda.max_memory_allocated() / GB)
            report.check(f"lipsync_frames_batch{batch}", count == engine.frame_count(len(audio)), f"{count} frames")
    finally:
        del models
        dev.free()


# --------------------------------------------------------------------------


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(CHECKS),
                    help=f"comma-separated subset of {','.join(CHECKS)} (default: all)")
    ap.add_argument("--steps", type=int, default=4, help="denoising steps (Lightning: 1, 2, 4 or 8; default 4)")
    ap.add_argument("--size", type=int, default=None, help="image side in px (default 1024; 64 with --cpu-smoke)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up (median; default 3)")
    ap.add_argument("--onnx-repeats", type=int, default=20)
    ap.add_argument("--whisper-tokens", type=int, default=16, help="max_new_tokens per transcription window")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="the device's dense fp16 tensor peak, for a GPU missing from the table")
    ap.add_argument("--workdir", default=None, help="where the temporary model files go (default: system temp)")
    ap.add_argument("--cpu-smoke", action="store_true",
                    help="the same code paths with tiny shapes on the CPU (MFU and VRAM n/a)")
    ap.add_argument("--full-shapes", action="store_true",
                    help="with --cpu-smoke: the real sizes on the CPU (slow: minutes, ~20 GB of RAM); "
                         "checks the full configs, files and loaders without a GPU")
    args = ap.parse_args(argv)
    only = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = sorted(set(only) - set(CHECKS))
    if unknown or not only:
        ap.error(f"--only takes names from {','.join(CHECKS)}; got {args.only!r}")
    args.only = only
    if args.size is None:
        args.size = 64 if args.cpu_smoke else 1024
    if args.full_shapes and not args.cpu_smoke:
        ap.error("--full-shapes goes with --cpu-smoke (on a GPU the shapes are always full)")
    if args.size % 8 or args.size < 64:
        ap.error("--size must be a multiple of 8, at least 64")
    if args.steps < 1 or args.repeats < 1:
        ap.error("--steps and --repeats must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    out = sys.stdout
    import torch

    if not args.cpu_smoke and not torch.cuda.is_available():
        print(f"gpu_proof: no CUDA device: torch.cuda.is_available() is False (torch {torch.__version__}, "
              f"built for CUDA {torch.version.cuda}). Run it on a machine with an NVIDIA GPU and a CUDA build "
              "of torch, or use --cpu-smoke.", file=sys.stderr)
        return 2
    report = Report(out)
    started = time.perf_counter()
    dev = Device(cuda=not args.cpu_smoke, full=not args.cpu_smoke or args.full_shapes)
    report.figure("mode", "gpu" if dev.cuda else ("cpu-smoke-full-shapes" if dev.full else "cpu-smoke"))
    report.figure("device", dev.name)
    report.figure("torch_version", torch.__version__)
    report.figure("torch_cuda", torch.version.cuda)
    report.figure("gpu_total_memory_gb", torch.cuda.get_device_properties(0).total_memory / GB if dev.cuda else None)

    from enfoads.models.profiles import detect_hardware

    hardware = detect_hardware()
    report.figure("host_ram_available_gb", hardware.ram_available_bytes / GB)
    workdir = Path(tempfile.mkdtemp(prefix="enfoads-gpu-proof-", dir=args.workdir))
    try:
        rig = SdxlRig(dev, args, workdir, report, hardware)
        try:
            if "sdxl" in args.only:
                with report.section("sdxl"):
                    check_sdxl(rig, report, args)
            if "residency" in args.only:
                with report.section("residency"):
                    check_residency(rig, report, args)
        finally:
            with contextlib.redirect_stdout(sys.stderr):
                rig.close()
        if "onnx" in args.only:
            with report.section("onnx"):
                check_onnx(dev, workdir, report, args)
        if "whisper" in args.only:
            with report.section("whisper"):
                check_whisper(dev, workdir, report, args)
        if "enhance" in args.only:
            with report.section("enhance"):
                check_enhance(dev, workdir, report, args)
        if "lipsync" in args.only:
            with report.section("lipsync"):
                check_lipsync(dev, workdir, report, args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report.figure("proof_total_seconds", time.perf_counter() - started)
    report.figure("checks_failed", ",".join(report.failed) if report.failed else "none")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
