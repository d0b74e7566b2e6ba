"""The tunnel, tested at the pyngrok boundary (the ngrok agent cannot be downloaded here)
and with a stand-in cloudflared program."""
import os
import stat
import sys
import textwrap
import threading
import time
import types
from types import SimpleNamespace

import pytest

from enfoads.cli import tunnel as tunnel_mod
from enfoads.cli.tunnel import NGROK_TOKEN_URL, MissingAuthtokenError, TunnelError, open_tunnel


class FakeNgrok:
    """The part of ``pyngrok.ngrok`` the tunnel uses."""

    def __init__(self):
        self.token = None
        self.tunnels = {}
        self.connects = []
        self.disconnected = []
        self.kills = 0
        self.fail_next_connect = False
        self.agent_down = False

    def set_auth_token(self, token):
        self.token = token

    def connect(self, addr, proto, **options):
        if self.fail_next_connect:
            self.fail_next_connect = False
            raise RuntimeError("ngrok agent failed to start")
        self.connects.append((addr, proto, options))
        url = f"https://fake-{len(self.connects)}.ngrok-free.app"
        self.tunnels[url] = SimpleNamespace(public_url=url)
        return self.tunnels[url]

    def get_tunnels(self):
        if self.agent_down:
            raise ConnectionError("the agent's API does not answer")
        return list(self.tunnels.values())

    def disconnect(self, url):
        self.disconnected.append(url)
        self.tunnels.pop(url, None)

    def kill(self):
        self.kills += 1
        self.tunnels.clear()


@pytest.fixture
def no_token(monkeypatch):
    monkeypatch.delenv("NGROK_AUTHTOKEN", raising=False)
    monkeypatch.delenv("NGROK_DOMAIN", raising=False)


def test_open_sets_the_token_and_returns_the_public_https_url(no_token):
    fake = FakeNgrok()
    t = open_tunnel(5000, authtoken="tok-123", ngrok_module=fake, watchdog=False, log=None)
    assert t.public_url == "https://fake-1.ngrok-free.app"
    assert fake.token == "tok-123"
    assert fake.connects == [("5000", "http", {})]
    assert t.provider == "ngrok" and t.port == 5000
    t.close()
    assert fake.disconnected == ["https://fake-1.ngrok-free.app"] and fake.kills == 1


def test_token_from_the_environment_and_a_static_domain(monkeypatch):
    monkeypatch.setenv("NGROK_AUTHTOKEN", "env-token")
    monkeypatch.setenv("NGROK_DOMAIN", "my-team.ngrok-free.app")
    fake = FakeNgrok()
    with open_tunnel(5001, ngrok_module=fake, watchdog=False, log=None) as t:
        assert fake.token == "env-token"
        options = fake.connects[0][2]
        # pyngrok 7+ with ngrok v3 endpoints takes a URL; older configs take "domain".
        assert options in ({"url": "https://my-team.ngrok-free.app"}, {"domain": "my-team.ngrok-free.app"})
        assert t.public_url.startswith("https://")


def test_an_http_public_url_is_turned_into_https(no_token):
    fake = FakeNgrok()
    fake.connect = lambda addr, proto, **o: SimpleNamespace(public_url="http://abc.ngrok.io")
    t = open_tunnel(5000, authtoken="x", ngrok_module=fake, watchdog=False, log=None)
    assert t.public_url == "https://abc.ngrok.io"


def test_token_from_colab_secrets(no_token, monkeypatch):
    seen = []

    class SecretNotFoundError(Exception):
        pass

    def get(name):
        seen.append(name)
        if name == "NGROK_AUTHTOKEN":
            return "colab-token"
        raise SecretNotFoundError(name)

    google = types.ModuleType("google")
    colab = types.ModuleType("google.colab")
    colab.userdata = SimpleNamespace(get=get)
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    fake = FakeNgrok()
    open_tunnel(5000, ngrok_module=fake, watchdog=False, log=None)
    assert fake.token == "colab-token" and seen == ["NGROK_AUTHTOKEN"]

    from enfoads.colab import get_secret

    assert get_secret("HF_TOKEN") is None  # a missing secret is None, not an exception


def test_without_a_token_the_message_says_where_to_get_one(no_token):
    fake = FakeNgrok()
    with pytest.raises(MissingAuthtokenError) as info:
        open_tunnel(5000, ngrok_module=fake, watchdog=False, log=None)
    message = str(info.value)
    assert NGROK_TOKEN_URL in message and "NGROK_AUTHTOKEN" in message and "cloudflared" in message
    assert fake.connects == []


