"""Avatar videos through the real job queue, asset store, TTS (espeak-ng, tiny Piper) and ffmpeg.

Small sizes (180x320, 10-12 fps) keep encodes well under a second; the 720p
default is checked through its ffmpeg arguments and one very short render.
"""
from __future__ import annotations

import io
import os
import re
import shutil
import time
from types import SimpleNamespace

import av
import pytest
from PIL import Image

from enfoads.work.assets import AssetStore
from enfoads.services.avatars import AvatarStore
from enfoads.errors import InvalidInput
from enfoads.work.jobs import JobQueue
from enfoads.models.profiles import detect_hardware
from enfoads.models.runtime import build_runtime
from enfoads.services import video, video_canvas, video_ffmpeg, video_subtitles
from enfoads.settings import Settings
from enfoads.models.tiny.piper import VOICE_NAME, ensure_tiny_piper
from enfoads.services.tts import TTS

TINY = f"piper:{VOICE_NAME}"
SCRIPT = ("Hola, bienvenidos a nuestra tienda. Hoy tenemos ofertas de verano en toda la colección. "
          "¡Te esperamos!")
SMALL = {"resolution": 180, "fps": 12}


def need_espeak():
    if shutil.which("espeak-ng") is None:
        msg = "espeak-ng is not installed (apt-get install -y espeak-ng)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


def need_tools():
    """espeak-ng (apt), piper-tts and an ffmpeg with libx264 + AAC (imageio-ffmpeg): CI must have them."""
    need_espeak()
    try:
        import piper  # noqa: F401

        video_ffmpeg.find_ffmpeg()
    except (ImportError, video_ffmpeg.VideoUnavailable) as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def env(models_dir, tmp_path_factory):
    need_tools()
    ensure_tiny_piper(models_dir)
    tmp = tmp_path_factory.mktemp("video")
    settings = Settings(profile="tiny", models_dir=models_dir, data_dir=tmp / "data",
                        gpu_budget_gb=64 / 1024, ram_budget_gb=0.5)
    rt = build_runtime(settings, detect_hardware())
    store = AssetStore(settings.data_dir)
    queue = JobQueue(settings.data_dir, assets=store, cpu_workers=2)
    tts = TTS(models_dir, edge=False)
    avatars = AvatarStore(settings.data_dir)
    work = tmp / "work"
    kinds = {k.name: k for k in video.job_kinds(rt, work_root=work, tts=tts, avatars=avatars, assets=store)}
    for k in kinds.values():
        # The tiny profile's lip-sync model runs on its (simulated) GPU: videos go to the GPU worker.
        assert k.device == rt.choice("lipsync").device == "gpu"
        queue.register(k.name, k.handler, device=k.device)
    queue.start()
    landscape = io.BytesIO()
    Image.new("RGB", (640, 360), (200, 120, 60)).save(landscape, format="JPEG")
    wide = avatars.add(landscape.getvalue(), name="Tienda")
    yield SimpleNamespace(queue=queue, store=store, kinds=kinds, tts=tts, avatars=avatars, work=work, wide=wide)
    queue.close(grace_s=5)
    rt.close()
    store.close()


def submit(env, kind, params, timeout=60):
    clean = env.kinds[kind].validate(params)  # what the web layer does before queueing
    job = env.queue.submit_and_wait(kind, clean, timeout=timeout)
    assert job.state == "succeeded", job.error
    return job


