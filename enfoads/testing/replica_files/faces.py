"""The real file lists of the face-swap sources: ezioruan/inswapper_128.onnx and insightface's buffalo_l.zip."""
from __future__ import annotations

from enfoads.testing.replica_files.base import HF, ArchiveListing, F, RepoListing


# ---------------------------------------------------------------------------
# ezioruan/inswapper_128.onnx @ 6ffdf0e83c5996cc425e77b59913fc48d79441be (main's head, 2 commits)
# ---------------------------------------------------------------------------
def _inswapper() -> RepoListing:
    repo = "ezioruan/inswapper_128.onnx"
    rev = "6ffdf0e83c5996cc425e77b59913fc48d79441be"
    return RepoListing(
        repo,
        rev,
        (F(".gitattributes", "1.52 kB"), F("inswapper_128.onnx", 554253681, lfs=True)),
        verified=True,
        sources=(
            f"{HF}/{repo}/tree/{rev}",
            f"{HF}/{repo}/tree/main",
            f"{HF}/Chakriya/roop/commit/04c715913e098c7852cc6935e3af8bf984723434",
        ),
        note="The exact size is from an LFS pointer of the same content (sha256 e4a3f08c..., the catalogue's).",
    )


# ---------------------------------------------------------------------------
# insightface buffalo_l.zip (GitHub release asset v0.7)
# ---------------------------------------------------------------------------
BUFFALO_L_ZIP = ArchiveListing(
    name="buffalo_l.zip",
    url="https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip",
    members=(
        F("1k3d68.onnx", 143607619),
        F("2d106det.onnx", 5030888),
        F("det_10g.onnx", 16923827),
        F("genderage.onnx", 1322532),
        F("w600k_r50.onnx", 174383860),
    ),
    sha256="80ffe37d8a5940d59a7384c201a2a38d4741f2f3c51eef46ebb28218a7b0ca2f",
    bytes=288_621_354,
    verified=False,
    sources=(
        "github code search: inventories of unpacked packs, e.g. insightface/models/buffalo_l/{det_10g,genderage,"
        "w600k_r50}.onnx and INSIGHTFACE_BUFFALO_FILES = {genderage 1322532, 2d106det 5030888, det_10g 16923827,"
        " 1k3d68 143607619, w600k_r50 174383860}",
        "insightface.utils.storage.download (the installed package): extracts <name>.zip into models/<name>/,"
        " and FaceAnalysis globs models/<name>/*.onnx",
    ),
    note=(
        "Member names and sizes are verified (several independent inventories of the unpacked pack agree);"
        " the layout (members at the zip's root, no folder) is inferred from insightface's own loader, which"
        " extracts the zip into models/buffalo_l/ and only globs *.onnx there. The zip itself was not listed:"
        " member order and timestamps are unknown (the replica uses sorted names and a fixed timestamp)."
    ),
)

ARCHIVES: dict[str, ArchiveListing] = {BUFFALO_L_ZIP.name: BUFFALO_L_ZIP}
