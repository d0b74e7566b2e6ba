"""Helpers for the Colab notebook (``notebooks/Enfoads_Colab.ipynb``); importable anywhere.

The notebook only calls these. Outside Colab every helper still works: secrets
come from the environment, Drive is skipped, the GPU check reads nvidia-smi.
Nothing here imports torch: the kernel stays light, and the server (started
as its own process) is the one process that holds the GPU.

- ``notebook_params()``: the parameters, overridable by ``ENFOADS_*`` variables.
- ``get_secret()`` / ``load_secrets()``: ``google.colab.userdata``, falling back
  to the environment, then to a hidden prompt; values are never printed.
- ``setup_storage()``: the data and models dirs, on Google Drive if asked.
- ``gpu_report()``: name, VRAM and driver, or a clear warning on a CPU runtime.
- ``resolve_profile()``: ``auto`` from nvidia-smi; ``run_preload()``: ``enfoads
  preload`` as a child process, its progress streamed into the notebook.
- ``start_server()``: ``enfoads serve`` in the background, waiting for health.
- ``Connection``: the URL to paste and the key, masked in every output, shown
  in full only by a button (see its docstring for what is and is not saved).
- ``Client`` and ``NotebookUI``: the notebook-native UI (ipywidgets 7 or 8)
  that does every job itself (images, face swaps, transcripts, videos) over
  HTTP on 127.0.0.1: each is a job, polled to its end with progress. On Colab's
  free tier this UI is the way to use it (no web-UI server there).

How the notebook installs the package (its "install" cell, which runs before
``enfoads`` can be imported) is described in the notebook itself.

The code lives in submodules, one concern each: ``params``, ``notebook_secrets``,
``storage``, ``system`` (GPU, profile, system programs), ``preload``, ``masking``,
``server`` (the process and its HTTP helpers), ``connection`` (tunnel and what to
paste), ``console`` (the built-in console in an iframe through Colab's port proxy), ``client`` and ``ui``. This package re-exports their API, so the notebook's
``colab.X`` calls stay as they are.
"""
from __future__ import annotations

from enfoads.colab.client import TERMINAL_STATES, Client, ProgressCallback
from enfoads.colab.console import console_path, show_console
from enfoads.colab.connection import (
    FREE_TIER_NOTE, URL_FILE, Connection, connect_text, masked_url, open_public_tunnel, paste_url,
)
from enfoads.colab.masking import key_secrets, mask, redact
from enfoads.colab.notebook_secrets import SecretSpec, load_notebook_secrets, load_secrets
from enfoads.colab.params import NotebookParams, notebook_params
from enfoads.colab.preload import PreloadFailed, run_preload
from enfoads.colab.server import (
    JobFailed, ServerError, ServerProcess, api_key, http_json, http_request, serve_command_available,
    server_env_for_origins, shutdown, start_server,
)
from enfoads.colab.storage import COLAB_CONTENT, DRIVE_FOLDER, DRIVE_MOUNT, Storage, mount_drive, setup_storage
from enfoads.colab.system import (
    CPU_WARNING, SYSTEM_PACKAGES, GpuInfo, detect_gpus, ensure_system_packages, gpu_report, resolve_profile,
)
from enfoads.colab.ui import (
    ASPECT_RATIOS, ORIENTATIONS, TAB_TITLES, NotebookUI, _upload_bytes, _upload_name, progress_line,
    set_tab_titles, status_text, tab_titles,
)
from enfoads.user_secrets import colab_secret, get_secret, in_colab

__all__ = [
    "ASPECT_RATIOS", "COLAB_CONTENT", "CPU_WARNING", "DRIVE_FOLDER", "DRIVE_MOUNT", "FREE_TIER_NOTE", "ORIENTATIONS",
    "SYSTEM_PACKAGES", "TAB_TITLES", "TERMINAL_STATES", "URL_FILE",
    "Client", "Connection", "GpuInfo", "JobFailed", "NotebookParams", "NotebookUI", "PreloadFailed", "ProgressCallback",
    "SecretSpec", "ServerError", "ServerProcess", "Storage",
    "api_key", "colab_secret", "connect_text", "console_path", "show_console", "detect_gpus", "ensure_system_packages", "get_secret", "gpu_report",
    "http_json", "http_request", "in_colab", "key_secrets", "load_notebook_secrets", "load_secrets", "mask",
    "masked_url", "mount_drive", "notebook_params", "open_public_tunnel", "paste_url", "progress_line", "redact",
    "resolve_profile", "run_preload", "serve_command_available", "server_env_for_origins", "set_tab_titles",
    "setup_storage", "shutdown", "start_server", "status_text", "tab_titles",
    # private, but the ipywidgets-7 check in tests/test_notebook.py calls them through this package
    "_upload_bytes", "_upload_name",
]
