"""Every knob of the product, from ``ENFOADS_*`` environment variables and CLI flags.

One ``Settings`` object is built at start and passed explicitly to whatever
needs it; nothing reads the environment later. Precedence: CLI flags (passed
as keyword arguments) > environment > defaults.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from enfoads.models.profiles import GIB, Hardware, Profile, choose_profile


# Where the frontend runs during development (Vite dev and preview, CRA).
DEFAULT_CORS_ORIGINS = (
    "http://localhost:5173",
    "http://127.0.0.1:5173",
    "http://localhost:4173",
    "http://localhost:3000",
)


def default_models_dir() -> Path:
    """The Hugging Face hub cache, honouring HF_HUB_CACHE and HF_HOME like huggingface_hub does."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    hf_home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")), "huggingface"
    )
    return Path(hf_home).expanduser() / "hub"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ENFOADS_", extra="forbid", frozen=True)

    profile: Literal["auto", "t4", "gpu", "cpu", "tiny"] = Field(
        "auto", description="hardware profile; auto picks t4/gpu on CUDA, cpu otherwise"
    )
    data_dir: Path = Field(Path("enfoads-data"), description="jobs database and assets (may be on Google Drive)")
    models_dir: Path = Field(default_factory=default_models_dir, description="model cache (default: the HF cache)")
    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(5000, ge=1, le=65535)
    api_key: SecretStr | None = Field(None, description="API key; generated and stored in the data dir if unset")
    gpu_budget_gb: float | None = Field(
        None, ge=0, description="GPU memory for models; default total VRAM minus the profile's reserve"
    )
    ram_budget_gb: float | None = Field(
        None, ge=0, description="host RAM for models; default available RAM at start minus a reserve"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_CORS_ORIGINS),
        description="comma-separated origins of the frontend allowed by CORS (never '*')",
    )
    idle_ttl_s: float | None = Field(None, gt=0, description="unload models unused for this many seconds")
    lease_wait_s: float = Field(60.0, gt=0, description="how long a job waits for memory held by another")
    max_queued_jobs: int = Field(100, ge=1, description="queued jobs beyond this are refused (HTTP 429)")
    cpu_workers: int = Field(2, ge=1, le=32, description="threads for CPU-only jobs (TTS, ffmpeg)")
    job_attempts: int = Field(2, ge=1, le=10, description="starts a job gets when restarts interrupt it")
    max_body_mb: float = Field(50.0, gt=0, description="largest request body, except uploads for transcription")
    max_upload_mb: float = Field(100.0, gt=0, description="largest audio upload for transcription")
    sync_timeout_s: float = Field(
        120.0, gt=0, description="how long /generate-image and /face-swap wait before answering with the job id "
        "(the OpenAI routes: with a 503 timeout)"
    )
    rate_limit: str = Field("1200/minute", description="requests per key and client, all routes")
    submit_rate_limit: str = Field(
        "off",
        description="an extra limit on model requests (generation, swap, transcription), e.g. 60/minute; off: "
        "the queue's depth is their limit (429 queue_full past max_queued_jobs)",
    )
    tunnel: Literal["none", "ngrok", "cloudflared"] = Field(
        "none", description="open a public HTTPS tunnel at start (ngrok needs NGROK_AUTHTOKEN)"
    )
    max_image_mb: float = Field(30.0, gt=0, description="largest input image (face swap, avatars)")
    max_image_pixels: int = Field(40_000_000, gt=0, description="largest input image in pixels (decompression bombs)")
    max_audio_seconds: float = Field(7200.0, gt=0, description="longest audio accepted for transcription")
    enhance_max_side: int = Field(
        4096, ge=64, le=16384,
        description="longest side of an enhanced image (x4 of a 1024 px image); larger results are refused (413)",
    )
    enhance_max_video_side: int = Field(1920, ge=64, le=8192, description="longest side of an enhanced video")
    enhance_max_video_frames: int = Field(9000, ge=1, description="most frames of a video to enhance (5 min at 30 fps)")
    allow_restricted_upscalers: bool = Field(
        False,
        description="load drop-in models of non-commercial or copyleft architectures (spandrel_extra_arches: "
        "CodeFormer and others); off, they are listed with the reason",
    )
    tts_edge: Literal["auto", "off"] = Field("auto", description="edge-tts (online) when installed and reachable")
    tts_default_voice: str | None = Field(None, description="voice id used when a request names none")
    ffmpeg_path: str | None = Field(None, description="ffmpeg binary; default the one imageio-ffmpeg ships")
    video_work_dir: Path | None = Field(None, description="scratch space for renders (keep it off a Drive mount)")
    inject_oom: str | None = Field(
        None,
        description="test switch: 'image:1,speech:2' makes the next N leases of a role's model raise "
        "an out-of-memory error inside the job",
    )
    auto_download: Literal["auto", "off"] = Field(
        "auto", description="at start, download the profile's missing models in the background (off: never)"
    )
    catalog_overrides: Path | None = Field(
        None,
        description="test switch: a JSON file replacing the download URLs and published sha256 digests of "
        "catalogue sources for the automatic download (a replica hub, enfoads.testing.replicas)",
    )
    warm: str = Field(
        "image",
        description="roles whose models load and run once in the background at start: comma-separated of "
        "image, faces, speech, or off (a role is skipped when its model would push another out)",
    )
    ray: str | None = Field(
        None,
        description="run model work on Ray Serve (enfoads[ray]): 'local' starts a Ray on this machine and stops "
        "it on exit, an address (auto, ray://host:10001, host:6379) joins a cluster; unset, the local queue",
    )
    ray_replicas: str = Field(
        "", description="replicas per role on Ray, e.g. 'image=2,faces=1' (default 1 each)"
    )
    ray_max_replicas: str = Field(
        "", description="autoscaling on Ray: 'image=4' lets image go from its replicas up to 4 as jobs wait"
    )
    ray_roles: str = Field(
        "", description="roles deployed on Ray, comma-separated (image, faces, speech, enhance, video); default all"
    )
    ray_gpu_gb: float = Field(
        15.0, gt=0, description="memory of one GPU of the Ray cluster: a replica's GPU fraction is its models' "
        "catalogued need over it"
    )
    ray_silence_s: float = Field(
        60.0, ge=10, description="a Ray replica silent this long (no progress, no heartbeat every 5 s) counts as "
        "lost: it is ended and its job re-queued"
    )
    assets_quota_gb: float | None = Field(
        10.0, gt=0, description="disk for outputs; oldest assets of finished jobs are removed beyond it"
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if any(v == "*" for v in value):
            raise ValueError("'*' is not allowed: list the frontend's origins explicitly")
        return value

    @field_validator("submit_rate_limit", mode="after")
    @classmethod
    def _submit_limit(cls, value: str) -> str:
        return "off" if value.strip().lower() in ("", "off", "none", "0") else value.strip()

    @field_validator("warm", mode="after")
    @classmethod
    def _check_warm(cls, value: str) -> str:
        from enfoads.warmup import parse_warm_roles

        return ",".join(parse_warm_roles(value)) or "off"

    @property
    def warm_roles(self) -> tuple[str, ...]:
        from enfoads.warmup import parse_warm_roles

        return parse_warm_roles(self.warm)

    @field_validator("data_dir", "models_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    def with_overrides(self, **overrides) -> "Settings":
        """A copy with CLI flags applied (None means: flag not given)."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return Settings(**{**self.model_dump(exclude_unset=True), **given}) if given else self

    def resolve_profile(self, hardware: Hardware) -> Profile:
        return choose_profile(self.profile, hardware, simulated_gpu=self.gpu_budget_gb is not None)

    def gpu_budget_bytes(self, profile: Profile, hardware: Hardware) -> int:
        """Bytes of GPU memory models may use.

        An explicit budget on a machine without CUDA simulates a GPU on the CPU
        (the residency policy then runs as on a real card).
        """
        if self.gpu_budget_gb is not None:
            return int(self.gpu_budget_gb * GIB)
        if not hardware.cuda:
            return 0
        return max(0, hardware.vram_total_bytes - int(profile.gpu_reserve_gb * GIB))

    def ram_budget_bytes(self, profile: Profile, hardware: Hardware) -> int:
        if self.ram_budget_gb is not None:
            return int(self.ram_budget_gb * GIB)
        return max(int(0.5 * GIB), hardware.ram_available_bytes - int(profile.ram_reserve_gb * GIB))
