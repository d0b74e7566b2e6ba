"""Small parsers for request options shared by the services; each error names its field."""
from __future__ import annotations

from typing import Any

from enfoads.errors import InvalidInput

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def parse_bool(value: Any, field: str, default: bool = False) -> bool:
    """A boolean from JSON or form data: true/false, 1/0, yes/no, on/off; absent or empty -> ``default``."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word == "":
            return default
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
    raise InvalidInput.field(field, f"must be true or false, not {value!r}")
