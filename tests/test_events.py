"""The event bus: sequence numbers, persistence, subscribers."""
from __future__ import annotations

import threading

from enfoads.work import events as ev
from enfoads.work.events import EventBus, RecordingBus, event_from_dict
from enfoads.work.jobs import JobQueue


def test_seq_strictly_increases_across_threads_and_restarts(tmp_path):
    bus = EventBus(tmp_path)
    delivered = []
    bus.subscribe(delivered.append)

    def publish(n):
        for i in range(50):
            bus.publish(ev.JobProgress(job_id=f"j{n}", kind="k", progress=i, stage=f"s{i}"))

    threads = [threading.Thread(target=publish, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seqs = [e.seq for e in delivered]
    assert seqs == list(range(1, 401))  # delivered in seq order, no gaps, no repeats
    assert bus.last_seq == 400 and all(e.ts > 0 for e in delivered)
    # Each publisher's own events keep their order.
    assert [e.progress for e in delivered if e.job_id == "j3"] == list(range(50))

    again = EventBus(tmp_path)  # a restarted process
    assert again.last_seq == 400
    assert again.publish(ev.JobCancelled(job_id="j0", kind="k")).seq == 401


def test_events_since_after_a_restart(tmp_path):
    bus = EventBus(tmp_path)
    bus.publish(ev.JobCreated(job_id="a", kind="image.generate", device="gpu"))
    bus.publish(ev.JobProgress(job_id="a", kind="image.generate", progress=40, stage="denoising",
                               preview_asset_id="p1"))
    bus.publish(ev.JobCreated(job_id="b", kind="video.render", device="cpu"))
    bus.publish(ev.JobSucceeded(job_id="a", kind="image.generate", result={"asset_ids": ["x"]}))
    bus.publish(ev.JobFailed(job_id="b", kind="video.render", error_type="RuntimeError", error_message="ffmpeg"))
    bus.close()

    restarted = EventBus(tmp_path)
    got = restarted.events_since(2)
    assert [(e.seq, e.type) for e in got] == [(3, "job.created"), (4, "job.succeeded"), (5, "job.failed")]
    assert got[1] == ev.JobSucceeded(job_id="a", kind="image.generate", result={"asset_ids": ["x"]},
                                     seq=4, ts=got[1].ts)
    assert [e.seq for e in restarted.events_since(0, job_id="a")] == [1, 2, 4]
    assert restarted.events_since(0)[1].preview_asset_id == "p1"
    assert [e.seq for e in restarted.events_since(0, limit=2)] == [1, 2]
    assert restarted.events_since(5) == []


def test_events_are_bounded(tmp_path):
    for bus in (EventBus(tmp_path, keep=100), EventBus(keep=100)):
        for i in range(1000):
            bus.publish(ev.JobProgress(job_id="j", kind="k", progress=i % 100))
        kept = bus.events_since(0)
        assert 100 <= len(kept) <= 100 + 256
        assert kept[-1].seq == 1000 and [e.seq for e in kept] == list(range(kept[0].seq, 1001))


def test_default_bus_does_nothing_but_count():
    bus = EventBus()
    e = bus.publish(ev.JobCreated(job_id="j", kind="k"))
    assert e.seq == 1 and bus.events_since(0) == [e]


def test_subscribe_and_unsubscribe():
    bus = EventBus()
    got = []
    unsubscribe = bus.subscribe(got.append)
    bus.publish(ev.JobCreated(job_id="j", kind="k"))
    unsubscribe()
    unsubscribe()  # harmless
    bus.publish(ev.JobCancelled(job_id="j", kind="k"))
    assert [e.type for e in got] == ["job.created"]


def test_round_trip_through_dicts():
    e = ev.JobProgress(job_id="j", kind="k", progress=5, stage="x", preview_asset_id="a", seq=3, ts=1.5)
    d = e.to_dict()
    assert d["type"] == "job.progress" and d["progress"] == 5
    assert event_from_dict({**d, "extra": 1}) == e


def test_failing_subscriber_never_breaks_the_worker(tmp_path, caplog):
    bus = RecordingBus(tmp_path)
    good = []

    def broken(event):
        raise RuntimeError("socket closed")

    bus.subscribe(broken)
    bus.subscribe(good.append)
    q = JobQueue(tmp_path, bus=bus)

    def handler(params, ctx):
        ctx.progress(50, "half way")
        return {"v": 1}

    q.register("k", handler)
    q.start()
    try:
        jobs = [q.submit_and_wait("k", timeout=5) for _ in range(3)]
    finally:
        q.close()
    assert [j.state for j in jobs] == ["succeeded"] * 3
    assert [e.seq for e in good] == [e.seq for e in bus.events]
    assert "socket closed" in caplog.text
    # Per job: created, started, progress, succeeded, in that order.
    for job in jobs:
        assert [type(e) for e in bus.for_job(job.id)] == [ev.JobCreated, ev.JobProgress, ev.JobProgress,
                                                          ev.JobSucceeded]
    seqs = [e.seq for e in bus.events]
    assert seqs == sorted(set(seqs))


def test_late_subscriber_catches_up(tmp_path):
    """Subscribe, then read events_since(last seen): nothing is missed, duplicates are dropped by seq."""
    bus = EventBus(tmp_path)
    for i in range(5):
        bus.publish(ev.JobProgress(job_id="j", kind="k", progress=i * 20))
    last_seen = 2
    live = []
    bus.subscribe(live.append)
    bus.publish(ev.JobSucceeded(job_id="j", kind="k"))
    caught_up = bus.events_since(last_seen)
    merged = {e.seq: e for e in [*caught_up, *live]}
    assert sorted(merged) == [3, 4, 5, 6]
