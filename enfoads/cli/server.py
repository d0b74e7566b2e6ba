"""`enfoads serve`: start the web app and say, once, the URL to paste into the frontend.

How it is served: gunicorn, embedded (``gunicorn.app.base.BaseApplication``),
as Flask-SocketIO's deployment notes describe for its ``threading`` mode
(``gunicorn -w 1 --threads 100 module:app`` with simple-websocket):

    one arbiter  ──fork──>  ONE worker, class EnfoadsWorker (gunicorn's gthread),
                            100 threads: every request and WebSocket a real OS thread

- The process ``enfoads serve`` starts is gunicorn's arbiter. It binds the
  port, forks the one worker and watches it; it never builds the app nor
  imports torch (``preload_app`` stays off). The worker builds the app (and so
  the engine: models, residency manager, job queue) in ``load()``, after the
  fork: nothing forks once torch or CUDA is initialised.
- One worker, always: one GPU, one residency manager, one job queue per data
  dir. SIGHUP (reload), SIGTTIN/SIGTTOU (more/fewer workers) and SIGUSR2
  (re-exec) are refused; a worker that dies is replaced by a new one, which
  recovers the jobs like any restart. The worker never outlives the arbiter
  (``PR_SET_PDEATHSIG``): ``kill -9`` of the server stops everything, and the
  next start recovers the interrupted job.
- SIGTERM: the worker stops accepting, closes the job queue (the running job
  stops at its next progress step and is re-queued, as after a restart;
  requests waiting for a job answer with its id), disconnects Socket.IO
  clients, lets the requests in flight finish (at most ``GRACEFUL_S``) and
  exits 0. Ctrl-C (SIGINT) does the same without waiting for requests.
- No heartbeat timeout: a long native call (a model load from a Drive mount,
  a CUDA kernel) may hold the GIL for a while, and restarting the only process
  that holds the models would lose more than it saves. ``GET /`` is the health check.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.workers.gthread import ThreadWorker

from enfoads.settings import Settings

log = logging.getLogger(__name__)

THREADS = 100  # concurrent requests + WebSockets (each holds a thread while open)
GRACEFUL_S = 10  # SIGTERM: how long requests in flight may take before the worker is stopped
JOB_GRACE_S = 0.0  # SIGTERM: the running job is re-queued at its next progress step
SHUTDOWN_WAIT_S = 8.0  # at most this long for the queue (5 s for a job that reports no progress) and the rest


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


def gunicorn_options(settings: Settings) -> dict:
    """The gunicorn configuration ``enfoads serve`` runs with (names as in gunicorn's settings)."""
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return {
        "bind": [f"{host}:{settings.port}"],
        "workers": 1,
        "worker_class": EnfoadsWorker,
        "threads": THREADS,
        "preload_app": False,  # the worker builds the app: no fork after torch/CUDA
        "timeout": 0,  # no heartbeat kill (see the module docstring)
        "graceful_timeout": GRACEFUL_S,
        "keepalive": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "enfoads",
        "control_socket_disable": True,  # gunicorn >= 25: no control socket (it could add workers)
    }


# --------------------------------------------------------------------------- the worker


class _Served:
    """What the worker serves: the app, its tunnel, and the one shutdown sequence."""

    def __init__(self, settings: Settings, public_base: str | None):
        from enfoads.web import create_app
        from enfoads.web.state import EXTENSION

        self.settings = settings
        self.app = create_app(settings)
        self.state = self.app.extensions[EXTENSION]
        self.tunnel = None
        self.public_base = public_base
        # The shutdown thread waits from the start: a signal handler only sets a flag and an
        # event (it may interrupt any code, so it takes no lock that code could be holding).
        self._requested = False
        self._go = threading.Event()
        self._closed = threading.Event()
        threading.Thread(target=self._shutdown_when_asked, name="enfoads-shutdown", daemon=True).start()
        self._open_tunnel()
        if self.public_base:
            self.state.public_base = self.public_base.rstrip("/")
        creds = self.state.credentials
        sys.stdout.write(banner(settings, creds.prefix, creds.key if self.state.key_generated else None,
                                self.public_base))
        sys.stdout.flush()

    def _open_tunnel(self) -> None:
        settings = self.settings
        if settings.tunnel == "none":
            return
        from enfoads.cli.tunnel import TunnelError, open_tunnel

        creds = self.state.credentials

        def on_change(t) -> None:
            self.state.public_base = t.public_url.rstrip("/")
            sys.stdout.write(banner(settings, creds.prefix, None, t.public_url))
            sys.stdout.flush()

        try:
            self.tunnel = open_tunnel(settings.port, settings.tunnel, on_change=on_change)
        except TunnelError as exc:
            print(f"enfoads: could not open the {settings.tunnel} tunnel: {exc}", file=sys.stderr, flush=True)
            self.state.holder.on_ready(lambda engine: engine.close(JOB_GRACE_S))
            # Exit code 3 ("failed to boot"): the arbiter stops instead of starting another worker.
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
        self.public_base = self.tunnel.public_url

    def begin_shutdown(self) -> None:
        """Start the shutdown sequence (once); safe in a signal handler, returns at once."""
        if self._requested:
            return
        self._requested = True
        self._go.set()

    def finish(self, timeout: float = SHUTDOWN_WAIT_S) -> bool:
        """Start the shutdown if needed and wait for it (not from a signal handler); False on timeout."""
        self.begin_shutdown()
        return self._closed.wait(timeout)

    def _shutdown_when_asked(self) -> None:
        self._go.wait()
        try:
            self._close()
        finally:
            self._closed.set()

    def _close(self) -> None:
        holder = self.state.holder
        engine = holder.engine_if_ready
        if engine is None:
            log.info("shutting down before the models engine started")
            holder.on_ready(lambda e: e.close(JOB_GRACE_S))
        else:
            running = engine.jobs.list(states=["running"], limit=10)
            if running:
                log.info("shutting down: re-queueing %s (it runs again at the next start)",
                         ", ".join(f"job {j.id} ({j.kind})" for j in running))
            try:
                engine.close(JOB_GRACE_S)
            except Exception:  # noqa: BLE001 - the rest of the shutdown still runs
                log.exception("closing the models engine failed")
        try:
            from enfoads.web.app import socketio_of

            eio = socketio_of(self.app).server.eio
            for client in list(eio.sockets.values()):
                client.close(wait=False, reason=eio.reason.SERVER_DISCONNECT)
        except Exception:  # noqa: BLE001
            log.exception("disconnecting Socket.IO clients failed")
        if self.tunnel is not None:
            try:
                self.tunnel.close()
            except Exception:  # noqa: BLE001
                log.exception("closing the tunnel failed")
        log.info("shutdown done")


_SERVED: _Served | None = None  # in the worker, once its app is built


def _die_with_parent() -> None:
    """Linux: the kernel sends SIGKILL to this worker when the arbiter dies (``kill -9`` of the server)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: gunicorn's parent check stops the worker within a second
        pass


def _write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's answer to a request it cannot parse (a header with control characters, a request
    line over the limit...), as the API's JSON error instead of an HTML page: every error is JSON."""
    from gunicorn import util

    from enfoads.web.errors import HTTP_CODES

    message = f"{reason}: {mesg}" if mesg else reason
    body = json.dumps({"status": "error", "message": message, "code": HTTP_CODES.get(status_int, "bad_request")})
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body.encode())}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin1") + body.encode())


