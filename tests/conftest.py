"""Shared fixtures. No test ever reaches a model hub."""
import os

# Set before any Hugging Face library is imported by a test module.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One intra-op thread per process: pytest-xdist already runs a worker per core, and each starts
# servers, kernels and venvs of its own. With torch's default (a thread per core, each spinning
# while it waits for work) the processes fought over the two cores: the suite took 1180 CPU-s
# and 758 s, against 770 CPU-s and 548 s with one thread (the same run, same machine). Set before
# torch is imported, and inherited by every process a test starts.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    """One models dir for the whole session; tiny models are built into it once."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture
def online(monkeypatch):
    """This run has HF_HUB_OFFLINE=1 (above); a test that talks to a local fake hub turns it off."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


# --------------------------------------------------------------------------- the app, as Flask's tutorial has it

API_KEY = "test-key-0123456789"
KEY_HEADERS = {"Authorization": f"Bearer {API_KEY}"}


def _prefix() -> str:
    from enfoads.security import url_prefix

    return "/" + url_prefix(API_KEY)


PREFIX = _prefix()  # the secret URL prefix: what the frontend's pasted URL carries


@pytest.fixture(scope="session")
def app(models_dir, tmp_path_factory):
    """The app ``enfoads serve`` runs (``create_app``), on the tiny profile, engine started and warm.

    One per session: tests that need a fresh data dir or a real socket start a server
    (``server_fixture.start_server``) instead.
    """
    from enfoads.models.tiny import build_tiny_kit
    from enfoads.settings import Settings
    from enfoads.web import create_app
    from enfoads.web.state import EXTENSION

    build_tiny_kit(models_dir)
    settings = Settings(profile="tiny", models_dir=models_dir, data_dir=tmp_path_factory.mktemp("app") / "data",
                        api_key=API_KEY, auto_download="off", sync_timeout_s=90, rate_limit="100000/minute")
    app = create_app(settings)
    app.config["TESTING"] = True
    state = app.extensions[EXTENSION]
    warmer = state.holder.get(timeout=120).warmer
    # Warm before any test runs: another engine built in this process must not load a model while
    # this one's warm-up does (accelerate's empty-weights init patches torch for every thread).
    assert warmer is None or warmer.wait(120), "the app's warm-up did not finish in 120 s"
    yield app
    state.holder.close()


@pytest.fixture
def client(app):
    """A test client with no credentials (each test sends what a caller would)."""
    return app.test_client()


@pytest.fixture
def api(app):
    """A test client that sends the API key, like a native API caller."""
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = KEY_HEADERS["Authorization"]
    return client


def pytest_collection_modifyitems(config, items):
    _give_each_item_its_own_id(items)
    if hasattr(config, "workerinput"):  # a pytest-xdist worker (``make test``)
        _files_with_real_processes_first(items)


def _files_with_real_processes_first(items):
    """Order the files so that those with ``slow`` tests (real processes, a minute or more each
    for the heaviest) come first: pytest-xdist hands out whole files in this order
    (``--dist loadfile --no-loadscope-reorder``), and the many quick files then fill in
    around them instead of one heavy file running alone at the end."""
    heavy = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in heavy)  # stable: each file's own order is kept


def _give_each_item_its_own_id(items):
    """Give every item its own node id.

    schemathesis 4.32 under pytest 9.2 names all of ``test_openapi_conformance``'s operations
    ``test_fuzz.py::test_openapi_conformance``: pytest builds the id from ``originalname``. With
    one id for 34 items, ``--lf`` and pytest-xdist (which runs each id once) cannot tell them apart.
    """
    for item in items:
        head, _, last = item.nodeid.rpartition("::")
        if head and last != item.name:
            unique = f"{head}::{item.name}"
            if hasattr(item, "_id"):  # pytest >= 9.2 keeps the id as a NodeId
                from _pytest.nodeid import coerce_node_id

                item._id = coerce_node_id(unique)
            else:
                item._nodeid = unique
