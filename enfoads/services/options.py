"""Request fields: one rule per field type, and the base of every job kind's options model.

A service declares each job kind's options as an ``Options`` subclass whose
fields use the types made here (``whole_number``, ``number``, ``choice``,
``flag``, ``text``). The same model checks a request (each bad field named
with its own message, as ``InvalidInput``) and gives the OpenAPI request
schema (``request_schema``), so the published spec cannot drift from what is
accepted. The rules are lenient where clients differ (form data sends "4" and
"true"; the frontend sends camelCase aliases) and strict where it matters:
no true-as-1, no NaN, no 3.5 steps.
"""
from __future__ import annotations

import math
from typing import Annotated, Any, Callable, ClassVar, Iterable, Mapping

from pydantic import AliasChoices, BaseModel, ConfigDict, PlainValidator, ValidationError, WithJsonSchema
from pydantic_core import PydanticCustomError

from enfoads.errors import InvalidInput

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def fail(message: str):
    # Our messages are final text: PydanticCustomError only formats them when given a context.
    raise PydanticCustomError("enfoads", message)


def _nullable(schema: dict, optional: bool) -> dict:
    return {"anyOf": [*schema.get("anyOf", [schema]), {"type": "null"}]} if optional else schema


# The published schema of a field is what its rule accepts, or more, never less: a client (or a
# fuzzer) that keeps to the spec is never told it broke it, and anything outside the spec is a 4xx.
_AS_TEXT = {"type": "string", "description": "the same value as text (form data)"}
FLAG_SCHEMA = {"anyOf": [{"type": "boolean"}, {"enum": [0, 1]},
                         {"type": "string", "description": "true/false, 1/0, yes/no, on/off (any case)"},
                         {"type": "null"}]}


# --------------------------------------------------------------------------- the rules, one per field type


def to_whole_number(value: Any, *, lo: int, hi: int, multiple_of: int | None = None, unit: str = "") -> int:
    """An integer from JSON or form data ("4", 4.0, "720p" with ``unit="p"``); never true/false or 3.5."""
    given = value
    if isinstance(value, bool):
        fail(f"must be a whole number from {lo} to {hi}, not {value!r}")
    if isinstance(value, str):
        text = value.strip().lower()
        if unit and text.endswith(unit):
            text = text[: -len(unit)]
        try:
            value = int(text) if text.lstrip("+-").isdigit() else float(text)
        except ValueError:
            fail(f"must be a whole number from {lo} to {hi}, not {given!r}")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            fail(f"must be a whole number from {lo} to {hi}, not {given!r}")
        value = int(value)
    if not isinstance(value, int):
        fail(f"must be a whole number from {lo} to {hi}, not {type(value).__name__}")
    if not lo <= value <= hi:
        fail(f"must be a whole number from {lo} to {hi}, not {value}")
    if multiple_of and value % multiple_of:
        fail(f"must be a multiple of {multiple_of}, not {value}")
    return value


