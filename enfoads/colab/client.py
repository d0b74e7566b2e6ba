"""The HTTP client of the local server: every model call a job, submitted and polled to its end."""
from __future__ import annotations

import base64
import time
import uuid
from typing import Callable

from enfoads.colab.masking import mask
from enfoads.colab.server import JobFailed, ServerError, http_json, http_request

TERMINAL_STATES = ("succeeded", "failed", "cancelled")
SUBMIT_ATTEMPTS = 3
# A tunnel's answers when it lost the server for a moment (ngrok, cloudflared): the job may be queued.
GATEWAY_ERRORS = (502, 504)


def _to_data_uri(content: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(content).decode()


ProgressCallback = Callable[[dict], None]


def _checked(status: int, data: dict) -> dict:
    if status >= 400 or data.get("status") == "error":
        raise ServerError(data.get("message") or data.get("error") or f"HTTP {status}")
    return data


class Client:
    """The server's HTTP API (bearer key, JSON). Every model call is a job: submitted with
    ``POST /api/jobs`` (202 and the job), then polled on ``GET /api/jobs/<id>`` to the end,
    each new progress figure handed to ``on_progress``."""

    def __init__(self, base_url: str, key: str, timeout: float = 600.0, poll_s: float = 0.5, retry_s: float = 1.0):
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.timeout = timeout
        self.poll_s = poll_s
        self.retry_s = retry_s  # the first pause before a submission is sent again

    def __repr__(self) -> str:  # never the key
        return f"Client({self.base_url!r}, key={mask(self.key)!r})"

    @property
    def _headers(self) -> dict:
        return {"Authorization": f"Bearer {self.key}", "ngrok-skip-browser-warning": "true"}

    def _call(self, method: str, path: str, body=None, content_type: str = "application/json") -> dict:
        status, data = http_json(
            self.base_url + path, method=method, body=body, timeout=self.timeout, content_type=content_type,
            headers=self._headers,
        )
        return _checked(status, data)

    def health(self) -> dict:
        return http_json(self.base_url + "/", timeout=10)[1]

    def login_token(self) -> str:
        """A 12-hour bearer token (``POST /auth/login``): what a page is given instead of the key."""
        return self._call("POST", "/auth/login", {})["token"]

    def gpu_status(self) -> dict:
        return self._call("GET", "/gpu-status")

    # -- jobs ----------------------------------------------------------------
    def submit(self, kind: str, params: dict) -> dict:
        """Queue a job (``POST /api/jobs``, answered 202 with the job); its view.

        A dropped connection or a tunnel's 502/504 is sent again, up to ``SUBMIT_ATTEMPTS`` in all,
        with the same ``Idempotency-Key``: the job may have been queued before the answer was lost,
        and the server then hands back that job instead of queueing a second one.
        """
        headers = {**self._headers, "Idempotency-Key": uuid.uuid4().hex}
        body = {"kind": kind, "params": params}
        for attempt in range(1, SUBMIT_ATTEMPTS + 1):
            last = attempt == SUBMIT_ATTEMPTS
            try:
                status, data = http_json(self.base_url + "/api/jobs", method="POST", body=body, timeout=self.timeout,
                                         headers=headers)
            except OSError:  # refused, reset, timed out: urllib's URLError is one too
                if last:
                    raise
            else:
                if status not in GATEWAY_ERRORS or last:
                    return _checked(status, data)
            time.sleep(self.retry_s * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    def job(self, job_id: str) -> dict:
        return self._call("GET", f"/api/jobs/{job_id}")

    def cancel(self, job_id: str) -> dict:
        return self._call("POST", f"/api/jobs/{job_id}/cancel", {})

    def wait(self, job_id: str, *, on_progress: ProgressCallback | None = None, timeout_s: float | None = None) -> dict:
        """Poll a job to its end; the finished job's view. ``JobFailed`` when it failed or was
        cancelled; a kernel interrupt cancels it."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        seen = None
        try:
            while True:
                view = self.job(job_id)
                figure = (view.get("state"), view.get("progress"), view.get("stage"))
                if on_progress is not None and figure != seen:
                    on_progress(view)
                seen = figure
                if view.get("state") == "succeeded":
                    return view
                if view.get("state") in TERMINAL_STATES:
                    raise JobFailed(view)
                if deadline is not None and time.monotonic() > deadline:
                    raise ServerError(f"job {job_id} is still {view.get('state')} after {timeout_s:.0f} s")
                time.sleep(self.poll_s)
        except KeyboardInterrupt:
            try:
                self.cancel(job_id)
            except (ServerError, OSError):
                pass
            raise

    def run(self, kind: str, params: dict, *, on_progress: ProgressCallback | None = None,
            timeout_s: float | None = None) -> dict:
        """Submit a job and wait for it (see :meth:`wait`)."""
        view = self.submit(kind, params)
        if on_progress is not None:
            on_progress(view)
        return self.wait(view["id"], on_progress=on_progress, timeout_s=timeout_s)

    def media(self, url: str) -> bytes:
        """The bytes behind a job's signed media URL."""
        from urllib.parse import urljoin, urlsplit

        if not urlsplit(url).scheme:
            url = urljoin(self.base_url + "/", url.lstrip("/"))
        status, raw, _ = http_request(url, headers=self._headers, timeout=self.timeout)
        if status != 200:
            raise ServerError(f"could not fetch the result (HTTP {status})")
        return raw

    def _output(self, job: dict) -> bytes:
        if not job.get("url"):
            raise ServerError(f"job {job.get('id')} finished without an output file")
        return self.media(job["url"])

    # -- the work --------------------------------------------------------------
    def generate_image(self, prompt: str, *, aspect_ratio: str = "1:1", steps: int = 4, guidance: float = 0.0,
                       negative_prompt: str = "", style: str = "None", on_progress: ProgressCallback | None = None) -> bytes:
        """PNG bytes of one image (job ``image.generate``, the params of ``POST /generate-image``)."""
        job = self.run("image.generate", {
            "prompt": prompt, "aspect_ratio": aspect_ratio, "steps": steps, "guidance": guidance,
            "negative_prompt": negative_prompt, "style": style,
        }, on_progress=on_progress)
        return self._output(job)

    def face_swap(self, source_image: bytes, target_image: bytes, *, on_progress: ProgressCallback | None = None) -> bytes:
        job = self.run("faces.swap", {
            "source_image": _to_data_uri(source_image), "target_image": _to_data_uri(target_image),
        }, on_progress=on_progress)
        return self._output(job)

    def transcribe(self, audio: bytes, filename: str = "audio.wav", language: str | None = None, *,
                   on_progress: ProgressCallback | None = None) -> dict:
        """The OpenAI ``verbose_json`` transcript (``text``, ``segments``...) of ``audio``."""
        params = {"audio": _to_data_uri(audio, "application/octet-stream"), "response_format": "verbose_json"}
        if language:
            params["language"] = language
        job = self.run("speech.transcribe", params, on_progress=on_progress)
        result = job.get("result") or {}
        return result.get("body") or {"text": result.get("text", "")}

    def render_video(self, script: str, *, avatar_id: str = "default", voice_id: str | None = None,
                     subtitles: bool = True, orientation: str = "vertical", resolution: int | None = None,
                     lipsync: bool = True, on_progress: ProgressCallback | None = None) -> bytes:
        """MP4 bytes of a talking-avatar video of ``script`` (job ``video.render``); the mouth follows the
        speech when the lip-sync model is installed, unless ``lipsync`` is false."""
        params: dict = {"script": script, "avatar_id": avatar_id, "generate_subtitles": subtitles,
                        "orientation": orientation, "lipsync": lipsync}
        if voice_id:
            params["voice_id"] = voice_id
        if resolution:
            params["resolution"] = resolution
        return self._output(self.run("video.render", params, on_progress=on_progress))

    def live_portrait(self, image: bytes, audio: bytes, *, motion: str = "none",
                      on_progress: ProgressCallback | None = None) -> bytes:
        """MP4 bytes of ``image`` (a portrait) speaking ``audio`` (any clip ffmpeg reads), lip-synced
        (job ``video.live_portrait``)."""
        # Plain base64: the server reads each file's type from its content.
        job = self.run("video.live_portrait", {"image": base64.b64encode(image).decode(),
                                               "audio": base64.b64encode(audio).decode(), "motion": motion},
                       on_progress=on_progress)
        return self._output(job)

    def voices(self) -> list[dict]:
        return self._call("GET", "/voices").get("voices", [])

    def avatars(self) -> list[dict]:
        return self._call("GET", "/avatars").get("avatars", [])

    def jobs(self, limit: int = 20) -> list[dict]:
        return self._call("GET", f"/api/jobs?limit={int(limit)}").get("jobs", [])
