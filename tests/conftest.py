"""Shared fixtures. No test ever reaches a model hub."""
import os

# Set before any Hugging Face library is imported by a test module.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    """One models dir for the whole session; tiny models are built into it once."""
    return tmp_path_factory.mktemp("models")
