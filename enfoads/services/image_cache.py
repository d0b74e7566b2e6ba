"""The image request cache: what a key covers (``cache_key``) and where hits are kept (``ImageCache``).

Caching: a request identical in every parameter (seed, style, size, model
and the revision of its files included) returns the stored assets with
``cached: true``. Without a seed a random one is drawn, so only requests that
repeat a seed can hit the cache. Keys live in an ``image_cache`` table of the
shared SQLite file; a hit whose assets were cleaned up is a miss.
"""
from __future__ import annotations

import hashlib
import json
import time

from enfoads.services.image_plan import Plan

__all__ = ["SERVICE_VERSION", "ImageCache", "cache_key"]

SERVICE_VERSION = 1  # part of every cache key: bump when outputs change for the same request


def cache_key(options: dict, plan: Plan) -> str:
    """A hash of every parameter that shapes the output: request, resolved plan, model revision."""
    request = {k: options.get(k) for k in sorted(options) if k not in ("cache", "a", "b")}
    material = {
        "v": SERVICE_VERSION,
        "request": request,
        "model": plan.model, "key": plan.key, "revision": plan.revision, "mode": plan.mode,
        "unet": plan.unet, "unet_mode": plan.unet_mode,
        "prompt": plan.prompt, "negative_prompt": plan.negative_prompt, "style": plan.style,
        "width": plan.width, "height": plan.height, "steps": plan.steps, "guidance": plan.guidance,
        "seeds": plan.seeds, "n": plan.n, "format": plan.format, "preview_every": plan.preview_every,
        "device": plan.expected_device.split(":")[0], "dtype": plan.expected_dtype,
    }
    blob = json.dumps(material, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class ImageCache:
    """Request key -> stored result, in an ``image_cache`` table of the asset store's SQLite file."""

    def __init__(self, assets):
        self.assets = assets
        self._db = assets.db  # the asset store's file; its schema has the table (enfoads.work.schema)

    def get(self, key: str) -> dict | None:
        from enfoads.work.assets import AssetNotFound

        with self._db.read() as conn:
            row = conn.execute("SELECT result, asset_ids FROM image_cache WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            for asset_id in json.loads(row["asset_ids"]):
                self.assets.get(asset_id)
        except AssetNotFound:
            self.forget(key)  # cleaned up by the quota: render again
            return None
        with self._db.write() as conn:
            conn.execute("UPDATE image_cache SET hits = hits + 1 WHERE key = ?", (key,))
        return json.loads(row["result"])

    def put(self, key: str, result: dict, asset_ids: list[str]) -> None:
        with self._db.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO image_cache(key, result, asset_ids, created) VALUES (?, ?, ?, ?)",
                (key, json.dumps(result, separators=(",", ":")), json.dumps(asset_ids), time.time()),
            )

    def forget(self, key: str) -> None:
        with self._db.write() as conn:
            conn.execute("DELETE FROM image_cache WHERE key = ?", (key,))
