"""The connection: the public tunnel, the URL to paste into the frontend and the key, masked in every
output and shown in full only by a button or in a 0600 file."""
from __future__ import annotations

import os
from pathlib import Path

from enfoads.colab.masking import mask

_TUNNELS: list = []  # tunnels this process opened (the notebook's kernel)


def paste_url(public_url: str, key: str) -> str:
    """The one URL to paste into the frontend: the public URL plus the key's secret path prefix."""
    from enfoads.security import url_prefix

    return f"{public_url.rstrip('/')}/{url_prefix(key)}"


def masked_url(public_url: str, key: str) -> str:
    from enfoads.security import url_prefix

    return f"{public_url.rstrip('/')}/{mask(url_prefix(key))}"


URL_FILE = "frontend-url.txt"
FREE_TIER_NOTE = (
    "Note: Colab's free tier does not allow a notebook used mainly as a web-UI server; there, set TUNNEL = \"none\" "
    "and use the notebook UI below, which does every job itself."
)


def connect_text(public_url: str | None, key: str, local_url: str, *, url_file: Path | None = None) -> str:
    """What to paste, with the secret parts masked: this text goes into the notebook's saved output."""
    where = "the \"Show URL and key\" button below" + (
        f", or the file {url_file} (mode 0600; on Colab: Files panel, left sidebar)" if url_file is not None else "")
    if not public_url:
        return "\n".join([
            f"Server: {local_url} (no tunnel: reachable from this machine only)",
            f"API URL (local): {masked_url(local_url, key)}   API key: {mask(key)}",
            f"(masked here so they are not saved with the notebook; the full values: {where})",
            "Use the notebook UI below: it does every job itself (images, face swaps, transcripts, videos).",
        ])
    return "\n".join([
        f"Public URL:   {public_url}",
        f"PASTE into the frontend's settings (API URL): {masked_url(public_url, key)}",
        f"API key (other clients: Authorization: Bearer <key>): {mask(key)}",
        f"Both are masked here so they are not saved with the notebook; the full values: {where}.",
        "How to: open the frontend > Settings > API URL, paste, Save; it tests the connection by itself.",
        "Keep this tab open: the server lives as long as this runtime. The URL changes when the tunnel reopens.",
        FREE_TIER_NOTE,
    ])


class Connection:
    """The URL to paste and the key, shown without writing either into the notebook's saved output.

    What a notebook saves is its cells' outputs (text, HTML, images), and some
    frontends also save widget state. So: printed text has the secret parts
    masked (:func:`connect_text`); the full values are (1) in ``<data dir>/
    frontend-url.txt`` (mode 0600, next to the ``api-key`` file the server
    already keeps there), and (2) behind a "Show URL and key" button whose text
    box is empty when it is displayed and filled only on click, then emptied
    again after ``reveal_s`` seconds or on "Hide". The displayed output itself
    (its text/plain form is taken at display time) never holds them; only a
    frontend that saves live widget state while they are shown could save them,
    which the auto-hide keeps short.
    """

    def __init__(self, local_url: str, key: str, tunnel=None, data_dir: Path | None = None, *, reveal_s: float = 60.0):
        self.local_url = local_url
        self.key = key
        self.tunnel = tunnel
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.reveal_s = reveal_s
        self._widget = None
        self._timer = None

    @property
    def public_url(self) -> str | None:
        return getattr(self.tunnel, "public_url", None) if self.tunnel is not None else None

    @property
    def paste_url(self) -> str:
        """The full URL to paste (the public one, else the local one): keep it out of outputs."""
        return paste_url(self.public_url or self.local_url, self.key)

    @property
    def url_file(self) -> Path | None:
        return self.data_dir / URL_FILE if self.data_dir is not None else None

    def text(self) -> str:
        return connect_text(self.public_url, self.key, self.local_url, url_file=self.url_file)

    def save(self) -> Path | None:
        """Write the full URL and key to ``<data dir>/frontend-url.txt`` (mode 0600)."""
        path = self.url_file
        if path is None:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"API URL (paste into the frontend's settings): {self.paste_url}\nAPI key: {self.key}\n")
        os.chmod(path, 0o600)
        return path

    def announce(self) -> None:
        self.save()
        print(self.text())

    def widget(self):
        if self._widget is None:
            self._widget = self._build()
        return self._widget

    def show(self) -> None:
        try:
            import ipywidgets  # noqa: F401
        except ImportError:
            return
        from IPython.display import display

        display(self.widget())

    def reveal(self, shown: bool = True) -> None:
        box = self.widget()
        button, text = box.children
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if shown:
            text.value = f"{self.paste_url}    key: {self.key}"
            button.description = "Hide"
            if self.reveal_s:
                import threading

                self._timer = threading.Timer(self.reveal_s, self.reveal, args=(False,))
                self._timer.daemon = True
                self._timer.start()
        else:
            text.value = ""
            button.description = "Show URL and key"

    def _build(self):
        import ipywidgets as w

        button = w.Button(description="Show URL and key", tooltip="shows them for a minute; not saved in the notebook")
        text = w.Text(value="", placeholder="click the button, then copy (Ctrl+C)", layout=w.Layout(width="80%"))
        button.on_click(lambda _b: self.reveal(not text.value))
        return w.HBox([button, text])


def open_public_tunnel(provider: str, port: int, key: str, local_url: str, data_dir: Path | None = None):
    """The notebook's tunnel: ``provider`` (ngrok by default), falling back to a Cloudflare quick
    tunnel when there is no ngrok token; says what to paste (masked), again whenever the URL changes."""
    from enfoads.cli.tunnel import MissingAuthtokenError, open_tunnel

    def announce(tunnel) -> None:
        Connection(local_url, key, tunnel, data_dir).announce()

    for earlier in _TUNNELS:  # "Run all" again: one tunnel at a time (ngrok's free plan allows one)
        earlier.close()
    _TUNNELS.clear()
    if provider == "none":
        Connection(local_url, key, None, data_dir).announce()
        return None
    try:
        tunnel = open_tunnel(port, provider, on_change=announce)
    except MissingAuthtokenError as exc:
        print(f"{exc}\n\nUsing a Cloudflare quick tunnel for now.")
        tunnel = open_tunnel(port, "cloudflared", on_change=announce)
    _TUNNELS.append(tunnel)
    announce(tunnel)
    return tunnel
