"""The seam between the engine and whatever runs its jobs.

The engine and the web layer submit, read and cancel jobs only through this
protocol; services never see it. Its one implementation today is the local
SQLite queue and its workers (``enfoads.work.jobs.JobQueue``); a distributed
backend (Ray Serve) implements the same methods, keeping the same rows,
events and results, without touching services or routes.
"""
from __future__ import annotations

from concurrent.futures import Future
from typing import Any, Callable, Iterable, Protocol, runtime_checkable

from enfoads.work.job_types import Job

__all__ = ["JobBackend"]


@runtime_checkable
class JobBackend(Protocol):
    def submit(self, kind: str, params: dict | None = None) -> Job: ...

    def submit_and_wait(self, kind: str, params: dict | None = None, timeout: float | None = None) -> Job: ...

    def wait(self, job_id: str, timeout: float | None = None) -> Job: ...

    def get(self, job_id: str) -> Job: ...

    def list(self, *, states: Iterable[str] | None = None, kind: str | None = None, limit: int = 100) -> list[Job]: ...

    def cancel(self, job_id: str) -> Job: ...

    def counts(self) -> dict[str, int]: ...

    def call_on_worker(self, fn: Callable[[], Any], *, device: str = "gpu") -> Future: ...

    def close(self, grace_s: float | None = None) -> None: ...

    def describe(self) -> dict[str, Any]: ...  # what runs the jobs, for /gpu-status

