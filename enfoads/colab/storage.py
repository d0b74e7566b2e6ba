"""Where the notebook keeps its data and models: this runtime's disk, or Google Drive when asked."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from enfoads.user_secrets import in_colab

DRIVE_MOUNT = Path("/content/drive")
DRIVE_FOLDER = "enfoads"
COLAB_CONTENT = Path("/content")


@dataclass(frozen=True)
class Storage:
    data_dir: Path
    models_dir: Path | None  # None: the default (the Hugging Face cache)
    on_drive: bool


def mount_drive(mount_point: Path = DRIVE_MOUNT) -> Path | None:
    """Mount Google Drive (asks for consent in the browser); None outside Colab."""
    if not in_colab():
        print("Google Drive: not in Colab, skipped")
        return None
    from google.colab import drive  # type: ignore[import-not-found]

    drive.mount(str(mount_point))
    return Path(mount_point) / "MyDrive"


def setup_storage(use_drive: bool, data_dir: str = "", models_dir: str = "") -> Storage:
    """Choose the data and models dirs, put them on Drive when asked, export them as ENFOADS_* variables."""
    root = None
    if use_drive:
        my_drive = mount_drive()
        if my_drive is not None:
            root = my_drive / DRIVE_FOLDER
    if data_dir:
        data = Path(data_dir).expanduser()
    elif root is not None:
        data = root / "data"
    elif COLAB_CONTENT.is_dir() and in_colab():
        data = COLAB_CONTENT / "enfoads-data"
    else:
        data = Path("enfoads-data").resolve()
    models = Path(models_dir).expanduser() if models_dir else (root / "models" if root is not None else None)
    data.mkdir(parents=True, exist_ok=True)
    os.environ["ENFOADS_DATA_DIR"] = str(data)
    if models is not None:
        models.mkdir(parents=True, exist_ok=True)
        os.environ["ENFOADS_MODELS_DIR"] = str(models)
    storage = Storage(data, models, root is not None)
    where = "Google Drive" if storage.on_drive else "this runtime's disk (lost when it stops)"
    print(f"data dir    {data}  [{where}]")
    print(f"models dir  {models or os.environ.get('ENFOADS_MODELS_DIR') or 'the Hugging Face cache'}")
    return storage
