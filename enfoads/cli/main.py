"""The `enfoads` command line: serve, doctor, build-tiny."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from enfoads import __version__


def _settings_args(parser: argparse.ArgumentParser) -> None:
    # Every flag defaults to None: "not given", so the environment decides.
    parser.add_argument("--profile", choices=("auto", "t4", "gpu", "cpu", "tiny"), help="hardware profile (ENFOADS_PROFILE)")
    parser.add_argument("--data-dir", type=Path, help="jobs and assets (ENFOADS_DATA_DIR)")
    parser.add_argument("--models-dir", type=Path, help="model cache (ENFOADS_MODELS_DIR)")
    parser.add_argument("--gpu-budget-gb", type=float, help="GPU memory for models (ENFOADS_GPU_BUDGET_GB)")
    parser.add_argument("--ram-budget-gb", type=float, help="host RAM for models (ENFOADS_RAM_BUDGET_GB)")


def _load_settings(args: argparse.Namespace):
    from pydantic import ValidationError

    from enfoads.settings import Settings

    names = ("profile", "data_dir", "models_dir", "gpu_budget_gb", "ram_budget_gb", "host", "port", "tunnel", "ray")
    flags = {name: getattr(args, name, None) for name in names}
    try:
        return Settings(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}" for err in exc.errors()
        )
        raise SystemExit(f"enfoads: invalid settings: {problems}") from None


def cmd_serve(args: argparse.Namespace) -> int:
    import importlib.util

    from enfoads.cli.server import serve

    settings = _load_settings(args)
    if settings.ray is not None and importlib.util.find_spec("ray") is None:
        raise SystemExit("enfoads: --ray needs Ray Serve: pip install 'enfoads[ray]'")
    serve(settings)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from enfoads.cli.doctor import report
    from enfoads.models.profiles import detect_hardware

    settings = _load_settings(args)
    hardware = detect_hardware()
    try:
        profile = settings.resolve_profile(hardware)
    except ValueError as exc:
        raise SystemExit(f"enfoads: {exc}") from None
    text, _missing = report(settings, hardware, profile)
    print(text)
    return 0


def cmd_build_tiny(args: argparse.Namespace) -> int:
    from enfoads.models.tiny import RECIPES, ensure_tiny, folder_bytes

    settings = _load_settings(args)
    total_bytes, started = 0, time.perf_counter()
    for name in RECIPES:
        t0 = time.perf_counter()
        folder = ensure_tiny(settings.models_dir, name, seed=args.seed)
        size = folder_bytes(folder)
        total_bytes += size
        print(f"{name:<22} {size / 1e6:6.1f} MB  {time.perf_counter() - t0:5.1f} s  {folder}")
    print(f"tiny kit: {total_bytes / 1e6:.1f} MB in {time.perf_counter() - started:.1f} s")
    return 0


def cmd_preload(args: argparse.Namespace) -> int:
    """`enfoads preload`: download, verify and record the profile's models (see enfoads.models.preload)."""
    from enfoads.models.preload import PreloadError, parse_revisions, preload

    settings = _load_settings(args)
    try:
        report = preload(
            profile=settings.profile,
            only=(args.only or "").split(",") if args.only else None,
            extras=(args.with_extras or "").split(","),
            models_dir=settings.models_dir,
            revisions=parse_revisions(args.revision),
            dry_run=args.dry_run,
            margin_bytes=int(args.disk_margin_gb * 1024**3),
            progress=not args.no_progress,
            prefer_xet=args.xet,
        )
    except PreloadError as exc:
        print(f"enfoads preload: {exc}", file=sys.stderr)
        return 2
    return 0 if report.ok else 1


def cmd_models(args: argparse.Namespace) -> int:
    """`enfoads models`: installed versions; --verify checks them; --use switches (rollback)."""
    from enfoads.models.preload import PreloadError, installed_table, use_version, verify_installed

    settings = _load_settings(args)
    if args.use:
        model_id, sep, version = args.use.partition("=")
        if not sep or not model_id or not version:
            raise SystemExit("enfoads models: --use expects MODEL=VERSION (or MODEL=catalog)")
        try:
            print(use_version(settings.models_dir, model_id, version))
        except PreloadError as exc:
            print(f"enfoads models: {exc}", file=sys.stderr)
            return 2
        return 0
    results = verify_installed(settings.models_dir, all_versions=args.all) if args.verify else None
    print(installed_table(settings.models_dir, results))
    return 0 if results is None or all(r.ok for r in results) else 1


