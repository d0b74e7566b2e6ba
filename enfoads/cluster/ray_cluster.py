"""Ray itself: start or join a cluster, deploy one Serve application per role, hand out handles.

``RoleDeployment`` is the Serve deployment class: a ``RoleReplica`` per
replica, its ``run`` a streaming method. ``RayCluster`` is the head's side:
``connect`` (``ray.init`` with an address, or a local Ray it will also stop),
``deploy`` (``serve.run`` per role, without Serve's HTTP proxy: the head's
Flask app is the API), ``handle`` (``serve.get_app_handle``), ``alive`` (a
bounded health check) and ``close``.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any, AsyncIterator

from enfoads.cluster.plans import RolePlan
from enfoads.cluster.wire import END_TYPES

__all__ = ["RayCluster", "RoleDeployment", "app_name"]

log = logging.getLogger(__name__)


def app_name(role: str) -> str:
    return f"enfoads-{role}"


class RoleDeployment:
    """One replica of a role (wrapped by ``serve.deployment`` when deployed)."""

    def __init__(self, role: str, settings: dict):
        from enfoads.cluster.replica import RoleReplica

        self.replica = RoleReplica(role, settings)

    async def run(self, kind: str, params: dict, job: dict, inputs: dict) -> AsyncIterator[dict]:
        """The job's messages. Async on purpose: a cancelled request raises ``CancelledError`` here at
        once (Serve abandons a cancelled sync generator without closing it), so the job stops too."""
        import ray

        # First, who runs it: the head logs it and tests count work per replica.
        yield {"type": "replica", "actor": ray.get_runtime_context().get_actor_name(), "pid": os.getpid()}
        running = self.replica.start(kind, params, job, inputs)
        try:
            while True:
                message = await asyncio.to_thread(running.next_message)
                yield message
                if message["type"] in END_TYPES:
                    return
        finally:
            await asyncio.to_thread(running.stop)

    def __del__(self):
        replica = getattr(self, "replica", None)
        if replica is not None:
            replica.close()


class RayCluster:
    """The head's connection to Ray.

    Args:
        address: ``"local"`` (start a Ray here, stopped by ``close``) or a cluster address
            (``"auto"``, ``"ray://head:10001"``, ``"head:6379"``).
        num_cpus: CPUs of a local Ray (default all).
        check_s: how long a health check may take before the cluster counts as gone.
    """

    def __init__(self, address: str = "local", *, num_cpus: int | None = None, check_s: float = 5.0):
        self.address = address
        self.num_cpus = num_cpus
        self.check_s = check_s
        self.local = address in ("", "local")
        self._lock = threading.Lock()
        self._handles: dict[str, Any] = {}
        self.connected = False
        self._stop_local = threading.Event()  # ends the thread that started a local Ray
        self._keeper: threading.Thread | None = None

    def connect(self) -> None:
        # Ray's C++ failure-signal handler catches the SIGTERM gunicorn stops the worker with, and the
        # driver then aborts in ``ray.shutdown`` before it stops the local Ray: no graceful exit, and
        # Ray's agents linger. Set before Ray starts its core worker in this process.
        os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
        import ray
        from ray import serve

        with self._lock:
            if ray.is_initialized():
                ray.shutdown()
            self._handles.clear()
            kw = {"namespace": "enfoads", "log_to_driver": False, "ignore_reinit_error": True}
            if self.local:
                self._start_local(kw)
            else:
                ray.init(address=self.address, **kw)
            serve.start(http_options={"location": "NoServer"})
            self.connected = True

    def _start_local(self, kw: dict) -> None:
        """``ray.init`` of a local Ray from a thread that lives until ``close``.

        Ray starts its GCS and raylet with ``PR_SET_PDEATHSIG``, which fires when the
        *thread* that forked them ends: started from the server's short-lived engine-start
        thread, the whole local Ray would be killed seconds later.
        """
        import ray

        started, failure = threading.Event(), []

        def keep():
            try:
                ray.init(num_cpus=self.num_cpus, include_dashboard=False, **kw)
            except BaseException as exc:  # handed to connect()
                failure.append(exc)
                started.set()
                return
            started.set()
            self._stop_local.wait()

        self._stop_local.clear()
        self._keeper = threading.Thread(target=keep, name="enfoads-local-ray", daemon=True)
        self._keeper.start()
        started.wait()
        if failure:
            raise failure[0]

    def gpus(self) -> float:
        import ray

        return float(ray.cluster_resources().get("GPU", 0.0))

    def deploy(self, plans: list[RolePlan], settings_for) -> None:
        """Run (or update) one application per role; returns once every replica is up."""
        from ray import serve

        targets = []
        for plan in plans:
            deployment = serve.deployment(RoleDeployment).options(**plan.deployment_options())
            targets.append(serve.RunTarget(deployment.bind(plan.role, settings_for(plan)), name=app_name(plan.role),
                                           route_prefix=None))
            log.info("Ray Serve: %s with %d replica(s), %.2f GPU each", plan.role, plan.replicas, plan.gpu_fraction)
        serve.run_many(targets)  # every role's replicas start at once

    def handle(self, role: str):
        from ray import serve

        with self._lock:
            if role not in self._handles:
                self._handles[role] = serve.get_app_handle(app_name(role))
            return self._handles[role]

    def alive(self) -> bool:
        """True when the cluster answers within ``check_s`` (a lost cluster can block a call for long)."""
        if not self.connected:
            return False
        answer: dict = {}

        def ask():
            try:
                import ray

                answer["ok"] = bool(ray.is_initialized() and ray.nodes())
            except Exception as exc:  # gone, or going
                answer["error"] = exc

        probe = threading.Thread(target=ask, daemon=True, name="enfoads-ray-probe")
        probe.start()
        probe.join(self.check_s)
        return answer.get("ok", False)

    def close(self, roles: list[str] = ()) -> None:
        import ray
        from ray import serve

        if not ray.is_initialized():
            return
        started_here = _local_ray_processes() if self.local else []
        try:
            if self.local:
                serve.shutdown()
            else:  # a shared cluster: give back this head's GPUs, leave the rest alone
                for role in roles:
                    serve.delete(app_name(role))
        except Exception:
            log.exception("could not stop the Ray Serve applications")
        finally:
            ray.shutdown()
            self.connected = False
            self._stop_local.set()
            _kill(started_here)  # what ``ray.shutdown`` left: Ray's agents


def _local_ray_processes() -> list:
    """The processes of the Ray this process started: its descendants running Ray's code.

    ``ray.shutdown`` stops the GCS and the raylet; Ray's agents only notice on their own
    poll (up to a minute on a loaded machine), holding memory a Colab runtime is short of.
    """
    import psutil  # accelerate's dependency, so always installed
    import ray

    package = os.path.dirname(ray.__file__)
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            cmdline = proc.cmdline()
        except psutil.Error:
            continue
        if cmdline and (cmdline[0].startswith("ray::") or any(package in arg for arg in cmdline)):
            found.append(proc)
    return found


def _kill(processes: list) -> None:
    import psutil

    for proc in processes:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(processes, timeout=5)
