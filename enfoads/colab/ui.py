"""The notebook-native UI: ipywidgets tabs (7 or 8) for every job, over :class:`Client`, plus the status text."""
from __future__ import annotations

from typing import Callable, Iterable

from enfoads.colab.client import Client, ProgressCallback
from enfoads.colab.masking import key_secrets, redact
from enfoads.colab.server import ServerError, ServerProcess

ASPECT_RATIOS = ("1:1", "16:9", "9:16", "4:3", "3:4", "21:9", "9:21", "11:8", "8:11")
ORIENTATIONS = ("vertical", "horizontal", "square")


def progress_line(job: dict) -> str:
    return f"{job.get('stage') or job.get('state') or job.get('status') or ''} {int(job.get('progress') or 0)}%".strip()


def status_text(client: Client, server: ServerProcess | None = None, log_lines: int = 15) -> str:
    """GPU residency, recent jobs and the server's last log lines (secrets masked)."""
    lines = []
    try:
        gpu = client.gpu_status()
        lines.append(
            f"device {gpu.get('device')}: {gpu.get('vram_allocated_gb')} GB allocated, "
            f"{gpu.get('vram_free_gb')} GB free of {gpu.get('vram_total_gb')} GB"
        )
        loaded = gpu.get("models_loaded")
        lines.append(f"models loaded: {', '.join(loaded) if isinstance(loaded, list) and loaded else loaded or 'none'}")
    except (ServerError, OSError) as exc:
        lines.append(f"GPU status unavailable: {exc}")
    try:
        jobs = client.jobs(10)
        lines.append(f"recent jobs ({len(jobs)}):")
        for job in jobs:
            lines.append(f"  {job.get('id', '?')[:12]}  {job.get('kind', ''):<18} {job.get('status', ''):<10} {job.get('progress', '')}")
    except (ServerError, OSError) as exc:
        lines.append(f"jobs unavailable: {exc}")
    if server is not None:
        lines.append(f"server {'running' if server.running else 'STOPPED'}; last log lines ({server.log_path}):")
        lines.append(server.tail(log_lines))
    return redact("\n".join(lines), key_secrets(client.key))


TAB_TITLES = ("Image", "Face swap", "Transcribe", "Video", "Live portrait", "Jobs & GPU")


def set_tab_titles(tabs, titles: Iterable[str]) -> None:
    """Tab titles on ipywidgets 8 (the ``titles`` trait) and 7 (``set_title``, which Colab ships)."""
    titles = tuple(titles)
    if tabs.has_trait("titles"):
        tabs.titles = titles
    else:
        for i, title in enumerate(titles):
            tabs.set_title(i, title)


def tab_titles(tabs) -> list[str]:
    if tabs.has_trait("titles"):
        return list(tabs.titles)
    return [tabs.get_title(i) for i in range(len(tabs.children))]


