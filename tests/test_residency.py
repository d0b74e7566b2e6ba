"""Residency policy on a CPU with a simulated GPU budget."""
import threading
import time

import pytest

from enfoads.models.residency import ResidencyManager
from enfoads.models.residency_types import CPU, GPU, ModelMemoryError, UnknownModelError, is_out_of_memory
from enfoads.testing.simulation import SimulatedAdapter

GB = 10**9


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        self.t += 1.0  # every reading is a distinct, later moment
        return self.t


def manager(gpu=10, ram=10, **kw):
    return ResidencyManager(gpu_budget=gpu * GB, ram_budget=ram * GB, gpu_device="cpu", clock=FakeClock(), **kw)


def add(m, key, size_gb, preferred=GPU, **kw):
    a = SimulatedAdapter(key, int(size_gb * GB), **kw)
    m.register(a, preferred=preferred)
    return a


def tiers(m):
    return {row["id"]: row["tier"] for row in m.stats().models}


def test_use_loads_on_gpu_and_reuses():
    m = manager()
    a = add(m, "a", 2)
    with m.use("a") as model:
        assert model.key == "a"
    with m.use("a"):
        pass
    assert [e[0] for e in a.events] == ["load"]
    s = m.stats()
    assert s.gpu_used == 2 * GB and s.loads == 1 and s.gpu_loads == 1


def test_unknown_model_is_a_clear_error():
    m = manager()
    with pytest.raises(UnknownModelError, match="unknown model 'nope'"):
        with m.use("nope"):
            pass


def test_lru_order_evicts_least_recently_used_first():
    m = manager(gpu=10, ram=0)
    for k in "abc":
        add(m, k, 3)
    for k in "abc":
        with m.use(k):
            pass
    with m.use("a"):  # a is now the most recent; b is the LRU
        pass
    add(m, "d", 3)
    with m.use("d"):
        pass
    assert tiers(m) == {"a": GPU, "b": None, "c": GPU, "d": GPU}


def test_minimal_victim_set_keeps_models_that_need_not_go():
    m = manager(gpu=10, ram=0)
    add(m, "small", 1)
    add(m, "big", 6)
    with m.use("small"):
        pass
    with m.use("big"):
        pass
    add(m, "other", 5)
    # Plain LRU would evict "small" first, then still need "big" out.
    with m.use("other"):
        pass
    assert tiers(m) == {"small": GPU, "big": None, "other": GPU}


def test_leased_model_is_never_evicted():
    m = manager(gpu=10, ram=0, lease_wait_s=0.2)
    add(m, "a", 6)
    add(m, "b", 6)
    with m.use("a"):
        with pytest.raises(ModelMemoryError) as err:
            with m.use("b"):
                pass
        assert err.value.retryable
        assert tiers(m)["a"] == GPU
    with m.use("b"):
        pass
    assert tiers(m) == {"a": None, "b": GPU}


def test_lease_waits_for_memory_held_by_another_lease():
    m = manager(gpu=10, ram=0, lease_wait_s=10)
    m._clock = time.monotonic
    add(m, "a", 6)
    add(m, "b", 6)
    entered = threading.Event()

    def hold_a():
        with m.use("a"):
            entered.set()
            time.sleep(0.3)

    t = threading.Thread(target=hold_a)
    t.start()
    entered.wait()
    started = time.monotonic()
    with m.use("b"):
        waited = time.monotonic() - started
    t.join()
    assert 0.2 < waited < 5


def test_model_larger_than_the_budget_fails_at_once():
    m = manager(gpu=4, ram=4)
    add(m, "huge", 5)
    with pytest.raises(ModelMemoryError, match="whole budget"):
        with m.use("huge"):
            pass


def test_torch_models_move_to_cpu_and_back():
    # RAM for both: swapping a and b needs b on the CPU before a leaves it.
    m = manager(gpu=10, ram=12)
    a = add(m, "a", 6)
    add(m, "b", 6)
    with m.use("a"):
        pass
    with m.use("b"):
        pass
    assert tiers(m) == {"a": CPU, "b": GPU}
    with m.use("a"):
        pass
    assert tiers(m) == {"a": GPU, "b": CPU}
    assert [e[0] for e in a.events] == ["load", "move", "move"]
    assert m.stats().gpu_loads == 3


def test_non_movable_runtimes_are_unloaded_not_moved():
    m = manager(gpu=10, ram=10)
    w = add(m, "whisper", 6, runtime="ctranslate2", movable=False)
    add(m, "sdxl", 6)
    with m.use("whisper"):
        pass
    with m.use("sdxl"):
        pass
    assert tiers(m) == {"whisper": None, "sdxl": GPU}
    assert [e[0] for e in w.events] == ["load", "unload"]
    with m.use("whisper"):
        pass
    assert [e[0] for e in w.events] == ["load", "unload", "load"]


