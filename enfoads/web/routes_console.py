"""The built-in console at ``/console``: static ES modules served from the package, and the two routes
only it needs (a voice preview, unloading a model).

The page and its files hold no secret, so they are public; every API call the
page makes is authenticated like any other (the secret URL prefix it was
opened under, or the key the user types, kept in the tab's sessionStorage).
A Content-Security-Policy keeps every request on this server's own origin:
no CDN, no third-party script.
"""
from __future__ import annotations

import io
from importlib import resources

from flask import Blueprint, Response, abort, jsonify, redirect, request, send_file

from enfoads.errors import InvalidInput
from enfoads.services.options import to_text
from enfoads.text import clean_text
from enfoads.web.state import engine

bp = Blueprint("console", __name__)

CONSOLE_FILES = resources.files("enfoads.web") / "console"
CSP = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' data: blob:; "
       "connect-src 'self' ws: wss:; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
       "frame-ancestors *")
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".json": "application/json", ".txt": "text/plain; charset=utf-8",
         ".svg": "image/svg+xml"}
PREVIEW_TEXT = {"es": "Hola, esta es mi voz para tu anuncio.", "en": "Hello, this is my voice for your ad.",
                "pt": "Olá, esta é a minha voz para o seu anúncio.", "fr": "Bonjour, voici ma voix pour votre annonce."}


def _file(name: str) -> Response:
    parts = [p for p in name.split("/") if p]
    if not parts or any(p in (".", "..") or p.startswith(".") for p in parts):
        abort(404)
    target = CONSOLE_FILES.joinpath(*parts)
    suffix = "." + parts[-1].rsplit(".", 1)[-1] if "." in parts[-1] else ""
    if suffix not in TYPES or not target.is_file():
        abort(404)
    response = Response(target.read_bytes(), mimetype=TYPES[suffix].split(";")[0])
    response.headers["Content-Type"] = TYPES[suffix]
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/console")
def console_redirect():
    # The page's files are relative to /console/ (so the same page works under the secret URL prefix).
    return redirect(request.script_root + "/console/", code=302)


@bp.get("/console/")
def console_page():
    return _file("index.html")


@bp.get("/console/<path:name>")
def console_file(name: str):
    return _file(name)


@bp.get("/voices/<path:voice_id>/preview")
def voice_preview(voice_id: str):
    """A short WAV of the voice saying one line in its language (the console's voice preview)."""
    tts = engine().tts
    choice = tts.resolve(voice_id)
    language = (getattr(choice.voice, "language", "") or "en")[:2].lower()
    try:
        raw = clean_text(request.args["text"])[0] if request.args.get("text") else None  # control, bidi, invisible
        text = to_text(raw, max_chars=200, what="text") if raw else None
    except ValueError as exc:
        raise InvalidInput.field("text", str(exc)) from None
    text = text or PREVIEW_TEXT.get(language, PREVIEW_TEXT["en"])
    speech = tts.synthesize(text, choice)
    return send_file(io.BytesIO(speech.wav_bytes()), mimetype="audio/wav", max_age=0)


@bp.post("/api/models/<path:model_id>/unload")
def unload_model(model_id: str):
    """Free a model's memory now (it loads again on its next use); the System tab's evict button."""
    residency = engine().runtime.residency
    if model_id not in residency.registered():
        raise InvalidInput.field("model_id", f"no model {model_id!r} is registered")
    unloaded = residency.unload(model_id)
    return jsonify({"status": "success", "model_id": model_id, "unloaded": unloaded})
