"""The asset store: files and rows, signed URLs, the quota."""
from __future__ import annotations

import hashlib
import os
import re
import stat
import threading
import time

import pytest

from enfoads.work.assets import AssetNotFound, AssetStore, SignatureError, SignatureExpired
from enfoads.work.jobs import JobQueue


class Clock:
    def __init__(self, t=1_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


def test_save_get_open_list(tmp_path):
    store = AssetStore(tmp_path)
    data = b"\x89PNG not really" * 10
    a = store.save_bytes(data, "image/png", job_id="j1", params={"prompt": "a cat"}, width=64, height=32)
    assert a.kind == "image" and a.mime == "image/png" and a.bytes == len(data)
    assert a.sha256 == hashlib.sha256(data).hexdigest()
    assert store.get(a.id) == a and store.read_bytes(a.id) == data
    path = store.path(a.id)
    assert path.parent.parent == tmp_path / "assets" and re.fullmatch(r"[0-9a-f]{32}\.png", path.name)
    with store.open(a.id) as f:
        assert f.read() == data
    b = store.save_bytes(b"RIFF....WAVE", "audio/wav", duration=1.5)
    assert [x.id for x in store.list()] == [b.id, a.id]  # newest first
    assert [x.id for x in store.list(job_id="j1")] == [a.id]
    assert [x.id for x in store.list(kind="audio")] == [b.id]
    assert store.total_bytes() == a.bytes + b.bytes
    assert store.delete(a.id) and not path.exists() and not store.delete(a.id)
    with pytest.raises(AssetNotFound):
        store.get(a.id)


def test_names_never_come_from_input(tmp_path):
    store = AssetStore(tmp_path)
    for bad in ("../../etc/passwd", "image/png; x=../", "text", ""):
        with pytest.raises(ValueError):
            store.save_bytes(b"x", bad)
    a = store.save_bytes(b"x", "application/x-unknown-thing")
    assert store.path(a.id).name == f"{a.id}.bin"


def test_save_file_copies_and_hashes(tmp_path):
    src = tmp_path / "out.mp4"
    src.write_bytes(os.urandom(3 << 20))
    store = AssetStore(tmp_path / "data")
    a = store.save_file(src, "video/mp4", duration=2.0)
    assert a.kind == "video" and a.bytes == 3 << 20 and src.exists()
    assert a.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    m = store.save_file(src, "video/mp4", move=True)
    assert not src.exists() and store.path(m.id).name.endswith(".mp4")


def test_signed_urls_verify_and_reject_tampering(tmp_path):
    clock = Clock()
    store = AssetStore(tmp_path, clock=clock)
    a = store.save_bytes(b"img", "image/png")
    other = store.save_bytes(b"img2", "image/png")
    expires, sig = store.sign(a.id, ttl_s=60)
    assert expires == int(clock.t) + 60
    store.verify(a.id, expires, sig)
    store.verify(a.id, str(expires), sig)  # raw query-string values work too

    flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    for asset_id, exp, s in [
        (a.id, expires, flipped),  # tampered signature
        (a.id, expires + 3600, sig),  # tampered expiry (extending the link)
        (other.id, expires, sig),  # another asset's link
        (a.id, "soon", sig),  # malformed expiry
        (a.id, expires, ""),  # no signature
        (a.id, expires, "é" * 64),  # junk
    ]:
        with pytest.raises(SignatureError):
            store.verify(asset_id, exp, s)

    clock.t += 61
    with pytest.raises(SignatureExpired):
        store.verify(a.id, expires, sig)
    assert issubclass(SignatureExpired, SignatureError)


def test_secret_is_private_and_stable(tmp_path):
    store = AssetStore(tmp_path)
    secret = tmp_path / "url-secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    expires, sig = store.sign("abc", 60)
    AssetStore(tmp_path).verify("abc", expires, sig)  # a restart keeps links valid
    with pytest.raises(SignatureError):
        AssetStore(tmp_path / "elsewhere").verify("abc", expires, sig)  # another secret


def test_quota_removes_oldest_first_and_spares_unfinished_jobs(tmp_path):
    clock = Clock()
    store = AssetStore(tmp_path, clock=clock, quota_bytes=250)
    made = []
    for i in range(5):
        clock.t += 1
        made.append(store.save_bytes(bytes([i]) * 100, "application/octet-stream", job_id=f"job{i}"))
    removed = store.cleanup(unfinished_jobs=lambda: {"job0"})  # the oldest belongs to a running job
    assert removed == [made[1].id, made[2].id, made[3].id]
    assert [a.id for a in store.list()] == [made[4].id, made[0].id]
    assert not (tmp_path / "assets" / made[1].file).exists()
    assert store.total_bytes() == 200
    # Only protected assets over the quota: nothing else to remove, no error.
    assert store.cleanup(quota_bytes=50, unfinished_jobs=["job0", "job4"]) == []
    assert store.cleanup(quota_bytes=50) == [made[0].id, made[4].id]  # once unprotected, oldest first


def test_quota_after_each_job_spares_the_running_job(tmp_path):
    store = AssetStore(tmp_path, quota_bytes=1000)
    q = JobQueue(tmp_path, assets=store, cpu_workers=1)
    gate = threading.Event()

    def long_running(params, ctx):
        ctx.save_bytes(b"L" * 600, "application/octet-stream")  # the oldest asset
        assert gate.wait(10)
        return {}

    def small(params, ctx):
        ctx.save_bytes(b"s" * 300, "application/octet-stream")
        return {}

    q.register("long", long_running, device="gpu")
    q.register("small", small, device="cpu")
    q.start()
    try:
        long_job = q.submit("long")
        while not store.list(job_id=long_job.id):
            time.sleep(0.005)
        smalls = [q.submit_and_wait("small", timeout=5) for _ in range(4)]
        assert all(j.state == "succeeded" for j in smalls)
        kept = {a.job_id for a in store.list()}
        assert long_job.id in kept  # the oldest, but its job is still running
        assert kept == {long_job.id, smalls[-1].id} and store.total_bytes() == 900
        gate.set()
        assert q.wait(long_job.id, 5).state == "succeeded"
    finally:
        gate.set()
        q.close()


def test_orphan_and_temporary_files_are_removed_on_start(tmp_path):
    store = AssetStore(tmp_path)
    kept = store.save_bytes(b"keep", "text/plain")
    sub = tmp_path / "assets" / "ab"
    sub.mkdir(exist_ok=True)
    orphan, tmp, fresh = sub / "ab12.png", sub / ".ab34.png.tmp", sub / "ab56.png"
    for f in (orphan, tmp, fresh):
        f.write_bytes(b"x")
    old = time.time() - 3600
    os.utime(orphan, (old, old))
    os.utime(tmp, (old, old))
    AssetStore(tmp_path)
    assert not orphan.exists() and not tmp.exists()
    assert fresh.exists()  # maybe another process is about to insert its row
    assert store.read_bytes(kept.id) == b"keep"


def test_quota_never_removes_an_asset_a_library_kept_a_link_to(tmp_path):
    clock = Clock()
    store = AssetStore(tmp_path, clock=clock, quota_bytes=150)
    made = []
    for i in range(3):
        clock.t += 1
        made.append(store.save_bytes(bytes([i]) * 100, "video/mp4", job_id=f"job{i}"))
    assert store.keep_link(made[0].id, *store.sign(made[0].id, 60))  # the oldest is saved in a library
    assert store.cleanup() == [made[1].id, made[2].id]  # the oldest is spared
    assert store.cleanup(quota_bytes=0) == []
    assert [a.id for a in store.list()] == [made[0].id]  # over the quota, but the user's video stays
