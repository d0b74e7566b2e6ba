"""One rule for every user string (enfoads.text), applied the same way on every route, said in the response;
empty uploads refused by name; no server path in any error."""
from __future__ import annotations

import io
import json

import pytest
import requests

from enfoads.errors import redact_paths
from enfoads.text import clean_text, describe
from enfoads.models.tiny import build_tiny_kit
from server_fixture import start_server

HOSTILE = "a red\x00 chair\u202e evil\u202c\u200b here\r\nnext\x1b line"


def test_the_rule():
    text, removed = clean_text(HOSTILE)
    assert text == "a red  chair evil here\nnext  line"
    assert removed == {"control character": 2, "bidi control": 2, "invisible character": 1}
    assert describe(removed) == "removed 2 control characters, 2 bidi controls and 1 invisible character"
    # What stays: tabs, newlines, emoji joiners, Persian's non-joiner, accents (NFC).
    kept = "niño\tcafé\n👩\u200d💻 می\u200cخواهم"
    assert clean_text(kept) == (kept, {})
    assert clean_text("Cafe\u0301")[0] == "Café"


def test_paths_are_cut_to_their_last_part():
    assert redact_paths("no file /root/.cache/hub/models--x/unet/config.json here") == "no file config.json here"
    assert redact_paths("see https://huggingface.co/a/b/resolve/main/x") == "see https://huggingface.co/a/b/resolve/main/x"
    assert redact_paths("1/2 of it") == "1/2 of it"


@pytest.fixture(scope="module")
def server(models_dir, tmp_path_factory):
    build_tiny_kit(models_dir)
    srv = start_server(models_dir, tmp_path_factory.mktemp("text-rule") / "data")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.mark.slow
def test_every_route_cleans_the_same_way_and_says_so(server):
    expected_note = describe(clean_text(HOSTILE)[1])
    r = server.post("/generate-image", json={"prompt": HOSTILE, "width": 256, "height": 256, "steps": 4})
    assert r.status_code == 200, r.text
    assert r.json()["text_cleaned"] == {"prompt": expected_note}
    assert json.loads(r.headers["X-Text-Cleaned"]) == {"prompt": expected_note}
    job = server.get(f"/api/jobs/{r.json()['job_id']}").json()
    assert job["result"]["prompt_original"] == clean_text(HOSTILE)[0]

    r = server.post("/magic-prompt", json={"prompt": HOSTILE})
    assert r.status_code == 200 and r.json()["text_cleaned"] == {"prompt": expected_note}
    assert "\u202e" not in r.json()["prompt"] and "\x00" not in r.json()["original"]

    r = server.post("/render-video", json={"script": HOSTILE, "avatar_id": "default", "resolution": 240})
    assert r.status_code == 202 and r.json()["text_cleaned"] == {"script": expected_note}

    # Nested fields too (multi-scene), by their path.
    scenes = [{"id": 1, "avatarId": "default", "script": HOSTILE, "generateSubtitles": False}]
    r = server.post("/render-multi-scene", json={"scenes": scenes, "resolution": 240})
    assert r.status_code == 202 and r.json()["text_cleaned"] == {"scenes[0].script": expected_note}

    # Form fields: the transcription prompt.
    r = server.post("/v1/audio/transcriptions", files={"file": ("a.wav", b"RIFF0000WAVE", "audio/wav")},
                    data={"model": "whisper-1", "prompt": HOSTILE})
    assert json.loads(r.headers.get("X-Text-Cleaned", "{}")) == {"prompt": expected_note}

    # A field name the client chose (any Unicode, line breaks too) cannot break or inject a header.
    r = server.post("/api/jobs", json={"kind": "image.generate", "params": {"prompt": "x", "\U000f4942\nSet-Cookie: a": HOSTILE}})
    assert r.status_code in (202, 400) and "Set-Cookie" not in r.headers
    assert json.loads(r.headers["X-Text-Cleaned"])
    assert requests.get(server.base + "/", timeout=5).json()["status"] == "online"

    # Clean text: no note, no header.
    r = server.post("/magic-prompt", json={"prompt": "a red chair"})
    assert "text_cleaned" not in r.json() and "X-Text-Cleaned" not in r.headers


def test_empty_upload_is_a_400_naming_the_field(api):
    r = api.post("/v1/audio/transcriptions", content_type="multipart/form-data",
                 data={"file": (io.BytesIO(b""), "empty.wav", "audio/wav"), "model": "whisper-1"})
    assert r.status_code == 400, r.text
    assert "file" in r.get_json()["message"] and "empty" in r.get_json()["message"]
    assert api.get("/").get_json()["status"] == "online"
