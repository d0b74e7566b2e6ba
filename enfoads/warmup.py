"""Warm start: once the server answers, load the profile's default models and run one tiny pass each.

Without it the first request after a start pays the model load (tens of
seconds for SDXL on a T4) and the libraries' first-call costs, exactly when a
new user is watching. ``ENFOADS_WARM`` names the roles (default ``image``;
``image,speech``; ``off``).

Each role is warmed by a call on the GPU worker (``JobQueue.call_on_worker``):
it never overlaps a job, and a request that arrives meanwhile queues behind it
and finds the model loaded, instead of starting a second load. A role is
warmed only when its model fits where it prefers next to what is already
loaded, without evicting anything (``ResidencyManager.room_for``); a role
whose model is not installed is skipped (after the first-start download, if
one is running).

States, as ``GET /`` and ``/gpu-status`` report them (``warm_state``):
``off`` (nothing to warm), ``pending`` (waiting for the engine or a
download), ``warming``, then ``warm`` (at least one role warmed, none
failed), ``skipped`` (none could be) or ``failed`` (a warm-up raised; the
server serves on and the first request loads the model as it would have).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger(__name__)

__all__ = ["WARM_ROLES", "Warmer", "parse_warm_roles"]

# Role -> the profile's model roles it loads (faces needs the swapper too).
WARM_ROLES: dict[str, tuple[str, ...]] = {"image": ("image",), "faces": ("faces", "swapper"),
                                          "speech": ("speech",)}
OFF_WORDS = frozenset({"", "off", "none", "no", "false", "0"})


def parse_warm_roles(value: str | None) -> tuple[str, ...]:
    """``"image,speech"`` -> ``("image", "speech")``; ``"off"`` -> ``()``; unknown roles raise ValueError."""
    words = [w.strip().lower() for w in (value or "").split(",") if w.strip()]
    if not words or all(w in OFF_WORDS for w in words):
        return ()
    unknown = [w for w in words if w not in WARM_ROLES]
    if unknown:
        raise ValueError(f"unknown role(s) {', '.join(unknown)}; choose from {', '.join(WARM_ROLES)} or off")
    return tuple(dict.fromkeys(words))


@dataclass
class _Role:
    state: str = "pending"  # pending | warming | warm | skipped | failed
    reason: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state, **self.facts}
        if self.reason:
            out["reason"] = self.reason
        if self.seconds is not None:
            out["seconds"] = self.seconds
        return out


class Warmer:
    """Warms ``roles`` up in the background; ``status()`` says how far it got.

    Args:
        roles: from ``parse_warm_roles``.
        warm_ups: role -> a callable that loads and runs its model once (the
            services' ``warm_up``), returning facts to report.
        runtime: for the roles' residency keys and the room check.
        queue: whose GPU worker runs the warm-ups.
        installer: the first-start downloads to wait for (or None).
    """

    def __init__(self, roles: tuple[str, ...], warm_ups: dict[str, Callable[[], dict]], *, runtime, queue,
                 installer=None):
        self.runtime = runtime
        self.queue = queue
        self.installer = installer
        self._warm_ups = warm_ups
        self._lock = threading.Lock()
        self._roles = {role: _Role() for role in roles}
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        if not roles:
            self._done.set()

    # ------------------------------------------------------------------ public

    def start(self) -> "Warmer":
        if self._roles and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="enfoads-warmup", daemon=True)
            self._thread.start()
        return self

    @property
    def state(self) -> str:
        with self._lock:
            states = [r.state for r in self._roles.values()]
        if not states:
            return "off"
        if "warming" in states:
            return "warming"
        if "pending" in states:
            return "warming" if any(s != "pending" for s in states) else "pending"
        if "failed" in states:
            return "failed"
        return "warm" if "warm" in states else "skipped"

    def status(self) -> dict[str, Any]:
        with self._lock:
            roles = {name: r.as_dict() for name, r in self._roles.items()}
        return {"state": self.state, "roles": roles}

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every role is warm, skipped or failed; False on timeout."""
        return self._done.wait(timeout)

    def close(self) -> None:
        self._stop.set()

    # ------------------------------------------------------------------ internals

    def _set(self, role: str, **changes) -> None:
        with self._lock:
            for k, v in changes.items():
                setattr(self._roles[role], k, v)

    def _run(self) -> None:
        try:
            # The first-start download of a missing model comes first (its role would only be skipped).
            while self.installer is not None and self.installer.busy and not self._stop.is_set():
                self.installer.wait(1.0)
            futures = {role: self.queue.call_on_worker(lambda role=role: self._warm(role)) for role in self._roles}
            for role, future in futures.items():
                while not self._stop.is_set():
                    try:
                        future.result(timeout=1.0)
                        break
                    except TimeoutError:
                        continue
                    except Exception:  # noqa: BLE001 - cancelled at close, or _warm's own failure (recorded)
                        break
                if future.cancelled():
                    self._set(role, state="skipped", reason="the server stopped first")
        finally:
            self._done.set()

    def _warm(self, role: str) -> None:
        """On the GPU worker: warm ``role`` if its models fit without evicting anything."""
        from enfoads.errors import redact_paths
        from enfoads.models.registry import ModelNotInstalledError

        if self._stop.is_set():
            self._set(role, state="skipped", reason="the server stopped first")
            return
        profile_roles = self.runtime.profile.roles
        needed = [r for r in WARM_ROLES[role] if r in profile_roles]
        if not needed:
            self._set(role, state="skipped", reason=f"the {self.runtime.profile.name} profile has no {role} model")
            return
        for model_role in needed:
            ok, why = self.runtime.residency.room_for(self.runtime.model_key(model_role))
            if not ok:
                self._set(role, state="skipped", reason=f"{self.runtime.model_key(model_role)} {why}")
                log.info("warm-up of %s skipped: %s", role, why)
                return
        self._set(role, state="warming")
        started = time.perf_counter()
        try:
            facts = self._warm_ups[role]()
        except ModelNotInstalledError as exc:
            self._set(role, state="skipped", reason=redact_paths(str(exc)))
            return
        except Exception as exc:  # noqa: BLE001 - the first request will load it the usual way
            log.exception("warm-up of %s failed", role)
            self._set(role, state="failed", reason=redact_paths(f"{type(exc).__name__}: {exc}")[:500])
            return
        seconds = round(time.perf_counter() - started, 3)
        log.info("warmed up %s in %.2f s: %s", role, seconds, facts)
        self._set(role, state="warm", facts=dict(facts or {}), seconds=seconds)