def test_ram_budget_forces_unload_instead_of_offload():
    # A T4-like squeeze: offloading the 7 GB model to RAM would break the RAM budget.
    m = manager(gpu=10, ram=5)
    add(m, "a", 7)
    add(m, "b", 7)
    with m.use("a"):
        pass
    with m.use("b"):
        pass
    assert tiers(m) == {"a": None, "b": GPU}
    assert m.stats().over_budget_events == 0


def test_staging_ram_is_reserved_for_gpu_loads():
    m = manager(gpu=10, ram=8)
    add(m, "cpu-model", 5, preferred=CPU)
    m.register(SimulatedAdapter("staged", 4 * GB, staging_bytes=4 * GB), preferred=GPU)
    with m.use("cpu-model", tier=CPU):
        pass
    with m.use("staged"):
        pass
    # 5 GB resident + 4 GB staging > 8 GB of RAM: the CPU model had to go.
    assert tiers(m) == {"cpu-model": None, "staged": GPU}


def test_budgets_hold_under_a_random_workload():
    import random

    rng = random.Random(7)
    m = manager(gpu=12, ram=9)
    sizes = {"sdxl": 7, "sdxl8": 7, "whisper": 1.7, "det": 0.5, "swap": 0.6, "tts": 0.1}
    for k, s in sizes.items():
        movable = k.startswith("sdxl")
        m.register(SimulatedAdapter(k, int(s * GB), movable=movable, staging_bytes=int(s * GB) if movable else 0),
                   preferred=CPU if k == "tts" else GPU)
    keys = list(sizes)
    for _ in range(300):
        with m.use(rng.choice(keys)):
            s = m.stats()
            assert s.gpu_used <= s.gpu_budget and s.ram_used <= s.ram_budget
    assert m.stats().over_budget_events == 0


def test_injected_oom_on_load_evicts_and_retries_once():
    m = manager(gpu=10, ram=0)
    add(m, "other", 2)
    a = add(m, "a", 2, fail_loads=1)
    with m.use("other"):
        pass
    with m.use("a"):
        pass
    assert [e[0] for e in a.events] == ["oom", "load"]
    assert tiers(m)["other"] is None  # evicted by the recovery
    assert m.stats().oom_recoveries == 1


def test_injected_oom_twice_gives_the_clear_error():
    m = manager(gpu=10, ram=0)
    add(m, "a", 2, fail_loads=2)
    with pytest.raises(ModelMemoryError, match="out of memory loading 'a'"):
        with m.use("a"):
            pass
    assert tiers(m)["a"] is None
    assert m.stats().gpu_used == 0  # reservations released
    with m.use("a"):  # the next attempt works
        pass


def test_oom_during_use_evicts_others_and_run_retries():
    m = manager(gpu=10, ram=0)
    add(m, "other", 2)
    add(m, "a", 2)
    with m.use("other"):
        pass
    calls = []

    def work(model):
        calls.append(model.key)
        if len(calls) == 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 1 GiB")
        return "done"

    assert m.run("a", work) == "done"
    assert calls == ["a", "a"]
    assert tiers(m)["other"] is None


def test_is_out_of_memory_recognises_runtimes():
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate"))
    assert is_out_of_memory(RuntimeError("[ONNXRuntimeError] : 6 : Failed to allocate memory for requested buffer"))
    assert is_out_of_memory(RuntimeError("CUDA failed with error out of memory"))  # CTranslate2
    assert not is_out_of_memory(ValueError("bad prompt"))


def test_many_threads_leasing_at_once():
    m = manager(gpu=8, ram=6, lease_wait_s=30)
    m._clock = time.monotonic
    for k, s in {"a": 3, "b": 3, "c": 3, "d": 1}.items():
        m.register(SimulatedAdapter(k, s * GB, movable=k != "d"), preferred=GPU)
    errors, violations = [], []
    active = {k: 0 for k in "abcd"}
    lock = threading.Lock()

    def worker(seed):
        import random

        rng = random.Random(seed)
        for _ in range(40):
            key = rng.choice("abcd")
            try:
                with m.use(key) as model:
                    assert model.key == key and model.payload is not None
                    with lock:
                        active[key] += 1
                    s = m.stats()
                    if s.gpu_used > s.gpu_budget or s.ram_used > s.ram_budget:
                        violations.append(s)
                    # A leased model stays on the GPU for the whole lease.
                    if tiers(m)[key] != GPU:
                        violations.append(("moved while leased", key))
                    time.sleep(0.001)
                    with lock:
                        active[key] -= 1
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and not violations
    assert m.stats().over_budget_events == 0
    assert all(row["leases"] == 0 for row in m.stats().models)


