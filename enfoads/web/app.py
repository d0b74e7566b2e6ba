"""``create_app(settings)``: the Flask app, its Socket.IO server and the security around them.

Server choice: Flask-SocketIO in ``threading`` mode, served by gunicorn's
threaded worker (``enfoads.cli.server``), with simple-websocket for WebSockets (long-polling works too, for
tunnels that drop WebSockets). Every request and every job runs in a real OS
thread: no gevent/eventlet monkey-patching, under which a long torch call in
a greenlet would freeze every other request. GPU work never runs in a request
thread: it is a job, run by the one GPU worker, so light routes keep
answering while the GPU is busy. One worker process by design: one GPU, one
residency manager, one job queue.
"""
from __future__ import annotations

import logging
import time

from flask import Flask, g, request
from flask_cors import CORS
from flask_cors.core import ACL_ORIGIN, get_cors_options, set_cors_headers
from flask_limiter import Limiter
from flask_socketio import SocketIO
from werkzeug.middleware.proxy_fix import ProxyFix

from enfoads.engine import build_engine
from enfoads.security import Credentials, load_or_create_key
from enfoads.settings import Settings
from enfoads.web import errors as web_errors
from enfoads.web.state import EXTENSION, AppState, EngineHolder

log = logging.getLogger(__name__)

# Routes reachable without the key: the health check, CORS preflights, media
# (they carry their own signature) and Socket.IO (it authenticates on connect).
PUBLIC_ENDPOINTS = {"system.health", "media.get_media", "frontend.avatar_image", "static",
                    "console.console_page", "console.console_file", "console.console_redirect"}
CORS_HEADERS = ["Content-Type", "Authorization", "X-API-Key", "ngrok-skip-browser-warning"]
CORS_METHODS = ["GET", "POST", "OPTIONS"]


class SecretPrefixMiddleware:
    """Serve the whole API also under ``/<prefix>``; such requests are authenticated.

    The prefix moves into SCRIPT_NAME, so ``url_for`` (media URLs included)
    keeps generating prefixed URLs for a client that came that way.
    """

    def __init__(self, wsgi_app, prefix: str):
        self.wsgi_app = wsgi_app
        self.segment = "/" + prefix

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == self.segment or path.startswith(self.segment + "/"):
            environ["PATH_INFO"] = path[len(self.segment):] or "/"
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + self.segment
            environ["enfoads.prefix_auth"] = True
        return self.wsgi_app(environ, start_response)


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return request.headers.get("X-API-Key")


def request_is_authenticated(credentials: Credentials) -> bool:
    return bool(request.environ.get("enfoads.prefix_auth")) or credentials.check_bearer(_bearer())


def init_cors(app: Flask, allowed_origins) -> None:
    """CORS: any origin under the secret URL prefix, the allow-list (``ENFOADS_CORS_ORIGINS``) at the root.

    Users host the frontend anywhere (a static host, a laptop's dev server),
    so the server cannot know its origin in advance. Under the secret prefix
    the URL itself is the credential and no cookie is ever used, so any
    origin may call it, without ``Access-Control-Allow-Credentials``: a page
    can only reach what its own code already knows the secret URL of. At the
    root, where the key travels in a header, the allow-list stays.

    flask-cors matches ``request.path``, which no longer holds the prefix
    (``SecretPrefixMiddleware`` moves it to SCRIPT_NAME), so prefixed
    requests get their headers from a second set of flask-cors options here.
    This hook is registered after flask-cors's own and so runs before it;
    flask-cors leaves a response that already has its CORS headers alone.
    """
    CORS(app, origins=list(allowed_origins), allow_headers=CORS_HEADERS, methods=CORS_METHODS, max_age=600)
    any_origin = get_cors_options(app, {"origins": "*", "allow_headers": CORS_HEADERS, "methods": CORS_METHODS,
                                        "max_age": 600, "supports_credentials": False})

    @app.after_request
    def _prefix_cors(response):
        if request.environ.get("enfoads.prefix_auth") and not response.headers.get(ACL_ORIGIN):
            set_cors_headers(response, any_origin)
        return response


