"""The built-in console at /console, driven in a real browser (Debian's chromium through playwright)
against a real server on the tiny profile: each tab's main flow end to end, live previews, no console
error, no failed request, nothing fetched from another origin. Screenshots go to the test's temp dir.
"""
from __future__ import annotations

import json
import math
import re
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from enfoads.models.tiny import build_tiny_kit
from enfoads.models.tiny.faces import face_test_pattern
from server_fixture import start_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.slow
KEY = "console-key-0123456789"
TIMEOUT_MS = 90_000


@pytest.fixture(scope="module")
def server(models_dir, tmp_path_factory):
    build_tiny_kit(models_dir)
    srv = start_server(models_dir, tmp_path_factory.mktemp("console") / "data", key=KEY)
    srv.wait_ready()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("console-files")
    marked = face_test_pattern(squares=((272, 192, 128),))
    marked[230:260, 300:370] = 40
    Image.fromarray(marked[:, :, ::-1]).save(folder / "source.png")
    Image.fromarray(face_test_pattern()[:, :, ::-1]).save(folder / "target.png")
    Image.fromarray((np.random.RandomState(0).rand(24, 32, 3) * 255).astype(np.uint8)).save(folder / "small.png")
    t = np.arange(16000) / 16000
    with wave.open(str(folder / "tone.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((0.3 * np.sin(2 * math.pi * 440 * t) * 32767).astype("<i2").tobytes())
    return folder


from playwright.sync_api import expect  # noqa: E402


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if CHROMIUM is None:
        pytest.skip("needs chromium (apt-get install chromium; .ci/run installs it)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


class Watch:
    """Every console error, page error, failed request, 4xx/5xx answer and foreign-origin request of a page."""

    def __init__(self, page, origin: str):
        self.problems: list[str] = []
        self.media: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", self._failed)
        page.on("request", lambda r: r.url.startswith(("http", "ws")) and not r.url.replace("ws://", "http://")
                .startswith(origin) and self.problems.append(f"foreign origin: {r.url}"))

        def answered(response):
            if response.status >= 400:
                self.problems.append(f"{response.status}: {response.url}")
            if "/media/" in response.url:
                self.media.append(response.url)

        page.on("response", answered)

    def _failed(self, request) -> None:
        # A <video preload="metadata"> reads the head of the file and aborts the rest: not a failure.
        if "ERR_ABORTED" in (request.failure or "") and "/media/" in request.url:
            return
        self.problems.append(f"failed: {request.url} {request.failure}")


@pytest.fixture(scope="module")
def console(browser, server):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    watch = Watch(page, server.base)
    page.goto(f"{server.base}/{server.prefix}/console/")
    page.wait_for_selector("#conn.ok", timeout=TIMEOUT_MS)  # Socket.IO connected under the secret URL
    yield page, watch
    page.close()


def poll(condition, timeout_s: float = TIMEOUT_MS / 1000) -> None:
    """Wait for a Python-side condition (the page's CSP forbids the eval behind wait_for_function)."""
    import time

    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def shot(page, tmp_path_factory, name: str) -> None:
    page.screenshot(path=str(tmp_path_factory.getbasetemp() / f"console-{name}.png"), full_page=True)


def test_generate_shows_previews_then_the_images(console, tmp_path_factory):
    page, watch = console
    page.click("#tab-generate")
    page.fill("#generate-form textarea[name=prompt]", "a red bicycle on a beach")
    page.click("#magic")
    expect(page.locator("#generate-form textarea[name=prompt]")).to_have_value(re.compile(r".{31,}", re.S),
                                                                               timeout=TIMEOUT_MS)
    page.fill("#generate-form input[name=steps]", "3")
    page.fill("#generate-form input[name=seed]", "7")
    page.fill("#generate-form input[name=n]", "2")
    page.click("#generate-form button[type=submit]")
    page.wait_for_selector("#generate-results .card img", timeout=TIMEOUT_MS)
    page.wait_for_selector("#generate-status.ok", timeout=TIMEOUT_MS)
    assert page.locator("#generate-results .card").count() == 2
    # Preview frames arrived through Socket.IO before the images (media URLs of previews, then the images).
    assert len(watch.media) >= 3, watch.media
    shot(page, tmp_path_factory, "generate")
    assert watch.problems == []


def test_gallery_lists_outputs_and_hands_one_to_enhance(console, tmp_path_factory):
    page, watch = console
    page.click("#tab-gallery")
    page.wait_for_selector("#gallery-items .card img", timeout=TIMEOUT_MS)
    shot(page, tmp_path_factory, "gallery")
    page.locator("#gallery-items .card button", has_text="Enhance").first.click()
    page.wait_for_selector("#enhance:not([hidden]) #drop-enhance img", timeout=TIMEOUT_MS)
    page.click("#enhance-form button[type=submit]")
    page.wait_for_selector("#enhance-status.ok", timeout=TIMEOUT_MS)
    assert page.locator("#enhance-results .card img").count() == 1
    assert watch.problems == []


def test_face_swap_with_two_dropped_pictures(console, files, tmp_path_factory):
    page, watch = console
    page.click("#tab-faceswap")
    page.set_input_files("#drop-source input", str(files / "source.png"))
    page.set_input_files("#drop-target input", str(files / "target.png"))
    page.click("#faceswap-form button[type=submit]")
    page.wait_for_selector("#faceswap-results .card img", timeout=TIMEOUT_MS)
    page.wait_for_selector("#faceswap-status.ok", timeout=TIMEOUT_MS)
    shot(page, tmp_path_factory, "faceswap")
    assert watch.problems == []


def test_enhance_an_uploaded_image(console, files):
    page, watch = console
    page.click("#tab-enhance")
    page.set_input_files("#drop-enhance input", str(files / "small.png"))
    page.fill("#enhance-form input[name=scale]", "2")
    page.click("#enhance-form button[type=submit]")
    page.wait_for_selector("#enhance-status.ok", timeout=TIMEOUT_MS)
    assert "64×48" in page.inner_text("#enhance-results")
    assert watch.problems == []


def test_transcribe_shows_the_transcript_and_subtitle_downloads(console, files, tmp_path_factory):
    page, watch = console
    page.click("#tab-transcribe")
    page.set_input_files("#transcribe-form input[name=audio]", str(files / "tone.wav"))
    page.click("#transcribe-form button[type=submit]")
    page.wait_for_selector("#transcribe-status.ok", timeout=TIMEOUT_MS)
    links = page.locator("#transcribe-result a")
    assert links.count() == 2
    srt = page.request.get(links.nth(0).get_attribute("href"))
    assert srt.ok and srt.headers["content-type"].startswith("application/x-subrip")
    shot(page, tmp_path_factory, "transcribe")
    assert watch.problems == []


def test_video_with_a_voice_preview_plays_in_the_page(console, tmp_path_factory):
    page, watch = console
    page.click("#tab-video")
    page.wait_for_selector("#video-form select[name=voice_id] option", state="attached", timeout=TIMEOUT_MS)
    page.fill("#video-form textarea[name=script]", "Hola. Esta es una prueba.")
    page.select_option("#video-form select[name=resolution]", "360")
    page.click("#voice-preview")
    expect(page.locator("#voice-audio")).to_have_attribute("src", re.compile("^blob:"), timeout=TIMEOUT_MS)
    page.click("#video-form button[type=submit]")
    page.wait_for_selector("#video-result video", timeout=TIMEOUT_MS)
    poll(lambda: page.evaluate("document.querySelector('#video-result video').readyState") >= 1)
    assert page.evaluate("document.querySelector('#video-result video').duration") > 1
    shot(page, tmp_path_factory, "video")
    assert watch.problems == []


def test_system_shows_budgets_residents_and_evicts(console, tmp_path_factory):
    page, watch = console
    page.click("#tab-system")
    page.wait_for_selector("#system-resident button", timeout=TIMEOUT_MS)
    before = page.locator("#system-resident button").count()
    # Every role of the tiny profile is listed with its model's licence.
    assert page.locator("#system-models tr").count() >= 7
    assert "Apache-2.0" in page.inner_text("#system-models") and "GPL-3.0-or-later" in page.inner_text("#system-models")
    page.locator("#system-resident button").first.click()
    poll(lambda: page.locator("#system-resident button").count() < before)
    shot(page, tmp_path_factory, "system")
    assert watch.problems == []


def test_jobs_table_is_live_and_keyboard_reaches_every_tab(console, tmp_path_factory):
    page, watch = console
    page.click("#tab-jobs")
    page.wait_for_selector("#jobs-rows tr[data-job]", timeout=TIMEOUT_MS)
    assert "completed" in page.inner_text("#jobs-rows")
    page.focus("#tab-jobs")
    assert page.evaluate("document.activeElement.id") == "tab-jobs"
    page.keyboard.press("ArrowRight")  # wraps to the first tab
    poll(lambda: page.evaluate("document.activeElement.id") == "tab-generate")
    assert not page.is_hidden("#generate")
    shot(page, tmp_path_factory, "jobs")
    assert watch.problems == []


def test_root_console_asks_for_the_key_and_fits_a_phone(browser, server, tmp_path_factory):
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(f"{server.base}/console")
    assert page.is_visible("#key-form")
    csp = page.request.get(f"{server.base}/console").headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    page.fill("#key", KEY)
    page.click("#key-form button")
    page.wait_for_selector("#conn.ok", timeout=TIMEOUT_MS)
    page.click("#tab-system")
    page.wait_for_selector("#system-models tr", timeout=TIMEOUT_MS)
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 390
    vendor = json.loads(page.request.get(f"{server.base}/console/vendor/vendor.json").text())
    assert vendor["socket.io.esm.min.js"]["licence"] == "MIT"
    shot(page, tmp_path_factory, "phone")
    page.close()
    # What the notebook opens: a login token in the fragment, no key typed, and the token leaves the URL.
    from enfoads.colab import Client, console_path

    page = browser.new_page()
    page.goto(server.base + console_path(Client(server.base, KEY).login_token()))
    page.wait_for_selector("#conn.ok", timeout=TIMEOUT_MS)
    assert page.is_hidden("#key-form") and "token" not in page.url
    page.click("#tab-jobs")
    page.wait_for_selector("#jobs-rows tr[data-job]", timeout=TIMEOUT_MS)
    page.close()


def test_the_notebook_shows_the_console_through_colabs_port_proxy(capsys):
    from enfoads.colab import show_console

    class FakeClient:
        def login_token(self):
            return "v2.1.abc.sig"

    class ColabOutput:  # google.colab.output's one call used
        calls = []

        def serve_kernel_port_as_iframe(self, port, path="/", width="100%", height="400"):
            self.calls.append((port, path, width, height))

    output = ColabOutput()
    assert show_console(FakeClient(), 5000, output=output) == "iframe"
    assert output.calls == [(5000, "/console/#token=v2.1.abc.sig", "100%", "820")]
    assert show_console(FakeClient(), 5000) == "link"  # not in Colab: where it is, and no token printed
    printed = capsys.readouterr().out
    assert "http://127.0.0.1:5000/console/" in printed and "v2." not in printed


def test_vendored_files_match_their_recorded_sha256():
    import hashlib

    folder = Path(__file__).resolve().parents[1] / "enfoads" / "web" / "console" / "vendor"
    for name, info in json.loads((folder / "vendor.json").read_text()).items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == info["sha256"], name
        assert (folder / info["licence_file"]).is_file()


def test_console_files_are_public_but_its_api_calls_are_not(server):
    import requests

    assert requests.get(server.base + "/console/js/app.js", timeout=10).headers["content-type"].startswith("text/javascript")
    assert requests.get(server.base + "/console/../pyproject.toml", timeout=10).status_code == 404
    assert requests.get(server.base + "/console/js/nothing.py", timeout=10).status_code == 404
    assert requests.post(server.base + "/api/models/x/unload", timeout=10).status_code == 401
    assert requests.get(server.base + "/voices/espeak:en/preview", timeout=10).status_code == 401
