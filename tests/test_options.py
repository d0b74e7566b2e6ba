"""Request options: one rule per field type, and the published schemas are the options models' own.

The drift tests walk every field of every job kind's schema as the spec
publishes it and check the model agrees at the edges: the bounds are
accepted, one past them is refused naming the field, every listed choice is
accepted, an unlisted one is refused.
"""
from __future__ import annotations

import math

import pytest

from enfoads.engine import build_engine
from enfoads.errors import InvalidInput
from enfoads.services.image_options import ImageOptions
from enfoads.services.options import Options, choice, flag, number, text, whole_number
from enfoads.settings import Settings
from enfoads.web.openapi import build_spec, builtin_options

# The least each kind needs to be valid, so one field at a time can be moved to its edges.
VALID = {
    "image.generate": {"prompt": "a red bicycle"},
    "image.compare": {"prompt": "a red bicycle", "models": ["lightning", "base"]},
    "faces.swap": {"source_image": "aGk=", "target_image": "aGk="},
    "speech.transcribe": {"audio": "aGk="},
    "video.render": {"script": "Hello there.", "avatar_id": "default"},
    "video.render_multi": {"scenes": [{"script": "Hello there.", "avatarId": "default"}]},
    "enhance.image": {"media": "aGk="},
    "enhance.video": {"media": "aGk="},
    "video.live_portrait": {"image": "aGk=", "audio": "aGk="},
}
# Kinds whose compare-only fields the service splits out before the model sees them.
PARSED_BY_SERVICE = {("image.compare", "steps"), ("image.compare", "models"), ("image.compare", "n"),
                     ("image.compare", "a"), ("image.compare", "b")}


def _branches(schema: dict) -> list[dict]:
    return schema.get("anyOf", [schema])


def _edges(kind: str, name: str, schema: dict):
    """(value, accepted?) pairs at the edges of a published field schema."""
    for branch in _branches(schema):
        kind_of = branch.get("type")
        if kind_of in ("integer", "number") and "minimum" in branch:
            lo, hi = branch["minimum"], branch.get("maximum")
            step = branch.get("multipleOf", 1) if kind_of == "integer" else 0.5
            yield lo, True
            yield lo - step, False
            if hi is not None:
                yield hi, True
                yield hi + step, False
            if kind_of == "integer":
                yield lo + 0.5, False  # a whole number, never 3.5
            yield True, False  # never true-as-1
            yield math.nan, False
        if "enum" in branch and all(isinstance(v, str) for v in branch["enum"]):
            for value in branch["enum"]:
                yield value, True
            yield "surely-not-a-choice", False
        if kind_of == "string" and "maxLength" in branch and branch["maxLength"] <= 5000:
            yield "x" * (branch["maxLength"] + 1), False


CASES = [
    (kind, name, value, accepted)
    for kind, model in sorted(builtin_options().items())
    for name, schema in model.request_schema()["properties"].items()
    if (kind, name) not in PARSED_BY_SERVICE
    for value, accepted in _edges(kind, name, schema)
]


def _id(case) -> str:
    kind, name, value, accepted = case
    return f"{kind}-{name}-{str(value)[:12]}-{'ok' if accepted else 'refused'}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_the_model_accepts_exactly_what_the_published_schema_bounds(case):
    kind, name, value, accepted = case
    model = builtin_options()[kind]
    params = {**VALID[kind], name: value}
    if name in ("width", "height"):  # given together (a cross-field rule)
        params = {**params, "width": value, "height": value}
    if accepted:
        parsed = model.parse(params).to_params()
        assert parsed == model.parse(parsed).to_params()  # normalising twice changes nothing
    else:
        with pytest.raises(InvalidInput) as info:
            model.parse(params)
        assert name in info.value.fields, info.value.fields
        assert info.value.status == 400 and name in info.value.message


@pytest.fixture(scope="module")
def compare_kind(models_dir, tmp_path_factory):
    """``image.compare`` as the engine registers it (its compare-only fields are split out by the service)."""
    engine = build_engine(Settings(profile="tiny", models_dir=models_dir, data_dir=tmp_path_factory.mktemp("cmp"),
                                   auto_download="off", warm="off"), start=False)
    yield engine.kinds["image.compare"]
    engine.close()


COMPARE_CASES = [
    (name, value, accepted)
    for name, schema in builtin_options()["image.compare"].request_schema()["properties"].items()
    if ("image.compare", name) in PARSED_BY_SERVICE and name not in ("a", "b")
    for value, accepted in _edges("image.compare", name, schema)
] + [
    ("models", ["lightning", "base"], True), ("models", ["lightning"], False), ("models", "lightning", False),
    ("steps", [1, 2], True), ("steps", [1, 51], False), ("steps", [1, 2, 4], False),
    ("a", {"steps": 1}, True), ("a", {"steps": 51}, False), ("a", {"colour": "red"}, False), ("a", None, False),
    ("n", 1, True), ("n", None, True), ("n", 2, False),
]


@pytest.mark.parametrize("case", COMPARE_CASES, ids=[f"{n}-{str(v)[:12]}-{'ok' if a else 'refused'}"
                                                     for n, v, a in COMPARE_CASES])
