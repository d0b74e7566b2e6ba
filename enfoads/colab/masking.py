"""Secrets in output, masked: the API key and the URL prefix derived from it never reach a notebook output."""
from __future__ import annotations

from typing import Iterable


def mask(secret: str | None, keep: int = 4) -> str:
    """The first ``keep`` characters and dots: enough to tell keys apart, useless to anyone else."""
    if not secret:
        return ""
    return secret[:keep] + "\u2022" * 8


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, mask(secret))
    return text


def key_secrets(key: str | None) -> tuple[str, ...]:
    """The strings that must never reach a notebook output: the key and the URL prefix derived from it."""
    if not key:
        return ()
    from enfoads.security import url_prefix

    return (key, url_prefix(key))
