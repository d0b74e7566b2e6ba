"""The error for a real model whose files are not in the models dir (HTTP 503, with the command that installs it)."""
from __future__ import annotations

from enfoads.errors import ModelNotInstalled
from enfoads.models.catalog import ModelEntry


class ModelNotInstalledError(ModelNotInstalled, FileNotFoundError):
    """A real model's files are not in the local cache (HTTP 503 ``model_not_installed``)."""

    def __init__(self, entry: ModelEntry, detail: str, *, command: str | None = None):
        self.command = command or f"enfoads preload --only {entry.role}"
        super().__init__(f"model {entry.id!r} is not installed ({detail}); run `{self.command}`")
        self.model_id = entry.id
