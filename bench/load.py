"""50 concurrent clients x 20 mixed requests against a real ``enfoads serve`` while the GPU worker is busy.

    .venv/bin/python bench/load.py [--clients 50] [--requests 20] [--think-ms 250] [--limits high|default]

Starts ``enfoads serve`` (tiny profile, temporary data dir, 127.0.0.1), warms
it up (one tiny image job, each route once), then queues a long tiny
generation (1536x1536, 50 steps) and waits until the one GPU worker runs it.
While it runs, ``--clients`` threads each send ``--requests`` requests in a
shuffled mix, each request after a random pause of 0 to 2 x ``--think-ms``
(a closed loop; the first pause spreads the clients' start):

- ``health``       ``GET /``
- ``gpu_status``   ``GET /gpu-status``
- ``magic_prompt`` ``POST /magic-prompt``
- ``submit``       ``POST /api/jobs``: a 256x256, 1-step tiny image job, queued behind the long one
  (``--jobs`` in all, 20 by default: the first request of the first 20 clients)
- ``job_poll``     ``GET /api/jobs/<id>``: the client's own job, else another client's

A sampler checks every 100 ms that a job is running. After the clients
finish the long job must still be running (every request overlapped GPU
work); it is cancelled, and every tiny job must then succeed. Figures:
p50/p95/p99 per route (client-side wall time of each request, one connection
per request), unexpected answers, 429s per route, and the growth of the
server's resident memory (``VmRSS`` from ``/proc/<pid>/status``, read at quiet
moments: the worker idle, the queue drained). The server runs with
``MALLOC_MMAP_THRESHOLD_=1048576`` (``--glibc-defaults`` to leave it out):
glibc then returns freed blocks of 1 MB and more to the OS at once and VmRSS
tracks live memory; with its default, self-raising threshold it keeps torch's
freed activations and VmRSS swings by +-100 MB between two quiet moments.

``--limits high`` (default) moves the rate limits out of the way: no 429 is
expected. ``--limits default`` keeps the shipped ones (``1200/minute`` for
all routes per key and client; model requests have no rate of their own, the
queue's depth is their limit) and sends 2 jobs per client: submits past the
queue's room must be 429 ``queue_full`` with a JSON error body, nothing else
may be; what was queued is cancelled instead of run.

Offered load: with the default 0-500 ms pauses, 50 clients send about 160
requests/s. The 2-core reference machine saturates near 400 requests/s with
torch running on both cores; past that, latency is queueing (see README).

``--passes`` (2) runs the whole measurement again on the same server and
reports the last. The first run on a fresh server may grow the resident
memory once (caches, thread arenas; by 100-220 MB with glibc's defaults, a few
MB without): ``warmup_rss_growth_mb``, idle before to idle after. ``rss_growth_mb`` is then the growth over the last run, idle after the
previous run to idle after it (the same point of the cycle): what keeps
growing, i.e. a leak.

Last line: ``load_light_p99_ms=<value>``: p99 over the light routes
(health, gpu_status, magic_prompt, job_poll), goal < 100.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

LIGHT_ROUTES = ("health", "gpu_status", "magic_prompt", "job_poll")
SUBMIT_ROUTES = ("submit",)
# Which answers each route may give; 429 is allowed only where a limit applies (model requests).
EXPECTED = {"health": {200}, "gpu_status": {200}, "magic_prompt": {200}, "job_poll": {200}, "submit": {202}}
LONG_JOB = {"prompt": "load bench: keep the GPU worker busy", "width": 1536, "height": 1536, "steps": 50,
            "seed": 7, "cache": False}
# glibc keeps freed blocks below its (self-raising, up to 32 MB) mmap threshold in its arenas: with torch
# activations of a few MB the server's VmRSS then swings by +-100 MB between two quiet moments, hiding any
# leak. A fixed 1 MB threshold returns big blocks to the OS when freed, so VmRSS tracks live memory.
MEASURE_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
PROMPTS = ["a red sneaker on a beach", "coffee cup, morning light", "a lamp in an empty room", "city at night"]


@dataclass
class Sample:
    route: str
    status: int
    ms: float
    started: float
    error: str | None = None
    body: dict | None = None


@dataclass
class LoadResult:
    samples: list[Sample]
    wall_s: float
    job_ids: list[str] = field(default_factory=list)

    def by_route(self) -> dict[str, list[Sample]]:
        out: dict[str, list[Sample]] = {}
        for s in self.samples:
            out.setdefault(s.route, []).append(s)
        return out


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); p99 of 300 samples is the 297th smallest."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def vmrss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Client:
    """One HTTP/1.1 connection per request (what Werkzeug's server does anyway), via http.client: light on the GIL."""

    def __init__(self, base: str, token: str):
        host, port = base.split("://", 1)[1].rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.headers = {"Authorization": f"Bearer {token}"}

    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 30) -> tuple[int, dict | None]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            headers = dict(self.headers)
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            ctype = resp.getheader("Content-Type", "")
            parsed = json.loads(raw) if ctype.startswith("application/json") and raw else None
            return resp.status, parsed
        finally:
            conn.close()


