"""The catalogue is data: pinned, checksummed where published, consistent with the profiles."""
import fnmatch
import re

import pytest

from enfoads.models.catalog import CATALOG, HubFiles, UrlArchive, UrlFile, get_entry
from enfoads.models.preload import PreloadError, select_models
from enfoads.models.profiles import PROFILES, ROLES

COMMIT = re.compile(r"^[0-9a-f]{40}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


def hub_sources():
    return [(e, n, s) for e in CATALOG.values() for n, s in e.sources.items() if isinstance(s, HubFiles)]


def test_every_hub_source_is_pinned_to_a_commit():
    assert hub_sources()
    for entry, name, src in hub_sources():
        assert COMMIT.match(src.revision), f"{entry.id}.{name}: {src.revision!r} is not a full commit hash"


def test_one_repository_has_one_pin():
    pins = {}
    for _entry, _name, src in hub_sources():
        assert pins.setdefault(src.repo_id, src.revision) == src.revision, f"{src.repo_id} pinned twice"


def test_published_checksums_are_sha256_of_downloaded_files():
    for entry, _name, src in hub_sources():
        patterns = src.allow_patterns or ("*",)
        for path, digest in src.sha256:
            assert SHA256.match(digest), f"{entry.id}: {path}"
            assert any(fnmatch.fnmatch(path, p) for p in patterns), f"{entry.id}: {path} is never downloaded"
            assert src.expected_sha256(path) == digest
        assert src.expected_sha256("not-a-file") is None


def test_archives_carry_their_published_digest_and_size():
    archives = [(e, s) for e in CATALOG.values() for s in e.sources.values() if isinstance(s, UrlArchive)]
    assert archives
    for entry, src in archives:
        assert src.url.startswith("https://")
        assert SHA256.match(src.sha256 or ""), entry.id
        assert src.bytes and src.bytes <= entry.download_bytes * 1.2
        # Packs where insightface looks; single release files in a folder per model, never the drop-in upscale/.
        assert src.unpack_to.startswith("enhance/" if isinstance(src, UrlFile) else "insightface/models/")


def test_big_repositories_are_filtered_and_whisper_gets_what_faster_whisper_loads():
    for entry, name, src in hub_sources():
        assert src.allow_patterns, f"{entry.id}.{name} would download the whole repository"
    for model_id in ("faster-whisper-large-v3-turbo", "faster-whisper-small"):
        patterns = get_entry(model_id).sources["model"].allow_patterns
        for needed in ("config.json", "model.bin", "tokenizer.json", "vocabulary.json", "vocabulary.txt"):
            assert any(fnmatch.fnmatch(needed, p) for p in patterns), (model_id, needed)


def test_downloadable_entries_have_licence_size_and_footprint():
    for entry in CATALOG.values():
        assert entry.licence and entry.description
        if entry.sources:
            assert entry.download_bytes > 0
            # Files-only entries (weights another model loads) hold no memory of their own.
            assert entry.vram_bytes > 0 or entry.runtime == "files"
        if entry.tiny:
            assert entry.download_bytes == 0 and not entry.sources


def test_profiles_name_catalogue_models_for_every_role():
    for profile in PROFILES.values():
        assert set(profile.roles) == set(ROLES)
        for choice in profile.roles.values():
            assert choice.model_id in CATALOG


def test_select_models_by_profile_role_and_id():
    assert [e.id for e in select_models("t4")][:8] == [
        "sdxl-lightning-4step", "buffalo_l", "inswapper_128", "faster-whisper-large-v3-turbo", "espeak-ng",
        "realesrgan-x4plus", "gfpgan-v1.4", "musetalk-1.5",
    ]
    # Then the default Piper voices (tts), each two files of rhasspy/piper-voices.
    for entry in select_models("t4")[8:]:
        assert entry.id.startswith("piper:") and entry.role == "tts"
        assert [p.rsplit(".", 1)[-1] for p in entry.sources["voice"].allow_patterns] == ["onnx", "json"]
    assert [e.id for e in select_models("cpu", ["image", "speech"])] == ["sd-turbo", "faster-whisper-small"]
    assert [e.id for e in select_models("cpu", ["piper:en_US-amy-medium"])] == ["piper:en_US-amy-medium"]
    # A model id outside the profile works too (an alternative Lightning step count).
    assert [e.id for e in select_models("t4", ["faces", "sdxl-lightning-8step"])] == ["buffalo_l", "sdxl-lightning-8step"]
    assert all(e.tiny or not e.sources for e in select_models("tiny"))
    with pytest.raises(PreloadError, match="not a role"):
        select_models("t4", ["images"])
