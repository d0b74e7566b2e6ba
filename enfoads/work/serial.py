"""A background lane: callables run one at a time, in submission order, in one thread.

What a GPU worker must do but need not wait for (progress rows, events,
preview frames) goes through one, so the next denoising step starts at once;
``flush`` is the point where the caller does need it done (before a job's
final state is written, before a result lists its preview frames).
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any, Callable

log = logging.getLogger(__name__)

__all__ = ["SerialLane"]


class SerialLane:
    """Runs ``submit``-ted callables in order in one daemon thread (started on first use).

    An exception in a callable is logged and never stops the lane: what goes
    here is bookkeeping that must not fail the work it reports on.
    """

    def __init__(self, name: str):
        self.name = name
        self._items: deque[tuple[int, Callable[..., Any], tuple]] = deque()
        self._cond = threading.Condition()
        self._submitted = 0
        self._completed = 0
        self._closed = False
        self._thread: threading.Thread | None = None

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)``; after ``close`` it runs in the caller's thread instead."""
        with self._cond:
            if not self._closed:
                self._submitted += 1
                self._items.append((self._submitted, fn, args))
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                    self._thread.start()
                self._cond.notify_all()
                return
        self._call(fn, args)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted before this call has run; False on timeout."""
        with self._cond:
            if self._thread is threading.current_thread():
                return True  # a callable flushing its own lane: what came before it has run
            target = self._submitted
            return self._cond.wait_for(lambda: self._completed >= target or self._thread is None, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Run what is queued (up to ``timeout``), then stop the thread."""
        self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def pending(self) -> int:
        with self._cond:
            return self._submitted - self._completed

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._closed:
                    self._cond.wait()
                if not self._items:
                    self._thread = None
                    self._cond.notify_all()
                    return
                ticket, fn, args = self._items.popleft()
            self._call(fn, args)
            with self._cond:
                self._completed = ticket
                self._cond.notify_all()

    def _call(self, fn: Callable[..., Any], args: tuple) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("%s: a background task failed", self.name)