def plan(per_client: int, jobs: int, rng: random.Random) -> list[str]:
    """A client's shuffled mix of ``per_client`` requests, ``jobs`` of them submits (the first request when any)."""
    rest = per_client - jobs
    light = ["job_poll"] * round(rest * 5 / 19) + ["gpu_status"] * round(rest * 5 / 19) + \
        ["magic_prompt"] * round(rest * 3 / 19)
    light += ["health"] * (rest - len(light))
    tail = light + ["submit"] * max(0, jobs - 1)
    rng.shuffle(tail)
    return ["submit", *tail] if jobs else tail


def run_load(base: str, key: str, *, clients: int = 50, per_client: int = 20, think_ms: float = 250.0,
             jobs: int = 20, fallback_job: str | None = None, seed: int = 1,
             timeout_s: float = 120.0) -> LoadResult:
    """Run the closed-loop load; every request is recorded, none raises out of here.

    ``jobs`` submits in all, spread over the clients (client n sends jobs // clients, one more for the first
    jobs % clients). A client polls its own last job, else one of the others' (or ``fallback_job``).
    """
    samples: list[Sample] = []
    accepted: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    deadline = time.monotonic() + timeout_s

    def worker(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        http_ = Client(base, key)
        mine: list[str] = []
        start.wait()
        own_jobs = jobs // clients + (1 if n < jobs % clients else 0)
        for i, route in enumerate(plan(per_client, own_jobs, rng)):
            if time.monotonic() > deadline:
                break
            # A pause before every request, the first one too: clients start spread over one pause
            # instead of all in the same millisecond (a burst of 50 no real frontend makes).
            time.sleep(rng.uniform(0, 2 * think_ms) / 1000)
            if route == "health":
                args = ("GET", "/", None)
            elif route == "gpu_status":
                args = ("GET", "/gpu-status", None)
            elif route == "magic_prompt":
                args = ("POST", "/magic-prompt", {"prompt": rng.choice(PROMPTS)})
            elif route == "submit":
                args = ("POST", "/api/jobs", {"kind": "image.generate", "params": {
                    "prompt": f"{rng.choice(PROMPTS)} #{n}.{i}", "width": 256, "height": 256, "steps": 1,
                    "seed": seed * 100_000 + n * 100 + i}})
            else:
                with lock:
                    others = list(accepted)
                target = mine[-1] if mine else (rng.choice(others) if others else fallback_job)
                args = ("GET", f"/api/jobs/{target}", None)
            t0 = time.perf_counter()
            wall0 = time.monotonic()
            try:
                status, body = http_.request(*args)
                error = None
            except Exception as exc:  # noqa: BLE001 - every failure is a recorded sample
                status, body, error = 0, None, f"{type(exc).__name__}: {exc}"
            ms = (time.perf_counter() - t0) * 1000
            if route == "submit" and status == 202 and body:
                mine.append(body["id"])
                with lock:
                    accepted.append(body["id"])
            sample = Sample(route, status, ms, wall0, error, body if status >= 400 or error else None)
            with lock:
                samples.append(sample)

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.monotonic()
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic() + 5))
    return LoadResult(samples, time.monotonic() - t0, accepted)


def unexpected(result: LoadResult, *, limited_routes=SUBMIT_ROUTES) -> list[Sample]:
    """Answers that are neither the route's success nor a well-formed 429 on a limited route."""
    bad = []
    for s in result.samples:
        if s.status in EXPECTED[s.route]:
            continue
        if s.status == 429 and s.route in limited_routes and isinstance(s.body, dict) \
                and s.body.get("status") == "error" and s.body.get("code") in ("rate_limited", "queue_full") \
                and s.body.get("message"):
            continue
        bad.append(s)
    return bad


