"""One error root: every caller-visible error carries its status and code, and the web layer maps by type."""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
from flask import Flask

import enfoads
from enfoads import errors as E
from enfoads.work.assets import AssetNotFound, SignatureError, SignatureExpired
from enfoads.work.job_types import JobNotFound, QueueFullError, UnknownJobKind
from enfoads.models.residency_types import ModelMemoryError, UnknownModelError
from enfoads.web import errors as web_errors

RAISED = {
    "queue_full": (QueueFullError("the queue is full (40 jobs waiting)", retry_after_s=7), 429, {"Retry-After": "7"}),
    "job_missing": (JobNotFound("no job 'abc'"), 404, {}),
    "kind_unknown": (UnknownJobKind("no handler registered for job kind 'x'"), 400, {}),
    "asset_missing": (AssetNotFound("no asset 'secret-id'"), 404, {}),
    "bad_signature": (SignatureError("bad signature"), 403, {}),
    "expired": (SignatureExpired("link expired"), 403, {}),
    "oom": (ModelMemoryError("img needs 9 GiB", key="img", tier="gpu", needed=9), 503, {"Retry-After": "30"}),
    "model_unknown": (UnknownModelError("unknown model 'zz'"), 404, {}),
    "invalid": (E.InvalidInput.field("steps", "must be a whole number"), 400, {}),
    "path_leak": (E.ModelNotInstalled("missing /root/.cache/huggingface/hub/models--x/blobs/abc"), 503, {}),
}


@pytest.fixture
def client():
    app = Flask("errors-test")
    web_errors.init_app(app)
    for name, (exc, _, _) in RAISED.items():
        def view(exc=exc):
            raise exc
        app.add_url_rule(f"/{name}", name, view)
    app.add_url_rule("/bug", "bug", lambda: 1 / 0)
    return app.test_client()


@pytest.mark.parametrize("name", sorted(RAISED))
def test_each_error_is_answered_by_its_own_status_code_and_headers(client, name):
    exc, status, headers = RAISED[name]
    assert isinstance(exc, E.EnfoadsError)
    assert E.status_and_code(exc) == (status, exc.code)
    response = client.get(f"/{name}")
    assert response.status_code == status
    body = response.get_json()
    assert body["status"] == "error" and body["code"] == exc.code and body["message"]
    for header, value in headers.items():
        assert response.headers[header] == value
    assert "/root/" not in body["message"]  # no server paths reach strangers
    if name == "asset_missing":
        assert "secret-id" not in body["message"]
    if name == "invalid":
        assert body["details"] == {"fields": {"steps": "must be a whole number"}}


def test_anything_else_is_a_500_without_a_trace(client):
    response = client.get("/bug")
    assert response.status_code == 500
    body = response.get_json()
    assert body["code"] == "internal_error" and "Traceback" not in body["message"]
    assert E.status_and_code(ZeroDivisionError()) == (500, "internal_error")


def test_no_error_type_claims_an_http_status_outside_the_root():
    """A class with ``status``/``code`` that is not an ``EnfoadsError`` would be answered 500 by the web layer."""
    stray = []
    for info in pkgutil.walk_packages(enfoads.__path__, "enfoads."):
        if info.name.startswith(("enfoads.testing", "enfoads.models.tiny")) or info.name == "enfoads.__main__":
            continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == module.__name__:
                if hasattr(cls, "status") and not issubclass(cls, E.EnfoadsError):
                    stray.append(f"{module.__name__}.{cls.__name__}")
    assert stray == []
