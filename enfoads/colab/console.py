"""The built-in console inside the notebook's output, through Colab's own port proxy: no tunnel needed.

``google.colab.output.serve_kernel_port_as_iframe`` shows the server's port in
an iframe that only this notebook's Google account can open. The page gets a
12-hour login token in its URL fragment (never sent to the server, and never
the API key itself), which it keeps in the tab's sessionStorage. Outside
Colab the same call says where the console is on this machine.
"""
from __future__ import annotations

CONSOLE_PATH = "/console/"


def console_path(token: str) -> str:
    """The console's path with a login token in the fragment (what the page reads, then clears)."""
    return f"{CONSOLE_PATH}#token={token}"


def show_console(client, port: int, *, height: int = 820, output=None) -> str:
    """Show the console: an iframe through Colab's proxy (``"iframe"``), else a line saying where it is (``"link"``).

    Args:
        client: a ``Client`` of the running server (it logs in for the token).
        port: the server's local port.
        output: ``google.colab.output`` (found here when None; tests pass their own).
    """
    if output is None:
        try:
            from google.colab import output
        except ImportError:
            output = None
    if output is None:
        print(f"The console: open http://127.0.0.1:{port}{CONSOLE_PATH} in a browser on this machine and enter "
              "the API key (or open it under the URL the server printed).")
        return "link"
    token = client.login_token()
    output.serve_kernel_port_as_iframe(port, path=console_path(token), width="100%", height=str(height))
    return "iframe"
