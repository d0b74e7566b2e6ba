"""A public HTTPS URL for the local server: ngrok (default) or a Cloudflare quick tunnel.

    from enfoads.cli.tunnel import open_tunnel
    tunnel = open_tunnel(5000, on_change=lambda t: print("new URL:", t.public_url))
    print(tunnel.public_url)       # the caller builds the URL to paste from it
    ...
    tunnel.close()

``ngrok`` goes through pyngrok and needs an authtoken (free account), read
from the argument, the ``NGROK_AUTHTOKEN`` environment variable or the Colab
secret of that name; without one, ``MissingAuthtokenError`` says where to get
it. A free account has one static domain (``NGROK_DOMAIN``): with it, the
URL to paste stays the same across sessions. ngrok shows browsers a warning
page on free domains; API clients skip it with the
``ngrok-skip-browser-warning`` header, which the frontend sends.

``cloudflared`` opens a Cloudflare quick tunnel: no account and no warning
page, but a new random ``*.trycloudflare.com`` URL each time and no uptime
guarantee. It needs the ``cloudflared`` program: taken from ``PATH``, else
downloaded once from Cloudflare's GitHub releases (Linux amd64/arm64).

A watchdog thread checks the tunnel every ``check_interval_s`` and reopens it
when it dropped (the agent died, the endpoint vanished); ``on_change`` is
called with the tunnel whenever its public URL changes.
"""
from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Callable

NGROK_TOKEN_URL = "https://dashboard.ngrok.com/get-started/your-authtoken"
NGROK_ENV = "NGROK_AUTHTOKEN"
NGROK_DOMAIN_ENV = "NGROK_DOMAIN"
CLOUDFLARED_URL = "https://github.com/cloudflare/cloudflared/releases/latest/download/cloudflared-linux-{arch}"
QUICK_TUNNEL_RE = re.compile(r"https://[a-z0-9-]+\.trycloudflare\.com")
PROVIDERS = ("ngrok", "cloudflared")


class TunnelError(RuntimeError):
    pass


class MissingAuthtokenError(TunnelError):
    def __init__(self):
        super().__init__(
            "ngrok needs an authtoken. Create a free account and copy your token from "
            f"{NGROK_TOKEN_URL} , then either add it as a Colab secret named {NGROK_ENV} "
            "(key icon in the left sidebar, and allow this notebook to read it) or set the "
            f"{NGROK_ENV} environment variable. No account? Use the Cloudflare quick tunnel "
            "instead (ENFOADS_TUNNEL=cloudflared), or ENFOADS_TUNNEL=none for local use."
        )


def ngrok_authtoken(explicit: str | None = None) -> str | None:
    """The ngrok authtoken: explicit, else the environment, else the Colab secret (never printed)."""
    if explicit:
        return explicit
    from enfoads.user_secrets import get_secret

    return get_secret(NGROK_ENV, prompt=False)


class _Ngrok:
    """pyngrok behind three calls, so tests can hand in a fake ``ngrok`` module."""

    name = "ngrok"

    def __init__(self, port: int, authtoken: str | None, domain: str | None, ngrok_module=None):
        token = ngrok_authtoken(authtoken)
        if not token:
            raise MissingAuthtokenError()
        if ngrok_module is None:
            from pyngrok import ngrok as ngrok_module  # downloads the agent binary on first use
        self.ngrok = ngrok_module
        self.port = port
        self.domain = domain if domain is not None else (os.environ.get(NGROK_DOMAIN_ENV) or None)
        self.ngrok.set_auth_token(token)
        self.public_url: str | None = None

    def _options(self) -> dict:
        if not self.domain:
            return {}
        try:
            from pyngrok import conf

            v3 = getattr(conf.get_default(), "config_version", "2") == "3"
        except ImportError:  # a fake module in tests
            v3 = False
        return {"url": f"https://{self.domain}"} if v3 else {"domain": self.domain}

    def open(self) -> str:
        tunnel = self.ngrok.connect(str(self.port), "http", **self._options())
        url = tunnel.public_url
        if url.startswith("http://"):  # ngrok v2 agents open both; use the HTTPS one
            url = "https://" + url[len("http://"):]
        self.public_url = url
        return url

    def alive(self) -> bool:
        if self.public_url is None:
            return False
        host = self.public_url.split("://", 1)[-1]
        return any(t.public_url.split("://", 1)[-1] == host for t in self.ngrok.get_tunnels())

    def close(self) -> None:
        if self.public_url:
            try:
                self.ngrok.disconnect(self.public_url)
            except Exception:  # noqa: BLE001 - the agent may be gone already
                pass
        try:
            self.ngrok.kill()
        except Exception:  # noqa: BLE001
            pass
        self.public_url = None


def cloudflared_binary(cache_dir: Path | None = None) -> str:
    """``cloudflared`` from PATH, else downloaded once into ``~/.cache/enfoads``."""
    found = shutil.which("cloudflared")
    if found:
        return found
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower())
    if platform.system() != "Linux" or arch is None:
        raise TunnelError("cloudflared is not installed: see https://developers.cloudflare.com/cloudflare-one/connections/connect-networks/downloads/")
    target = Path(cache_dir or Path.home() / ".cache" / "enfoads") / "cloudflared"
    if not target.exists():
        import urllib.request

        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".part")
        with urllib.request.urlopen(CLOUDFLARED_URL.format(arch=arch), timeout=120) as resp, open(tmp, "wb") as fh:  # noqa: S310
            shutil.copyfileobj(resp, fh)
        tmp.chmod(0o755)
        os.replace(tmp, target)
    return str(target)


