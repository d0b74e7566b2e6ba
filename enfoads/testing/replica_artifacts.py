"""The tiny models the replicas hold, built once per build and shared by the repositories that use them.

:class:`_Artifacts` builds each lazily, as {relative path: bytes}: the tiny
SDXL re-saved in both real variants (plus the fp16-fix VAE), the tiny SD 2.x
pipeline, tiny CTranslate2 Whispers with 80 or 128 mel bins, the insightface
models and a tiny Piper voice per catalogued voice; :func:`_buffalo_zip` packs
the insightface pack as the release archive. Which file of which repository
gets which bytes is ``enfoads.testing.replica_contents``.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Callable, Mapping

from enfoads.testing import replica_files as data

ZIP_DATE = (2024, 1, 1, 0, 0, 0)


# ---------------------------------------------------------------------------
# Tiny models, built once per build (shared by the repositories that use them)
# ---------------------------------------------------------------------------
class _Artifacts:
    """Lazily built tiny models, as {relative path: bytes}."""

    def __init__(self, seed: int, workdir: Path):
        self.seed = seed
        self.workdir = workdir
        self._memo: dict[str, object] = {}

    def _once(self, key: str, build: Callable[[], object]):
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]

    def sdxl(self) -> dict[str, bytes]:
        return self._once("sdxl", lambda: _build_sdxl(self.seed, self.workdir / "sdxl"))

    def sd2(self) -> dict[str, bytes]:
        def build():
            from enfoads.models.tiny import sd2

            folder = self.workdir / "sd2"
            with _quiet_libraries():
                sd2.build_into(folder, self.seed)
            return _read_tree(folder)

        return self._once("sd2", build)

    def whisper(self, n_mels: int, *, preprocessor: bool, vocabulary: str) -> dict[str, bytes]:
        key = f"whisper-{n_mels}-{preprocessor}-{vocabulary}"
        return self._once(
            key,
            lambda: _build_whisper(self.seed, self.workdir / key, n_mels=n_mels, preprocessor=preprocessor,
                                   vocabulary=vocabulary),
        )

    def faces(self) -> dict[str, bytes]:
        def build():
            from enfoads.models.tiny import faces

            return {rel: model.SerializeToString() for rel, model in faces.build_models(self.seed).items()}

        return self._once("faces", build)

    def piper_voice(self, name: str) -> tuple[bytes, bytes]:
        return self._once(f"piper-{name}", lambda: _build_piper_voice(self.seed, name, self.workdir / f"piper-{name}"))

    def musetalk(self) -> dict[str, bytes]:
        """The tiny MuseTalk kit in its three folders: ``musetalkV15/``, ``sd-vae/``, ``whisper/``."""
        def build():
            from enfoads.models.tiny import musetalk

            folder = self.workdir / "musetalk"
            with _quiet_libraries():
                musetalk.build_into(folder, self.seed)
            return _read_tree(folder)

        return self._once("musetalk", build)

    def release_file(self, listing: data.ReleaseFileListing) -> bytes:
        """A release ``.pth`` in its real layout: the tiny kit's RRDBNet or compact model, or GFPGAN's full
        architecture (spandrel loads no smaller one) with random weights."""
        from enfoads.models.tiny import upscalers

        def build() -> dict[str, bytes]:
            folder = self.workdir / "enhance"
            folder.mkdir(parents=True, exist_ok=True)
            if listing.architecture == "GFPGAN":
                upscalers.build_gfpgan_into(folder, self.seed)
            else:
                upscalers.build_into(folder, self.seed)
            return {p.name: p.read_bytes() for p in folder.iterdir() if p.suffix == ".pth"}

        tiny_name = {"ESRGAN": "RealESRGAN_x4plus.pth", "Compact": "realesr-general-x4v3.pth",
                     "GFPGAN": upscalers.GFPGAN_FILE}[listing.architecture]
        key = "enhance-gfpgan" if listing.architecture == "GFPGAN" else "enhance"
        return self._once(key, build)[tiny_name]


def _read_tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class _quiet_libraries:
    """Keep diffusers/transformers notices (fp16 casts, weight loading bars) out of test output."""

    def __enter__(self):
        from diffusers.utils import logging as dlog
        from transformers.utils import logging as tlog

        self._levels = (dlog.get_verbosity(), tlog.get_verbosity())
        dlog.set_verbosity_error()
        tlog.set_verbosity_error()
        self._bars = (dlog.is_progress_bar_enabled(), tlog.is_progress_bar_enabled())
        dlog.disable_progress_bar()
        tlog.disable_progress_bar()
        return self

    def __exit__(self, *exc):
        from diffusers.utils import logging as dlog
        from transformers.utils import logging as tlog

        dlog.set_verbosity(self._levels[0])
        tlog.set_verbosity(self._levels[1])
        if self._bars[0]:
            dlog.enable_progress_bar()
        if self._bars[1]:
            tlog.enable_progress_bar()


def _build_sdxl(seed: int, work: Path) -> dict[str, bytes]:
    """The tiny SDXL kit (enfoads.models.tiny.sdxl) re-saved in both real variants, plus an fp16-fix VAE.

    Keys: the SDXL base folder's paths, the four ``sdxl_lightning_*`` UNet files, and
    ``vae_fix/config.json`` / ``vae_fix/diffusion_pytorch_model.safetensors``.
    """
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from enfoads.models.tiny import sdxl

    kit = work / "kit"
    kit.mkdir(parents=True, exist_ok=True)
    with _quiet_libraries():
        sdxl.build_into(kit, seed)
        base = kit / sdxl.BASE_SUBDIR
        out: dict[str, bytes] = {
            "model_index.json": (base / "model_index.json").read_bytes(),
            "scheduler/scheduler_config.json": (base / "scheduler" / "scheduler_config.json").read_bytes(),
        }
        # The kit's files carry the fp16 variant's names; load them and save each variant for real.
        components = {
            "text_encoder": CLIPTextModel,
            "text_encoder_2": CLIPTextModelWithProjection,
            "unet": UNet2DConditionModel,
            "vae": AutoencoderKL,
        }
        for name, cls in components.items():
            model = cls.from_pretrained(base / name, variant="fp16").float().eval()
            plain, half = work / "fp32" / name, work / "fp16" / name
            model.save_pretrained(plain, safe_serialization=True)
            model.to(torch.float16).save_pretrained(half, safe_serialization=True, variant="fp16")
            for folder in (plain, half):
                for f in sorted(folder.glob("*.safetensors")):
                    out[f"{name}/{f.name}"] = f.read_bytes()
            # The kit's config as written at build time (a re-saved one records the temporary path).
            out[f"{name}/config.json"] = (base / name / "config.json").read_bytes()
        # CLIP tokenizers in the published four-file layout (vocab.json, merges.txt, ...): the kit's own
        # writer, so the vocabulary is the one its text encoders were sized for.
        for name, pad in (("tokenizer", "<|endoftext|>"), ("tokenizer_2", "!")):
            folder = work / "tokenizers" / name
            sdxl._write_clip_tokenizer(folder, pad)
            for f in sorted(folder.iterdir()):
                out[f"{name}/{f.name}"] = f.read_bytes()
        for filename in sdxl.LIGHTNING_UNET_FILES.values():
            out[filename] = (kit / filename).read_bytes()
        # madebyollin/sdxl-vae-fp16-fix: the same architecture, its own weights, fp32 only, no upcast needed.
        vae_config = dict(AutoencoderKL.load_config(base / "vae"))
        vae_config["force_upcast"] = False
        torch.manual_seed(seed * 1000 + 16)
        fix = AutoencoderKL.from_config({k: v for k, v in vae_config.items() if not k.startswith("_")}).eval()
        fix.save_pretrained(work / "vae_fix", safe_serialization=True)
        for name in ("config.json", "diffusion_pytorch_model.safetensors"):
            out[f"vae_fix/{name}"] = (work / "vae_fix" / name).read_bytes()
    return out


def _build_whisper(seed: int, work: Path, *, n_mels: int, preprocessor: bool, vocabulary: str) -> dict[str, bytes]:
    """A tiny faster-whisper folder like ``enfoads.models.tiny.whisper`` builds, with ``n_mels`` mel bins.

    float16 weights (the published conversions are float16), ``vocabulary.json`` or
    ``vocabulary.txt`` (one token per line, as older converters wrote), with or without
    ``preprocessor_config.json``.
    """
    from enfoads.models.tiny import whisper as tw

    ct2_dir = work / "ct2"
    ct2_dir.mkdir(parents=True, exist_ok=True)
    with _quiet_libraries():
        tw.build_into(ct2_dir, seed * 1000 + n_mels, n_mels=n_mels, quantization="float16", preprocessor=preprocessor)
    out = _read_tree(ct2_dir)
    if vocabulary == "txt":
        tokens = json.loads(out.pop("vocabulary.json"))
        out["vocabulary.txt"] = ("\n".join(tokens) + "\n").encode()
    return out


_ESPEAK_VOICES = {"es_MX": "es-419", "es_AR": "es-419", "es_ES": "es", "en_US": "en-us", "en_GB": "en-gb-x-rp"}
_LANGUAGE_NAMES = {
    "es": ("Español", "Spanish"),
    "en": ("English", "English"),
}
_COUNTRIES = {"MX": "Mexico", "AR": "Argentina", "ES": "Spain", "US": "United States", "GB": "Great Britain"}


def _build_piper_voice(seed: int, name: str, work: Path) -> tuple[bytes, bytes]:
    """The tiny Piper voice (``enfoads.models.tiny.piper``) as voice ``name``: its graph, its config for that language."""
    from enfoads.models.tiny import piper as tp

    index = sorted(data.PIPER_VOICE_FILES).index(name)
    tp.build_into(work, seed * 1000 + index)
    onnx_bytes = (work / f"{tp.VOICE_NAME}.onnx").read_bytes()
    config = json.loads((work / f"{tp.VOICE_NAME}.onnx.json").read_text(encoding="utf-8"))
    locale, speaker, quality = name.split("-", 2)
    family, region = locale.split("_")
    native, english = _LANGUAGE_NAMES.get(family, (family, family))
    config["espeak"] = {"voice": _ESPEAK_VOICES.get(locale, family)}
    config["language"] = {"code": locale, "family": family, "region": region, "name_native": native,
                          "name_english": english, "country_english": _COUNTRIES.get(region, region)}
    config["audio"] = {**config["audio"], "quality": quality}
    config["dataset"] = speaker
    return onnx_bytes, json.dumps(config, ensure_ascii=False, indent=1).encode("utf-8")


def _buffalo_zip(pack: Mapping[str, bytes], listing: data.ArchiveListing) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(listing.member_names):
            zf.writestr(zipfile.ZipInfo(name, date_time=ZIP_DATE), pack[name])
    return buf.getvalue()
