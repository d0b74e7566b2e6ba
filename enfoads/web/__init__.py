"""The embedded web app: Flask + Flask-SocketIO, built by ``create_app(settings)``."""
from enfoads.web.app import create_app

__all__ = ["create_app"]
