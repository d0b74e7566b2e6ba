"""A machine whose network gives no answer: `enfoads preload` and the server's background installer
learn it from one request and say so, instead of sitting through huggingface_hub's retries per model
(about 23 s each) while the server's 503s read "downloading: 0%".

The "hub" is a local socket that reads a request line and hangs up without an answer (what a dead
proxy or a firewall does), so the requests can be counted.
"""
from __future__ import annotations

import socket
import threading
import time

import pytest

from enfoads.models.catalog import CATALOG, HubFiles, UrlArchive, UrlFile
from enfoads.models.installer import Installer
from enfoads.models.installer.background import ModelDownloadingError
from enfoads.models.not_installed import ModelNotInstalledError
from enfoads.models.preload import preload, select_models

PROFILE = "cpu"


class SilentHost:
    """Accepts connections, records each request line, closes without answering."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    data = conn.recv(4096)
                except OSError:
                    data = b""
                self.lines.append(data.split(b"\r\n", 1)[0].decode("latin-1"))

    def probes(self) -> int:
        return sum(1 for line in self.lines if line.startswith("HEAD / "))

    def close(self):
        self.sock.close()


@pytest.fixture
def silent():
    host = SilentHost()
    yield host
    host.close()


def hub_entries():
    return [e for e in select_models(PROFILE) if any(isinstance(s, HubFiles) for s in e.sources.values())]


def url_overrides(base_url: str) -> dict:
    """The profile's release-file downloads sent to ``base_url`` (never to the real sites)."""
    out = {}
    for e in select_models(PROFILE):
        for name, src in e.sources.items():
            if isinstance(src, (UrlArchive, UrlFile)):
                out.setdefault(e.id, {})[name] = {"url": f"{base_url}/{src.url.rsplit('/', 1)[-1]}"}
    return out


@pytest.mark.parametrize("dry_run", [False, True], ids=["install", "dry-run"])
def test_preload_asks_a_silent_hub_once_and_every_model_says_why(online, silent, tmp_path, dry_run):
    entries = hub_entries()
    assert len(entries) >= 5
    report = preload(entries, models_dir=tmp_path / "models", endpoint=silent.url, dry_run=dry_run,
                     progress=False, out=None)
    assert silent.probes() == 1 and len(silent.lines) == 1, silent.lines  # nothing asked per model
    for m in report.models:
        assert m.unreachable == silent.url, (m.entry.id, m.status, m.note)
        assert f"cannot reach {silent.url} (" in m.note and "check this machine's network" in m.note, m.note
        assert m.status == ("download" if dry_run else "failed"), (m.entry.id, m.status)
    assert not report.ok or dry_run
    if not dry_run:
        assert "cannot reach" in report.table()  # what `enfoads preload` prints


def test_a_host_that_answers_is_reachable_and_a_closed_port_is_not(online):
    from enfoads.models.preload.remote import Reachability
    from enfoads.testing.hub import FakeHub

    hub = FakeHub()
    hub.start()
    closed = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    try:
        hosts = Reachability(hub.endpoint)
        assert hosts.why_not(CATALOG["sd-turbo"].sources["base"]) is None  # a 404 at "/" is still an answer
        why = hosts.why_not(UrlFile(url=f"{url}/weights.pth", unpack_to="weights"))
        assert why and why.startswith(f"cannot reach {url} (") and "refused" in why.lower(), why
        assert "HF_ENDPOINT" not in why  # a release host, not the hub
    finally:
        hub.stop()


def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def installer_for(host: SilentHost, models_dir, **kw) -> Installer:
    return Installer(models_dir, PROFILE, endpoint=host.url, overrides=url_overrides(host.url), **kw)


def test_while_a_download_is_retried_the_503_says_why_the_last_attempt_failed(online, silent, tmp_path):
    installer = installer_for(silent, tmp_path / "models", retries=1, retry_delay_s=60).start()
    try:
        wait_for(lambda: "retrying in 60 s" in installer.status()["sd-turbo"].get("message", ""))
        status = installer.status()["sd-turbo"]
        assert status["state"] == "downloading" and status["attempts"] == 1 and status["max_attempts"] == 2
        assert status["last_error"].startswith(f"cannot reach {silent.url} ("), status
        err = installer.explain(ModelNotInstalledError(CATALOG["sd-turbo"], "not in the models folder"))
        assert isinstance(err, ModelDownloadingError) and err.status == 503 and err.code == "model_downloading"
        assert "attempt 1 of 2 (the last one failed: cannot reach " in str(err), str(err)
        assert installer.status()["faster-whisper-small"]["state"] == "queued"
    finally:
        installer.close(timeout=10)


def test_once_a_model_gives_up_on_a_silent_hub_the_others_fail_at_once_with_the_reason(online, silent, tmp_path):
    installer = installer_for(silent, tmp_path / "models", retries=0).start()
    try:
        assert installer.wait(timeout=60)
        status = installer.status()
        # Only probes reached the host: no file list, no file. One for the plan, one for the first
        # model's attempt; every model after it (the release files too: the same host here) failed at once.
        assert len(silent.lines) == silent.probes() == 2, silent.lines
        for e in hub_entries():
            assert status[e.id]["state"] == "failed", (e.id, status[e.id])
            assert f"cannot reach {silent.url} (" in status[e.id]["message"], status[e.id]
            err = installer.explain(ModelNotInstalledError(e, "not in the models folder"))
            assert type(err) is ModelNotInstalledError and err.status == 503, err
            assert "cannot reach" in str(err) and f"run `enfoads preload --profile {PROFILE}`" in str(err), str(err)
        for model_id in url_overrides(silent.url):
            assert status[model_id]["state"] == "failed" and "cannot reach" in status[model_id]["message"]
    finally:
        installer.close(timeout=10)


def test_a_silent_hub_does_not_fail_the_models_of_a_host_that_answers(online, silent, tmp_path):
    from enfoads.testing.hub import FakeHub

    releases = FakeHub()  # answers, but has none of the release files: each fails on its own (404)
    releases.start()
    try:
        overrides = url_overrides(releases.endpoint)
        installer = Installer(tmp_path / "models", PROFILE, endpoint=silent.url, overrides=overrides, retries=0).start()
        assert installer.wait(timeout=60)
        status = installer.status()
    finally:
        releases.stop()
    assert overrides
    for model_id in overrides:
        assert status[model_id]["state"] == "failed", status[model_id]
        assert "cannot reach" not in status[model_id]["message"], status[model_id]
    for e in hub_entries():
        assert f"cannot reach {silent.url} (" in status[e.id]["message"], status[e.id]