class NotebookUI:
    """Tabs for every job the server does: prompt -> image, face swap, transcription, avatar
    video, and the job list. Each button submits a job and shows its progress to the end.

    The methods (``generate_image`` ...) work without widgets too; ``show()``
    needs ipywidgets (Colab ships 7; 8 works the same).
    """

    def __init__(self, client: Client):
        self.client = client
        self.last_image = None
        self._widget = None

    def generate_image(self, prompt: str, aspect_ratio: str = "1:1", steps: int = 4, guidance: float = 0.0,
                       on_progress: ProgressCallback | None = None):
        """A PIL image for ``prompt``."""
        from io import BytesIO

        from PIL import Image

        png = self.client.generate_image(prompt, aspect_ratio=aspect_ratio, steps=steps, guidance=guidance,
                                         on_progress=on_progress)
        self.last_image = Image.open(BytesIO(png))
        self.last_image.load()
        return self.last_image

    def face_swap(self, source: bytes, target: bytes, on_progress: ProgressCallback | None = None):
        from io import BytesIO

        from PIL import Image

        image = Image.open(BytesIO(self.client.face_swap(source, target, on_progress=on_progress)))
        image.load()
        return image

    def transcribe(self, audio: bytes, filename: str = "audio.wav", on_progress: ProgressCallback | None = None) -> str:
        return self.client.transcribe(audio, filename, on_progress=on_progress).get("text", "")

    def render_video(self, script: str, on_progress: ProgressCallback | None = None, **options):
        """An ``IPython.display.Video`` (embedded MP4) of ``script``; options as ``Client.render_video``."""
        from IPython.display import Video

        return Video(self.client.render_video(script, on_progress=on_progress, **options), embed=True, mimetype="video/mp4")

    def live_portrait(self, image: bytes, audio: bytes, on_progress: ProgressCallback | None = None, **options):
        """An ``IPython.display.Video`` (embedded MP4) of the portrait speaking the clip."""
        from IPython.display import Video

        return Video(self.client.live_portrait(image, audio, on_progress=on_progress, **options), embed=True,
                     mimetype="video/mp4")

    def widget(self):
        if self._widget is None:
            self._widget = self._build()
        return self._widget

    def show(self):
        from IPython.display import display

        display(self.widget())

    # -- widgets -------------------------------------------------------------
    def _choices(self, fetch: Callable[[], list], label: Callable[[dict], str], first: tuple) -> list:
        try:
            return [first, *[(label(item), item["id"]) for item in fetch()]]
        except (ServerError, OSError, KeyError, TypeError):
            return [first]

    def _build(self):
        import ipywidgets as w
        from IPython.display import display

        def runner(button, output: "w.Output", fn: Callable[[ProgressCallback], object], *, bar_shown: bool = True):
            def click(_):
                button.disabled = True
                output.clear_output()
                bar = w.IntProgress(value=0, min=0, max=100, layout=w.Layout(width="50%"))
                label = w.Label("submitting...")

                def progress(job: dict) -> None:
                    bar.value = max(0, min(100, int(job.get("progress") or 0)))
                    label.value = progress_line(job)

                with output:
                    if bar_shown:
                        display(w.HBox([bar, label]))
                    try:
                        result = fn(progress)
                        bar.value, bar.bar_style, label.value = 100, "success", "done"
                        if result is not None:
                            display(result)
                    except Exception as exc:  # noqa: BLE001 - shown to the user
                        bar.bar_style, label.value = "danger", "failed"
                        print(f"error: {exc}")
                    finally:
                        button.disabled = False

            button.on_click(click)

        # Image
        prompt = w.Textarea(placeholder="a poster of a red chair in a sunny room", layout=w.Layout(width="100%"))
        ratio = w.Dropdown(options=ASPECT_RATIOS, value="1:1", description="aspect")
        steps = w.IntSlider(value=4, min=1, max=8, description="steps")
        guidance = w.FloatSlider(value=0.0, min=0.0, max=10.0, step=0.5, description="guidance")
        go, out_img = w.Button(description="Generate", button_style="primary"), w.Output()
        runner(go, out_img, lambda p: self.generate_image(prompt.value or "a red chair", ratio.value, steps.value,
                                                          guidance.value, on_progress=p))
        image_tab = w.VBox([prompt, w.HBox([ratio, steps, guidance]), go, out_img])

        # Face swap
        src = w.FileUpload(accept="image/*", description="source face")
        tgt = w.FileUpload(accept="image/*", description="target image")
        swap, out_swap = w.Button(description="Swap faces", button_style="primary"), w.Output()
        runner(swap, out_swap, lambda p: self.face_swap(_upload_bytes(src), _upload_bytes(tgt), on_progress=p))
        swap_tab = w.VBox([w.HBox([src, tgt]), swap, out_swap])

        # Transcribe
        audio = w.FileUpload(accept="audio/*,video/*", description="audio or video")
        tr, out_tr = w.Button(description="Transcribe", button_style="primary"), w.Output()
        runner(tr, out_tr, lambda p: print(self.transcribe(_upload_bytes(audio), _upload_name(audio), on_progress=p)))
        tr_tab = w.VBox([audio, tr, out_tr])

        # Video
        script = w.Textarea(placeholder="Hello! This is our new summer collection...", layout=w.Layout(width="100%"))
        avatar = w.Dropdown(options=_dedupe(self._choices(self.client.avatars, lambda a: a.get("name") or a["id"],
                                                          ("default", "default"))), description="avatar")
        voice = w.Dropdown(options=self._choices(self.client.voices, lambda v: f"{v.get('name') or v['id']} ({v.get('language', '')})",
                                                 ("default voice", "")), description="voice")
        orientation = w.Dropdown(options=ORIENTATIONS, value="vertical", description="shape")
        subs = w.Checkbox(value=True, description="subtitles")
        lipsync = w.Checkbox(value=True, description="lip sync")
        render, out_video = w.Button(description="Render video", button_style="primary"), w.Output()
        runner(render, out_video, lambda p: self.render_video(
            script.value or "Hello from Enfoads.", avatar_id=avatar.value, voice_id=voice.value or None,
            subtitles=subs.value, orientation=orientation.value, lipsync=lipsync.value, on_progress=p))
        video_tab = w.VBox([script, w.HBox([avatar, voice]), w.HBox([orientation, subs, lipsync]), render, out_video])

        # Live portrait: a picture speaks a clip
        portrait = w.FileUpload(accept="image/*", description="portrait")
        speech = w.FileUpload(accept="audio/*,video/*", description="speech")
        animate, out_live = w.Button(description="Make it talk", button_style="primary"), w.Output()
        runner(animate, out_live, lambda p: self.live_portrait(_upload_bytes(portrait), _upload_bytes(speech),
                                                               on_progress=p))
        live_tab = w.VBox([w.HBox([portrait, speech]), animate, out_live])

        # Jobs
        refresh, out_jobs = w.Button(description="Refresh"), w.Output()
        runner(refresh, out_jobs, lambda _p: print(status_text(self.client)), bar_shown=False)
        jobs_tab = w.VBox([refresh, out_jobs])

        tabs = w.Tab(children=[image_tab, swap_tab, tr_tab, video_tab, live_tab, jobs_tab])
        set_tab_titles(tabs, TAB_TITLES)
        return tabs


def _dedupe(options: list) -> list:
    seen, out = set(), []
    for label, value in options:
        if value not in seen:
            seen.add(value)
            out.append((label, value))
    return out


def _upload_items(upload) -> list:
    value = upload.value
    items = list(value.values()) if isinstance(value, dict) else list(value)  # ipywidgets 7 vs 8
    if not items:
        raise ServerError(f"choose a file for '{upload.description}' first")
    return items


def _upload_bytes(upload) -> bytes:
    return bytes(_upload_items(upload)[0]["content"])


def _upload_name(upload) -> str:
    item = _upload_items(upload)[0]
    return item.get("name") or item.get("metadata", {}).get("name") or "upload"