def summarise(result: LoadResult) -> dict:
    routes = {}
    for route, ss in sorted(result.by_route().items()):
        ms = [s.ms for s in ss]
        statuses: dict[int, int] = {}
        for s in ss:
            statuses[s.status] = statuses.get(s.status, 0) + 1
        routes[route] = {"n": len(ss), "p50_ms": percentile(ms, 50), "p95_ms": percentile(ms, 95),
                         "p99_ms": percentile(ms, 99), "max_ms": max(ms), "statuses": statuses}
    light = [s.ms for s in result.samples if s.route in LIGHT_ROUTES]
    return {
        "requests": len(result.samples),
        "wall_s": result.wall_s,
        "throughput_rps": len(result.samples) / result.wall_s if result.wall_s else 0.0,
        "routes": routes,
        "light_p50_ms": percentile(light, 50),
        "light_p95_ms": percentile(light, 95),
        "light_p99_ms": percentile(light, 99),
        "status_429": {r: v["statuses"].get(429, 0) for r, v in routes.items() if v["statuses"].get(429)},
    }


def wait_job(srv_get, job_id: str, states: set[str], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = srv_get(f"/api/jobs/{job_id}")
        if job["state"] in states:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job['state']} after {timeout:.0f} s")
        time.sleep(0.1)


