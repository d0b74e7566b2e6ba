"""The bad-input corpus (tests/corpus/) against one real `enfoads serve` process.

Every case gets the 4xx the server documents for it, as JSON
``{"status": "error", "message": <non-empty>, "code": ...}``, and ``GET /``
still answers afterwards. The few hostile-looking inputs the server documents
as valid (``accepted.json``) get their documented answer instead.

Requests are sent with http.client so that paths reach the server byte for
byte (requests would remove ``/../`` segments before sending).
"""
from __future__ import annotations

import base64
import http.client
import json
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from enfoads.work.assets import AssetStore
from enfoads.security import Credentials
from enfoads.models.tiny import build_tiny_kit
from server_fixture import start_server

pytestmark = pytest.mark.slow  # real processes; `make test-quick` leaves them out

CORPUS = Path(__file__).with_name("corpus")
FILES = CORPUS / "files"
CASES = json.loads((CORPUS / "cases.json").read_text())
ACCEPTED = json.loads((CORPUS / "accepted.json").read_text())
# Small limits keep the over-the-limit payloads small. The upload limit is
# above the body limit on purpose: a JSON route must apply its own.
SERVER_ENV = {"ENFOADS_MAX_BODY_MB": "1", "ENFOADS_MAX_UPLOAD_MB": "2"}


# --------------------------------------------------------------------------- the server and run-time values