def streams(path):
    with av.open(str(path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        return SimpleNamespace(
            duration=c.duration / 1e6, vcodec=v.codec_context.name, acodec=a.codec_context.name,
            pix_fmt=v.codec_context.pix_fmt, size=(v.codec_context.width, v.codec_context.height),
            rate=a.codec_context.sample_rate,
        )


_CUE = re.compile(r"(\d\d):(\d\d):(\d\d)[,.](\d{3}) --> (\d\d):(\d\d):(\d\d)[,.](\d{3})")


def cue_times(text: str) -> list[tuple[float, float]]:
    out = []
    for m in _CUE.finditer(text):
        g = [int(x) for x in m.groups()]
        out.append((g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000, g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000))
    return out


def check_cues(times, duration):
    assert times, "no cues"
    for (s, e), nxt in zip(times, times[1:] + [(duration, duration)]):
        assert 0 <= s < e <= nxt[0] + 1e-6 and e <= duration + 1e-6


def no_ffmpeg_children():
    me = str(os.getpid())
    kids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = f.read().rsplit(")", 1)[1].split()[1]
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if ppid == me and b"ffmpeg" in cmd:
            kids.append(pid)
    return kids == []


# --------------------------------------------------------------------------- one video


def test_render_mp4_h264_aac_with_timed_subtitles(env):
    job = submit(env, video.JOB_KIND, {"script": SCRIPT, "avatar_id": "default", "voice_id": "espeak:es-419",
                                       "generate_subtitles": True, **SMALL})
    r = job.result
    mp4 = env.store.path(r["asset_id"])
    s = streams(mp4)
    assert (s.vcodec, s.acodec, s.pix_fmt, s.size, s.rate) == ("h264", "aac", "yuv420p", (180, 320), 48000)
    assert abs(s.duration - r["speech_duration"]) < 0.2 and abs(r["duration"] - s.duration) < 0.01
    head = mp4.read_bytes()[:200_000]
    assert 0 <= head.find(b"moov") < head.find(b"mdat")  # +faststart: playable while downloading
    assert (r["width"], r["height"], r["fps"], r["orientation"]) == (180, 320, 12, "vertical")
    assert r["voice"]["used"] == "espeak:es-419" and r["voice"]["fallback"] is False
    # The default avatar carries its face: the tiny lip-sync model ran over every frame of the speech.
    assert r["lipsync"]["ran"] and r["lipsync"]["model"] == "tiny-musetalk" and r["lipsync"]["reason"] is None
    assert abs(r["lipsync"]["frames"] - r["speech_duration"] * 12) <= 1
    subs = r["subtitles"]
    assert subs["burned_in"] and subs["cues"] == r["segments"] == 3
    srt = env.store.read_bytes(subs["srt_asset_id"]).decode()
    vtt = env.store.read_bytes(subs["vtt_asset_id"]).decode()
    assert srt.startswith("1\n") and "bienvenidos" in srt and vtt.startswith("WEBVTT")
    assert cue_times(srt) == cue_times(vtt) and len(cue_times(srt)) == 3
    check_cues(cue_times(srt), s.duration)
    assert env.store.get(subs["vtt_asset_id"]).mime == "text/vtt"
    assert set(job.result["asset_ids"]) == {r["asset_id"], subs["srt_asset_id"], subs["vtt_asset_id"]}
    assert list(env.work.iterdir()) == []  # the work folder is gone
    # The burned-in subtitle is there: the strip area changes when a cue shows.
    with av.open(str(mp4)) as c:
        frames = {round(f.time, 1): f.to_ndarray(format="gray") for f in c.decode(video=0)}
    first_cue = cue_times(srt)[0]
    before = frames[min(frames, key=lambda t: abs(t - first_cue[0] / 2))]
    during = frames[min(frames, key=lambda t: abs(t - (first_cue[0] + first_cue[1]) / 2))]
    assert abs(during[200:275].astype(int) - before[200:275].astype(int)).mean() > 5


def test_frontend_voice_maps_offline_and_tiny_piper_renders_horizontal(env):
    job = submit(env, video.JOB_KIND, {"script": "Hola a todos.", "avatar_id": "default",
                                       "voice_id": "es-MX-JorgeNeural", **SMALL})
    voice = job.result["voice"]
    assert voice["requested"] == "es-MX-JorgeNeural" and voice["fallback"] and voice["used"] == "espeak:es-419"
    assert "es-MX-JorgeNeural" in job.result["voice_note"] and job.result["subtitles"] is None
    assert job.result["asset_ids"] == [job.result["asset_id"]]

    job = submit(env, video.JOB_KIND, {"script": "Una prueba corta. Con dos frases.", "avatarId": env.wide.id,
                                       "voice_id": TINY, "orientation": "horizontal", "motion": "pan", **SMALL})
    s = streams(env.store.path(job.result["asset_id"]))
    assert s.size == (320, 180) and job.result["voice"]["backend"] == "piper"
    assert abs(s.duration - job.result["speech_duration"]) < 0.2


def test_frontend_payload_without_voice_uses_the_default(env):
    clean = env.kinds[video.JOB_KIND].validate({"script": "Hola.", "avatar_id": "default",
                                                "voice_id": None, "generate_subtitles": False})
    assert clean["voice_id"] is None and clean["subtitles"] is False
    assert (clean["resolution"], clean["fps"], clean["orientation"]) == (720, 25, "vertical")


def test_720p_default_path(env, tmp_path):
    clean = env.kinds[video.JOB_KIND].validate({"script": "Hola.", "avatar_id": "default"})
    fmt = video_canvas.VideoFormat.from_params(clean)
    assert (fmt.width, fmt.height, fmt.fps) == (720, 1280, 25)
    args = video_ffmpeg.scene_command("ffmpeg", canvas=tmp_path / "c.png", audio=tmp_path / "a.wav",
                                      out=tmp_path / "o.mp4", fmt=fmt, duration=1.5)
    assert isinstance(args, list) and all(isinstance(a, str) for a in args)
    joined = " ".join(args)
    for part in ("-c:v libx264", "-pix_fmt yuv420p", "-c:a aac", "-movflags +faststart", "-t 1.500",
                 "s=720x1280", "-progress pipe:1"):
        assert part in joined
    job = submit(env, video.JOB_KIND, {"script": "Hola.", "avatar_id": "default", "voice_id": "espeak:es"})
    s = streams(env.store.path(job.result["asset_id"]))
    assert s.size == (720, 1280) and s.vcodec == "h264" and abs(s.duration - job.result["speech_duration"]) < 0.2


# --------------------------------------------------------------------------- multi-scene


def test_multi_scene_lasts_the_sum_of_its_scenes(env):
    scenes = [
        {"id": 1, "avatarId": "default", "avatarName": "Enfoads", "avatarImg": "https://example.invalid/a.png",
         "script": "Primera escena. Bienvenidos.", "generateSubtitles": True},
        {"id": "b", "avatarId": env.wide.id, "avatarName": "Tienda", "avatarImg": "",
         "script": "Segunda escena con otra imagen.", "generateSubtitles": False, "voiceId": TINY},
        {"id": 3, "avatarId": "default", "script": "Y la tercera, para terminar.", "generateSubtitles": True},
    ]
    seen = []
    job_params = env.kinds[video.JOB_KIND_MULTI].validate({"scenes": scenes, "voice_id": "espeak:es-419", **SMALL})
    job = env.queue.submit(video.JOB_KIND_MULTI, job_params)
    while not (j := env.queue.get(job.id)).done:
        seen.append(j.stage)
        time.sleep(0.02)
    assert j.state == "succeeded", j.error
    r = j.result
    s = streams(env.store.path(r["asset_id"]))
    assert (s.vcodec, s.acodec, s.size) == ("h264", "aac", (180, 320))
    durations = [sc["duration"] for sc in r["scenes"]]
    assert abs(s.duration - sum(durations)) < 0.25
    assert abs(s.duration - r["speech_duration"]) < 0.3
    assert [sc["id"] for sc in r["scenes"]] == [1, "b", 3]
    assert [sc["voice"]["used"] for sc in r["scenes"]] == ["espeak:es-419", TINY, "espeak:es-419"]
    starts = [sc["start"] for sc in r["scenes"]]
    assert starts[0] == 0 and starts[1] == pytest.approx(durations[0], abs=0.01)
    assert any(st.startswith("scene 2/3") for st in seen) and any(st.startswith("scene 3/3: encoding") for st in seen)
    # Subtitles of scenes 1 and 3 only, scene 3's shifted to where it plays.
    times = cue_times(env.store.read_bytes(r["subtitles"]["srt_asset_id"]).decode())
    check_cues(times, s.duration)
    assert r["subtitles"]["cues"] == len(times) == 3
    assert times[0][1] <= starts[1] and times[1][1] <= starts[1] and times[2][0] >= starts[2]
    # The joined file decodes to the end, frames at the right rate.
    with av.open(str(env.store.path(r["asset_id"]))) as c:
        n = sum(1 for _ in c.decode(video=0))
    assert abs(n - s.duration * 12) <= 4


# --------------------------------------------------------------------------- cancel and bad input


def test_cancel_mid_encode_stops_ffmpeg_and_leaves_nothing(env):
    long_script = " ".join(["Este es un guion largo para que la codificación dure varios segundos."] * 6)
    params = env.kinds[video.JOB_KIND].validate({"script": long_script, "avatar_id": "default",
                                                 "voice_id": "espeak:es-419", "generate_subtitles": True,
                                                 "resolution": 540, "lipsync": False})
    job = env.queue.submit(video.JOB_KIND, params)
    deadline = time.monotonic() + 30
    while not re.search(r"encoding \d+%", env.queue.get(job.id).stage):
        assert time.monotonic() < deadline and not env.queue.get(job.id).done
        time.sleep(0.02)
    assert env.queue.get(job.id).progress < 95
    assert not no_ffmpeg_children()  # ffmpeg is running now
    env.queue.cancel(job.id)
    done = env.queue.wait(job.id, timeout=20)
    assert done.state == "cancelled"
    assert env.store.list(job_id=job.id) == []
    assert list(env.work.iterdir()) == []
    assert no_ffmpeg_children()


def test_bad_input_is_refused_before_any_work(env):
    validate = env.kinds[video.JOB_KIND].validate
    validate_multi = env.kinds[video.JOB_KIND_MULTI].validate
    ok = {"script": "Hola.", "avatar_id": "default"}
    cases = [
        ({"avatar_id": "default"}, "script", "required"),
        ({**ok, "script": "   "}, "script", "empty"),
        ({**ok, "script": "x" * (video.MAX_SCRIPT_CHARS + 1)}, "script", f"at most {video.MAX_SCRIPT_CHARS}"),
        ({**ok, "script": "¿¡...!?"}, "script", "nothing to say"),
        ({**ok, "script": ["Hola"]}, "script", "text"),
        ({"script": "Hola."}, "avatar_id", "required"),
        ({**ok, "avatar_id": "nobody"}, "avatar_id", "unknown avatar"),
        ({**ok, "avatar_id": "../../etc/passwd"}, "avatar_id", "unknown avatar"),
        ({**ok, "avatar_id": "0" * 32}, "avatar_id", "unknown avatar"),
        ({"script": "Hola.", "avatarId": "nobody"}, "avatarId", "unknown avatar"),
        ({**ok, "voice_id": "es-AR-NobodyNeural"}, "voice_id", "unknown voice"),
        ({**ok, "voice_id": "piper:es_MX-claude-high"}, "voice_id", "not installed"),
        ({**ok, "generate_subtitles": "maybe"}, "generate_subtitles", "true or false"),
        ({**ok, "resolution": 4000}, "resolution", "from 144 to 1080"),
        ({**ok, "resolution": 181}, "resolution", "even"),
        ({**ok, "orientation": "diagonal"}, "orientation", "one of"),
        ({**ok, "fps": 120}, "fps", "from 10 to 30"),
    ]
    scene = {"id": 1, "avatarId": "default", "script": "Hola.", "generateSubtitles": False}
    multi_cases = [
        ({}, "scenes", "required"),
        ({"scenes": "nope"}, "scenes", "list"),
        ({"scenes": []}, "scenes", "empty"),
        ({"scenes": [scene] * (video.MAX_SCENES + 1)}, "scenes", f"at most {video.MAX_SCENES}"),
        ({"scenes": [scene, {**scene, "script": ""}]}, "scenes[1].script", "empty"),
        ({"scenes": [{**scene, "avatarId": "ghost"}]}, "scenes[0].avatarId", "unknown avatar"),
        ({"scenes": [{**scene, "voiceId": "nope"}]}, "scenes[0].voiceId", "unknown voice"),
        ({"scenes": [scene, 5]}, "scenes[1]", "object"),
        ({"scenes": [{**scene, "script": "x" * 2900}] * 5}, "scenes", f"at most {video.MAX_TOTAL_CHARS}"),
    ]
    before = env.queue.counts()
    for check, all_cases in ((validate, cases), (validate_multi, multi_cases)):
        for params, field, fragment in all_cases:
            with pytest.raises(InvalidInput) as exc:
                check(params)
            assert exc.value.fields.keys() == {field}, (params, exc.value.fields)
            assert fragment in exc.value.message, (fragment, exc.value.message)
            assert exc.value.status == 400
    assert env.queue.counts() == before and list(env.work.iterdir()) == []


def test_work_folder_of_an_interrupted_run_is_replaced(tmp_path):
    stale = tmp_path / "enfoads-video-job1"
    stale.mkdir()
    (stale / "scene.mp4").write_bytes(b"partial")
    with video.WorkDir(tmp_path, "job1") as work:
        assert work == stale and list(work.iterdir()) == []
    assert not stale.exists()


def test_srt_and_vtt_format():
    cues = [video_subtitles.Cue(0.15, 1.5, "Hola, bienvenidos a nuestra tienda de ropa y accesorios de verano."),
            video_subtitles.Cue(3661.0, 3662.25, "Adiós.")]
    srt, vtt = video_subtitles.to_srt(cues), video_subtitles.to_vtt(cues)
    assert srt.splitlines()[:4] == ["1", "00:00:00,150 --> 00:00:01,500", "Hola, bienvenidos a nuestra tienda de ropa",
                                    "y accesorios de verano."]
    assert "2\n01:01:01,000 --> 01:01:02,250\nAdiós.\n" in srt
    assert vtt.startswith("WEBVTT\n\n00:00:00.150 --> 00:00:01.500\n")


# --------------------------------------------------------------------------- lip sync (MuseTalk, the tiny kit)


def _mouth_box_in_video(fmt_w: int, fmt_h: int) -> tuple[int, int, int, int]:
    """The lower half of the default avatar's lip-sync crop, in the pixels of a motion-less video."""
    from enfoads.services.avatars import default_face
    from enfoads.services.lipsync_mask import FaceGeometry, crop_box

    fmt = video_canvas.VideoFormat(fmt_w, fmt_h, 12, "vertical", "none")
    place = video_canvas.placement(768, 1024, fmt)
    x1, y1, x2, y2 = crop_box(FaceGeometry.from_dict(default_face(768, 1024)), 768, 1024)
    mid = (y1 + y2) / 2
    to_video = lambda x, y: ((x * place.sx + place.tx) / 2, (y * place.sy + place.ty) / 2)  # noqa: E731
    (a, b), (c, d) = to_video(x1, mid), to_video(x2, y2)
    return int(a) + 2, int(b) + 2, int(c) - 2, int(d) - 2


def test_lipsync_moves_the_mouth_and_nothing_far_from_it(env):
    job = submit(env, video.JOB_KIND, {"script": "Hola, ¿cómo estás? Muy bien, gracias.", "avatar_id": "default",
                                       "voice_id": "espeak:es-419", "resolution": 360, "fps": 12, "motion": "none"})
    r = job.result
    assert r["lipsync"]["ran"] and r["lipsync"]["frames"] >= 12
    with av.open(str(env.store.path(r["asset_id"]))) as c:
        assert len(c.streams.video) == 1 and len(c.streams.audio) == 1
        frames = [f.to_ndarray(format="rgb24").astype(int) for f in c.decode(video=0)]
        duration = c.duration / 1e6
    assert abs(duration - r["speech_duration"]) <= 1 / 12 + 0.05  # the audio's length, within a frame
    x1, y1, x2, y2 = _mouth_box_in_video(360, 640)
    mouths = [f[y1:y2, x1:x2] for f in frames[2:-4]]  # past the encoder's first frames and the fade-out
    changes = [abs(a - b).mean() for a, b in zip(mouths, mouths[1:])]
    # Far from the face (the top of the picture, the shirt) the still canvas shows through unchanged.
    for region in (lambda f: f[10:120, 20:340], lambda f: f[560:630, 20:340]):
        still = [region(f) for f in frames[2:-4]]
        assert max(abs(a - b).max() for a, b in zip(still, still[1:])) <= 3
        # The generated mouth (random weights: noise that follows the audio) differs from frame to frame.
        assert max(changes) > max(0.25, 5 * max(abs(a - b).mean() for a, b in zip(still, still[1:]))), changes


def test_lipsync_off_or_without_a_face_keeps_the_still_avatar(env):
    off = submit(env, video.JOB_KIND, {"script": "Hola.", "avatar_id": "default", "lipsync": False, **SMALL}).result
    assert off["lipsync"] == {"requested": False, "ran": False, "reason": "not requested"}
    # An avatar kept without a face (an earlier release's): the tiny detector finds none in it, so the
    # video is made still and says why.
    faceless = submit(env, video.JOB_KIND, {"script": "Hola.", "avatar_id": env.wide.id, **SMALL}).result
    assert faceless["lipsync"]["requested"] and not faceless["lipsync"]["ran"]
    assert "no face" in faceless["lipsync"]["reason"]
    multi = submit(env, video.JOB_KIND_MULTI, {"scenes": [
        {"id": 1, "avatarId": "default", "script": "Primera."},
        {"id": 2, "avatarId": env.wide.id, "script": "Segunda."}], **SMALL}).result
    assert [s["lipsync"]["ran"] for s in multi["scenes"]] == [True, False]
    assert multi["lipsync"]["ran"] and multi["lipsync"]["scenes"] == 1 and "no face" in multi["lipsync"]["reason"]


def test_cancel_stops_lipsync_between_batches(env):
    long_script = " ".join(["Este es un guion largo para que la sincronización dure varios segundos."] * 4)
    params = env.kinds[video.JOB_KIND].validate({"script": long_script, "avatar_id": "default",
                                                 "voice_id": "espeak:es-419", "resolution": 360})
    job = env.queue.submit(video.JOB_KIND, params)
    deadline = time.monotonic() + 60
    while not re.search(r"lip sync [1-9]\d*/\d+", env.queue.get(job.id).stage):
        assert time.monotonic() < deadline and not env.queue.get(job.id).done
        time.sleep(0.02)
    done_frames, total = map(int, re.search(r"(\d+)/(\d+)", env.queue.get(job.id).stage).groups())
    assert done_frames < total
    env.queue.cancel(job.id)
    done = env.queue.wait(job.id, timeout=30)
    assert done.state == "cancelled"
    assert env.store.list(job_id=job.id) == []
    assert list(env.work.iterdir()) == []
    assert no_ffmpeg_children()


def test_face_patch_is_the_canvas_outside_the_mask():
    import numpy as np

    from enfoads.services.avatars import default_face
    from enfoads.services.lipsync_mask import FaceGeometry, crop_box, lower_face_mask
    from enfoads.services.talking import PatchMaker, face_patch

    for size in ((768, 1024), (720, 1280)):  # fitted over a blurred copy; filling the canvas
        fmt = video_canvas.VideoFormat(360, 640, 12, "vertical", "zoom_in")
        place = video_canvas.placement(*size, fmt)
        assert place.fills is (size == (720, 1280))
        face = FaceGeometry.from_dict(default_face(*size))
        crop = crop_box(face, *size)
        patch = face_patch(place, crop)
        assert patch.width % 2 == patch.height % 2 == patch.x % 2 == patch.y % 2 == 0
        rng = np.random.default_rng(0)
        canvas = rng.integers(0, 256, (place.canvas_height, place.canvas_width, 3), dtype=np.uint8)
        mask = lower_face_mask(face, crop)
        maker = PatchMaker(canvas, place, crop, mask, patch)
        frame = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        out = maker(frame)
        still = canvas[patch.y:patch.y + patch.height, patch.x:patch.x + patch.width]
        assert out.shape == still.shape and out.flags["C_CONTIGUOUS"]
        assert (out[maker.outside] == still[maker.outside]).all() and maker.outside.any()
        assert (out[~maker.outside] != still[~maker.outside]).any()


def test_placement_is_where_compose_canvas_puts_the_avatar(tmp_path):
    import numpy as np

    fmt = video_canvas.VideoFormat(180, 320, 12, "vertical", "none")
    for size in ((400, 300), (450, 800)):  # contained; filled
        picture = np.full((size[1], size[0], 3), 40, np.uint8)
        x, y = size[0] * 3 // 5, size[1] * 2 // 3
        picture[y - 6:y + 6, x - 6:x + 6] = (250, 20, 20)
        Image.fromarray(picture).save(tmp_path / "a.png")
        canvas = np.asarray(Image.open(video_canvas.compose_canvas(tmp_path / "a.png", fmt, tmp_path / "c.png")))
        place = video_canvas.placement(*size, fmt)
        cx, cy = round(x * place.sx + place.tx), round(y * place.sy + place.ty)
        assert canvas[cy, cx, 0] > 200 and canvas[cy, cx, 1] < 80, (size, canvas[cy, cx])
