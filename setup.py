"""A shim for tools that still call setup.py; all packaging metadata is in pyproject.toml.

Dependencies and extras go in pyproject.toml ([project] dependencies and
[project.optional-dependencies]); the version in enfoads/_version.py.
"""
from setuptools import setup

setup()
