"""The command line: ``enfoads serve | doctor | build-tiny | preload | models`` (``main``), the embedded
gunicorn server (``server``), the public tunnel (``tunnel``) and the install report (``doctor``)."""
from enfoads.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
