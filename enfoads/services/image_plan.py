"""Which model, checkpoint, steps, guidance and size an image request runs with: ``Plan``, ``ImagePlanner``.

``ImagePlanner`` is a base class of ``enfoads.services.images.ImageService``:
it resolves a request's ``model`` (``_resolve_model``), lists the models a
request may name (``list_models``) and turns validated options into a
``Plan`` (``plan``). It reads the service's ``runtime``, ``models``,
``_lock`` and ``_layout``, set by ``ImageService.__init__``.

How a request becomes a run (``ImageService.plan``):

- Without ``model`` (or ``"auto"``) on an SDXL-Lightning profile: steps 1, 2,
  4 or 8 run SDXL-Lightning with the UNet checkpoint of that step count at
  guidance 0 whatever guidance was sent (Lightning is distilled for guidance
  0); any other step count (the frontend's "quality" mode sends 30 and its
  sliders 10-50) runs the quality model, SDXL base's own UNet from the same
  base repository, with the steps and guidance asked. When the base UNet is
  not installed, the nearest installed Lightning checkpoint runs instead (ties
  go to more steps), and ``notes`` says so. Checkpoints are swapped into the
  one resident pipeline (``loaders.image.swap_unet_weights``): the text
  encoders and VAE are loaded once.
- ``model="lightning"`` (or a catalogue SDXL-Lightning id): Lightning only,
  nearest checkpoint. ``model="base"``: SDXL base only.
- A distilled model (SD-Turbo, the CPU profile's): steps capped at its
  maximum (4), guidance 0.
- Any other model (``user:<name>``, a dropped-in checkpoint): the steps and
  guidance asked; guidance defaults to 5 (SDXL) or 7.5 (SD 1.x).
- The response always says what ran: ``model``, ``mode``, ``unet``,
  ``steps``, ``guidance_used``, next to what was asked.

Sizes: ``aspect_ratio`` gives the frontend's exact sizes (1:1 is 1024x1024)
on SDXL-class models, scaled to the model's native resolution on 512-px
models (SD-Turbo, SD 1.5: 16:9 becomes 672x384); ``width``/``height`` are
always honoured; with neither, the profile's default size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from enfoads.errors import InvalidInput
from enfoads.services.image_options import ASPECT_RATIOS, MAX_SEED
from enfoads.services.styles import apply_style
from enfoads.models.families import family_for

__all__ = ["LIGHTNING_STEPS", "ImagePlanner", "Plan"]

LIGHTNING_STEPS = (1, 2, 4, 8)
QUALITY_DEFAULT_STEPS = 30
DEFAULT_GUIDANCE = {"sdxl": 5.0, "sd15": 7.5, "sd2": 7.5}
# Distilled catalogue models and their limits (until the catalogue carries them as options).
DISTILLED = {"sd-turbo": {"max_steps": 4, "guidance": 0.0, "native_px": 512, "family": "sd2"}}

_AUTO = {None, "", "auto", "default"}
_LIGHTNING_ALIASES = {"lightning", "sdxl-lightning"}
_BASE_ALIASES = {"base", "quality", "sdxl-base"}


@dataclass
class Plan:
    """Everything one render needs, resolved from validated options."""

    key: str  # residency key to lease
    model: str  # what the response calls the model
    family: str  # "sdxl", "sd15", "sd2"
    mode: str  # "lightning", "quality", "distilled", "standard"
    steps: int
    guidance: float
    width: int
    height: int
    prompt: str
    negative_prompt: str
    seeds: list[int]
    n: int
    format: str
    preview_every: int
    revision: str
    unet_weights: str | None = None  # a UNet file to swap in first (SDXL-Lightning family)
    unet_mode: str | None = None  # "lightning", "lightning-x0" or "base"
    expected_device: str = "cpu"
    expected_dtype: str = "float32"
    notes: list[str] = field(default_factory=list)
    style: str | None = None

    @property
    def unet(self) -> str | None:
        return Path(self.unet_weights).name if self.unet_weights else None


def _nearest(steps: int, available) -> int:
    """The nearest of ``available`` step counts; ties go to more steps."""
    return min(sorted(available), key=lambda s: (abs(s - steps), -s))


class ImagePlanner:
    """Model resolution, listing and planning for ``ImageService`` (a base class, no state of its own)."""

    # ------------------------------------------------------------------ models

    @property
    def default_entry(self):
        return self.runtime.entry("image")

    def _default_kind(self) -> str:
        entry = self.default_entry
        if family_for(entry).swaps_unets:
            return "lightning"
        return "distilled" if self._distilled(entry) else "standard"

    @staticmethod
    def _distilled(entry) -> dict | None:
        if "max_steps" in entry.options:
            return {"max_steps": int(entry.options["max_steps"]), "guidance": float(entry.options.get("guidance", 0.0))}
        return DISTILLED.get(entry.id)

    def lightning_layout(self) -> dict:
        """Paths of the profile's SDXL-Lightning files: base folder, checkpoint folder, installed step counts."""
        with self._lock:
            if self._layout is None:
                from enfoads.models.registry import local_paths
                from enfoads.models.tiny.sdxl import LIGHTNING_UNET_FILES

                paths = local_paths(self.default_entry, self.runtime.settings.models_dir)
                unet_dir = Path(paths["unet"]).parent
                self._layout = {
                    "base": Path(paths["base"]),
                    "vae": Path(paths["vae"]) if paths.get("vae") else None,
                    "unet_dir": unet_dir,
                    "files": dict(LIGHTNING_UNET_FILES),
                }
            layout = dict(self._layout)
        layout["installed"] = tuple(s for s in LIGHTNING_STEPS if (layout["unet_dir"] / layout["files"][s]).is_file())
        from enfoads.models.loaders.image import base_unet_weights

        layout["base_unet"] = base_unet_weights(layout["base"])
        return layout

    def _same_lightning_family(self, entry) -> bool:
        default = self.default_entry
        if not (family_for(entry).swaps_unets and family_for(default).swaps_unets):
            return False
        if entry.tiny or default.tiny:
            return entry.tiny == default.tiny
        return entry.sources.get("base") == default.sources.get("base")

    def _resolve_model(self, model: str | None) -> dict:
        """What a request's ``model`` means: {kind, key, entry|info}; ``InvalidInput`` (field model) if unusable."""
        from enfoads.models.catalog import CATALOG
        from enfoads.models.user_models import USER_PREFIX
        from enfoads.models.registry import presence

        default_kind = self._default_kind()
        name = model.strip() if isinstance(model, str) else model
        lowered = name.lower() if isinstance(name, str) else name
        default_key = self.runtime.model_key("image")
        if lowered in _AUTO or name == default_key and default_kind != "lightning":
            return {"kind": "auto" if default_kind == "lightning" else default_kind, "key": default_key,
                    "entry": self.default_entry}
        if lowered in _LIGHTNING_ALIASES or lowered in _BASE_ALIASES:
            if default_kind != "lightning":
                raise InvalidInput.field(
                    "model", f"{name!r} needs an SDXL-Lightning profile; this server runs the "
                    f"{self.runtime.profile.name!r} profile ({default_key})")
            return {"kind": "lightning" if lowered in _LIGHTNING_ALIASES else "base", "key": default_key,
                    "entry": self.default_entry}
        if name.startswith(USER_PREFIX):
            info = self.models.get(name)
            if info is None:
                users = [i.id for i in self.models.list() if i.valid]
                raise InvalidInput.field("model", f"no user model {name!r} in the models folder's image/ "
                                                  f"subfolder; available: {', '.join(users) or 'none'}")
            if not info.valid:
                raise InvalidInput.field("model", f"{name!r} cannot be used: {info.reason}")
            return {"kind": "standard", "key": info.id, "info": info}
        entry = CATALOG.get(name)
        if entry is None or entry.role != "image":
            raise InvalidInput.field("model", f"unknown image model {name!r}; choose one of: "
                                              f"{', '.join(m['id'] for m in self.list_models() if m['valid'])}")
        if self._same_lightning_family(entry):
            return {"kind": "lightning", "key": default_key, "entry": self.default_entry}
        if entry.id == default_key:
            return {"kind": default_kind, "key": default_key, "entry": entry}
        here = presence(entry, self.runtime.settings.models_dir)
        if not here.present and not (entry.tiny and self.runtime.profile.name == "tiny"):
            raise InvalidInput.field("model", f"{name!r} is not installed: {here.detail}")
        self._ensure_registered(entry)
        kind = "distilled" if self._distilled(entry) else ("lightning-fixed" if family_for(entry).swaps_unets else "standard")
        return {"kind": kind, "key": entry.id, "entry": entry}

    def _ensure_registered(self, entry) -> None:
        from enfoads.models.adapters import adapter_for, preferred_tier
        from enfoads.models.residency_types import ResidencyError

        residency = self.runtime.residency
        if entry.id in residency.registered():
            return
        choice = replace(self.runtime.choice("image"), model_id=entry.id)
        adapter = adapter_for(entry, choice, self.runtime.settings.models_dir)
        try:
            residency.register(adapter, preferred=preferred_tier(choice))
        except ResidencyError:
            pass  # registered meanwhile by another thread

    def check_model(self, model: str | None) -> None:
        self._resolve_model(model)

    def list_models(self, *, refresh: bool = False) -> list[dict]:
        """Every image model a request may name, with ``valid`` and the reason when not."""
        from enfoads.models.catalog import CATALOG
        from enfoads.models.registry import presence

        if refresh:
            self.models.refresh()
        default_key = self.runtime.model_key("image")
        out = []
        if self._default_kind() == "lightning":
            layout = self.lightning_layout() if self._default_present() else {"installed": (), "base_unet": None}
            out.append({"id": "auto", "kind": "rule", "valid": True, "default": True, "family": "sdxl",
                        "description": "SDXL-Lightning for 1, 2, 4 or 8 steps (guidance 0); SDXL base otherwise"})
            out.append({"id": "lightning", "kind": "rule", "valid": True, "default": False, "family": "sdxl",
                        "description": "SDXL-Lightning only, nearest checkpoint", "steps": list(layout["installed"])})
            base_ok = layout["base_unet"] is not None
            out.append({"id": "base", "kind": "rule", "valid": base_ok, "default": False, "family": "sdxl",
                        "description": "SDXL base 1.0 (quality mode: 10-50 steps with guidance)",
                        "reason": None if base_ok else "the SDXL base UNet weights are not installed "
                                                              "(`enfoads preload --with quality`)"})
        for entry in CATALOG.values():
            if entry.role != "image":
                continue
            if entry.tiny and self.runtime.profile.name != "tiny" and entry.id != default_key:
                continue
            here = presence(entry, self.runtime.settings.models_dir)
            valid = here.present or entry.id == default_key or bool(entry.tiny and self.runtime.profile.name == "tiny")
            out.append({"id": entry.id, "kind": "catalogue", "valid": valid, "default": entry.id == default_key,
                        "description": entry.description, "licence": entry.licence,
                        "reason": None if valid else here.detail})
        for info in self.models.list():
            out.append({"id": info.id, "kind": "user", "valid": info.valid, "default": False,
                        "family": info.family, "description": f"{info.kind.replace('_', ' ')}: {info.path}",
                        "reason": info.reason})
        return out

    def _default_present(self) -> bool:
        from enfoads.models.registry import presence

        entry = self.default_entry
        return bool(entry.tiny) or presence(entry, self.runtime.settings.models_dir).present

    # ------------------------------------------------------------------ plan

    def plan(self, options: dict) -> Plan:
        """Resolve validated options into what will run (model, checkpoint, steps, guidance, size, prompt)."""
        resolved = self._resolve_model(options.get("model"))
        kind, key = resolved["kind"], resolved["key"]
        steps_req, guidance_req = options.get("steps"), options.get("guidance")
        notes: list[str] = []
        unet_weights = unet_mode = None
        family, native, revision_files, revision = "sdxl", 1024, [], ""
        profile_opts = dict(self.runtime.choice("image").options)

        if kind in ("auto", "lightning", "base"):
            layout = self.lightning_layout()
            installed = layout["installed"]
            steps_default = int(profile_opts.get("steps", 4))
            steps = steps_req if steps_req is not None else steps_default
            use_base = kind == "base" or (kind == "auto" and steps not in LIGHTNING_STEPS)
            if use_base and layout["base_unet"] is None:
                if kind == "base":
                    raise InvalidInput.field("model", "the SDXL base UNet (quality mode) is not installed; "
                                                      "run `enfoads preload --with quality`")
                use_base = False
                notes.append(f"{steps} steps needs the quality model (SDXL base UNet), which is not installed "
                             f"(`enfoads preload --with quality`); ran SDXL-Lightning instead")
            if use_base:
                mode = "quality"
                if kind == "base" and steps_req is None:
                    steps = QUALITY_DEFAULT_STEPS
                guidance = guidance_req if guidance_req is not None else DEFAULT_GUIDANCE["sdxl"]
                unet_weights, unet_mode = str(layout["base_unet"]), "base"
                model_name = "tiny-sdxl-base" if self.default_entry.tiny else "sdxl-base-1.0"
            else:
                mode = "lightning"
                if not installed:
                    raise InvalidInput.field("model", "no SDXL-Lightning UNet checkpoint is installed; run `enfoads preload`")
                ck = steps if steps in installed else _nearest(steps, installed)
                if ck != steps:
                    why = "is not an SDXL-Lightning step count" if steps not in LIGHTNING_STEPS else "has no installed checkpoint"
                    notes.append(f"{steps} steps {why} (1, 2, 4, 8); ran the nearest, {ck} steps")
                steps = ck
                if guidance_req not in (None, 0, 0.0):
                    notes.append(f"SDXL-Lightning is distilled for guidance 0: guidance {guidance_req:g} was not used")
                guidance = 0.0
                unet_weights = str(layout["unet_dir"] / layout["files"][ck])
                unet_mode = "lightning-x0" if ck == 1 else "lightning"
                model_name = key if self.default_entry.tiny else f"sdxl-lightning-{ck}step"
            revision_files = [layout["base"] / "model_index.json", layout["base"] / "unet" / "config.json",
                              Path(unet_weights)]
            if layout.get("vae"):
                revision_files.append(layout["vae"] / "config.json")
        elif kind == "distilled":
            entry = resolved["entry"]
            limits = self._distilled(entry)
            family, native = limits.get("family", "sd15"), int(limits.get("native_px", 512))
            mode, model_name = "distilled", entry.id
            if steps_req is not None:
                steps = steps_req
            elif entry.id == self.runtime.model_key("image"):
                steps = int(profile_opts.get("steps", 2))
            else:
                steps = 2
            if steps > limits["max_steps"]:
                notes.append(f"{entry.id} is distilled for 1-{limits['max_steps']} steps: ran {limits['max_steps']} "
                             f"instead of {steps}")
                steps = limits["max_steps"]
            if guidance_req not in (None, limits["guidance"]):
                notes.append(f"{entry.id} is distilled for guidance {limits['guidance']:g}: "
                             f"guidance {guidance_req:g} was not used")
            guidance = limits["guidance"]
            revision_files = self._catalogue_files(entry)
        elif kind == "lightning-fixed":
            entry = resolved["entry"]
            mode, model_name = "lightning", entry.id
            steps = int(entry.options.get("steps", 4))
            if steps_req not in (None, steps):
                notes.append(f"{entry.id} is a {steps}-step checkpoint: ran {steps} steps instead of {steps_req}")
            if guidance_req not in (None, 0, 0.0):
                notes.append(f"SDXL-Lightning is distilled for guidance 0: guidance {guidance_req:g} was not used")
            guidance = 0.0
            revision_files = self._catalogue_files(entry)
        else:  # standard: user models and plain catalogue folders
            info = resolved.get("info")
            if info is not None:
                family, native, revision = info.family or "sdxl", info.native_px, info.revision
            else:
                entry = resolved["entry"]
                revision_files = self._catalogue_files(entry)
            mode, model_name = "standard", key
            steps = steps_req if steps_req is not None else QUALITY_DEFAULT_STEPS
            guidance = guidance_req if guidance_req is not None else DEFAULT_GUIDANCE.get(family, 5.0)

        width, height = self._size(options, native, key)
        prompt, negative, style_info = apply_style(options.get("style"), options["prompt"],
                                                   options.get("negative_prompt") or "")
        if options.get("negative_prompt") and guidance <= 1:
            notes.append("the negative prompt has no effect at guidance 1 or below")
        if not revision:
            from enfoads.models.checkpoint_files import _fingerprint

            revision = _fingerprint([Path(p) for p in revision_files])
        every = options.get("preview_every")
        if every is None:
            every = 1 if steps <= 8 else math.ceil(steps / 8)
        seeds = [(int(options["seed"]) + i) % (MAX_SEED + 1) for i in range(int(options.get("n") or 1))]
        device, dtype = self._expected_placement(key)
        return Plan(
            key=key, model=model_name, family=family, mode=mode, steps=int(steps), guidance=float(guidance),
            width=width, height=height, prompt=prompt, negative_prompt=negative, seeds=seeds, n=len(seeds),
            format=options.get("format") or "png", preview_every=int(every), revision=revision,
            unet_weights=unet_weights, unet_mode=unet_mode, expected_device=device, expected_dtype=dtype,
            notes=notes, style=style_info.get("style"),
        )

    def _catalogue_files(self, entry) -> list[Path]:
        from enfoads.models.registry import local_paths

        try:
            paths = local_paths(entry, self.runtime.settings.models_dir)
        except Exception:
            return []
        files = []
        for p in paths.values():
            p = Path(p)
            files.extend([p] if p.is_file() else sorted(p.glob("*.json")) + sorted(p.glob("*/*.safetensors")))
        return files

    def _size(self, options: dict, native: int, key: str) -> tuple[int, int]:
        if options.get("width") and options.get("height"):
            return int(options["width"]), int(options["height"])
        ratio = options.get("aspect_ratio")
        if ratio:
            w, h = ASPECT_RATIOS[ratio]
            if native >= 1024:
                return w, h
            scale = native / 1024
            return max(64, int(round(w * scale / 8)) * 8), max(64, int(round(h * scale / 8)) * 8)
        opts = self.runtime.choice("image").options
        if key == self.runtime.model_key("image") and opts.get("width") and opts.get("height"):
            return int(opts["width"]), int(opts["height"])
        return native, native

    def _expected_placement(self, key: str) -> tuple[str, str]:
        residency = self.runtime.residency
        choice = self.runtime.choice("image")
        device = residency.gpu_device if residency.gpu_budget > 0 and choice.device == "gpu" else "cpu"
        dtype = choice.dtype if device.startswith("cuda") else "float32"
        return device, dtype
