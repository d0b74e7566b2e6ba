"""`enfoads serve`: start the web app and say, once, the URL to paste into the frontend."""
from __future__ import annotations

import logging
import sys

from enfoads.settings import Settings

log = logging.getLogger(__name__)


def frontend_url(base: str, prefix: str) -> str:
    """The one URL the user pastes into the frontend's settings: it carries the credential."""
    return f"{base.rstrip('/')}/{prefix}"


def banner(settings: Settings, prefix: str, key: str | None, public_base: str | None = None) -> str:
    local = f"http://{'127.0.0.1' if settings.host in ('0.0.0.0', '::') else settings.host}:{settings.port}"
    lines = ["", "Enfoads is running.", f"  local:            {local}"]
    if public_base:
        lines.append(f"  public:           {public_base}")
    lines.append("  paste this URL into the frontend's settings (keep it private, it is the key):")
    lines.append(f"      {frontend_url(public_base or local, prefix)}")
    if key:
        lines.append(f"  API key (shown once; stored in {settings.data_dir}/api-key): {key}")
    lines.append(f"  API docs: {local}/{prefix}/docs")
    return "\n".join(lines) + "\n"


def serve(settings: Settings, *, public_base: str | None = None) -> None:
    """Run the server in this process until interrupted; open the configured tunnel first."""
    from enfoads.web import create_app
    from enfoads.web.app import socketio_of
    from enfoads.web.state import EXTENSION

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    state = app.extensions[EXTENSION]
    creds = state.credentials
    tunnel = None
    if settings.tunnel != "none":
        from enfoads.tunnel import TunnelError, open_tunnel

        def on_change(t) -> None:
            state.public_base = t.public_url.rstrip("/")
            sys.stdout.write(banner(settings, creds.prefix, None, t.public_url))
            sys.stdout.flush()

        try:
            tunnel = open_tunnel(settings.port, settings.tunnel, on_change=on_change)
        except TunnelError as exc:
            raise SystemExit(f"enfoads: could not open the {settings.tunnel} tunnel: {exc}") from None
        public_base = tunnel.public_url
    if public_base:
        state.public_base = public_base.rstrip("/")
    sys.stdout.write(banner(settings, creds.prefix, creds.key if state.key_generated else None, public_base))
    sys.stdout.flush()
    try:
        socketio_of(app).run(
            app, host=settings.host, port=settings.port, allow_unsafe_werkzeug=True, use_reloader=False,
            log_output=False,
        )
    finally:
        if tunnel is not None:
            tunnel.close()
        state.holder.close()