class EnfoadsWorker(ThreadWorker):
    """gunicorn's gthread worker, with the shutdown sequence of ``_Served`` on SIGTERM and Ctrl-C."""

    def init_process(self):
        _die_with_parent()
        if os.getppid() != self.ppid:  # the arbiter died before prctl
            sys.exit(0)
        from gunicorn import util

        util.write_error = _write_json_error  # in this worker process only (Worker.handle_error calls it)
        super().init_process()

    def handle_exit(self, sig, frame):  # SIGTERM: graceful
        super().handle_exit(sig, frame)
        if _SERVED is not None:
            _SERVED.begin_shutdown()

    _quitting = False

    def handle_quit(self, sig, frame):  # SIGINT (Ctrl-C), SIGQUIT: quick, but the job is still re-queued
        # Not gthread's handle_quit: it shuts the thread pool down inside the signal handler, which
        # deadlocks when the signal lands while the main loop holds the pool's lock (in submit).
        # Here the handler only sets flags and wakes the main loop, which then exits.
        if self._quitting:  # Ctrl-C brings SIGINT from the terminal and SIGQUIT from the arbiter
            return
        self._quitting = True
        self.alive = False
        if _SERVED is not None:
            _SERVED.begin_shutdown()
        self.method_queue.defer(self._quit_now)  # SimpleQueue.put and os.write: safe in a handler

    def _quit_now(self):
        """In the main loop: stop at once (worker_exit then waits for the shutdown sequence)."""
        self.tpool.shutdown(wait=False)
        sys.exit(0)