def _add_preload_parsers(sub) -> None:
    preload = sub.add_parser(
        "preload",
        help="download, verify and record every model a profile needs (resumable, idempotent)",
        description="Download the profile's models into the Hugging Face cache, pinned, resumable and verified; "
        "a second run downloads nothing. After it, start with HF_HUB_OFFLINE=1.",
    )
    _settings_args(preload)
    preload.add_argument("--only", metavar="ROLES", help="comma-separated roles (image,faces,swapper,speech,tts,upscale,restore,lipsync) or model ids")
    preload.add_argument(
        "--with", dest="with_extras", metavar="EXTRAS",
        help="optional downloads: quality (SDXL base's UNet, 5.1 GB: 10-50 steps with guidance), "
        "lightning-steps (the 1-, 2- and 8-step UNets), upscalers (every Real-ESRGAN model, 90 MB)",
    )
    preload.add_argument("--dry-run", action="store_true", help="show what would be downloaded and whether it fits")
    preload.add_argument(
        "--revision",
        action="append",
        default=[],
        metavar="MODEL[.COMPONENT]=REV",
        help="install this hub revision instead of the catalogue's pin (pins the model to it; repeatable)",
    )
    preload.add_argument("--disk-margin-gb", type=float, default=1.0, help="free disk to keep beyond the downloads (default 1)")
    preload.add_argument("--no-progress", action="store_true", help="no progress bars")
    preload.add_argument("--xet", action="store_true", help="let huggingface_hub's Xet client fetch Xet-stored files (faster, not resumable)")
    preload.set_defaults(func=cmd_preload)

    models = sub.add_parser("models", help="list installed model versions; --verify checks sha256; --use rolls back")
    _settings_args(models)
    models.add_argument("--verify", action="store_true", help="re-hash every file of the active versions")
    models.add_argument("--all", action="store_true", help="with --verify: every installed version, not only the active")
    models.add_argument("--use", metavar="MODEL=VERSION", help="make an installed version active (MODEL=catalog: the catalogue's)")
    models.set_defaults(func=cmd_models)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="enfoads", description="Generative models on a small GPU, served to a web app.")
    parser.add_argument("--version", action="version", version=f"enfoads {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve",
        help="start the web app (Flask + Socket.IO on gunicorn) for the frontend",
        description="Serve the web app from one gunicorn worker (SIGTERM or Ctrl-C: the running job is "
        "re-queued, exit 0). Missing models of the profile are downloaded in the background "
        "(ENFOADS_AUTO_DOWNLOAD=off: never); requests that need one answer 503 until it is installed.",
    )
    _settings_args(serve)
    serve.add_argument("--host", help="address to listen on (ENFOADS_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (ENFOADS_PORT, default 5000)")
    serve.add_argument("--tunnel", choices=("none", "ngrok", "cloudflared"),
                       help="open a public HTTPS tunnel (ENFOADS_TUNNEL; ngrok needs NGROK_AUTHTOKEN)")
    serve.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                       help="run model work on Ray Serve (pip install 'enfoads[ray]'): alone, a local Ray started "
                       "here and stopped on exit; with an address (auto, host:6379, ray://host:10001), that "
                       "cluster (ENFOADS_RAY; replicas: ENFOADS_RAY_REPLICAS=image=2,...)")
    serve.set_defaults(func=cmd_serve)

    doctor = sub.add_parser("doctor", help="report the device, budgets and which models are present")
    _settings_args(doctor)
    doctor.set_defaults(func=cmd_doctor)

    tiny = sub.add_parser("build-tiny", help="build the tiny random-weight model kit into the models dir")
    _settings_args(tiny)
    tiny.add_argument("--seed", type=int, default=0, help="seed for the random weights (default 0)")
    tiny.set_defaults(func=cmd_build_tiny)

    _add_preload_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