def to_number(value: Any, *, lo: float, hi: float) -> float:
    """A finite number from JSON or form data, within ``[lo, hi]``; never true/false."""
    given = value
    if isinstance(value, bool):
        fail(f"must be a number from {lo:g} to {hi:g}, not {value!r}")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            fail(f"must be a number from {lo:g} to {hi:g}, not {given!r}")
    if not isinstance(value, (int, float)):
        fail(f"must be a number from {lo:g} to {hi:g}, not {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or not lo <= value <= hi:
        fail(f"must be a number from {lo:g} to {hi:g}, not {given!r}")
    return value


def to_choice(value: Any, *, choices: Iterable[str], aliases: Mapping[str, str] | None = None) -> str:
    """One of ``choices``, matched without case or surrounding space; ``aliases`` map other words to one."""
    choices = tuple(choices)
    if isinstance(value, str):
        word = value.strip().lower()
        word = (aliases or {}).get(word, word)
        if word in choices:
            return word
    fail(f"must be one of {', '.join(choices)}, not {value!r}")


def to_flag(value: Any) -> bool:
    """true/false, 1/0, yes/no, on/off (JSON or form data)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
    fail(f"must be true or false, not {value!r}")


def is_unicode(text: str) -> bool:
    """False for text JSON can carry but UTF-8 cannot (``"\\ud800"``: a lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def to_text(value: Any, *, max_chars: int, required: bool = False, what: str = "text") -> str | None:
    """Trimmed text of at most ``max_chars`` (valid Unicode); empty -> None unless ``required``."""
    if not isinstance(value, str):
        fail(f"must be {what}, not {type(value).__name__}")
    if len(value) > max_chars:  # counted as sent, as the published maxLength is
        fail(f"must be at most {max_chars} characters (got {len(value)})")
    text = value.strip()
    if not text:
        if required:
            fail("must not be empty")
        return None
    if not is_unicode(text):
        fail("is not valid Unicode text (it holds a lone UTF-16 surrogate)")
    return text


# --------------------------------------------------------------------------- the types for options models


def whole_number(lo: int, hi: int, *, multiple_of: int | None = None, unit: str = "", optional: bool = True):
    schema: dict = {"type": "integer", "minimum": lo, "maximum": hi}
    if multiple_of:
        schema["multipleOf"] = multiple_of
    schema = {"anyOf": [schema, _AS_TEXT]}
    check = (lambda v: None if v is None and optional else
             to_whole_number(v, lo=lo, hi=hi, multiple_of=multiple_of, unit=unit))
    return Annotated[int | None if optional else int, PlainValidator(check),
                     WithJsonSchema(_nullable(schema, optional))]


def number(lo: float, hi: float, *, optional: bool = True):
    check = lambda v: None if v is None and optional else to_number(v, lo=lo, hi=hi)  # noqa: E731
    return Annotated[float | None if optional else float, PlainValidator(check),
                     WithJsonSchema(_nullable({"anyOf": [{"type": "number", "minimum": lo, "maximum": hi}, _AS_TEXT]},
                                              optional))]


def choice(choices: Iterable[str], *, aliases: Mapping[str, str] | None = None, default: str | None = None,
           optional: bool = False):
    """A choice; absent, null or "" gives ``default`` (None allowed only when ``optional``)."""
    choices = tuple(choices)

    def check(value):
        if value is None or value == "":
            if default is None and not optional:
                fail(f"is required: one of {', '.join(choices)}")
            return default
        return to_choice(value, choices=choices, aliases=aliases)

    # Any case is accepted, and the aliases: they are listed after the choices.
    names = [*choices, *(a for a in (aliases or {}) if a not in choices)]
    return Annotated[str | None if optional else str, PlainValidator(check),
                     WithJsonSchema({"anyOf": [{"enum": names}, {"const": ""}, {"type": "null"}],
                                     "description": f"one of {', '.join(choices)} (any case)"})]


def flag(default: bool = False):
    """A boolean; absent, null or "" gives ``default``."""
    check = lambda v: default if v is None or v == "" else to_flag(v)  # noqa: E731
    return Annotated[bool, PlainValidator(check), WithJsonSchema(FLAG_SCHEMA)]


def text(max_chars: int, *, required: bool = False, what: str = "text"):
    """Trimmed text; ``required`` fields must be present and not blank, others give None when blank."""
    def check(value):
        if value is None:
            if required:
                fail("is required")
            return None
        return to_text(value, max_chars=max_chars, required=required, what=what)

    schema = {"type": "string", "maxLength": max_chars, **({"minLength": 1} if required else {})}
    return Annotated[str if required else str | None, PlainValidator(check),
                     WithJsonSchema(schema if required else _nullable(schema, True))]


def _media_reference(value: Any) -> str:
    # Only its kind here: the media layer reads the header later (a big upload is not copied or scanned twice).
    if value is None or (isinstance(value, str) and not value.strip()):
        fail("is required (base64, a data URI or an asset id)")
    if not isinstance(value, str):
        fail(f"must be base64, a data URI or an asset id, not {type(value).__name__}")
    return value


def checked(check: Callable[[Any], Any], schema: dict, annotation: Any = Any):
    """A field with its own rule (``check`` raises through ``fail``) and its published schema."""
    return Annotated[annotation, PlainValidator(check), WithJsonSchema(schema)]




#: An input image or audio clip: base64, a ``data:`` URI, or the id of an asset already stored.
MediaReference = checked(_media_reference, {"type": "string", "minLength": 1,
                                            "description": "base64, a data URI or an asset id"}, str)


def schema_of(field_type) -> dict:
    """The published schema of a field type made here."""
    return next(m.json_schema for m in field_type.__metadata__ if isinstance(m, WithJsonSchema))


def aliases(*names: str) -> AliasChoices:
    """The names a field is accepted under, the canonical one first (errors name the one the client sent)."""
    return AliasChoices(*names)


# --------------------------------------------------------------------------- the base model


def _where(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "options"


class Options(BaseModel):
    """A job kind's options. Unknown keys are ignored (clients send more than a kind reads)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    #: Said before the list of bad fields when there are several ("invalid image options: ...").
    what: ClassVar[str] = "options"

    def cross_check(self) -> dict[str, str]:
        """Rules between fields, run once every field is valid; ``{field: message}``."""
        return {}

    def normalised(self):
        """The options once the cross-field rules passed (aliases merged, implied fields cleared)."""
        return self

    @classmethod
    def parse(cls, params: Any, **context):
        """The options of a request, or ``InvalidInput`` naming every bad field."""
        if not isinstance(params, Mapping):
            raise InvalidInput("the request body must be a JSON object")
        try:
            options = cls.model_validate(dict(params), context=context or None)
        except ValidationError as exc:
            fields: dict[str, str] = {}
            for error in exc.errors(include_url=False):
                message = error["msg"]
                if error["type"] == "missing":
                    message = "is required"
                fields.setdefault(_where(error["loc"]), message)
            raise_fields(fields, cls.what)
        raise_fields(options.cross_check(), cls.what)
        return options.normalised()

    def to_params(self) -> dict:
        """The normalised options as JSON (what a job stores; parsing it again changes nothing)."""
        return self.model_dump(mode="json")

    @classmethod
    def request_schema(cls) -> dict:
        """The JSON schema of what ``parse`` accepts (OpenAPI 3.1), nested models inlined."""
        schema = cls.model_json_schema(mode="validation", ref_template="#/$defs/{model}")
        return _inline(schema, schema.pop("$defs", {}))


def raise_fields(fields: Mapping[str, str], what: str = "options") -> None:
    if not fields:
        return
    if len(fields) == 1:
        (name, message), = fields.items()
        raise InvalidInput.field(name, message)
    detail = "; ".join(f"{k}: {v}" for k, v in fields.items())
    raise InvalidInput(f"invalid {what}: {detail}", fields=dict(fields))


def _inline(node: Any, defs: dict) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.rsplit("/", 1)[1]], defs)
        # pydantic's "title" words add nothing to the spec (a property named "title" is a dict, and stays)
        return {k: _inline(v, defs) for k, v in node.items() if not (k == "title" and isinstance(v, str))}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node
