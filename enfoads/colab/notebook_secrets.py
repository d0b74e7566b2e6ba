"""The notebook's secrets: found in the environment, Colab's secrets or a hidden prompt, and exported
to this process's environment; never printed."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

from enfoads.user_secrets import colab_secret, get_secret, in_colab


@dataclass(frozen=True)
class SecretSpec:
    name: str
    why: str
    prompt: bool = False
    help_text: str = ""


def load_secrets(specs: Iterable[SecretSpec]) -> dict[str, bool]:
    """Find each secret and export it to this process's environment (so the server and
    preload see it); print where each came from, never the value."""
    found = {}
    for spec in specs:
        source = "environment" if os.environ.get(spec.name) else None
        value = os.environ.get(spec.name)
        if not value:
            value = colab_secret(spec.name)
            source = "Colab secret" if value else None
        if not value and spec.prompt:
            value = get_secret(spec.name, prompt=True, env=False, help_text=spec.help_text)
            source = "typed in" if value else None
        if value:
            os.environ[spec.name] = value
        found[spec.name] = bool(value)
        print(f"{spec.name:<18} {'found (' + source + ')' if value else 'not set'} - {spec.why}")
    return found


def load_notebook_secrets(tunnel: str) -> dict[str, bool]:
    """The notebook's secrets; only the ngrok token is asked for (hidden), and only in Colab with the ngrok tunnel."""
    from enfoads.cli.tunnel import NGROK_TOKEN_URL

    return load_secrets(
        [
            SecretSpec("HF_TOKEN", "only for gated models (none of the defaults is)"),
            SecretSpec(
                "NGROK_AUTHTOKEN",
                "the ngrok tunnel" if tunnel == "ngrok" else "unused (tunnel: %s)" % tunnel,
                prompt=tunnel == "ngrok" and in_colab(),
                help_text=f"Paste your ngrok authtoken ({NGROK_TOKEN_URL}); or leave empty for a Cloudflare quick tunnel. "
                "To skip this prompt next time, add a Colab secret named NGROK_AUTHTOKEN (key icon, left sidebar).",
            ),
            SecretSpec("NGROK_DOMAIN", "optional: your free static ngrok domain, so the URL stays the same"),
            SecretSpec("ENFOADS_API_KEY", "optional: a fixed API key (default: generated once, kept in the data dir)"),
        ]
    )
