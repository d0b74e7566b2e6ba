"""Every error is JSON: ``{"status": "error", "message", "code", "details"?}``; never a stack trace."""
from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from enfoads import errors as E

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "rate_limited",
    500: "internal_error",
    501: "not_implemented",
    503: "no_capacity",
}


def error_response(status: int, message: str, code: str | None = None, details=None, headers=None):
    message = E.redact_paths(message)  # the log keeps the detail; strangers get no server paths
    body = {"status": "error", "message": message, "code": code or HTTP_CODES.get(status, "error")}
    if details is not None:
        body["details"] = details
    response = jsonify(body)
    response.status_code = status
    for k, v in (headers or {}).items():
        response.headers[k] = v
    return response


def status_for_job_error(error: dict | None) -> int:
    """The HTTP status for a failed job's recorded error (bad input stays a 4xx): the one stored with it."""
    status = (error or {}).get("status")
    return int(status) if status else 500


def code_for_job_error(error: dict | None) -> str | None:
    """The error code for a failed job's recorded error, or None for the status's generic one."""
    return (error or {}).get("code") or None


def init_app(app: Flask) -> None:
    @app.errorhandler(E.EnfoadsError)
    def _enfoads(exc: E.EnfoadsError):
        # Every caller-visible error carries its status, code and headers (one root, mapped by type).
        response = jsonify(exc.to_dict())
        response.status_code = exc.status
        response.headers.update(exc.headers())
        return response

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            message = "the request body is too large"
        allowed = getattr(exc, "valid_methods", None)
        return error_response(status, message, headers={"Allow": ", ".join(allowed)} if allowed else None)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal error; see the server log")