def test_idle_ttl_unloads_unused_models():
    clock = FakeClock()
    m = ResidencyManager(gpu_budget=10 * GB, ram_budget=10 * GB, gpu_device="cpu", clock=clock, idle_ttl_s=60)
    m.register(SimulatedAdapter("a", GB))
    m.register(SimulatedAdapter("b", GB))
    with m.use("a"):
        pass
    clock.t += 100
    with m.use("b"):
        pass
    assert m.evict_idle() == ["a"]
    assert tiers(m) == {"a": None, "b": GPU}


def test_no_gpu_places_everything_on_cpu():
    m = ResidencyManager(gpu_budget=0, ram_budget=10 * GB, gpu_device="cpu")
    m.register(SimulatedAdapter("a", GB))
    with m.use("a"):
        pass
    assert tiers(m) == {"a": CPU}


def test_stats_report_per_model_and_totals():
    m = manager()
    add(m, "a", 2, runtime="onnxruntime", movable=False)
    with m.use("a"):
        pass
    row = m.stats().as_dict()["models"][0]
    assert row["id"] == "a" and row["runtime"] == "onnxruntime" and row["tier"] == GPU
    assert row["bytes"] == 2 * GB and row["loads"] == 1 and row["last_used"]


def test_a_leased_model_is_not_moved_by_a_request_for_another_tier():
    m = manager(gpu=10, ram=10)
    add(m, "a", 2)
    with m.use("a") as on_gpu:
        with m.use("a", tier=CPU) as same:
            assert same is on_gpu
        assert tiers(m)["a"] == GPU


def test_unload_waits_for_the_lease_to_end():
    m = manager(gpu=10, ram=10)
    m._clock = time.monotonic
    add(m, "a", 2)
    add(m, "b", 2)
    done = threading.Event()
    with m.use("a"):
        t = threading.Thread(target=lambda: (m.unload("a"), done.set()))
        t.start()
        time.sleep(0.1)
        assert not done.is_set()
        with m.use("b"):  # a lease holder can still load another model meanwhile
            pass
    t.join(timeout=5)
    assert done.is_set() and tiers(m)["a"] is None


def test_injected_oom_inside_a_lease_takes_the_recovery_path():
    m = manager(gpu=10, ram=0)
    add(m, "other", 2)
    add(m, "a", 2)
    with m.use("other"):
        pass
    m.inject_oom("a", times=1)
    with pytest.raises(ModelMemoryError) as err:
        with m.use("a"):
            pytest.fail("the injected error is raised before the body runs")
    assert err.value.retryable and tiers(m)["other"] is None
    with m.use("a") as model:  # the next lease works
        assert model.key == "a"
    m.inject_oom("a", times=1)
    assert m.run("a", lambda model: model.key) == "a"  # run() retries once


def test_close_unloads_the_idle_models_and_does_not_wait_for_one_in_use():
    # At shutdown a lease can belong to a thread the job queue left behind (a warm-start load,
    # a job that stopped reporting progress): close must not wait for it, maybe forever.
    m = manager(gpu=10, ram=10)
    add(m, "idle", 2)
    add(m, "held", 2)
    with m.use("idle"):
        pass
    leased, release, closed = threading.Event(), threading.Event(), threading.Event()

    def hold():
        with m.use("held"):
            leased.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert leased.wait(5)
    closer = threading.Thread(target=lambda: (m.close(), closed.set()))
    closer.start()
    try:
        assert closed.wait(5), "close waited for the lease"
        assert tiers(m) == {"idle": None, "held": GPU}
    finally:
        release.set()
        holder.join(5)
        closer.join(5)


def test_close_during_a_load_returns_and_leaves_the_models_to_the_exit():
    m = manager(gpu=10, ram=10)
    add(m, "idle", 2)
    with m.use("idle"):
        pass
    loading, release = threading.Event(), threading.Event()

    class SlowToLoad(SimulatedAdapter):
        def load(self, device):
            loading.set()
            release.wait(30)
            return super().load(device)

    m.register(SlowToLoad("slow", 2 * GB), preferred=GPU)
    loader = threading.Thread(target=lambda: m.use("slow").__enter__())
    loader.start()
    assert loading.wait(5)
    closer = threading.Thread(target=m.close)
    closer.start()
    try:
        closer.join(5)
        assert not closer.is_alive(), "close waited for the load"
        assert tiers(m)["idle"] == GPU  # the load holds the transitions: nothing is touched
    finally:
        release.set()
        loader.join(5)
        closer.join(5)
