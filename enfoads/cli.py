"""The `enfoads` command line: doctor, build-tiny (serve and preload arrive with their issues)."""
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

    flags = {
        "profile": args.profile,
        "data_dir": args.data_dir,
        "models_dir": args.models_dir,
        "gpu_budget_gb": args.gpu_budget_gb,
        "ram_budget_gb": args.ram_budget_gb,
    }
    try:
        return Settings(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}" for err in exc.errors()
        )
        raise SystemExit(f"enfoads: invalid settings: {problems}") from None


def cmd_doctor(args: argparse.Namespace) -> int:
    from enfoads.doctor import report
    from enfoads.profiles import detect_hardware

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
    from enfoads.tiny import RECIPES, ensure_tiny, folder_bytes

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="enfoads", description="Generative models on a small GPU, served to a web app.")
    parser.add_argument("--version", action="version", version=f"enfoads {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    doctor = sub.add_parser("doctor", help="report the device, budgets and which models are present")
    _settings_args(doctor)
    doctor.set_defaults(func=cmd_doctor)

    tiny = sub.add_parser("build-tiny", help="build the tiny random-weight model kit into the models dir")
    _settings_args(tiny)
    tiny.add_argument("--seed", type=int, default=0, help="seed for the random weights (default 0)")
    tiny.set_defaults(func=cmd_build_tiny)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