def measure(server, *, clients: int = 50, per_client: int = 20, think_ms: float = 250.0, jobs: int = 20,
            limits: str = "high", drain: bool = True, timeout_s: float = 120.0, drain_timeout_s: float = 300.0,
            busy_steps: int = 50) -> dict:
    """Warm up, make the GPU worker busy, run the load, then drain the queue (every job must succeed) or, with
    ``drain=False``, cancel what is still queued. A dict of figures; judges nothing."""
    # A login token gives the monitoring calls a rate-limit bucket of their own (the limiter keys on
    # the bearer value), so they never eat into the clients' budget in the default-limits variant.
    token = server.post("/auth/login", json={}).json()["token"]
    mon = {"Authorization": f"Bearer {token}"}

    def get(path):
        return server.get(path, headers=mon, timeout=30).json()

    def post(path, body):
        r = server.post(path, json=body, headers=mon, timeout=30)
        assert r.status_code in (200, 202), (path, r.status_code, r.text)
        return r.json()

    # Warm-up: the model loaded, and one step at the long job's size done once, so that the allocator's
    # high-water mark for it is reached before the baseline is taken.
    warm = post("/api/jobs", {"kind": "image.generate", "params": {"prompt": "warm-up", "width": 256, "height": 256,
                                                                    "steps": 1, "seed": 1}})
    big = post("/api/jobs", {"kind": "image.generate", "params": {**LONG_JOB, "steps": 1, "seed": 2}})
    for job in (warm, big):
        assert wait_job(get, job["id"], {"succeeded", "failed", "cancelled"}, 180)["state"] == "succeeded"
    get("/")
    get("/gpu-status")
    post("/magic-prompt", {"prompt": "warm-up"})
    # Resident memory at a quiet moment (warm, worker idle) before and after: during the run it swings by
    # tens of MB with each denoising step of the long job, so a snapshot there says little.
    time.sleep(0.5)
    rss_idle_before = vmrss_mb(server.worker_pid)

    long_job = post("/api/jobs", {"kind": "image.generate", "params": {**LONG_JOB, "steps": busy_steps}})
    wait_job(get, long_job["id"], {"running", "succeeded", "failed", "cancelled"}, 60)
    # The first denoising step has allocated the big activations: take the baseline after it.
    deadline = time.monotonic() + 60
    while (job := get(f"/api/jobs/{long_job['id']}"))["progress"] < 1 and job["state"] == "running":
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    busy_before = get(f"/api/jobs/{long_job['id']}")
    rss_before = vmrss_mb(server.worker_pid)

    # While the clients run, sample every 100 ms whether the worker is running a job (any: the long one, or
    # a client's tiny one should the long one end early on a fast machine).
    stop_sampling = threading.Event()
    busy_samples: list[bool] = []
    rss_samples: list[float] = []

    def sample_busy() -> None:
        while not stop_sampling.wait(0.1):
            running = get("/api/jobs?state=running&limit=1")["jobs"]
            busy_samples.append(bool(running))
            rss_samples.append(vmrss_mb(server.worker_pid))

    sampler = threading.Thread(target=sample_busy, daemon=True)
    sampler.start()
    result = run_load(server.base, server.key, clients=clients, per_client=per_client, think_ms=think_ms,
                      jobs=jobs, fallback_job=warm["id"], timeout_s=timeout_s)
    stop_sampling.set()
    sampler.join(10)

    rss_after = vmrss_mb(server.worker_pid)
    busy_after = get(f"/api/jobs/{long_job['id']}")
    if not drain:
        for j in result.job_ids:
            server.post(f"/api/jobs/{j}/cancel", headers=mon, timeout=30)
    server.post(f"/api/jobs/{long_job['id']}/cancel", headers=mon, timeout=30)
    t0 = time.monotonic()
    finals = [wait_job(get, j, {"succeeded", "failed", "cancelled"}, max(1.0, drain_timeout_s - (time.monotonic() - t0)))
              for j in result.job_ids]
    drain_s = time.monotonic() - t0
    wait_job(get, long_job["id"], {"succeeded", "failed", "cancelled"}, 60)
    time.sleep(0.5)
    rss_idle_after = vmrss_mb(server.worker_pid)

    figures = summarise(result)
    bad = unexpected(result)
    figures.update(
        clients=clients, per_client=per_client, think_ms=think_ms, jobs=jobs, limits=limits, drained=drain,
        unexpected=[{"route": s.route, "status": s.status, "error": s.error, "body": s.body} for s in bad[:20]],
        unexpected_count=len(bad),
        busy={"job": long_job["id"], "state_before": busy_before["state"], "progress_before": busy_before["progress"],
              "state_after": busy_after["state"], "progress_after": busy_after["progress"]},
        busy_throughout=busy_before["state"] == "running" and busy_after["state"] == "running",
        busy_sampled=(sum(busy_samples), len(busy_samples)),
        rss_idle_before_mb=rss_idle_before, rss_idle_after_mb=rss_idle_after,
        rss_growth_mb=rss_idle_after - rss_idle_before,
        rss_load_min_mb=min([rss_before, rss_after, *rss_samples]),
        rss_load_max_mb=max([rss_before, rss_after, *rss_samples]),
        job_states={"submitted": len(result.job_ids),
                    "succeeded": sum(j["state"] == "succeeded" for j in finals),
                    "cancelled": sum(j["state"] == "cancelled" for j in finals),
                    "failed": [{"id": j["id"], "error": j["error"]} for j in finals if j["state"] == "failed"],
                    "drain_s": drain_s},
        rejected_429_bodies=[s.body for s in result.samples if s.status == 429][:3],
    )
    return figures


def report(f: dict, log=print) -> None:
    log(f"clients={f['clients']} requests_per_client={f['per_client']} think_ms=0-{2 * f['think_ms']:.0f} "
        f"limits={f['limits']} jobs={f['jobs']} cpus={os.cpu_count()}")
    log(f"requests={f['requests']} wall_s={f['wall_s']:.2f} throughput_rps={f['throughput_rps']:.1f}")
    for route, r in f["routes"].items():
        log(f"route={route:13s} n={r['n']:4d} p50_ms={r['p50_ms']:7.1f} p95_ms={r['p95_ms']:7.1f} "
            f"p99_ms={r['p99_ms']:7.1f} max_ms={r['max_ms']:7.1f} statuses={r['statuses']}")
    b = f["busy"]
    log(f"gpu_worker_busy={f['busy_throughout']} long_job={b['job']} {b['state_before']}@{b['progress_before']}% -> "
        f"{b['state_after']}@{b['progress_after']}%; a job running in {f['busy_sampled'][0]}/{f['busy_sampled'][1]} "
        "samples")
    log(f"unexpected={f['unexpected_count']} {f['unexpected'][:3] if f['unexpected'] else ''}")
    log(f"status_429={f['status_429'] or 0} example={f['rejected_429_bodies'][:1]}")
    log(f"rss_idle_before_mb={f['rss_idle_before_mb']:.1f} rss_idle_after_mb={f['rss_idle_after_mb']:.1f} "
        f"(during the load {f['rss_load_min_mb']:.1f}-{f['rss_load_max_mb']:.1f}) rss_growth_mb={f['rss_growth_mb']:.1f}"
        + (f" by_pass={[round(g, 1) for g in f['rss_growth_by_pass_mb']]}" if "rss_growth_by_pass_mb" in f else ""))
    j = f["job_states"]
    log(f"jobs_accepted={j['submitted']} succeeded={j['succeeded']} cancelled={j['cancelled']} "
        f"failed={len(j['failed'])} {'drain' if f['drained'] else 'cancel'}_s={j['drain_s']:.1f}")
    log(f"light_p50_ms={f['light_p50_ms']:.1f} light_p95_ms={f['light_p95_ms']:.1f}")
    log(f"load_light_p99_ms={f['light_p99_ms']:.1f}")


