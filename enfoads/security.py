"""The API key, the secret URL prefix derived from it, and short-lived login tokens.

The tunnel URL is public, so every route but the health check needs the key.
The existing frontend cannot send one (it auto-logs in with a fixed body), so
the whole API is also served under a secret path prefix derived from the key:
the user pastes ``https://<tunnel>/<prefix>`` once, and that URL is the
credential. socket.io-client turns the path into a namespace, which the
server accepts for the same reason.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

KEY_FILE = "api-key"
TOKEN_TTL_S = 12 * 3600


def load_or_create_key(data_dir: Path, configured: str | None) -> tuple[str, bool]:
    """The API key and whether it was generated just now (to print it once).

    A configured key (``ENFOADS_API_KEY``) wins; otherwise the key stored in the
    data dir (mode 0600) is reused, so a restarted Colab keeps its URL.
    """
    if configured:
        return configured, False
    path = Path(data_dir) / KEY_FILE
    try:
        key = path.read_text().strip()
        if key:
            return key, False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key, True


def _mac(key: str, purpose: str, message: str = "") -> bytes:
    return hmac.new(key.encode(), f"{purpose}\0{message}".encode(), hashlib.sha256).digest()


def url_prefix(key: str) -> str:
    """A path segment only the key's holder can know (26 lowercase base32 characters)."""
    return base64.b32encode(_mac(key, "url-prefix")).decode().lower().rstrip("=")[:26]


@dataclass(frozen=True)
class Credentials:
    key: str

    @property
    def prefix(self) -> str:
        return url_prefix(self.key)

    def check_key(self, candidate: str | None) -> bool:
        return bool(candidate) and hmac.compare_digest(candidate.encode(), self.key.encode())

    def issue_token(self, ttl_s: int = TOKEN_TTL_S, now: float | None = None) -> str:
        """``v2.<expires>.<nonce>.<sig>``: the nonce makes every login's token its own, so the
        library (``enfoads.services.library``, kept per token) of two browsers never mixes."""
        expires = int((now or time.time()) + ttl_s)
        nonce = secrets.token_urlsafe(9)
        sig = base64.urlsafe_b64encode(_mac(self.key, "token", f"{expires}.{nonce}")).decode().rstrip("=")
        return f"v2.{expires}.{nonce}.{sig}"

    def check_token(self, token: str | None, now: float | None = None) -> bool:
        if not token or token.count(".") != 3:
            return False
        version, expires, nonce, sig = token.split(".")
        if version != "v2" or not expires.isdigit() or not nonce:
            return False
        expected = base64.urlsafe_b64encode(_mac(self.key, "token", f"{expires}.{nonce}")).decode().rstrip("=")
        if not hmac.compare_digest(sig.encode(), expected.encode()):
            return False
        return int(expires) > (now or time.time())

    def check_bearer(self, value: str | None) -> bool:
        """The key itself or a token from ``/auth/login``."""
        return self.check_key(value) or self.check_token(value)