def _wait_job(server, job_id: str, timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = server.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("completed", "failed"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']} after {timeout} s"
        time.sleep(0.1)


def _query(expires, signature) -> str:
    return urlencode({"exp": expires, "sig": signature})


@pytest.fixture(scope="module")
def server(models_dir, tmp_path_factory):
    build_tiny_kit(models_dir)
    srv = start_server(models_dir, tmp_path_factory.mktemp("corpus") / "data", extra_env=SERVER_ENV)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def refs(server) -> dict:
    """Values the cases name: real asset ids, real and forged signed queries, login tokens."""
    r = server.post("/api/jobs", json={"kind": "video.render", "params": {
        "script": "Hola. Esto es una prueba.", "avatar_id": "default", "resolution": 144, "fps": 10,
        "generate_subtitles": True}})
    assert r.status_code == 202, r.text
    job = _wait_job(server, r.json()["id"])
    assert job["status"] == "completed", job
    video, srt = job["result"]["asset_id"], job["result"]["subtitles"]["srt_asset_id"]
    real = {k: v[0] for k, v in parse_qs(urlsplit(job["url"]).query).items()}
    avatar_url = next(a["img"] for a in server.get("/avatars").json()["avatars"] if a["id"] == "default")
    avatar_real = {k: v[0] for k, v in parse_qs(urlsplit(avatar_url).query).items()}

    def flip(sig: str) -> str:
        return sig[:-1] + ("0" if sig[-1] != "0" else "1")

    store = AssetStore(server.data_dir)  # the server's own secret, read from its data dir
    try:
        other = store.sign(srt, ttl_s=600)
        values = {
            "video_asset": video,
            "srt_asset": srt,
            "media_query": _query(real["exp"], real["sig"]),
            "expired_query": _query(*store.sign(video, ttl_s=-10)),
            "tampered_query": _query(real["exp"], flip(real["sig"])),
            "altered_exp_query": _query(int(real["exp"]) + 86400, real["sig"]),
            "other_asset_query": _query(*other),
            "unknown_asset_query": _query(*store.sign("0123456789abcdef0123456789abcdef", ttl_s=600)),
            "dotdot_media_query": _query(*store.sign("..", ttl_s=600)),
            "avatar_expired_query": _query(*store.sign("avatar-default", ttl_s=-10)),
            "avatar_tampered_query": _query(avatar_real["exp"], flip(avatar_real["sig"])),
            "avatar_unknown_query": _query(*store.sign("avatar-0123456789abcdef0123456789abcdef", ttl_s=600)),
            "dotdot_avatar_query": _query(*store.sign("avatar-..", ttl_s=600)),
        }
    finally:
        store.close()
    # The media link itself works: the forged ones below differ from it in one thing only.
    assert requests.get(job["url"], timeout=10).status_code == 200
    assert requests.get(avatar_url, timeout=10).status_code == 200
    token = server.post("/auth/login", json={"username": "demo_user"}).json()["token"]
    version, expires, nonce, sig = token.split(".")
    values["tampered_token"] = f"{version}.{int(expires) + 86400}.{nonce}.{sig}"
    values["expired_token"] = Credentials(server.key).issue_token(ttl_s=-10)
    assert server.get("/gpu-status", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    return values


# --------------------------------------------------------------------------- building and sending a case


def _expand(value, refs: dict):
    if isinstance(value, dict):
        return {k: _expand(v, refs) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, refs) for v in value]
    if not isinstance(value, str) or not value.startswith("$"):
        return value
    op, _, arg = value[1:].partition(":")
    if op == "b64":
        return base64.b64encode((FILES / arg).read_bytes()).decode()
    if op == "datauri":
        mime, _, name = arg.partition(":")
        return f"data:{mime};base64," + base64.b64encode((FILES / name).read_bytes()).decode()
    if op == "repeat":
        count, _, text = arg.partition(":")
        return text * int(count)
    if op == "ref":
        return refs[arg]
    raise ValueError(f"unknown placeholder {value!r}")


def _generated_body(spec: dict) -> bytes:
    if "nest" in spec:
        return b"[" * spec["nest"] + b"]" * spec["nest"]
    if "big_prompt" in spec:
        return json.dumps({"prompt": "a" * spec["big_prompt"]}).encode()
    if "file" in spec:
        return (FILES / spec["file"]).read_bytes()
    raise ValueError(spec)


def _auth_headers(auth: str, server, refs: dict) -> dict:
    if auth == "key":
        return {"Authorization": f"Bearer {server.key}"}
    if auth == "none":
        return {}
    kind, _, value = auth.partition(":")
    if kind == "bearer":
        return {"Authorization": f"Bearer {value}"}
    if kind == "x-api-key":
        return {"X-API-Key": value}
    if kind == "ref":
        return {"Authorization": f"Bearer {refs[value]}"}
    raise ValueError(auth)


def build(case: dict, server, refs: dict) -> tuple[str, str, dict, object, bool]:
    """(method, path, headers, body, chunked) for a case."""
    headers = {**_auth_headers(case.get("auth", "key"), server, refs), **case.get("headers", {})}
    kwargs: dict = {}
    if "json" in case:
        kwargs["data"] = json.dumps(_expand(case["json"], refs)).encode()
        headers["Content-Type"] = "application/json"
    elif "data" in case or "data_gen" in case:
        kwargs["data"] = case["data"].encode() if "data" in case else _generated_body(case["data_gen"])
        if "content_type" in case:
            headers["Content-Type"] = case["content_type"]
    elif "files" in case or "form" in case:
        files = {}
        for name, spec in case.get("files", {}).items():
            data = (FILES / spec["file"]).read_bytes() if "file" in spec else b"\0" * spec["size"]
            files[name] = (spec.get("filename", name), data, spec.get("mime", "application/octet-stream"))
        kwargs.update(files=files, data=case.get("form", {}))
    prepared = requests.Request(case["method"], server.base + "/", headers=headers, **kwargs).prepare()
    body = prepared.body
    out_headers = dict(prepared.headers)
    chunked = bool(case.get("chunked"))
    if chunked:
        out_headers.pop("Content-Length", None)
        out_headers["Transfer-Encoding"] = "chunked"
        data = body
        body = (data[i: i + 65536] for i in range(0, len(data), 65536))
    path = case["path"].format(**refs) if "{" in case["path"] else case["path"]
    return case["method"], path, out_headers, body, chunked


def send(server, case: dict, refs: dict, timeout: float = 120.0) -> tuple[int, dict | None, str]:
    method, path, headers, body, chunked = build(case, server, refs)
    host, port = urlsplit(server.base).hostname, urlsplit(server.base).port
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        try:
            conn.request(method, path, body=body, headers=headers, encode_chunked=chunked)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer an oversized body before reading all of it
        response = conn.getresponse()
        raw = response.read()
        status, content_type = response.status, response.getheader("Content-Type", "")
    finally:
        conn.close()
    text = raw.decode("utf-8", "replace")
    try:
        parsed = json.loads(raw) if content_type.startswith("application/json") else None
    except ValueError:
        parsed = None
    return status, parsed, text


def assert_alive(server) -> None:
    assert server.proc.poll() is None, "the server process died"
    r = requests.get(server.base + "/", timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "online"


# --------------------------------------------------------------------------- the tests


def _named_files(value):
    if isinstance(value, dict):
        if isinstance(value.get("file"), str) and not value["file"].startswith("$"):
            yield value["file"]
        for v in value.values():
            yield from _named_files(v)
    elif isinstance(value, list):
        for v in value:
            yield from _named_files(v)
    elif isinstance(value, str) and value.startswith(("$b64:", "$datauri:")):
        yield value.rsplit(":", 1)[1]


def test_corpus_is_big_enough_and_small_on_disk():
    assert len(CASES) >= 40
    assert all(400 <= c["expect"] < 500 for c in CASES)
    assert len({c["id"] for c in CASES + ACCEPTED}) == len(CASES) + len(ACCEPTED)
    for path in FILES.iterdir():
        assert path.stat().st_size <= 200_000, path
    for name in _named_files(CASES + ACCEPTED):
        assert (FILES / name).is_file(), name


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_bad_input_gets_its_documented_4xx(server, refs, case):
    status, body, text = send(server, case, refs)
    try:
        assert status == case["expect"], f"{case['about']}: got {status}: {text[:500]}"
        assert body is not None, f"not a JSON answer: {text[:300]}"
        assert body.get("status") == "error", body
        assert isinstance(body.get("message"), str) and body["message"].strip(), body
        if "code" in case:
            assert body.get("code") == case["code"], body
        if "message_has" in case:
            assert case["message_has"] in body["message"], body
        assert "Traceback" not in text
        # No server path reaches a stranger: not the data or models dir, not a temp file.
        for secret_place in (str(server.data_dir.parent), str(server.data_dir), "/tmp/", "/root/", "site-packages"):
            assert secret_place not in text, (secret_place, text[:300])
    finally:
        assert_alive(server)


@pytest.mark.parametrize("case", ACCEPTED, ids=[c["id"] for c in ACCEPTED])
def test_documented_valid_edge_cases(server, refs, case):
    status, body, text = send(server, case, refs)
    try:
        assert status == case["expect"], f"{case['about']}: got {status}: {text[:500]}"
        for key, value in case.get("body_has", {}).items():
            assert body is not None and body.get(key) == value, body
    finally:
        assert_alive(server)
