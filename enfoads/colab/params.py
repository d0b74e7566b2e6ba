"""The notebook's parameters: its form values, each overridable by an ``ENFOADS_*`` variable."""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class NotebookParams:
    profile: str
    use_drive: bool
    tunnel: str
    port: int
    data_dir: str
    models_dir: str
    cors_origins: str = ""  # extra frontend origins for the root routes, comma-separated


def _flag(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    return value.strip().lower() in ("1", "true", "yes", "on")


def notebook_params(
    profile: str = "auto", use_drive: bool = False, tunnel: str = "ngrok", port: int = 5000,
    data_dir: str = "", models_dir: str = "", cors_origins: str = "",
) -> NotebookParams:
    """The notebook's form values, each overridden by its environment variable when set."""
    env = os.environ
    params = NotebookParams(
        profile=env.get("ENFOADS_PROFILE", profile),
        use_drive=_flag(env.get("ENFOADS_DRIVE", use_drive)),
        tunnel=env.get("ENFOADS_TUNNEL", tunnel).strip().lower(),
        port=int(env.get("ENFOADS_PORT", port)),
        data_dir=env.get("ENFOADS_DATA_DIR", data_dir),
        models_dir=env.get("ENFOADS_MODELS_DIR", models_dir),
        cors_origins=env.get("ENFOADS_CORS_EXTRA_ORIGINS", cors_origins),
    )
    if params.tunnel not in ("ngrok", "cloudflared", "none"):
        raise ValueError(f"tunnel {params.tunnel!r}: choose ngrok, cloudflared or none")
    return params
