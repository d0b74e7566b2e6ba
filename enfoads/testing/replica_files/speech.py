"""The real file lists of the speech repositories: the two faster-whisper conversions and rhasspy/piper-voices.

Piper is listed per catalogued voice (:data:`PIPER_VOICE_FILES`) and combined
per revision by :func:`piper_listing`; what is known of its commits is here too.
"""
from __future__ import annotations

from enfoads.testing.replica_files.base import HF, F, RealFile, RepoListing


# ---------------------------------------------------------------------------
# mobiuslabsgmbh/faster-whisper-large-v3-turbo @ 0a363e9161cbc7ed1431c9597a8ceaf0c4f78fcf
# ---------------------------------------------------------------------------
def _whisper_turbo() -> RepoListing:
    repo = "mobiuslabsgmbh/faster-whisper-large-v3-turbo"
    rev = "0a363e9161cbc7ed1431c9597a8ceaf0c4f78fcf"
    files = (
        F(".gitattributes", "1.52 kB"),
        F("README.md", "1.43 kB"),
        F("config.json", 2263),
        F("model.bin", 1617884929, lfs=True),
        F("preprocessor_config.json", 340),
        F("tokenizer.json", 2710337),
        F("vocabulary.json", 1068114),
    )
    return RepoListing(
        repo,
        rev,
        files,
        verified=True,
        sources=(
            f"{HF}/{repo}/tree/main",
            "github code search: pinned download lists for resolve/" + rev + "/{config.json,"
            " preprocessor_config.json, tokenizer.json, vocabulary.json, model.bin} with exact sizes and the"
            " sha256 digests the catalogue publishes (also under the repository's later name dropbox-dash/...)",
        ),
        unverified_paths=(".gitattributes", "README.md"),
        note=(
            "The stored tree page shows main at 0c94664 (\"Model files\", 3 commits); the pin 0a363e9 is a later"
            " commit. The five model files are confirmed at the pin by third-party download lists (exact sizes,"
            " sha256 equal to the catalogue's); .gitattributes and README.md are from the earlier tree (a later"
            " commit may have changed README.md's size or added files not listed here). The repository now also"
            " answers as dropbox-dash/faster-whisper-large-v3-turbo."
        ),
    )


# ---------------------------------------------------------------------------
# Systran/faster-whisper-small @ 536b0662742c02347bc0e980a01041f333bce120 (main's head, 5 commits)
# ---------------------------------------------------------------------------
def _whisper_small() -> RepoListing:
    repo = "Systran/faster-whisper-small"
    rev = "536b0662742c02347bc0e980a01041f333bce120"
    files = (
        F(".gitattributes", "1.48 kB"),
        F("README.md", "2 kB"),
        F("config.json", "2.37 kB"),
        F("model.bin", 483546902, lfs=True),
        F("tokenizer.json", "2.2 MB"),
        F("vocabulary.txt", "460 kB"),
    )
    return RepoListing(
        repo,
        rev,
        files,
        verified=True,
        sources=(
            f"{HF}/{repo}/tree/{rev}",
            f"{HF}/{repo}/tree/main",
            "github code search: model.bin at " + rev + " is 483,546,902 bytes, sha256 3e305921... (the catalogue's)",
        ),
        note="No preprocessor_config.json: 80 mel bins, faster-whisper's default feature extractor.",
    )


# ---------------------------------------------------------------------------
# rhasspy/piper-voices: the top-level files and the catalogued voices' folders
# ---------------------------------------------------------------------------
PIPER_REPO = "rhasspy/piper-voices"

PIPER_TOP_LEVEL: tuple[RealFile, ...] = (
    F(".gitattributes", "1.56 kB"),
    F("README.md", "311 Bytes"),
    F("_script/voice_names.sh", "213 Bytes"),
    F("_script/voicefest.py", "12.2 kB"),
    F("voices.json", None),
)


def _voice(stem: str, onnx_size: int | str, *, speakers: int = 1, card: int | str | None = None,
           config: int | str | None = None) -> tuple[RealFile, ...]:
    folder = stem.rsplit("/", 1)[0]
    name = stem.rsplit("/", 1)[1]
    return (
        F(f"{folder}/MODEL_CARD", card),
        F(f"{folder}/{name}.onnx", onnx_size, lfs=True),
        F(f"{folder}/{name}.onnx.json", config),
        *(F(f"{folder}/samples/speaker_{i}.mp3", None) for i in range(speakers)),
    )


#: Per catalogued voice (``enfoads.models.voices``), its folder's files. Only es_MX-claude-high's folder was
#: read on a tree page; the others follow the layout every voice folder has (MODEL_CARD, the .onnx,
#: its .onnx.json, samples/speaker_<n>.mp3 per speaker), with the .onnx sizes the voice catalogue
#: gives (approximate) except where an exact one was found.
PIPER_VOICE_FILES: dict[str, tuple[RealFile, ...]] = {
    "es_MX-claude-high": _voice("es/es_MX/claude/high/es_MX-claude-high", "63.1 MB", card="247 Bytes",
                                config="4.96 kB"),
    "es_MX-ald-medium": _voice("es/es_MX/ald/medium/es_MX-ald-medium", "63 MB"),
    "es_AR-daniela-high": _voice("es/es_AR/daniela/high/es_AR-daniela-high", "114 MB"),
    "es_ES-davefx-medium": _voice("es/es_ES/davefx/medium/es_ES-davefx-medium", "63 MB"),
    "es_ES-sharvard-medium": _voice("es/es_ES/sharvard/medium/es_ES-sharvard-medium", "77 MB", speakers=2),
    "es_ES-carlfm-x_low": _voice("es/es_ES/carlfm/x_low/es_ES-carlfm-x_low", "28 MB"),
    "en_US-lessac-medium": _voice("en/en_US/lessac/medium/en_US-lessac-medium", "63 MB"),
    "en_US-amy-medium": _voice("en/en_US/amy/medium/en_US-amy-medium", 63201294),
    "en_US-ryan-medium": _voice("en/en_US/ryan/medium/en_US-ryan-medium", "63 MB"),
    "en_GB-alan-medium": _voice("en/en_GB/alan/medium/en_GB-alan-medium", "63 MB"),
}

