"""Where secrets come from: the environment, Colab's secrets (the key icon), or a hidden prompt.

Below the command line and the notebook (the tunnel, preload and the Colab
helpers all read tokens through here); a value is never printed.
"""
from __future__ import annotations

import getpass
import os
import sys


def in_colab() -> bool:
    if "google.colab" in sys.modules:
        return True
    try:
        import importlib.util

        return importlib.util.find_spec("google.colab") is not None
    except (ImportError, ValueError):
        return False


def colab_secret(name: str) -> str | None:
    if not in_colab():
        return None
    try:
        from google.colab import userdata  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        value = userdata.get(name)
    except Exception:  # noqa: BLE001 - SecretNotFoundError, NotebookAccessError, TimeoutException
        return None
    return value or None


def get_secret(name: str, *, prompt: bool = False, env: bool = True, help_text: str = "") -> str | None:
    """A secret from the environment, Colab's secrets, or (``prompt``) a hidden prompt. Never printed."""
    if env and os.environ.get(name):
        return os.environ[name]
    value = colab_secret(name)
    if value:
        return value
    if prompt:
        if help_text:
            print(help_text)
        try:
            value = getpass.getpass(f"{name} (input hidden, Enter to skip): ").strip()
        except (EOFError, OSError, RuntimeError):  # no stdin (headless run)
            value = ""
        return value or None
    return None
