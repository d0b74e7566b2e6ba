"""Health, GPU status, models, config, OpenAPI and the docs page."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from enfoads import __version__
from enfoads.models.catalog import get_entry
from enfoads.models.profiles import host_memory
from enfoads.models.registry import presence
from enfoads.web.state import engine, state

bp = Blueprint("system", __name__)
GIB = 1024**3


@bp.get("/")
def health():
    """Health check, no key needed: the frontend's settings page expects ``status: online``."""
    app_state = state()
    holder = app_state.holder
    eng = holder.engine_if_ready
    if eng is not None and eng.warmer is not None:
        warm = eng.warmer.state
    else:
        warm = "pending" if app_state.settings.warm_roles else "off"
    return jsonify(
        {
            "status": "online",
            "service": "enfoads",
            "version": __version__,
            "ready": holder.ready,
            "engine_error": str(holder.error) if holder.error else None,
            # The warm start (enfoads.warmup): pending, warming, then warm (or off, skipped, failed).
            "warm_state": warm,
        }
    )


def _gpu_figures(eng) -> dict:
    hw = eng.runtime.hardware
    stats = eng.runtime.residency.stats()
    figures = {
        # "online" means the engine answers and runs jobs, on a GPU or a CPU: the
        # frontend's badge is green only on "online" (it shows "offline" itself
        # when this route cannot be reached). Whether a GPU is there is `gpu`/`device`.
        "status": "online",
        "device": hw.device_name if hw.cuda else "cpu",
        "gpu": bool(hw.cuda),
        "cuda_version": hw.cuda_version,
        "driver": hw.driver,
        "vram_total_gb": round(hw.vram_total_bytes / GIB, 2),
        "vram_allocated_gb": 0.0,
        "vram_reserved_gb": 0.0,
        "vram_free_gb": 0.0,
        "utilization_percent": 0,
        "utilization_source": "none",
        "vram_used_percent": 0,
    }
    if hw.cuda:
        import torch

        free, total = torch.cuda.mem_get_info(0)
        figures.update(
            vram_allocated_gb=round(torch.cuda.memory_allocated(0) / GIB, 2),
            vram_reserved_gb=round(torch.cuda.memory_reserved(0) / GIB, 2),
            vram_free_gb=round(free / GIB, 2),
            vram_used_percent=round(100 * (total - free) / total) if total else 0,
            **gpu_utilization(0),
        )
    figures["models_loaded"] = [row["id"] for row in stats.models if row["tier"]]
    figures["residency"] = stats.as_dict()
    ram_total, ram_available = host_memory()
    figures["host_ram_total_gb"] = round(ram_total / GIB, 2)
    figures["host_ram_available_gb"] = round(ram_available / GIB, 2)
    figures["profile"] = eng.runtime.profile.name
    figures["backend"] = eng.jobs.describe()  # the local queue, or Ray Serve and its deployments
    # First start: the profile's missing models downloading in the background (enfoads.models.installer).
    figures["downloads"] = eng.installer.status() if getattr(eng, "installer", None) else {}
    warmup = eng.warmer.status() if getattr(eng, "warmer", None) else {"state": "off", "roles": {}}
    figures["warm_state"] = warmup["state"]
    figures["warmup"] = warmup
    return figures


def gpu_utilization(index: int) -> dict:
    """The GPU's busy percentage over the last sample period, from NVML (``nvidia-ml-py``).

    Where NVML cannot be read the figure is None and ``utilization_source``
    says so: VRAM in use is ``vram_used_percent``, never passed off as load.
    """
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            busy = int(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no NVML library, no driver, a container without it
        return {"utilization_percent": None, "utilization_source": "unavailable"}
    return {"utilization_percent": busy, "utilization_source": "nvml"}


@bp.get("/gpu-status")
def gpu_status():
    """The frontend's GPU card: ``status: online`` whenever the engine runs, ``device: cpu`` without a GPU."""
    return jsonify(_gpu_figures(engine()))


@bp.get("/models")
def models():
    eng = engine()
    roles = []
    for role, choice in eng.runtime.profile.roles.items():
        entry = get_entry(choice.model_id)
        here = presence(entry, eng.settings.models_dir)
        revisions = {name: getattr(src, "revision", None) for name, src in entry.sources.items()}
        roles.append(
            {
                "role": role,
                "id": entry.id,
                "description": entry.description,
                "runtime": entry.runtime,
                "device": choice.device,
                "dtype": choice.dtype,
                "revisions": revisions,
                "present": here.present,
                "detail": here.detail,
                "download_bytes": entry.download_bytes,
                "vram_bytes": entry.vram_bytes,
                "licence": entry.licence,
            }
        )
    # Every upscaler and face restorer a request may name: the catalogue's and the files dropped in upscale/.
    return jsonify({"status": "success", "profile": eng.runtime.profile.name, "models": roles,
                    "enhance_models": eng.enhance.models.listing()})


@bp.get("/config")
def config():
    """Every setting except secrets."""
    settings = state().settings
    public = settings.model_dump(mode="json", exclude={"api_key"})
    public["api_key_set"] = settings.api_key is not None
    return jsonify({"status": "success", "config": public})


@bp.get("/openapi.json")
def openapi():
    from enfoads.web.openapi import build_spec

    running = state().holder.engine_if_ready  # the spec is served while the engine starts, too
    options = None if running is None else {k.name: k.options for k in running.kinds.values() if k.options}
    return jsonify(build_spec(server_url=request.script_root or "/", options=options))


@bp.get("/docs")
def docs():
    from enfoads.web.openapi import docs_page

    return docs_page()