def test_compare_only_fields_agree_with_the_published_schema(compare_kind, case):
    name, value, accepted = case
    sides = {"a": {"steps": 1}, "b": {"steps": 2}} if name not in ("a", "models", "steps") else {"b": {"steps": 2}}
    if name == "models" or (name == "steps" and isinstance(value, list)):
        sides = {}  # the field itself makes the two sides
    elif name == "steps":
        sides = {"a": {"guidance": 1}, "b": {"guidance": 2}}  # one step count, two guidances
    params = {"prompt": "a red bicycle", "seed": 1, **sides, name: value}
    if accepted:
        valid = compare_kind.validate(params)
        assert valid["a"] != valid["b"] and valid["n"] == 1
    else:
        with pytest.raises(InvalidInput) as info:
            compare_kind.validate(params)
        assert any(field == name or field.startswith(name + ".") or field.startswith(("a.", "b."))
                   for field in info.value.fields), info.value.fields


def test_there_are_edges_for_every_kind():
    assert {kind for kind, *_ in CASES} == set(VALID)
    assert len(CASES) > 150


def test_the_spec_publishes_the_models_schemas():
    spec = build_spec()
    body = lambda path: spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]  # noqa: E731
    options = builtin_options()
    assert body("/generate-image") == options["image.generate"].request_schema()
    assert body("/face-swap") == options["faces.swap"].request_schema()
    assert body("/render-video") == options["video.render"].request_schema()
    assert body("/render-multi-scene") == options["video.render_multi"].request_schema()
    branches = {b["properties"]["kind"]["const"]: b["properties"]["params"] for b in body("/api/jobs")["oneOf"]}
    assert branches == {kind: model.request_schema() for kind, model in options.items()}
    assert body("/generate-image")["required"] == ["prompt"]


def test_the_engine_declares_the_published_models(models_dir, tmp_path):
    engine = build_engine(Settings(profile="tiny", models_dir=models_dir, data_dir=tmp_path, auto_download="off",
                                   warm="off"), start=False)
    try:
        declared = {kind.name: kind.options for kind in engine.kinds.values()}
        assert declared == builtin_options()
        assert all(issubclass(model, Options) for model in declared.values())
    finally:
        engine.close()


Count = whole_number(1, 4)
Ratio = number(0.0, 1.0)
Mode = choice(("fast", "slow"), aliases={"quick": "fast"}, default="fast")
Loud = flag(False)
Note = text(10)


class _Example(Options):
    what = "example options"

    count: Count = None
    ratio: Ratio = None
    mode: Mode = "fast"
    loud: Loud = False
    note: Note = None


@pytest.mark.parametrize("field,value,expected", [
    ("count", "3", 3), ("count", 2.0, 2), ("count", " 4 ", 4),
    ("ratio", "0.25", 0.25), ("ratio", 1, 1.0),
    ("mode", " SLOW ", "slow"), ("mode", "quick", "fast"), ("mode", "", "fast"), ("mode", None, "fast"),
    ("loud", "yes", True), ("loud", "OFF", False), ("loud", 1, True), ("loud", "", False),
    ("note", "  hi  ", "hi"), ("note", "   ", None),
])
def test_each_field_type_has_one_lenient_rule(field, value, expected):
    assert getattr(_Example.parse({field: value}), field) == expected


@pytest.mark.parametrize("field,value,words", [
    ("count", True, "whole number"), ("count", "3.5", "whole number"), ("count", 5, "from 1 to 4"),
    ("count", [1], "whole number"), ("ratio", "nan", "number"), ("ratio", math.inf, "number"),
    ("ratio", False, "number"), ("mode", "medium", "one of fast, slow"), ("mode", 3, "one of"),
    ("loud", "maybe", "true or false"), ("loud", 2, "true or false"),
    ("note", "x" * 11, "at most 10"), ("note", 5, "must be text"), ("note", "\ud800", "Unicode"),
])
def test_each_rule_refuses_with_a_message_naming_the_field(field, value, words):
    with pytest.raises(InvalidInput) as info:
        _Example.parse({field: value})
    assert info.value.fields.keys() == {field}
    assert words in info.value.fields[field] and info.value.message.startswith(f"{field}: ")


def test_several_bad_fields_are_named_together_and_unknown_keys_are_ignored():
    with pytest.raises(InvalidInput) as info:
        _Example.parse({"count": 0, "mode": "x", "something_else": 1})
    assert set(info.value.fields) == {"count", "mode"}
    assert info.value.message.startswith("invalid example options: ")
    with pytest.raises(InvalidInput, match="JSON object"):
        _Example.parse(["not", "an", "object"])


def test_image_options_keep_their_cross_field_rules():
    with pytest.raises(InvalidInput) as info:
        ImageOptions.parse({"prompt": "x", "width": 512})
    assert info.value.fields == {"height": "give width and height together"}
    with pytest.raises(InvalidInput) as info:
        ImageOptions.parse({"prompt": "x", "aspect_ratio": "16:9", "width": 512, "height": 512})
    assert "aspect_ratio" in info.value.fields
    sized = ImageOptions.parse({"prompt": "x", "aspect_ratio": "16:9"})
    assert (sized.width, sized.height, sized.aspect_ratio) == (None, None, "16:9")
    assert ImageOptions.parse({"prompt": "x", "guidance_scale": 4}).guidance == 4.0
    assert ImageOptions.parse({"prompt": "x", "seed": None}).seed is not None  # drawn, as when absent
    assert ImageOptions.parse({"prompt": "x", "num_images": "2"}).n == 2
