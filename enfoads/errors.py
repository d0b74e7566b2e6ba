"""The one root of every caller-visible error: ``EnfoadsError`` carries its HTTP status and code.

Services and the lower layers (jobs, assets, residency) raise subclasses of
it with messages written for the person using the frontend; the web layer
maps by type and turns any of them into
``{"status": "error", "message": ..., "code": ..., "details"?: ...}`` with the
headers the error asks for (``Retry-After``). Anything else is a bug: 500.
"""
from __future__ import annotations

import re
from typing import Any

# An absolute POSIX path of two or more parts, not inside a URL ("https://host/a/b").
_ABS_PATH = re.compile(r"(?<![\w.:/~-])/(?:[^/\s'\"`:;,()\[\]{}<>]+/)+([^/\s'\"`:;,()\[\]{}<>]*)")


def redact_paths(text: str) -> str:
    """``text`` with the server's absolute paths cut to their last part.

    Messages reach strangers through the public tunnel; where the server keeps
    its files is none of theirs. The log keeps the full detail.
    """
    return _ABS_PATH.sub(lambda m: m.group(1) or "<folder>", text)


def status_and_code(exc: BaseException) -> tuple[int, str]:
    """The HTTP status and error code a caller gets for ``exc``: its type's, or 500 for anything else."""
    if isinstance(exc, EnfoadsError):
        return exc.status, exc.code
    return 500, "internal_error"


class EnfoadsError(Exception):
    """A caller-visible error. ``public_message`` is what a stranger may read (no server paths)."""

    status: int = 500
    code: str = "internal_error"
    retry_after_s: int | None = None  # set where retrying later may work (429, 503)

    def __init__(self, message: str = "", *, details: Any = None):
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:  # KeyError subclasses would repr() the message
        return self.message

    @property
    def public_message(self) -> str:
        return redact_paths(self.message)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(int(self.retry_after_s))} if self.retry_after_s is not None else {}

    def to_dict(self) -> dict:
        body = {"status": "error", "message": self.public_message, "code": self.code}
        if self.details is not None:
            body["details"] = self.details
        return body


class InvalidInput(EnfoadsError):
    """Bad request data; ``fields`` names each offending field with its own message."""

    status = 400
    code = "invalid_input"

    def __init__(self, message: str, *, fields: dict[str, str] | None = None, details: Any = None):
        self.fields = dict(fields or {})
        super().__init__(message, details=details if details is not None else ({"fields": self.fields} if self.fields else None))

    @classmethod
    def field(cls, name: str, message: str) -> "InvalidInput":
        return cls(f"{name}: {message}", fields={name: message})


class PayloadTooLarge(InvalidInput):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(InvalidInput):
    status = 415
    code = "unsupported_media_type"


class UnprocessableInput(InvalidInput):
    """Well-formed but unusable input (no face in the image, silent audio where speech is needed)."""

    status = 422
    code = "unprocessable"


class NotFound(EnfoadsError):
    status = 404
    code = "not_found"


class CapacityError(EnfoadsError):
    """Out of GPU memory or no capacity now; retrying later may work."""

    status = 503
    code = "no_capacity"


class ModelNotInstalled(EnfoadsError):
    """A model the request needs has no usable files here; the message names the command that installs it."""

    status = 503
    code = "model_not_installed"


class NotImplementedInVersion(EnfoadsError):
    status = 501
    code = "not_implemented"
