"""``RayBackend``: the ``JobBackend`` whose jobs run in Ray Serve replicas.

The head keeps the local queue's SQLite rows, events, assets, attempts and
cancel semantics; only its handlers change. Each registered kind's handler
here ships the job's inputs to its role's deployment, relays the stream
(progress into the same events, outputs into the asset store under the ids
the result names) and returns the replica's result. The queue runs as many
GPU-kind threads as the replicas can take at once (``gpu_workers``).

Failure:
- a replica that dies mid-job (``ActorDiedError`` and kin), or stays silent
  past ``ray_silence_s`` (no progress, no heartbeat), raises ``JobInterrupted``:
  the job is re-queued while it has attempts left, else fails with
  "interrupted by a replica failure";
- a cluster that cannot be reached makes ``submit`` raise ``ClusterUnavailable``
  (503, nothing queued); jobs already queued wait (no worker claims them), and a
  health thread reconnects and redeploys when it answers again. A job stopped by
  the outage goes back in the queue without using up an attempt: a replica lost
  with the whole cluster is not the job's doing.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Iterable

from enfoads.cluster.plans import RolePlan, plan_roles
from enfoads.cluster.ray_cluster import RayCluster
from enfoads.cluster.replica import replica_settings
from enfoads.cluster.wire import ClusterUnavailable, RemoteJobError, ship_inputs
from enfoads.services.service_set import role_of
from enfoads.work.job_types import Job, JobCancelled, JobInterrupted

__all__ = ["RayBackend"]

log = logging.getLogger(__name__)

REPLICA_FAILURE = "replica failure"
CLUSTER_OUTAGE = "Ray cluster outage"


def _is_lost_replica(exc: BaseException) -> bool:
    from ray import exceptions as rx

    return isinstance(exc, (rx.RayActorError, rx.ActorUnavailableError, rx.WorkerCrashedError,
                            rx.NodeDiedError, rx.ObjectLostError))


class RayBackend:
    """The local queue's bookkeeping with remote handlers; see the module docstring.

    Args:
        cluster: the ``RayCluster`` to connect to.
        settings: the head's settings (replicas rebuild theirs from them).
        profile: the head's resolved profile; replicas run the same one.
        roles: the roles whose kinds the engine registers.
        health_s: how often the cluster is checked.
    """

    def __init__(self, cluster: RayCluster, settings, profile, roles: list[str], *, health_s: float = 5.0):
        self.cluster = cluster
        self.settings = settings
        self.profile = profile
        self.roles = list(roles)
        self.health_s = health_s
        self.plans: list[RolePlan] = []
        self.queue = None
        self._available = threading.Event()
        self._stop = threading.Event()
        self._health: threading.Thread | None = None
        self.last_error: str | None = None
        self.ran_on: OrderedDict[str, str] = OrderedDict()  # job id -> the replica actor that ran it (latest)
        self.replica_pids: dict[str, int] = {}  # replica actor -> its process id (logs, tests)
        self.silence_s = settings.ray_silence_s  # no message for this long: the replica counts as lost
        self.kinds: set[str] = set()  # the kinds this backend runs (registered through ``handler``)
        self._in_flight: dict[str, int] = {}  # role -> jobs its replicas are running for this head
        self._in_flight_lock = threading.Lock()
        # Until the cluster answers, size the queue's threads from the settings alone.
        self.gpu_workers = sum(p.max_replicas for p in plan_roles(settings, profile, self.roles, cluster_gpus=0))

    @classmethod
    def from_settings(cls, settings, profile, roles: list[str]) -> "RayBackend":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise RuntimeError("ENFOADS_RAY is set but Ray Serve is not installed: pip install 'enfoads[ray]'")
        return cls(RayCluster(settings.ray or "local"), settings, profile, roles)

    # ------------------------------------------------------------------ wiring (the engine's side)

    def attach(self, queue) -> "RayBackend":
        self.queue = queue
        queue.busy_kinds = self._busy_kinds
        queue.on_claim = self._claimed
        queue.on_release = self._released
        return self

    def _claimed(self, job: Job) -> None:
        if job.kind in self.kinds:
            with self._in_flight_lock:
                role = role_of(job.kind)
                self._in_flight[role] = self._in_flight.get(role, 0) + 1

    def _released(self, job: Job) -> None:
        # Paired with ``_claimed`` by the queue's worker loop, so a claim that never reached its
        # handler still gives its slot back.
        if job.kind in self.kinds:
            with self._in_flight_lock:
                self._in_flight[role_of(job.kind)] -= 1
            # A slot of this role is free: a worker idle because only its kinds were left may take one.
            for device in ("gpu", "cpu"):
                self.queue.wake(device)

    def _busy_kinds(self) -> set[str]:
        """Kinds of roles whose replicas all have a job: the queue claims other kinds first.

        While the cluster is away every remote kind waits in the queue.
        """
        if not self.available:
            return set(self.kinds)
        with self._in_flight_lock:
            full = {p.role for p in self.plans if self._in_flight.get(p.role, 0) >= p.max_replicas}
        return {kind for kind in self.kinds if role_of(kind) in full}

    def handler(self, kind: str, assets) -> Callable[[dict, Any], dict]:
        role = role_of(kind)
        self.kinds.add(kind)

        def run_remotely(params: dict, ctx) -> dict:
            return self._run(role, kind, params, ctx, assets)

        run_remotely.__name__ = f"ray_{kind.replace('.', '_')}"
        return run_remotely

    def start(self) -> "RayBackend":
        self._try_connect()
        self.queue.start()
        self._health = threading.Thread(target=self._watch, name="enfoads-ray-health", daemon=True)
        self._health.start()
        return self

    # ------------------------------------------------------------------ JobBackend

    @property
    def available(self) -> bool:
        return self._available.is_set()

    def _require_cluster(self) -> None:
        if not self.available:
            where = "the local Ray" if self.cluster.local else f"the Ray cluster at {self.cluster.address}"
            raise ClusterUnavailable(f"{where} is not reachable, so no job is queued; retry in a moment"
                                     + (f" ({self.last_error})" if self.last_error else ""))

    def submit(self, kind: str, params: dict | None = None) -> Job:
        self._require_cluster()
        return self.queue.submit(kind, params)

    def submit_and_wait(self, kind: str, params: dict | None = None, timeout: float | None = None) -> Job:
        self._require_cluster()
        return self.queue.submit_and_wait(kind, params, timeout)

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        return self.queue.wait(job_id, timeout)

    def get(self, job_id: str) -> Job:
        return self.queue.get(job_id)

    def list(self, *, states: Iterable[str] | None = None, kind: str | None = None, limit: int = 100) -> list[Job]:
        return self.queue.list(states=states, kind=kind, limit=limit)

    def cancel(self, job_id: str) -> Job:
        return self.queue.cancel(job_id)

    def counts(self) -> dict[str, int]:
        return self.queue.counts()

    def call_on_worker(self, fn, *, device: str = "gpu"):
        return self.queue.call_on_worker(fn, device=device)

    def close(self, grace_s: float | None = None) -> None:
        self._stop.set()
        self.queue.close(grace_s)
        self._available.clear()
        try:
            self.cluster.close([p.role for p in self.plans])
        except Exception:
            log.exception("could not close the Ray connection")

    def describe(self) -> dict[str, Any]:
        """``/gpu-status``'s ``backend``: the cluster, whether it answers, each role's deployment."""
        return {"name": "ray", "address": self.cluster.address, "available": self.available,
                "error": None if self.available else self.last_error, "gpu_workers": self.gpu_workers,
                "roles": [{"role": p.role, "replicas": p.replicas, "max_replicas": p.max_replicas,
                           "gpu_fraction": p.gpu_fraction, "gpu_budget_gb": p.gpu_budget_gb} for p in self.plans]}

    # ------------------------------------------------------------------ the remote run

    def _run(self, role: str, kind: str, params: dict, ctx, assets) -> dict:
        self._wait_for_cluster(ctx)
        inputs = ship_inputs(params, assets)
        job = {"id": ctx.job_id, "attempt": ctx.attempt}
        try:
            response = self.cluster.handle(role).options(stream=True, method_name="run").remote(
                kind, params, job, inputs)
        except Exception as exc:
            raise JobInterrupted(f"could not reach the {role} deployment: {exc}", cause=CLUSTER_OUTAGE,
                                  charged=False) from exc
        # A hung replica keeps its GPU share and would take the retry too: the watch ends it (Serve
        # starts another), which also ends this stream with an error.
        watch = _Silence(response, self.silence_s, on_silent=lambda: self._end_replica(self.ran_on.get(ctx.job_id)))
        try:
            for message in response:
                watch.heard()
                kind_of = message["type"]
                if kind_of == "replica":
                    self._record(ctx.job_id, message["actor"], message["pid"])
                    watch.arm()  # from here on the replica speaks at least every heartbeat
                elif kind_of == "progress":
                    ctx.progress(message["percent"], message["stage"], message["preview_asset_id"])
                elif kind_of == "asset":
                    ctx.save_bytes(message["data"], message["mime"], asset_id=message["id"], kind=message["kind"],
                                   width=message["width"], height=message["height"], duration=message["duration"])
                elif kind_of == "result":
                    return message["result"]
                elif kind_of == "error":
                    if message["error_type"] == "JobCancelled":
                        raise JobCancelled("cancelled")
                    raise RemoteJobError.from_message(message)
            raise JobInterrupted(f"the {role} replica ended the stream without a result", cause=REPLICA_FAILURE)
        except JobCancelled:  # a cancel or a shutdown seen at ctx.progress: stop the replica's work too
            response.cancel()
            raise
        except (RemoteJobError, JobInterrupted):
            raise
        except Exception as exc:
            if watch.silent:
                raise JobInterrupted(f"no word from the {role} replica for {watch.limit_s:g} s",
                                     cause=REPLICA_FAILURE) from exc
            # A replica lost with the whole cluster is an outage, not a replica failure the job may
            # have caused: ask the cluster before charging the job an attempt.
            if not self.cluster.alive():
                self._lost(exc)
                raise JobInterrupted(f"the Ray cluster went away: {type(exc).__name__}: {exc}",
                                     cause=CLUSTER_OUTAGE, charged=False) from exc
            if _is_lost_replica(exc):
                raise JobInterrupted(f"the {role} replica died: {type(exc).__name__}", cause=REPLICA_FAILURE) from exc
            raise
        finally:
            watch.stop()

    def _end_replica(self, actor: str | None) -> None:
        if actor is None:
            return
        try:
            import ray

            ray.kill(ray.get_actor(actor, namespace="serve"), no_restart=True)
            log.warning("ended the silent replica %s; Serve starts another", actor)
        except Exception:
            log.exception("could not end the silent replica %s", actor)

    def _record(self, job_id: str, actor: str, pid: int) -> None:
        self.replica_pids[actor] = pid
        self.ran_on[job_id] = actor
        self.ran_on.move_to_end(job_id)
        while len(self.ran_on) > 1000:
            self.ran_on.popitem(last=False)

    def _wait_for_cluster(self, ctx) -> None:
        """A job taken while the cluster is away waits for it (cancellable), then goes back in the queue."""
        deadline = time.monotonic() + self.silence_s
        while not self.available:
            ctx.progress(0, "waiting for the Ray cluster")
            if time.monotonic() > deadline:
                raise JobInterrupted("the Ray cluster is not reachable", cause=CLUSTER_OUTAGE, charged=False)
            self._available.wait(1.0)

    # ------------------------------------------------------------------ health

    def _try_connect(self) -> bool:
        try:
            self.cluster.connect()
            self.plans = plan_roles(self.settings, self.profile, self.roles, cluster_gpus=self.cluster.gpus())
            self.cluster.deploy(self.plans, self._settings_for)
        except Exception as exc:
            self._lost(exc)
            return False
        log.info("Ray Serve is up: %s", ", ".join(f"{p.role} x{p.replicas}" for p in self.plans))
        self._back()
        return True

    def _back(self) -> None:
        self.last_error = None
        self._available.set()
        if self.queue is not None:  # the jobs that waited out the outage
            for device in ("gpu", "cpu"):
                self.queue.wake(device)

    def _lost(self, exc: BaseException) -> None:
        if self._available.is_set() or self.last_error is None:
            log.warning("the Ray cluster is not reachable: %s", exc)
        self.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}".rstrip(": ")
        self._available.clear()

    def _watch(self) -> None:
        while not self._stop.wait(self.health_s):
            if self.available:
                if not self.cluster.alive():
                    self._lost(ConnectionError("the health check got no answer"))
            elif not self._stop.is_set():
                self._try_connect()

    def _settings_for(self, plan: RolePlan) -> dict:
        changes: dict = {"profile": self.profile.name}
        if plan.gpu_budget_gb is not None:
            changes["gpu_budget_gb"] = plan.gpu_budget_gb
        return replica_settings(self.settings, **changes)


class _Silence:
    """Calls ``on_silent`` and cancels ``response`` when nothing arrived for ``limit_s`` once armed.

    Armed at the replica's first message: before it the request may rightly wait in Serve's queue
    for a free replica.
    """

    def __init__(self, response, limit_s: float, on_silent: Callable[[], None]):
        self.response, self.limit_s, self.on_silent = response, limit_s, on_silent
        self.silent = False
        self._armed = False
        self._last = time.monotonic()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="enfoads-ray-silence")
        self._thread.start()

    def arm(self) -> None:
        self._armed = True
        self.heard()

    def heard(self) -> None:
        self._last = time.monotonic()

    def _watch(self) -> None:
        while not self._done.wait(min(1.0, self.limit_s / 4)):
            if self._armed and time.monotonic() - self._last > self.limit_s:
                self.silent = True
                self.on_silent()
                self.response.cancel()
                return

    def stop(self) -> None:
        self._done.set()
