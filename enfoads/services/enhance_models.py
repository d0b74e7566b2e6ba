"""Which upscaler or face restorer a request gets: the profile's, another catalogued one, or a drop-in.

A name resolves to a residency key and the model's scale without loading
anything: catalogue entries carry their scale, drop-ins were read once at
discovery. A catalogued model other than the profile's is registered with the
residency manager the first time it is asked for (when installed); an unknown,
uninstalled, invalid or wrong-role name is a 400 naming the field.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from enfoads.errors import InvalidInput
from enfoads.models.catalog import CATALOG, ModelEntry
from enfoads.models.catalog_enhance import RESTORE, UPSCALE
from enfoads.models.user_upscalers import USER_UPSCALER_PREFIX, UserUpscalers

__all__ = ["EnhanceModel", "EnhanceModels"]

_ROLE_WORDS = {UPSCALE: "upscaler", RESTORE: "face restorer"}


@dataclass(frozen=True)
class EnhanceModel:
    key: str  # the residency key to lease
    role: str  # "upscale" or "restore"
    scale: int
    licence: str


class EnhanceModels:
    """The enhance models of one runtime (its profile's defaults, the catalogue, the drop-in folder)."""

    def __init__(self, runtime, *, user: UserUpscalers | None = None):
        self.runtime = runtime
        self.user = user if user is not None else UserUpscalers(runtime)

    def default_key(self, role: str) -> str:
        return self.runtime.model_key(role)

    def _catalogued(self) -> list[ModelEntry]:
        tiny = self.runtime.profile.name == "tiny"
        return [e for e in CATALOG.values() if e.role in (UPSCALE, RESTORE) and bool(e.tiny) == tiny]

    def resolve(self, name: str | None, role: str, *, field: str) -> EnhanceModel:
        """The model ``name`` (default the profile's) for ``role``; InvalidInput naming ``field`` otherwise."""
        from enfoads.models.registry import presence

        key = name or self.default_key(role)
        if key.startswith(USER_UPSCALER_PREFIX):
            info = self.user.get(key)
            if info is None:
                raise InvalidInput.field(field, f"there is no {key[len(USER_UPSCALER_PREFIX):]!r} in "
                                                f"{self.user.folder} (.pth or .safetensors)")
            if not info.valid:
                raise InvalidInput.field(field, f"{key} cannot be used: {info.reason}")
            self._check_role(key, info.role, role, field)
            return EnhanceModel(key, info.role, info.scale, info.as_dict()["licence"])
        entry = CATALOG.get(key)
        if entry is None or entry.role not in (UPSCALE, RESTORE):
            known = ", ".join(e.id for e in self._catalogued() if e.role == role)
            raise InvalidInput.field(field, f"unknown {_ROLE_WORDS[role]} {key!r}; choose one of {known}, or a "
                                            f"file of {self.user.folder} as {USER_UPSCALER_PREFIX}<name>")
        self._check_role(key, entry.role, role, field)
        if key != self.default_key(role):
            here = presence(entry, self.runtime.settings.models_dir)
            if not here.present and not entry.tiny:
                raise InvalidInput.field(field, f"{key} is not installed ({here.detail}); install it with "
                                                "`enfoads preload --with upscalers` (or --only " + key + ")")
            self._ensure_registered(entry)
        return EnhanceModel(key, entry.role, int(entry.options.get("scale", 1)), entry.licence)

    @staticmethod
    def _check_role(key: str, actual: str, wanted: str, field: str) -> None:
        if actual != wanted:
            hint = "restore_model" if actual == RESTORE else "model"
            raise InvalidInput.field(field, f"{key} is a {_ROLE_WORDS[actual]}, not a {_ROLE_WORDS[wanted]}; "
                                            f"name it as {hint}")

    def _ensure_registered(self, entry: ModelEntry) -> None:
        from enfoads.models.adapters import adapter_for, preferred_tier
        from enfoads.models.residency_types import ResidencyError

        residency = self.runtime.residency
        if entry.id in residency.registered():
            return
        choice = replace(self.runtime.choice(entry.role), model_id=entry.id)
        try:
            residency.register(adapter_for(entry, choice, self.runtime.settings.models_dir),
                               preferred=preferred_tier(choice))
        except ResidencyError:
            pass  # registered meanwhile by another request

    def listing(self) -> list[dict]:
        """Every enhance model a request may name, catalogued and dropped in, valid or not, with the reason."""
        from enfoads.models.registry import presence

        out = []
        for entry in self._catalogued():
            here = presence(entry, self.runtime.settings.models_dir)
            out.append({"id": entry.id, "role": entry.role, "source": "catalogue", "description": entry.description,
                        "scale": int(entry.options.get("scale", 1)), "speed": entry.options.get("speed"),
                        "licence": entry.licence, "download_bytes": entry.download_bytes,
                        "default": entry.id == self.default_key(entry.role),
                        "valid": True, "present": here.present, "detail": here.detail})
        for info in self.user.list():
            item = {**info.as_dict(), "source": "drop-in", "default": False, "present": True}
            item["detail"] = info.reason if not info.valid else info.path
            out.append(item)
        return out