class _Cloudflared:
    name = "cloudflared"

    def __init__(self, port: int, binary: str | None = None, start_timeout_s: float = 60.0):
        self.port = port
        self.binary = binary or cloudflared_binary()
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen | None = None
        self.public_url: str | None = None

    def open(self) -> str:
        self.close()
        self.process = subprocess.Popen(
            [self.binary, "tunnel", "--no-autoupdate", "--url", f"http://127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        found: list[str] = []
        done = threading.Event()

        def read():
            assert self.process is not None and self.process.stderr is not None
            for line in self.process.stderr:  # keeps draining the pipe after the URL appeared
                match = QUICK_TUNNEL_RE.search(line)
                if match and not found:
                    found.append(match.group(0))
                    done.set()
            done.set()

        threading.Thread(target=read, daemon=True, name="cloudflared-log").start()
        done.wait(self.start_timeout_s)
        if not found:
            self.close()
            raise TunnelError(f"cloudflared printed no trycloudflare.com URL within {self.start_timeout_s:.0f} s")
        self.public_url = found[0]
        return self.public_url

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None
        self.public_url = None


class Tunnel:
    """An open tunnel; ``public_url`` follows reopenings. Close it with ``close()`` (or ``with``)."""

    def __init__(self, backend, port: int, *, on_change: Callable[["Tunnel"], None] | None = None,
                 check_interval_s: float = 30.0, log: Callable[[str], None] | None = print):
        self._backend = backend
        self.port = port
        self.provider = backend.name
        self.on_change = on_change
        self.check_interval_s = check_interval_s
        self.log = log or (lambda _m: None)
        self.reopened = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.public_url = backend.open()

    def check(self) -> bool:
        """One watchdog round: reopen the tunnel if it dropped. True when it was reopened."""
        with self._lock:
            if self._stop.is_set():
                return False
            try:
                if self._backend.alive():
                    return False
            except Exception:  # noqa: BLE001 - an unreachable agent counts as a dropped tunnel
                pass
            old = self.public_url
            try:
                self._backend.close()
                self.public_url = self._backend.open()
            except Exception as exc:  # noqa: BLE001 - retried at the next round
                self.log(f"tunnel: reopening failed ({exc}); retrying in {self.check_interval_s:.0f} s")
                return False
            self.reopened += 1
        self.log(f"tunnel: reopened ({self.provider}); public URL {'unchanged' if old == self.public_url else 'now ' + self.public_url}")
        if self.on_change is not None and old != self.public_url:
            self.on_change(self)
        return True

    def start_watchdog(self) -> None:
        if self._thread is not None:
            return

        def loop():
            while not self._stop.wait(self.check_interval_s):
                self.check()

        self._thread = threading.Thread(target=loop, daemon=True, name=f"enfoads-tunnel-{self.provider}")
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            self._backend.close()

    @property
    def watching(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> "Tunnel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Tunnel {self.provider} {self.public_url} -> 127.0.0.1:{self.port}>"


def open_tunnel(
    port: int,
    provider: str = "ngrok",
    *,
    authtoken: str | None = None,
    domain: str | None = None,
    watchdog: bool = True,
    check_interval_s: float = 30.0,
    on_change: Callable[[Tunnel], None] | None = None,
    log: Callable[[str], None] | None = print,
    ngrok_module=None,
    cloudflared: str | None = None,
) -> Tunnel:
    """Open a public HTTPS tunnel to ``127.0.0.1:port``.

    Args:
        provider: ``ngrok`` (default; needs an authtoken) or ``cloudflared`` (no account).
        authtoken: the ngrok authtoken; default ``NGROK_AUTHTOKEN`` (environment or Colab secret).
        domain: an ngrok static domain; default ``NGROK_DOMAIN``.
        watchdog: reopen the tunnel when it drops (a daemon thread).
        on_change: called with the tunnel when a reopening changed its public URL.
        ngrok_module: stands in for ``pyngrok.ngrok`` (tests).
        cloudflared: path of the cloudflared program (default: PATH or a one-time download).

    Returns:
        A ``Tunnel``; the caller prints what the user needs (URL to paste, key).

    Raises:
        MissingAuthtokenError: ngrok without a token (the message says where to get one).
    """
    if provider == "ngrok":
        backend = _Ngrok(port, authtoken, domain, ngrok_module)
    elif provider == "cloudflared":
        backend = _Cloudflared(port, cloudflared)
    else:
        raise TunnelError(f"unknown tunnel {provider!r}; choose one of {', '.join(PROVIDERS)} (or none)")
    tunnel = Tunnel(backend, port, on_change=on_change, check_interval_s=check_interval_s, log=log)
    if watchdog:
        tunnel.start_watchdog()
    return tunnel