def steady_rss_growth(earlier: dict, later: dict) -> float:
    """Resident memory growth over the later run: idle after it minus idle after the earlier one.

    Both readings are taken at the same point of the cycle (the queue just drained), which the
    reading before a run is not (it follows the warm-up's big one-step job, whose memory glibc
    may or may not have returned yet: +-50 MB).
    """
    return later["rss_idle_after_mb"] - earlier["rss_idle_after_mb"]


def limit_env(limits: str) -> dict:
    if limits == "default":
        from enfoads.settings import Settings

        fields = Settings.model_fields
        return {"ENFOADS_RATE_LIMIT": fields["rate_limit"].default,
                "ENFOADS_SUBMIT_RATE_LIMIT": fields["submit_rate_limit"].default}
    return {}  # server_fixture's own: 100000/minute


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--requests", type=int, default=20, help="requests per client")
    ap.add_argument("--think-ms", type=float, default=250.0, help="mean pause before each request of a client")
    ap.add_argument("--limits", choices=["high", "default"], default="high")
    ap.add_argument("--jobs", type=int, default=None, help="tiny image jobs submitted in all "
                                                             "(20; with --limits default 2 per client)")
    ap.add_argument("--models-dir", type=Path, default=None, help="reuse a models dir holding the tiny kit")
    ap.add_argument("--passes", type=int, default=2, help="runs on the same server; figures from the last "
                                                           "(the first warms allocator arenas and caches up)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--server-env", default="{}", help="extra environment for the server, as JSON")
    ap.add_argument("--glibc-defaults", action="store_true",
                    help=f"do not set {', '.join(MEASURE_ENV)} for the server (VmRSS then swings by +-100 MB)")
    args = ap.parse_args()

    from startup import spawn_server

    from enfoads.models.tiny import build_tiny_kit

    with tempfile.TemporaryDirectory(prefix="enfoads-bench-load-") as tmp:
        tmp = Path(tmp)
        models = args.models_dir or tmp / "models"
        build_tiny_kit(models)
        env = {**({} if args.glibc_defaults else MEASURE_ENV), **limit_env(args.limits), **json.loads(args.server_env)}
        srv = spawn_server(models, tmp / "data", extra_env=env)
        try:
            srv.wait_ready()
            default = args.limits == "default"
            passes = 1 if default else max(1, args.passes)  # the default limits allow one pass a minute
            runs = []
            for n in range(passes):
                runs.append(measure(srv, clients=args.clients, per_client=args.requests, think_ms=args.think_ms,
                                    jobs=args.jobs if args.jobs is not None else (2 * args.clients if default else 20),
                                    limits=args.limits, drain=not default))
                if n < passes - 1:
                    print(f"pass {n + 1} (warm-up): light_p99_ms={runs[-1]['light_p99_ms']:.1f} "
                          f"unexpected={runs[-1]['unexpected_count']} "
                          f"warmup_rss_growth_mb={runs[-1]['rss_growth_mb']:.1f}")
        finally:
            srv.stop()
    figures = runs[-1]
    if len(runs) > 1:
        figures["rss_growth_mb"] = steady_rss_growth(runs[-2], runs[-1])
        figures["rss_growth_by_pass_mb"] = [runs[0]["rss_growth_mb"]] + [
            steady_rss_growth(a, b) for a, b in zip(runs, runs[1:])]
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    report(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