def test_watchdog_round_reopens_a_dropped_tunnel_and_reports_the_new_url(no_token):
    fake = FakeNgrok()
    changes, logs = [], []
    t = open_tunnel(5000, authtoken="x", ngrok_module=fake, watchdog=False, on_change=changes.append, log=logs.append)
    assert t.check() is False  # alive: nothing to do

    fake.tunnels.clear()  # the endpoint vanished (session expired, network blip)
    assert t.check() is True
    assert t.public_url == "https://fake-2.ngrok-free.app" and t.reopened == 1
    assert changes == [t] and "reopened" in logs[-1]

    fake.agent_down = True  # the agent's API is unreachable: reopen too
    assert t.check() is True
    fake.agent_down = False
    assert t.public_url == "https://fake-3.ngrok-free.app"

    fake.tunnels.clear()
    fake.fail_next_connect = True  # a failed reopening is retried at the next round
    assert t.check() is False and "retrying" in logs[-1]
    assert t.check() is True and t.public_url == "https://fake-4.ngrok-free.app"
    t.close()


def test_watchdog_thread_reopens_by_itself_and_stops_on_close(no_token):
    fake = FakeNgrok()
    changed = threading.Event()
    t = open_tunnel(5000, authtoken="x", ngrok_module=fake, check_interval_s=0.05,
                    on_change=lambda _t: changed.set(), log=None)
    assert t.watching
    fake.tunnels.clear()
    assert changed.wait(5)
    assert t.public_url == "https://fake-2.ngrok-free.app"
    t.close()
    assert not t.watching
    fake.tunnels.clear()
    time.sleep(0.2)
    assert len(fake.connects) == 2  # closed: no more reopening


def test_real_pyngrok_module_is_called_through_its_api(no_token, monkeypatch):
    from pyngrok import ngrok

    fake = FakeNgrok()
    for name in ("set_auth_token", "connect", "get_tunnels", "disconnect", "kill"):
        monkeypatch.setattr(ngrok, name, getattr(fake, name))
    t = open_tunnel(5002, authtoken="tok", watchdog=False, log=None)
    assert t.public_url == "https://fake-1.ngrok-free.app" and fake.token == "tok"
    t.close()
    assert fake.kills == 1


def test_unknown_provider_is_refused():
    with pytest.raises(TunnelError, match="unknown tunnel"):
        open_tunnel(5000, "carrier-pigeon", log=None)


@pytest.fixture
def fake_cloudflared(tmp_path):
    script = tmp_path / "cloudflared"
    script.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import os, sys, time
        sys.stderr.write("INF Requesting new quick Tunnel on trycloudflare.com...\\n")
        sys.stderr.write(f"INF |  https://quick-{{os.getpid()}}.trycloudflare.com  |\\n")
        sys.stderr.flush()
        time.sleep(120)
    """))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_cloudflared_quick_tunnel_parses_the_url_and_restarts_when_it_dies(fake_cloudflared):
    changes = []
    t = open_tunnel(5003, "cloudflared", cloudflared=fake_cloudflared, watchdog=False, on_change=changes.append, log=None)
    try:
        assert t.provider == "cloudflared"
        assert t.public_url.startswith("https://quick-") and t.public_url.endswith(".trycloudflare.com")
        first = t.public_url
        process = t._backend.process
        process.kill()
        process.wait()
        assert t.check() is True
        assert t.public_url != first and changes == [t]
    finally:
        t.close()
    assert t._backend.process is None


def test_cloudflared_binary_prefers_path(monkeypatch, fake_cloudflared):
    monkeypatch.setenv("PATH", os.path.dirname(fake_cloudflared) + os.pathsep + os.environ["PATH"])
    assert tunnel_mod.cloudflared_binary() == fake_cloudflared


def test_notebook_tunnel_falls_back_to_cloudflared_without_an_ngrok_token(no_token, monkeypatch, fake_cloudflared, capsys):
    from enfoads import colab

    monkeypatch.setenv("PATH", os.path.dirname(fake_cloudflared) + os.pathsep + os.environ["PATH"])
    t = colab.open_public_tunnel("ngrok", 5004, "the-key", "http://127.0.0.1:5004")
    try:
        out = capsys.readouterr().out
        assert NGROK_TOKEN_URL in out and "Cloudflare quick tunnel" in out
        assert t.provider == "cloudflared" and f"{t.public_url}/" in out and "PASTE" in out
        # Running the cell again replaces the tunnel instead of stacking a second one.
        again = colab.open_public_tunnel("none", 5004, "the-key", "http://127.0.0.1:5004")
        assert again is None and t._backend.process is None
    finally:
        t.close()
