"""``enfoads preload`` run as a child process (so the kernel never imports torch), its progress
streamed into the notebook."""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Iterable


class PreloadFailed(RuntimeError):
    pass


def _stream(process: subprocess.Popen, out) -> None:
    """Copy a child's output to ``out`` as it comes (tqdm's carriage returns included)."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    fd = process.stdout.fileno()
    while True:
        chunk = os.read(fd, 8192)
        if not chunk:
            break
        out.write(decoder.decode(chunk))
        out.flush()
    out.write(decoder.decode(b"", final=True))
    out.flush()


def run_preload(profile: str, *, args: Iterable[str] = (), env: dict | None = None, out=None) -> int:
    """``python -m enfoads preload --profile PROFILE`` in its own process, its progress shown here.

    A child process, so the notebook's kernel never imports torch (the tiny kit
    is built with it; ``auto`` is resolved with it). Returns the exit status: 0
    every model installed, 1 some failed (the table says which; the features that
    need them answer with an error). Raises ``PreloadFailed`` when preload refused
    to start (2: not enough disk, offline, a bad option).
    """
    out = out or sys.stdout
    cmd = [sys.executable, "-m", "enfoads", "preload", "--profile", profile, *args]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=full_env)
    try:
        _stream(process, out)
        code = process.wait()
    except BaseException:  # a kernel interrupt: stop the download (it resumes next time), then re-raise
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
        raise
    finally:
        process.stdout.close()
    if code == 1:
        print("Some models are missing (see the table): the features that need them will answer with an error.", file=out)
    elif code != 0:
        raise PreloadFailed(f"`enfoads preload --profile {profile}` failed (exit {code}); see its message above")
    return code
