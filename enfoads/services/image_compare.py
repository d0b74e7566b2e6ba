"""``image.compare``: one prompt and seed rendered two ways and put side by side (``ImageComparisons``).

``ImageComparisons`` is a base class of ``enfoads.services.images.ImageService``:
``validate_compare`` parses the two sides (with the service's ``validate``
and ``check_model``), ``compare`` renders both through the service's
``_generate``, then composes the side-by-side picture (``side_by_side``) and
an animation of both runs' preview frames.
"""
from __future__ import annotations

import io

from enfoads.errors import InvalidInput
from enfoads.services.image_options import SideOptions
from enfoads.services.image_render import Progress, _Saver, encode_image
from enfoads.services.options import raise_fields

__all__ = ["ImageComparisons", "side_by_side"]


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def side_by_side(left, right, labels: tuple[str, str] = ("", ""), *, gap: int = 16, max_height: int = 1024):
    """Two images next to each other at one height, each captioned underneath."""
    from PIL import Image, ImageDraw

    height = min(max(left.height, right.height), max_height)

    def fit(im):
        if im.height == height:
            return im.convert("RGB")
        return im.convert("RGB").resize((max(1, round(im.width * height / im.height)), height), Image.LANCZOS)

    a, b = fit(left), fit(right)
    font_px = max(12, min(28, height // 24))
    band = font_px * 2 if any(labels) else 0
    canvas = Image.new("RGB", (a.width + gap + b.width, height + band), (255, 255, 255))
    canvas.paste(a, (0, 0))
    canvas.paste(b, (a.width + gap, 0))
    if band:
        draw, font = ImageDraw.Draw(canvas), _font(font_px)
        for x0, w, text in ((0, a.width, labels[0]), (a.width + gap, b.width, labels[1])):
            draw.text((x0 + w // 2, height + band // 2), text, fill=(20, 20, 20), font=font, anchor="mm")
    return canvas


def _animation(frames_a: list[bytes], frames_b: list[bytes], *, height: int = 128, ms: int = 350) -> bytes | None:
    """An animated GIF of both runs' denoising frames side by side (same relative progress per frame)."""
    if not frames_a or not frames_b:
        return None
    from PIL import Image

    def load(data):
        im = Image.open(io.BytesIO(data)).convert("RGB")
        return im.resize((max(1, round(im.width * height / im.height)), height), Image.NEAREST)

    a, b = [load(f) for f in frames_a], [load(f) for f in frames_b]
    count = max(len(a), len(b))
    frames = []
    for i in range(count):
        fa = a[min(len(a) - 1, (i * len(a)) // count)]
        fb = b[min(len(b) - 1, (i * len(b)) // count)]
        frames.append(side_by_side(fa, fb, gap=4, max_height=height))
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=ms, loop=0)
    return buf.getvalue()


class ImageComparisons:
    """Comparisons for ``ImageService`` (a base class, no state of its own)."""

    def validate_compare(self, params: dict) -> dict:
        """Options for ``image.compare``: the shared ones plus two sides ``a`` and ``b``.

        Sides come as ``a``/``b`` objects (``model``, ``steps``, ``guidance``), or as
        ``models: [x, y]``, or ``steps: [x, y]``. One image per side, same prompt and seed.
        """
        if not isinstance(params, dict):
            raise InvalidInput("the request body must be a JSON object")
        params = dict(params)
        errors: dict[str, str] = {}
        sides: dict[str, dict] = {}
        if "models" in params:
            models = params.pop("models")
            if not isinstance(models, list) or len(models) != 2:
                errors["models"] = "must be a list of two model ids"
            else:
                sides = {"a": {"model": models[0]}, "b": {"model": models[1]}}
        if isinstance(params.get("steps"), list):
            pair = params.pop("steps")
            if len(pair) != 2:
                errors["steps"] = "must be one number, or a list of two to compare"
            else:
                sides = {k: {**sides.get(k, {}), "steps": v} for k, v in zip("ab", pair)}
        for name in ("a", "b"):
            if name in params:
                side = params.pop(name)
                if not isinstance(side, dict):
                    errors[name] = "must be an object with model, steps and/or guidance"
                    continue
                unknown = sorted(set(side) - set(SideOptions.model_fields))
                if unknown:
                    errors[name] = f"unknown keys {unknown}; a side may set model, steps, guidance"
                    continue
                sides[name] = {**sides.get(name, {}), **side}
        if params.get("n") not in (None, 1):
            errors["n"] = "a comparison renders one image per side"
        try:
            base = self.validate(params)
        except InvalidInput as exc:
            errors.update(exc.fields or {"options": exc.message})
            base = {}
        parsed = {}
        for name in ("a", "b"):
            given = sides.get(name, {})
            try:
                side = SideOptions.parse(given).to_params()
            except InvalidInput as exc:
                errors.update({f"{name}.{field}": message for field, message in exc.fields.items()})
                continue
            parsed[name] = {k: v for k, v in side.items() if k in given or (k == "guidance" and "guidance_scale" in given)}
            if "model" in parsed[name]:
                try:
                    self.check_model(parsed[name]["model"])
                except InvalidInput as exc:
                    errors[f"{name}.model"] = next(iter(exc.fields.values()), exc.message)
        if not errors:
            resolved = [{**{k: base.get(k) for k in ("model", "steps", "guidance")}, **parsed[s]} for s in "ab"]
            if resolved[0] == resolved[1]:
                errors["b"] = "must differ from a (another model, step count or guidance)"
        raise_fields(errors, "image options")
        return {**base, "n": 1, "a": parsed["a"], "b": parsed["b"]}

    def compare(self, options: dict, *, progress: Progress | None = None, save=None, assets=None) -> dict:
        """Render the same prompt and seed two ways (``validate_compare``) and put them side by side."""
        saver = save if save is not None else _Saver(assets=assets)
        results, frames = {}, {}
        for name, span in (("a", (0, 45)), ("b", (45, 90))):
            side = {k: v for k, v in options.items() if k not in ("a", "b")}
            side.update(options[name])
            results[name], frames[name] = self._generate(side, progress=progress, save=saver, assets=assets,
                                                         span=span, label=name.upper())
        for name in ("a", "b"):
            if frames[name] is None and assets is not None:
                frames[name] = [assets.read_bytes(p["asset_id"]) for p in results[name]["previews"]]
        if progress is not None:
            progress(92, "side by side")
        from PIL import Image

        pics = [self._image_of(results[n], assets) for n in ("a", "b")]
        labels = tuple(self._label(results[n]) for n in ("a", "b"))
        combo = side_by_side(pics[0], pics[1], labels)
        data = encode_image(combo, "png", text={"parameters": f"{labels[0]}  vs  {labels[1]}"})
        asset = saver(data, "image/png", kind="image", width=combo.width, height=combo.height,
                      params={"compare": [results["a"]["cache_key"], results["b"]["cache_key"]], "labels": list(labels)})
        out = {
            "a": results["a"],
            "b": results["b"],
            "labels": list(labels),
            "seed": results["a"]["seed"],
            "prompt": results["a"]["prompt"],
            "side_by_side": {"asset_id": asset.id if asset else None, "mime": "image/png", "width": combo.width,
                             "height": combo.height, "bytes": len(data)},
            "animation": None,
        }
        if asset is None:
            out["side_by_side"]["data"] = data
        gif = _animation(frames["a"] or [], frames["b"] or [])
        if gif is not None:
            g = saver(gif, "image/gif", kind="animation", params={"compare": out["labels"]})
            with Image.open(io.BytesIO(gif)) as im:
                size = im.size
            out["animation"] = {"asset_id": g.id if g else None, "mime": "image/gif", "width": size[0],
                                "height": size[1], "bytes": len(gif)}
        if asset is not None:
            side_ids = results["a"]["image_asset_ids"] + results["b"]["image_asset_ids"]
            out["image_asset_ids"] = [asset.id] + side_ids
            extra = [p["asset_id"] for n in ("a", "b") for p in results[n]["previews"]]
            if out["animation"] and out["animation"]["asset_id"]:
                extra.append(out["animation"]["asset_id"])
            out["asset_ids"] = out["image_asset_ids"] + extra
        return out

    @staticmethod
    def _image_of(result: dict, assets):
        from PIL import Image

        first = result["images"][0]
        data = first.get("data") if first.get("asset_id") is None else assets.read_bytes(first["asset_id"])
        return Image.open(io.BytesIO(data))

    @staticmethod
    def _label(result: dict) -> str:
        return f"{result['model']}, {result['steps']} steps, guidance {result['guidance_used']:g}"
