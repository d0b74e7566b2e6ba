"""Per-app state kept in ``app.extensions``: the engine (built in the background) and the credentials."""
from __future__ import annotations

import logging
import threading
from typing import Callable

from flask import current_app

from enfoads.engine import Engine
from enfoads.errors import CapacityError
from enfoads.security import Credentials

log = logging.getLogger(__name__)

EXTENSION = "enfoads"


class EngineHolder:
    """Builds the engine in a thread so ``GET /`` answers at once.

    Importing torch to probe CUDA alone takes seconds; requests that need the
    engine wait for it (up to ``wait_s``) instead of the whole server waiting.
    """

    def __init__(self, build: Callable[[], Engine], *, wait_s: float = 120.0):
        self._build = build
        self.wait_s = wait_s
        self._ready = threading.Event()
        self._engine: Engine | None = None
        self.error: BaseException | None = None
        self._listeners: list[Callable[[Engine], None]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="enfoads-engine-start", daemon=True)

    def start(self) -> "EngineHolder":
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            engine = self._build()
        except BaseException as exc:  # reported on every request that needs it
            log.exception("the engine failed to start")
            self.error = exc
            self._ready.set()
            return
        with self._lock:
            self._engine = engine
            listeners = list(self._listeners)
        for listener in listeners:
            listener(engine)
        self._ready.set()
        threading.Thread(target=_freeze_after_warm_up, args=(engine,), name="enfoads-gc-freeze", daemon=True).start()

    def on_ready(self, listener: Callable[[Engine], None]) -> None:
        """Call ``listener(engine)`` once the engine exists (now, if it already does)."""
        with self._lock:
            engine = self._engine
            if engine is None:
                self._listeners.append(listener)
        if engine is not None:
            listener(engine)

    @property
    def ready(self) -> bool:
        return self._engine is not None

    @property
    def engine_if_ready(self) -> Engine | None:
        return self._engine

    def get(self, timeout: float | None = None) -> Engine:
        if not self._ready.wait(self.wait_s if timeout is None else timeout):
            raise CapacityError("the server is still starting its models engine; retry in a few seconds")
        if self._engine is None:
            raise CapacityError(f"the models engine failed to start: {self.error}")
        return self._engine

    def close(self) -> None:
        self._ready.wait(self.wait_s)
        if self._engine is not None:
            self._engine.close()


def _freeze_after_warm_up(engine: Engine) -> None:
    """Once the warm start is over, move every object alive then out of the collector's reach.

    torch, diffusers, transformers and the loaded models are millions of
    long-lived objects; each full collection would walk them all while holding
    the GIL (hundreds of milliseconds in which no request is answered). They
    never become garbage, so ``gc.freeze()`` takes them out of its walks.
    """
    import gc

    if engine.warmer is not None:
        engine.warmer.wait()
    gc.collect()
    gc.freeze()
    log.info("garbage collector: %d objects frozen after the warm start", gc.get_freeze_count())


class AppState:
    def __init__(self, settings, credentials: Credentials, holder: EngineHolder, key_generated: bool):
        self.settings = settings
        self.credentials = credentials
        self.holder = holder
        self.key_generated = key_generated
        # Scheme and host the clients reach us by (the tunnel's), for links
        # built outside a request; refreshed by each authenticated request.
        self.public_base = f"http://{settings.host}:{settings.port}"


def state() -> AppState:
    return current_app.extensions[EXTENSION]


def engine() -> Engine:
    return state().holder.get()