#: Voices added to the repository after the ``v1.0.0`` tag (``enfoads.models.voices`` pins them to ``main``).
PIPER_VOICES_AFTER_V1: tuple[str, ...] = ("es_AR-daniela-high",)

PIPER_SOURCES = (
    f"{HF}/{PIPER_REPO}/tree/5e74c24a88ed7d31e308633fa1542433ce2b28d4",
    f"{HF}/{PIPER_REPO}/tree/0c9c5d340496a47205a799eb046aab69334a88e9/_script",
    f"{HF}/{PIPER_REPO}/tree/3d796cc2f2c884b3517c527507e084f7bb245aea/es/es_MX/claude/high",
    f"{HF}/{PIPER_REPO}/tree/refs%2Fpr%2F6/es/es_ES/sharvard/medium/samples",
    f"{HF}/{PIPER_REPO}/tree/main/en/en_US/ryan/high/samples",
    "github code search: en_US-amy-medium.onnx at v1.0.0 is 63,201,294 bytes",
)

#: Commit ids behind the Piper revisions the voice catalogue uses, where found (ref -> 40-hex commit).
#: Empty: neither the commit ``v1.0.0`` points to nor the ``main`` commit that holds es_AR-daniela-high
#: could be read from a source; see PIPER_COMMIT_FINDINGS. Filled in, the replicas publish these ids.
PIPER_COMMITS: dict[str, str] = {}

PIPER_COMMIT_FINDINGS = """\
Not found: no stored page or file shows which commit the v1.0.0 tag of rhasspy/piper-voices points to, nor
the commit of main used for es_AR-daniela-high (searched: tree/commits pages of the tag, resolve/v1.0.0
download lists, HF cache snapshot paths in public code, issue threads).
What was seen (main's history, oldest first, short ids from commit-history pages): 449c115 "initial commit"
(2023-06-22), 5227e41 "Add v1.0 and v0.2 voices" (2023-06-26), 4c86fd0 "Include speaker info in voices.json",
d910c81 "Fix x-low on carlfm", 3740805 "Fix piper_version", c8a0bb3 "voicefest" (2023-06-27), 2525f22
"Add aliases" (2023-07-13), 215cce7 "Update configs and add samples", 0c9c5d3 "Add cori, kristin, ljspeech,
claude" (2024-03-12: es_MX-claude-high, so v1.0.0 cannot be older than this if it holds that voice, as the
voice catalogue assumes). Full ids of later snapshots that public code loads voices from (the ref they came
from is not shown): 3d796cc2f2c884b3517c527507e084f7bb245aea, 7a6c333ec560f0e688371adc2fbb7bbe105028c6,
0d907f158acc877ddeebcbf827659ee13bea8bcd, b710b0ba0740da88dc36e1ab8fa6b310d43a3a48.
To pin by commit, read them from the hub: HfApi().list_repo_refs("rhasspy/piper-voices").tags.
"""


def piper_listing(revision: str, voices: tuple[str, ...] | None = None) -> RepoListing:
    """The replicated part of rhasspy/piper-voices at ``revision`` (``v1.0.0`` or ``main``).

    ``v1.0.0`` holds every catalogued voice but those added after it; ``main`` holds them all.
    """
    names = tuple(voices if voices is not None else PIPER_VOICE_FILES)
    if revision != "main":
        names = tuple(n for n in names if n not in PIPER_VOICES_AFTER_V1)
    files = PIPER_TOP_LEVEL + tuple(f for n in names for f in PIPER_VOICE_FILES[n])
    claude = PIPER_VOICE_FILES["es_MX-claude-high"]
    return RepoListing(
        PIPER_REPO,
        revision,
        tuple(sorted(files, key=lambda f: f.path)),
        verified=False,
        sources=PIPER_SOURCES,
        unverified_paths=tuple(sorted(f.path for f in files if f not in PIPER_TOP_LEVEL and f not in claude)),
        note=(
            "Only the catalogued voices' folders and the top-level files are listed (the repository holds many"
            " more languages). Top level (.gitattributes, README.md, voices.json, _script/voice_names.sh,"
            " _script/voicefest.py) read on tree pages of main's history; the tag's own tree was not found."
            " es_MX-claude-high's folder was read on a tree page (MODEL_CARD, .onnx, .onnx.json, samples/);"
            " the other folders are reconstructed on that layout (es_ES-sharvard-medium has two speakers,"
            " speaker_0/1.mp3, seen on its samples page)."
        ),
    )
