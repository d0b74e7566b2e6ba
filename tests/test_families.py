"""Model families: every catalogue entry has one, and registry and adapters ask it instead of branching on names."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from enfoads.models.catalog import CATALOG, ModelEntry
from enfoads.models.families import FAMILIES, Family, family_for
from enfoads.models.registry import local_paths, loadable_problems
from enfoads.models.tiny import build_tiny_kit

PACKAGE = Path(__file__).resolve().parents[1] / "enfoads"
# A file each family's loader cannot do without.
NEEDED = {"sdxl_lightning": "model_index.json", "diffusers_folder": "model_index.json", "face_analysis": "det_",
          "swapper": "inswapper_128.onnx", "whisper": "model.bin", "spandrel": "", "musetalk": "unet.pth"}


def test_every_catalogue_entry_has_a_family_and_every_family_is_used():
    from enfoads.models.preload import piper_entries

    entries = [*CATALOG.values(), *piper_entries()]
    used = {family_for(entry).loader for entry in entries}
    # User checkpoints have no catalogue entry: theirs are made when a file is found (test_image_models).
    assert used | {"user_single_file", "user_diffusers_folder"} == set(FAMILIES)
    for entry in entries:
        family = family_for(entry)
        assert isinstance(family, Family) and family.loader == entry.loader
        assert family.runtime in (entry.runtime, "process", "files")


def test_an_unknown_family_is_a_clear_error():
    entry = ModelEntry(id="x", role="image", runtime="torch", loader="gguf", description="", licence="",
                       download_bytes=0, vram_bytes=0, ram_bytes=0)
    with pytest.raises(ValueError, match="no model family 'gguf'"):
        family_for(entry)


@pytest.mark.parametrize("model_id", sorted(i for i, e in CATALOG.items() if e.tiny))
def test_each_tiny_model_is_where_its_family_says_and_loadable(models_dir, model_id):
    build_tiny_kit(models_dir)
    entry = CATALOG[model_id]
    paths = local_paths(entry, models_dir)
    assert paths and all(Path(p).exists() for p in paths.values())
    assert loadable_problems(entry, paths) == []


@pytest.mark.parametrize("model_id", sorted(i for i, e in CATALOG.items() if e.tiny))
def test_a_missing_file_is_named_by_the_family(models_dir, tmp_path, model_id):
    """A copy of the tiny model with a file its loader needs gone: the family names what is missing."""
    import shutil

    build_tiny_kit(models_dir)
    entry = CATALOG[model_id]
    paths = local_paths(entry, models_dir)
    copies = {}
    for name, path in paths.items():
        path = Path(path)
        copies[name] = tmp_path / name / path.name
        copies[name].parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if path.is_dir() else shutil.copy2)(path, copies[name])
    files = [f for p in copies.values() for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file()]
    needed = next(f for f in sorted(files) if f.name.startswith(NEEDED[entry.loader]))
    needed.unlink()
    problems = family_for(entry).problems(entry, copies)
    assert problems, f"{model_id}: removing {needed.name} went unnoticed"


@pytest.mark.parametrize("module", ["models/registry.py", "models/adapters.py"])
def test_registry_and_adapters_do_not_branch_on_family_names(module):
    tree = ast.parse((PACKAGE / module).read_text())
    compared = [node for node in ast.walk(tree) if isinstance(node, ast.Compare)
                and any(isinstance(part, ast.Attribute) and part.attr == "loader"
                        for part in [node.left, *node.comparators])]
    assert compared == []