def _worker_exit(arbiter, worker) -> None:
    """gunicorn hook, in the worker as it exits (after its requests, or on an error)."""
    if _SERVED is not None:
        _SERVED.finish()
    logging.shutdown()


def _pre_fork(arbiter, worker) -> None:
    if "torch" in sys.modules:  # pragma: no cover - a guard for future edits of this module
        arbiter.log.warning("torch was imported before the worker fork; CUDA must only start in the worker")


# --------------------------------------------------------------------------- the arbiter


class _OneWorkerArbiter(Arbiter):
    """gunicorn's arbiter, refusing what would start a second worker on the same GPU and data dir."""

    def _refuse(self, what: str) -> None:
        self.log.warning("%s ignored: enfoads serves from one worker (one GPU, one job queue); "
                         "restart `enfoads serve` instead", what)

    def handle_hup(self):
        self._refuse("SIGHUP (reload)")

    def handle_ttin(self):
        self._refuse("SIGTTIN (one more worker)")

    def handle_ttou(self):
        self._refuse("SIGTTOU (one worker less)")

    def handle_usr2(self):
        self._refuse("SIGUSR2 (re-exec)")


class _Application(BaseApplication):
    def __init__(self, settings: Settings, public_base: str | None):
        self.settings = settings
        self.public_base = public_base
        super().__init__(prog="enfoads serve")

    def load_config(self):
        for name, value in gunicorn_options(self.settings).items():
            if name in self.cfg.settings:  # a setting older gunicorns lack is skipped
                self.cfg.set(name, value)
        self.cfg.set("worker_exit", _worker_exit)
        self.cfg.set("pre_fork", _pre_fork)

    def load(self):
        """Runs in the worker, after the fork: builds the app, opens the tunnel, prints the banner."""
        global _SERVED
        _SERVED = _Served(self.settings, self.public_base)
        return _SERVED.app

    def run(self):
        try:
            _OneWorkerArbiter(self).run()
        except RuntimeError as exc:
            print(f"\nError: {exc}\n", file=sys.stderr, flush=True)
            sys.exit(1)


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging() -> None:
    """Every record once, in one format, through the root handler.

    huggingface_hub adds a bare stream handler of its own to its logger and still propagates, so each
    of its warnings (a retry, a resumed download) would print twice; that handler goes.
    """
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    from huggingface_hub.utils import logging as hub_logging  # its handler is added on import

    hub_logger = hub_logging.get_logger()  # the library's root logger, "huggingface_hub"
    for handler in list(hub_logger.handlers):
        if type(handler) is logging.StreamHandler:
            hub_logger.removeHandler(handler)


def serve(settings: Settings, *, public_base: str | None = None) -> None:
    """Run the server until SIGTERM or Ctrl-C (then exit 0); open the configured tunnel first."""
    configure_logging()
    _Application(settings, public_base).run()
