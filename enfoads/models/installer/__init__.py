"""A first start that serves: the server downloads its profile's missing models by itself.

``enfoads serve`` on a machine that has not run ``enfoads preload`` finds
which of its profile's models the loaders would not find (``registry.presence``,
files only) and downloads them in the background, one after the other in the
profile's order (image first), through ``enfoads.models.preload.preload``: the same
pinned revisions, resumable partial files, size and sha256 checks and
manifest as ``enfoads preload --profile P``. Each model is used as soon as it
is installed; nothing waits for the others.

While that happens:

- ``status()`` (``/gpu-status`` ``downloads``) gives, per model, its ``state``
  (``queued``, ``downloading``, ``installed``, ``failed``; ``offline`` or
  ``off`` where nothing is downloaded), ``bytes_done``, ``bytes_total`` and
  ``percent``. Progress is read from the disk (the partial files preload
  writes and resumes), so a resumed download starts where it stopped.
- the event bus carries ``ModelDownload`` events (``model.download``) on each
  change of state and while bytes arrive (about once a second);
- the log says what is missing, the progress every few seconds, and each
  model installed or failed;
- a job that needs a model still downloading fails with
  ``ModelDownloadingError`` (HTTP 503, ``model_downloading``), its progress in
  the message, instead of ``model_not_installed``.

Nothing is downloaded with ``HF_HUB_OFFLINE=1`` or ``ENFOADS_AUTO_DOWNLOAD=off``:
the log and every 503 for a missing model then name the command to run,
``enfoads preload --profile P``. The tiny profile has nothing to download (its
kit is built on first use, as always).

``ENFOADS_CATALOG_OVERRIDES`` (a test switch) names a JSON file that replaces,
for the download only, the fields of catalogue sources a replica hub cannot
match: a release archive's ``url``, ``sha256`` and ``bytes``, and the published
``sha256`` digests of hub files (``enfoads.testing.replicas``). Repositories,
revisions and file patterns cannot be overridden, so what is installed is
found by the same registry code as in production. ``catalog_overrides(a, b)``
writes that file's content for two catalogues.

The package's parts: ``background`` (the ``Installer`` thread and
``ModelDownloadingError``), ``progress`` (states and progress read from the
disk) and ``overrides`` (``ENFOADS_CATALOG_OVERRIDES``). The public names are
re-exported here; code inside the package imports from the part that defines
a name, never from this file.
"""
from enfoads.models.installer.background import Installer, ModelDownloadingError
from enfoads.models.installer.overrides import apply_catalog_overrides, catalog_overrides, load_catalog_overrides

__all__ = [
    "Installer",
    "ModelDownloadingError",
    "apply_catalog_overrides",
    "catalog_overrides",
    "load_catalog_overrides",
]