def create_app(settings: Settings | None = None, *, engine_factory=None, hardware=None) -> Flask:
    """Build the app. The engine (models, jobs) starts in the background; ``GET /`` answers at once.

    Args:
        settings: defaults to ``Settings()`` (the environment).
        engine_factory: ``() -> Engine``, for tests that bring their own.
        hardware: a detected ``Hardware`` to skip probing.
    """
    settings = settings or Settings()
    key, generated = load_or_create_key(settings.data_dir, settings.api_key.get_secret_value() if settings.api_key else None)
    credentials = Credentials(key)

    app = Flask("enfoads")
    app.config.update(
        # Werkzeug refuses bigger bodies while reading; routes apply tighter limits.
        MAX_CONTENT_LENGTH=int(max(settings.max_body_mb, settings.max_upload_mb) * 1_000_000),
        JSON_SORT_KEYS=False,
    )
    holder = EngineHolder(engine_factory or (lambda: build_engine(settings, hardware)))
    app_state = AppState(settings, credentials, holder, generated)
    app.extensions[EXTENSION] = app_state

    init_cors(app, settings.cors_origins)

    # flask-limiter (headers_enabled) sets Retry-After on every response, to when the rate window
    # resets (up to a minute), over a queue_full 429's or a 503's own figure. Only its own 429 (a
    # limit hit: no Retry-After of the response's own) keeps it. Flask runs these hooks in reverse:
    # _note_retry_after, the limiter's, then this one.
    @app.after_request
    def _keep_the_responses_own_retry_after(response):
        own = g.pop("own_retry_after", None)
        if own is not None:
            response.headers["Retry-After"] = own
        elif response.status_code != 429:
            response.headers.pop("Retry-After", None)
        return response

    limiter = Limiter(
        key_func=lambda: f"{_bearer() or request.environ.get('enfoads.prefix_auth', '')}|{request.remote_addr}",
        app=app,
        default_limits=[settings.rate_limit],
        storage_uri="memory://",
        headers_enabled=True,
    )
    app.extensions["enfoads.limiter"] = limiter

    @app.after_request
    def _note_retry_after(response):
        g.own_retry_after = response.headers.get("Retry-After")
        return response

    @app.before_request
    def _authenticate():
        g.started = time.perf_counter()
        if request.method == "OPTIONS" or request.endpoint in PUBLIC_ENDPOINTS:
            return None
        if request.endpoint is None:
            return None  # a 404 or 405 follows, no need to reveal anything else
        if not request_is_authenticated(credentials):
            return web_errors.error_response(
                401, "missing or wrong API key: send Authorization: Bearer <key> or use the URL printed at start",
                headers={"WWW-Authenticate": "Bearer"},
            )
        app_state.public_base = request.host_url.rstrip("/")
        return None

    web_errors.init_app(app)

    from enfoads.web import routes_console, routes_frontend, routes_jobs, routes_media, routes_openai, routes_system

    for module in (routes_system, routes_frontend, routes_jobs, routes_openai, routes_media, routes_console):
        app.register_blueprint(module.bp)
    # By default model requests have no limit of their own: the queue's depth is it (429 queue_full), so
    # one frontend is never capped below what the device makes. ENFOADS_SUBMIT_RATE_LIMIT sets one.
    for endpoint in routes_frontend.SUBMIT_ENDPOINTS + routes_jobs.SUBMIT_ENDPOINTS + routes_openai.SUBMIT_ENDPOINTS:
        if settings.submit_rate_limit == "off":
            break
        # The limit lives in the wrapper the decorator returns: it must replace the view. (Decorating alone
        # marks the view as explicitly limited, which also drops the default limit: no limit at all.)
        app.view_functions[endpoint] = limiter.limit(settings.submit_rate_limit)(app.view_functions[endpoint])

    socketio = SocketIO(
        app,
        async_mode="threading",
        # Any origin: socket.io-client turns the pasted URL https://host/<prefix> into the
        # default path /socket.io at the host's root plus the namespace /<prefix>, so the
        # transport's requests (where Engine.IO checks the origin) carry no prefix and cannot
        # tell the frontend's namespace from the root one. The namespaces authenticate
        # instead (the secret one by being secret, the root one with the key in `auth`), and
        # no cookie is ever used, so a foreign page gains nothing without the URL or the key.
        cors_allowed_origins="*",
        cors_credentials=False,  # hence never Access-Control-Allow-Credentials
        namespaces=["/", "/" + credentials.prefix],
        max_http_buffer_size=1_000_000,
    )
    app.extensions["enfoads.socketio"] = socketio
    from enfoads.web import realtime

    realtime.init_app(app, socketio, credentials, holder)
    app.wsgi_app = SecretPrefixMiddleware(app.wsgi_app, credentials.prefix)
    # Behind ngrok or Colab's proxy: trust the scheme and host they forward
    # (for absolute media URLs); the client address is left alone.
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=0, x_proto=1, x_host=1)
    holder.start()
    return app


def socketio_of(app: Flask) -> SocketIO:
    return app.extensions["enfoads.socketio"]
